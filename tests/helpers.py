"""Test helpers: a tiny checkpoint, and a drawn face for tests that need no real photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facestyle.config import get_preset
from facestyle.labels import CELEBAMASK_HQ
from facestyle.model import FaceStyleNet


def tiny_checkpoint(folder: Path) -> Path:
    """A FaceStyleNet of the tiny preset, initialised from seed 0 and saved in ``folder``."""
    torch.manual_seed(0)
    return FaceStyleNet(get_preset("tiny").model).save_pretrained(folder)


def drawn_face(seed: int, size: int, colours: tuple[int, int] = (40, 216), noise: float = 6.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """(photo, class-index labels) of a drawn face: background, cloth, neck, hair, skin, eyes, nose, lips;
    each class, one random colour in ``colours`` plus pixel noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    labels = np.zeros((size, size), np.uint8)
    labels[y > 0.85] = 18
    labels[(y > 0.65) & (np.abs(x - 0.5) < 0.12)] = 17
    labels[((y - 0.38) / 0.38) ** 2 + ((x - 0.5) / 0.34) ** 2 <= 1] = CELEBAMASK_HQ.classes.index("hair")
    labels[((y - 0.46) / 0.27) ** 2 + ((x - 0.5) / 0.24) ** 2 <= 1] = 1
    labels[(np.abs(y - 0.42) < 0.03) & (np.abs(x - 0.4) < 0.05)] = 4
    labels[(np.abs(y - 0.42) < 0.03) & (np.abs(x - 0.6) < 0.05)] = 5
    labels[(np.abs(y - 0.5) < 0.05) & (np.abs(x - 0.5) < 0.03)] = 2
    labels[(np.abs(y - 0.6) < 0.02) & (np.abs(x - 0.5) < 0.08)] = 11
    labels[(np.abs(y - 0.63) < 0.02) & (np.abs(x - 0.5) < 0.08)] = 12
    low, high = colours
    palette = rng.integers(low, high, size=(CELEBAMASK_HQ.num_classes, 3))
    photo = np.clip(palette[labels] + rng.normal(0, noise, (size, size, 3)), 0, 255).astype(np.uint8)
    return photo, labels
