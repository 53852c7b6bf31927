"""A reader of iHarmony4-style folders (HAdobe5k for the paper): the real photos and composites the
harmony classifier (:mod:`facestyle.nn.harmony`) is trained on.

The layout: ``composite_images/{name}_{k}_{j}.jpg``, ``masks/{name}_{k}.png``, ``real_images/{name}.jpg``
and ``HAdobe5k_train.txt`` / ``HAdobe5k_test.txt`` listing composites. Each composite gives one negative
(the composite with its mask) and one positive (the real image with the same mask), so the classes are
balanced and the mask alone tells nothing.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import InputError
from ..nn.harmony import resize_square

# (composites, masks, real images): iHarmony4's names, then the short names of some copies (and RainNet's).
LAYOUTS = (("composite_images", "masks", "real_images"), ("composite", "mask", "real"))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class HarmonySample:
    """One composite with its foreground mask and the real photo it was made from."""

    composite: Path
    mask: Path
    real: Path


def _layout(root: Path) -> tuple[Path, Path, Path]:
    for names in LAYOUTS:
        folders = tuple(root / n for n in names)
        if all(f.is_dir() for f in folders):
            return folders  # type: ignore[return-value]
    expected = " or ".join("/".join(n) for n in LAYOUTS)
    raise InputError(f"{root}: not an iHarmony4-style folder (expected subfolders {expected})")


def _index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES}


def _split_lists(root: Path) -> dict[str, Path] | None:
    """``{name}_train.txt`` and ``{name}_test.txt`` (e.g. HAdobe5k_train.txt), when both are there."""
    found = {}
    for split in ("train", "test"):
        files = sorted(root.glob(f"*_{split}.txt"))
        if len(files) > 1:
            raise InputError(f"{root}: several {split} lists ({', '.join(f.name for f in files)}); keep one")
        if files:
            found[split] = files[0]
    if len(found) == 1:
        missing = "test" if "train" in found else "train"
        raise InputError(f"{root}: {found[next(iter(found))].name} has no matching *_{missing}.txt")
    return found or None


def _read_list(path: Path) -> list[str]:
    """Composite names from a split list; lines may be ``composite_images/a0001_1_1.jpg`` or bare names."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable split list ({exc})") from None
    return [Path(line.strip()).stem for line in lines if line.strip()]


def _match(stem: str, masks: dict[str, Path], reals: dict[str, Path]) -> tuple[Path | None, Path | None]:
    """iHarmony4 names: composite ``{name}_{k}_{j}`` -> mask ``{name}_{k}``, real ``{name}``; copies that
    give all three one name (RainNet's samples) are matched by that name."""
    parts = stem.split("_")
    mask = masks.get("_".join(parts[:-1])) if len(parts) >= 2 else None
    real = reals.get("_".join(parts[:-2])) if len(parts) >= 3 else None
    return mask or masks.get(stem), real or reals.get(stem)


def _held_out_reals(reals: Sequence[str], fraction: float) -> set[str]:
    """A fixed share of the real photos (by a hash of their names), so that no photo is on both sides."""
    unique = sorted(set(reals))
    if len(unique) < 2 or fraction <= 0:
        return set()
    count = min(len(unique) - 1, math.ceil(fraction * len(unique)))
    return set(sorted(unique, key=lambda n: hashlib.sha1(n.encode()).hexdigest())[:count])


def find_harmony_samples(root: str | os.PathLike[str], split: str = "train",
                         held_out_fraction: float = 0.1) -> list[HarmonySample]:
    """The (composite, mask, real) triplets of an iHarmony4-style folder.

    ``split``: ``train`` / ``test`` follow ``*_train.txt`` / ``*_test.txt`` when the folder has them
    (HAdobe5k does); otherwise a fixed ``held_out_fraction`` of the real photos (chosen by a hash of their
    names, with all their composites) is the test split and the rest the train split. ``all``: every
    composite. A composite without its mask or real image is an error naming it.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    composite_dir, mask_dir, real_dir = _layout(root)
    composites, masks, reals = _index(composite_dir), _index(mask_dir), _index(real_dir)
    lists = _split_lists(root) if split != "all" else None
    if lists is not None:
        names = _read_list(lists[split])
        absent = [n for n in names if n not in composites]
        if absent:
            raise InputError(f"{lists[split]}: {len(absent)} listed composite(s) not in {composite_dir} "
                             f"(first: {absent[0]})")
    else:
        names = list(composites)
    samples, unmatched = [], []
    for name in names:
        mask, real = _match(name, masks, reals)
        if mask is None or real is None:
            unmatched.append((name, "mask" if mask is None else "real image"))
        else:
            samples.append(HarmonySample(composites[name], mask, real))
    if unmatched:
        name, what = unmatched[0]
        raise InputError(f"{root}: {len(unmatched)} composite(s) without their mask or real image (first: "
                         f"{name} has no {what}; expected masks/{{name}}_{{k}}.png and real_images/{{name}}.jpg)")
    if lists is None and not samples:
        raise InputError(f"{root}: no composites in {composite_dir}")
    if lists is None and split != "all":
        held = _held_out_reals([s.real.stem for s in samples], held_out_fraction)
        samples = [s for s in samples if (s.real.stem in held) == (split == "test")]
    return samples


def read_image_unit(path: Path, size: int, mode: str = "RGB") -> Tensor:
    """An image file as a (C, size, size) float tensor in [0, 1] (C = 3 for RGB, 1 for L).

    Large JPEGs are decoded at a reduced scale (``draft``) and large images box-reduced before the
    antialiased bilinear resize, so HAdobe5k's multi-megapixel photos load quickly. No EXIF rotation:
    iHarmony4's masks are aligned with the stored pixels.
    """
    try:
        im = Image.open(path)
        if im.format == "JPEG":
            im.draft(mode, (size, size))
        im = im.convert(mode)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable image ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    factor = min(im.size) // (2 * size)
    if factor >= 2:
        im = im.reduce(factor)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return resize_square(t[None], size)[0].clamp(0, 1)


class HarmonyDataset(Dataset):
    """Item ``2 i``: real image i with composite i's mask (target 1); item ``2 i + 1``: composite i with
    its mask (target 0). Each item is ``(image (3, S, S) in [0, 1], mask (1, S, S), target)``."""

    def __init__(self, samples: Sequence[HarmonySample], image_size: int) -> None:
        self.samples = list(samples)
        self.image_size = image_size

    def __len__(self) -> int:
        return 2 * len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        sample = self.samples[index // 2]
        real = index % 2 == 0
        image = read_image_unit(sample.real if real else sample.composite, self.image_size)
        mask = read_image_unit(sample.mask, self.image_size, mode="L")
        return image, mask, torch.tensor(1.0 if real else 0.0)


def random_flip(image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Horizontal flip of image and mask together, with probability 1/2 (torch's global RNG)."""
    if torch.rand(()) < 0.5:
        return image.flip(-1), mask.flip(-1)
    return image, mask

