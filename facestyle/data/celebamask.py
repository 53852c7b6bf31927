"""CelebAMask-HQ in its raw layout: per-part binary masks merged into one class map on the fly.

Layout (``root`` is the folder the archive unpacks to)::

    CelebA-HQ-img/{i}.jpg                                   i = 0..29999, 1024x1024
    CelebAMask-HQ-mask-anno/{i // 2000}/{i:05d}_{part}.png  512x512, one binary PNG per present part

Parts are merged in :data:`PARTS` order, later parts overwriting earlier ones, class = position + 1
(0 is background): exactly the ``celebamask-hq`` label set. The paper's split: images 0..27999 train,
28000..29999 test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import InputError
from ..io import copy_file_atomic, load_image, open_image, save_labels
from ..labels import CELEBAMASK_HQ
from .transforms import PairTransform, resize_labels_centered

PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip",
         "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
IMAGE_DIR = "CelebA-HQ-img"
ANNO_DIR = "CelebAMask-HQ-mask-anno"
NUM_TRAIN = 28_000
SPLITS = {"train": (0, NUM_TRAIN), "test": (NUM_TRAIN, 30_000), "all": (0, 30_000)}
_IMAGE_NAME = re.compile(r"^(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
_LAYOUT = f"{IMAGE_DIR}/{{i}}.jpg and {ANNO_DIR}/{{i // 2000}}/{{i:05d}}_{{part}}.png"

assert CELEBAMASK_HQ.classes[1:] == PARTS


def find_root(root: str | os.PathLike) -> Path:
    """The folder holding the raw layout: ``root`` itself or its ``CelebAMask-HQ`` subfolder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (expected a CelebAMask-HQ folder with {_LAYOUT})")
    for candidate in (root, root / "CelebAMask-HQ"):
        if (candidate / IMAGE_DIR).is_dir() and (candidate / ANNO_DIR).is_dir():
            return candidate
    hint = " (it looks like a prepared images/labels folder: use folder:ROOT)" if (root / "labels").is_dir() else ""
    raise InputError(f"{root} is not a CelebAMask-HQ folder: expected {_LAYOUT}{hint}")


def list_indices(root: Path, split: str) -> list[tuple[int, Path]]:
    """(index, image path) of the split's images present under ``root``, sorted by index."""
    if split not in SPLITS:
        raise InputError(f"unknown CelebAMask-HQ split {split!r}; choose one of: {', '.join(SPLITS)}")
    lo, hi = SPLITS[split]
    found: dict[int, Path] = {}
    with os.scandir(root / IMAGE_DIR) as entries:
        for entry in entries:
            m = _IMAGE_NAME.match(entry.name)
            if m and lo <= int(m.group(1)) < hi:
                found.setdefault(int(m.group(1)), Path(entry.path))
    return sorted(found.items())


def merge_parts(anno_root: str | os.PathLike, index: int) -> np.ndarray:
    """Merge image ``index``'s part masks into one (H, W) int64 class map (nonzero pixel = in the part)."""
    folder = Path(anno_root) / str(index // 2000)
    labels: np.ndarray | None = None
    for cls, part in enumerate(PARTS, start=1):
        path = folder / f"{index:05d}_{part}.png"
        if not path.is_file():
            continue
        mask = np.asarray(open_image(path))
        if mask.ndim == 3:
            mask = mask.any(axis=-1)
        if labels is None:
            labels = np.zeros(mask.shape, dtype=np.int64)
        elif mask.shape != labels.shape:
            raise InputError(f"{path}: size {mask.shape[1]}x{mask.shape[0]} differs from the image's other "
                             f"part masks ({labels.shape[1]}x{labels.shape[0]})")
        labels[mask != 0] = cls
    if labels is None:
        raise InputError(f"{folder}: no part mask {index:05d}_<part>.png for image {index}")
    return labels


class CelebAMaskHQ(Dataset):
    """Raw CelebAMask-HQ; items are (image (3, H, W) in [-1, 1], labels (H, W) int64, name).

    Labels are resized (nearest) to the image's size (512 -> 1024) before ``transform``.
    """

    label_set = CELEBAMASK_HQ

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: PairTransform | None = None):
        self.root = find_root(root)
        self.split = split
        self.transform = transform
        items = list_indices(self.root, split)
        if not items:
            lo, hi = SPLITS[split]
            raise InputError(f"{self.root / IMAGE_DIR}: no images of the {split} split (indices {lo}..{hi - 1})")
        self.indices = [i for i, _ in items]
        self.image_paths = [p for _, p in items]
        self.names = [str(i) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def load_labels(self, item: int) -> np.ndarray:
        """The merged label map of item ``item`` at the masks' own size."""
        return merge_parts(self.root / ANNO_DIR, self.indices[item])

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image = load_image(self.image_paths[item])
        labels = resize_labels_centered(torch.from_numpy(self.load_labels(item)), image.shape[-2:])
        if self.transform is not None:
            image, labels = self.transform(image, labels)
        return image, labels, self.names[item]


def prepare_celebamask_hq(src: str | os.PathLike, dst: str | os.PathLike, split: str = "all",
                          progress: bool = True, overwrite: bool = False,
                          on_bad: Callable[[str], None] | None = None) -> int:
    """Convert the raw layout to ``dst/images/{i}.jpg`` + ``dst/labels/{i}.png`` (merged class maps).

    The result is read by :class:`~facestyle.data.folder.FolderDataset`. Every photo is decoded first
    (within the image size cap, :data:`facestyle.io.MAX_SIDE`), then its file is copied as it is; label
    maps keep the masks' size. A photo that does not decode, or whose part masks do not, is an
    InputError; with ``on_bad``, that is called with the error's one line instead, nothing of the item
    is written and the next one goes on. Files already present are kept unless ``overwrite`` (every
    write is atomic, so an interrupted run resumes). Returns the number of items written.
    """
    root = find_root(src)
    items = list_indices(root, split)
    if not items:
        raise InputError(f"{root / IMAGE_DIR}: no images of the {split} split")
    dst = Path(dst).expanduser()
    written = 0
    for index, image_path in tqdm(items, desc=f"CelebAMask-HQ {split}", unit="img",
                                   disable=None if progress else True):  # a bar on a terminal only
        out_image = dst / "images" / f"{index}{image_path.suffix.lower()}"
        out_labels = dst / "labels" / f"{index}.png"
        if not overwrite and out_image.is_file() and out_labels.is_file():
            continue
        try:
            open_image(image_path).close()  # decodes it: a truncated or garbage file is refused here
            labels = merge_parts(root / ANNO_DIR, index)
        except InputError as exc:
            if on_bad is None:
                raise
            on_bad(str(exc))
            continue
        save_labels(labels, out_labels)
        copy_file_atomic(image_path, out_image)
        written += 1
    return written
