"""The weights folder: where the standard pretrained weight files (VGG19, InceptionV3, ...) are found.

The project defines the feature networks itself and loads the weight files users download once, by
their usual names, from one folder:

1. ``--weights-dir`` (the ``explicit`` argument),
2. else the ``FACESTYLE_WEIGHTS`` environment variable,
3. else torch's hub cache, ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), where
   torchvision and pytorch-fid put the same files, so an existing cache is found as is.

Files are read without unpickling arbitrary objects: ``torch.load(..., weights_only=True)`` for ``.pth``
and safetensors for ``.safetensors``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .errors import WeightsError
from .io import first_line

ENV_VAR = "FACESTYLE_WEIGHTS"

_HOW_TO_POINT = f"(or set {ENV_VAR} / --weights-dir)"


@dataclass(frozen=True)
class WeightFile:
    """One standard weight file: its usual name, what it holds, where it is published.

    ``size`` (bytes) and ``sha256`` (a prefix of the hex digest, as in torch hub's ``name-<hash>.pth``
    convention, or the whole digest) are ``None`` where not known. ``legacy_names`` are older uploads of
    the same weights that an existing torch hub cache may hold instead; ``bundled`` lists copies shipped
    inside installed Python packages, as ``(package, path inside it)``.
    """

    name: str
    description: str
    url: str
    size: int | None = None
    sha256: str | None = None
    legacy_names: tuple[str, ...] = ()
    bundled: tuple[tuple[str, str], ...] = ()


_TORCHVISION = "https://download.pytorch.org/models/"
_LPIPS = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/"

WEIGHT_FILES: dict[str, WeightFile] = {
    wf.name: wf
    for wf in (
        WeightFile(
            "vgg19-dcbbf910.pth", "VGG19 ImageNet (torchvision), for the perceptual loss",
            _TORCHVISION + "vgg19-dcbbf910.pth", sha256="dcbbf910", legacy_names=("vgg19-dcbb9e9d.pth",),
        ),
        WeightFile(
            "vgg16-397923af.pth", "VGG16 ImageNet (torchvision), LPIPS's VGG backbone",
            _TORCHVISION + "vgg16-397923af.pth", size=553_433_881, sha256="397923af",
        ),
        WeightFile(
            "alexnet-owt-7be5be79.pth", "AlexNet ImageNet (torchvision), LPIPS's AlexNet backbone",
            _TORCHVISION + "alexnet-owt-7be5be79.pth", size=244_408_911, sha256="7be5be79",
            legacy_names=("alexnet-owt-4df8aa71.pth",),
        ),
        WeightFile(
            "pt_inception-2015-12-05-6726825d.pth", "InceptionV3 in the FID variant (pytorch-fid), for FID",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            size=95_628_359, sha256="6726825d",
        ),
        WeightFile(
            "alex.pth", "LPIPS v0.1 linear heads for the AlexNet backbone", _LPIPS + "alex.pth",
            size=6009, sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
            bundled=(("lpips", "weights/v0.1/alex.pth"),
                     ("torchmetrics", "functional/image/lpips_models/alex.pth")),
        ),
        WeightFile(
            "vgg.pth", "LPIPS v0.1 linear heads for the VGG16 backbone", _LPIPS + "vgg.pth",
            size=7289, sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
            bundled=(("lpips", "weights/v0.1/vgg.pth"),
                     ("torchmetrics", "functional/image/lpips_models/vgg.pth")),
        ),
        WeightFile(
            "79999_iter.pth", "BiSeNet face parser (face-parsing.PyTorch, CelebAMask-HQ), for --parser bisenet",
            "https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812",
        ),
    )
}


def _resolve_dir(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The weights folder: ``explicit`` (``--weights-dir``), else ``$FACESTYLE_WEIGHTS``, else
    ``torch.hub.get_dir()/checkpoints``. The folder may not exist."""
    return _resolve_dir(explicit)


def _bundled_copy(entry: WeightFile) -> Path | None:
    """A copy shipped inside an installed package (found without importing the package)."""
    for package, relative in entry.bundled:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for root in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(root) / relative
            if candidate.is_file():
                return candidate
    return None


def _locate(name: str, directory: Path) -> Path | None:
    entry = WEIGHT_FILES.get(name)
    for candidate in (name, *(entry.legacy_names if entry else ())):
        path = directory / candidate
        if path.is_file():
            return path
    return _bundled_copy(entry) if entry else None


def find_weight(name: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the weight file ``name`` in the weights folder (or an older upload of the same weights).

    Raises :class:`WeightsError` naming the file, the folder and where the file is published.
    """
    directory = _resolve_dir(weights_dir)
    path = _locate(name, directory)
    if path is not None:
        return path
    where = f"{directory}" if directory.is_dir() else f"{directory} (the folder does not exist)"
    entry = WEIGHT_FILES.get(name)
    if entry is None:
        raise WeightsError(f"{name} not found in {where}; put it in that folder {_HOW_TO_POINT}")
    raise WeightsError(f"{name} not found in {where}; download it from {entry.url} into that folder "
                       f"{_HOW_TO_POINT}")


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict (name -> tensor) on the CPU from ``.safetensors`` or a torch file (``.pth``).

    Torch files are read with ``weights_only=True``: tensors and plain containers only, never arbitrary
    pickled objects. An unreadable file, or one that holds anything but named tensors, raises
    :class:`WeightsError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a truncated or foreign file
        if "Weights only load failed" in str(exc):  # torch's advice to unpickle everything does not apply
            raise WeightsError(f"{path} cannot be read as a weight file: it is corrupt, or holds pickled "
                               "objects other than tensors (never loaded)") from exc
        raise WeightsError(f"{path} cannot be read as a weight file, it may be incomplete or corrupt "
                           f"({first_line(exc)})") from exc
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path} does not hold a state dict (found {type(state).__name__})")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise WeightsError(f"{path} does not hold a state dict of tensors (entry {key!r} is "
                               f"{type(value).__name__})")
    return dict(state)


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


class WeightStatus(NamedTuple):
    """One row of :func:`check_weights`."""

    name: str
    status: str  # "present" | "missing" | "wrong size" | "wrong hash"
    path: Path  # where the file was found, or where it is expected
    url: str


def _check(entry: WeightFile, path: Path, verify_hash: bool) -> str:
    primary = path.name == entry.name
    if primary and entry.size is not None and path.stat().st_size != entry.size:
        return "wrong size"
    if verify_hash:
        if primary:
            expected = entry.sha256
        else:  # an older upload: torch hub's hash-in-the-name convention
            match = _HASH_IN_NAME.search(path.name)
            expected = match.group(1) if match else None
        if expected is not None and not sha256_file(path).startswith(expected):
            return "wrong hash"
    return "present"


def check_weights(weights_dir: str | os.PathLike[str] | None = None,
                  verify_hash: bool = False) -> list[WeightStatus]:
    """Status of every file in :data:`WEIGHT_FILES` in the weights folder.

    Sizes are checked where known; SHA-256 digests (slow: reads every file) only with ``verify_hash``.
    """
    directory = _resolve_dir(weights_dir)
    rows = []
    for entry in WEIGHT_FILES.values():
        path = _locate(entry.name, directory)
        if path is None:
            rows.append(WeightStatus(entry.name, "missing", directory / entry.name, entry.url))
        else:
            rows.append(WeightStatus(entry.name, _check(entry, path, verify_hash), path, entry.url))
    return rows
