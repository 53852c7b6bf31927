"""Label sets (CelebAMask-HQ, LaPa), named regions, palettes and colour <-> index conversion."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .errors import InputError

REGION_NAMES = ("skin", "hair", "eyes", "brows", "lips", "mouth", "nose", "ears", "neck", "cloth", "background")


@dataclass(frozen=True)
class LabelSet:
    """An ordered list of classes with a palette, left/right pairs and named regions."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    regions: dict[str, tuple[int, ...]] = field(hash=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @cached_property
    def flip_permutation(self) -> np.ndarray:
        """Index map that swaps left/right classes: ``flipped_labels = perm[labels]``."""
        perm = np.arange(self.num_classes, dtype=np.int64)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def region_classes(self, region: str) -> tuple[int, ...]:
        """Class indices of a named region (``skin`` is skin + nose, as in the paper's skin transfer)."""
        if region in self.regions:
            classes = self.regions[region]
            if not classes:
                raise InputError(f"region {region!r} has no class in the {self.name} label set")
            return classes
        if region in self.classes:
            return (self.classes.index(region),)
        valid = ", ".join(r for r, c in self.regions.items() if c)
        raise InputError(f"unknown region {region!r}; valid regions for {self.name}: {valid}")

    def regions_mask(self, regions: list[str] | tuple[str, ...]) -> np.ndarray:
        """Boolean (R,) vector of the classes in the given named regions."""
        mask = np.zeros(self.num_classes, dtype=bool)
        for r in regions:
            mask[list(self.region_classes(r))] = True
        return mask

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) class indices -> (H, W, 3) uint8 colours."""
        return np.asarray(self.palette, dtype=np.uint8)[labels]

    def decolorize(self, rgb: np.ndarray, source: str = "label map") -> np.ndarray:
        """(H, W, 3) palette colours -> (H, W) class indices; a colour outside the palette is an error."""
        rgb = np.asarray(rgb, dtype=np.uint8)
        code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        keys = np.array([(r << 16) | (g << 8) | b for r, g, b in self.palette], dtype=np.int64)
        order = np.argsort(keys)
        pos = np.clip(np.searchsorted(keys[order], code), 0, len(keys) - 1)
        found = keys[order][pos] == code
        if not found.all():
            y, x = np.argwhere(~found)[0]
            raise InputError(f"{source}: colour {tuple(int(v) for v in rgb[y, x])} at ({x}, {y}) "
                             f"is not in the {self.name} palette")
        return order[pos].astype(np.int64)

    def validate(self, labels: np.ndarray, source: str = "label map") -> np.ndarray:
        """Check that every value is a class index of this set; returns the map as int64."""
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise InputError(f"{source}: a label map must be single-channel, got shape {labels.shape}")
        bad = (labels < 0) | (labels >= self.num_classes)
        if bad.any():
            value = int(labels[bad].flat[0])
            raise InputError(f"{source}: value {value} is outside the {self.name} label set "
                             f"(0..{self.num_classes - 1})")
        return labels.astype(np.int64)


CELEBAMASK_HQ = LabelSet(
    name="celebamask-hq",
    classes=("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
             "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"),
    palette=((0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204), (0, 255, 255),
             (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204),
             (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0)),
    flip_pairs=((4, 5), (6, 7), (8, 9)),
    regions={
        "skin": (1, 2), "hair": (13,), "eyes": (4, 5), "brows": (6, 7), "lips": (11, 12), "mouth": (10,),
        "nose": (2,), "ears": (8, 9), "neck": (17,), "cloth": (18,), "background": (0,),
        "glasses": (3,), "hat": (14,), "earrings": (15,), "necklace": (16,),
    },
)

LAPA = LabelSet(
    name="lapa",
    classes=("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "mouth", "l_lip",
             "hair"),
    palette=((0, 0, 0), (204, 0, 0), (0, 255, 255), (255, 204, 204), (51, 51, 255), (204, 0, 204), (76, 153, 0),
             (255, 255, 0), (102, 204, 0), (0, 0, 153), (0, 0, 204)),
    flip_pairs=((2, 3), (4, 5)),
    regions={
        "skin": (1, 6), "hair": (10,), "eyes": (4, 5), "brows": (2, 3), "lips": (7, 9), "mouth": (8,),
        "nose": (6,), "ears": (), "neck": (), "cloth": (), "background": (0,),
    },
)

LABEL_SETS = {ls.name: ls for ls in (CELEBAMASK_HQ, LAPA)}

# Classes both sets share, for cross-dataset transfer (CelebAMask-HQ references onto LaPa targets).
SHARED_CLASSES = ("background", "skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip",
                  "hair")


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise InputError(f"unknown label set {name!r}; choose one of: {', '.join(LABEL_SETS)}") from None


def class_mapping(src: LabelSet, dst: LabelSet) -> dict[int, int]:
    """Index in ``src`` -> index in ``dst`` for the classes both sets share (by name)."""
    return {src.classes.index(c): dst.classes.index(c) for c in SHARED_CLASSES
            if c in src.classes and c in dst.classes}


def class_index_map(src: LabelSet, dst: LabelSet) -> np.ndarray:
    """(len(src.classes),) int64: each class of ``src`` -> the class of ``dst`` with its name, background (0)
    when ``dst`` has none (e.g. CelebAMask-HQ's neck in LaPa)."""
    return np.array([dst.classes.index(c) if c in dst.classes else 0 for c in src.classes], dtype=np.int64)
