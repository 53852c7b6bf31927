"""One dataset grammar for every command that takes ``--data``.

======================  ==================================================================
``celebamask-hq:ROOT``  raw CelebAMask-HQ (``CelebA-HQ-img/``, ``CelebAMask-HQ-mask-anno/``)
``folder:ROOT``         ``images/`` + ``labels/`` (or ``<split>/images`` ...), class-index PNGs
``lapa:ROOT``           LaPa (``train|val|test/images`` + ``labels``)
``synthetic:COUNT``     COUNT procedural faces (rendered at ``--resolution``, default 128)
======================  ==================================================================
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import InputError
from ..labels import LabelSet
from .celebamask import CelebAMaskHQ
from .folder import FolderDataset, LaPa
from .synthetic import SyntheticFaces
from .transforms import PairTransform, eval_transform

DATA_FORMS = ("celebamask-hq:ROOT", "folder:ROOT", "lapa:ROOT", "synthetic:COUNT")
SPLITS = ("train", "val", "test", "all")
SYNTHETIC_RESOLUTION = 128


def _bad(spec: str, why: str) -> InputError:
    return InputError(f"--data {spec!r}: {why}; valid forms: {', '.join(DATA_FORMS)}")


def parse_data_spec(spec: str, split: str = "train", resolution: int | None = None, seed: int = 0,
                    transform: PairTransform | None = None,
                    label_set: str | LabelSet = "celebamask-hq") -> Dataset:
    """Build the dataset that ``spec`` names.

    ``transform`` applies to every item; without one, real images are resized to ``resolution`` when it
    is given. Synthetic faces render at ``resolution`` (default 128) from stream ``seed``. ``label_set``
    is the folder dataset's label set (``lapa:`` always uses LaPa's).
    """
    if resolution is not None and resolution <= 0:
        raise InputError(f"resolution must be positive, got {resolution}")
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or not arg:
        hint = f" (for a folder of images and labels write folder:{spec})" if Path(spec).is_dir() else ""
        raise _bad(spec, f"expected KIND:ARGUMENT{hint}")
    if kind == "synthetic":
        try:
            count = int(arg)
        except ValueError:
            raise _bad(spec, f"COUNT must be a whole number, got {arg!r}") from None
        return SyntheticFaces(count, resolution=resolution or SYNTHETIC_RESOLUTION, seed=seed, split=split,
                              transform=transform)
    if kind not in ("celebamask-hq", "folder", "lapa"):
        raise _bad(spec, f"unknown dataset kind {kind!r}")
    root = Path(arg).expanduser()
    if not root.exists():
        raise InputError(f"--data {spec!r}: {root} does not exist")
    if not root.is_dir():
        raise InputError(f"--data {spec!r}: {root} is not a folder")
    if transform is None and resolution is not None:
        transform = eval_transform(resolution)
    if kind == "celebamask-hq":
        return CelebAMaskHQ(root, split=split, transform=transform)
    if kind == "lapa":
        return LaPa(root, split=split, transform=transform)
    return FolderDataset(root, label_set=label_set, split=split, transform=transform)


def add_data_arguments(parser: argparse.ArgumentParser, default_split: str = "train",
                       required: bool = True) -> argparse.ArgumentParser:
    """Add ``--data``, ``--split``, ``--resolution`` and ``--seed`` to a command's parser."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=required, metavar="KIND:ARG",
                       help=f"dataset: {', '.join(DATA_FORMS)}")
    group.add_argument("--split", choices=SPLITS, default=default_split,
                       help=f"which split of the dataset (default: {default_split})")
    group.add_argument("--resolution", type=int, default=None,
                       help="image size (synthetic faces render at it; default 128 for those)")
    group.add_argument("--seed", type=int, default=0, help="synthetic face stream (default: 0)")
    return parser


def dataset_from_args(args: argparse.Namespace, transform: PairTransform | None = None,
                      label_set: str | LabelSet = "celebamask-hq") -> Dataset:
    """The dataset named by the arguments :func:`add_data_arguments` added."""
    return parse_data_spec(args.data, split=args.split, resolution=args.resolution, seed=args.seed,
                           transform=transform, label_set=label_set)
