"""Image + label-map folders: ``images/`` and ``labels/`` paired by file stem (also SEAN's and LaPa's).

Accepted layouts under ``root``::

    images/*.{jpg,jpeg,png,webp}  labels/*.png            a flat folder (any split reads all of it)
    <split>/images/...            <split>/labels/...      SEAN (train|test), LaPa (train|val|test)

Labels are single-channel class-index PNGs. Every image needs a label (else InputError); labels without
an image are ignored. A label map of another size than its image is resized (nearest) to the image's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..io import load_image, load_labels
from ..labels import LabelSet, get_label_set
from .transforms import PairTransform, resize_labels_centered

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
LABEL_SUFFIXES = (".png",)
_SHOWN = 5


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs numerically: ``2.png`` before ``10.png``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def files_by_stem(folder: Path, suffixes: tuple[str, ...], hint: str = "") -> dict[str, Path]:
    """Stem -> path of the files in ``folder`` with one of ``suffixes`` (hidden files skipped)."""
    found: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            path = Path(entry.path)
            if path.suffix.lower() not in suffixes:
                continue
            if path.stem in found:
                raise InputError(f"{folder}: two files share the name {path.stem!r} "
                                 f"({found[path.stem].name}, {path.name}){hint}")
            found[path.stem] = path
    return found


def split_folders(root: Path) -> list[str]:
    """Names of ``root``'s subfolders that hold an ``images/`` folder, sorted."""
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir() and (Path(e.path) / "images").is_dir())


def resolve_folders(root: Path, split: str | None) -> list[Path]:
    """The folders (each with ``images/`` and ``labels/``) that make up ``split`` of ``root``."""
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    splits = split_folders(root)
    if split is not None and split != "all" and split in splits:
        folders = [root / split]
    elif split == "all" and splits:
        folders = [root / s for s in splits]
    elif (root / "images").is_dir():
        folders = [root]
    elif splits and split is None:
        raise InputError(f"{root} has split folders ({', '.join(splits)}); choose a split (or all)")
    elif splits:
        raise InputError(f"{root} has no {split!r} split; it has: {', '.join(splits)} (or use split all)")
    else:
        hint = " (it looks like raw CelebAMask-HQ: use celebamask-hq:ROOT)" if (root / "CelebA-HQ-img").is_dir() else ""
        raise InputError(f"{root}: expected images/ and labels/ folders "
                         f"(or <split>/images and <split>/labels){hint}")
    for folder in folders:
        if not (folder / "labels").is_dir():
            raise InputError(f"{folder}: has images/ but no labels/ folder")
    return folders


class FolderDataset(Dataset):
    """Image/label pairs from folders; items are (image (3, H, W) in [-1, 1], labels (H, W) int64, name)."""

    def __init__(self, root: str | os.PathLike, label_set: str | LabelSet = "celebamask-hq",
                 split: str | None = None, transform: PairTransform | None = None):
        self.root = Path(root).expanduser()
        self.label_set = get_label_set(label_set) if isinstance(label_set, str) else label_set
        self.split = split
        self.transform = transform
        pairs: dict[str, tuple[Path, Path]] = {}
        for folder in resolve_folders(self.root, split):
            images = files_by_stem(folder / "images", IMAGE_SUFFIXES)
            labels = files_by_stem(folder / "labels", LABEL_SUFFIXES)
            unpaired = sorted(set(images) - set(labels), key=natural_key)
            if unpaired:
                shown = ", ".join(images[s].name for s in unpaired[:_SHOWN])
                more = f" and {len(unpaired) - _SHOWN} more" if len(unpaired) > _SHOWN else ""
                raise InputError(f"{folder / 'images'}: {len(unpaired)} image(s) without a label in "
                                 f"{folder / 'labels'}: {shown}{more}")
            for stem, path in images.items():
                if stem in pairs:
                    raise InputError(f"{self.root}: the name {stem!r} appears in two splits "
                                     f"({pairs[stem][0]}, {path})")
                pairs[stem] = (path, labels[stem])
        if not pairs:
            raise InputError(f"{self.root}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        self.names = sorted(pairs, key=natural_key)
        self.image_paths = [pairs[n][0] for n in self.names]
        self.label_paths = [pairs[n][1] for n in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image = load_image(self.image_paths[item])
        labels = resize_labels_centered(load_labels(self.label_paths[item], self.label_set), image.shape[-2:])
        if self.transform is not None:
            image, labels = self.transform(image, labels)
        return image, labels, self.names[item]


class LaPa(FolderDataset):
    """LaPa (``train|val|test/images/*.jpg`` + ``labels/*.png``, 11 classes)."""

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: PairTransform | None = None):
        super().__init__(root, label_set="lapa", split=split, transform=transform)
