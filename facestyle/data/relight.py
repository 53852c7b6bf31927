"""Photometric changes of a photo: exposure, white balance / colour cast, gamma and a smooth directional
light gradient, the family of the synthetic renderer's illumination, applied to any image.

They build *relit* harmonization pairs, the way image-harmonization datasets (iHarmony4) build their
composites: a region of a target photo takes its style from the same photo after a change, and the
ground truth is the unchanged photo. Every change is drawn from one fixed, documented distribution
(:func:`sample_change`), seeded per (seed, index), so a benchmark built on it is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["PhotometricChange", "sample_change", "change_for", "apply_changes"]


@dataclass(frozen=True)
class PhotometricChange:
    """``y = clip(exposure * gains[c] * ramp(x, y) * x01 ** gamma)`` on the [0, 1] image ``x01``, with
    ``ramp = 1 + gradient_strength * (x cos(angle) + y sin(angle))`` over image coordinates in [-1, 1]."""

    exposure: float
    gains: tuple[float, float, float]
    gamma: float
    gradient_angle: float
    gradient_strength: float


def sample_change(rng: np.random.Generator) -> PhotometricChange:
    """One change from the fixed distribution:

    - exposure 2^(+-U(0.25, 0.8)) (brighter or darker by a quarter to 0.8 of a stop);
    - white balance: a warm/cool temperature t ~ U(-1, 1) scales red by 1 + 0.15 t and blue by 1 - 0.15 t,
      and a green/magenta tint scales green by 1 + U(-0.05, 0.05);
    - gamma exp(U(-0.25, 0.25));
    - a directional light gradient of strength U(0, 0.35) from a uniform direction, as the renderer's.
    """
    stops = rng.uniform(0.25, 0.8) * rng.choice((-1.0, 1.0))
    temperature = rng.uniform(-1.0, 1.0)
    tint = rng.uniform(-0.05, 0.05)
    return PhotometricChange(exposure=float(2.0 ** stops),
                             gains=(1.0 + 0.15 * temperature, 1.0 + tint, 1.0 - 0.15 * temperature),
                             gamma=float(math.exp(rng.uniform(-0.25, 0.25))),
                             gradient_angle=float(rng.uniform(0.0, 2 * math.pi)),
                             gradient_strength=float(rng.uniform(0.0, 0.35)))


def change_for(seed: int, index: int, salt: int = 0) -> PhotometricChange:
    """The change of item ``index`` of stream ``seed`` (``salt`` separates several changes of one item)."""
    return sample_change(np.random.default_rng(np.random.SeedSequence([seed, index, salt])))


def apply_changes(images: Tensor, changes: list[PhotometricChange]) -> Tensor:
    """Images (B, 3, H, W) in [-1, 1], change i applied to image i; the result is in [-1, 1]."""
    if images.ndim != 4 or len(changes) != images.shape[0]:
        raise ValueError(f"expected (B, 3, H, W) images and B changes, got {tuple(images.shape)} and {len(changes)}")
    dtype, device = images.dtype, images.device
    f = torch.float32

    def column(values: list) -> Tensor:
        return torch.tensor(values, dtype=f, device=device)

    exposure = column([c.exposure for c in changes])[:, None, None, None]
    gains = column([c.gains for c in changes])[:, :, None, None]
    gamma = column([c.gamma for c in changes])[:, None, None, None]
    angle = column([c.gradient_angle for c in changes])
    strength = column([c.gradient_strength for c in changes])
    h, w = images.shape[-2:]
    ys = (torch.arange(h, dtype=f, device=device) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=f, device=device) + 0.5) / w * 2 - 1
    direction = torch.einsum("b,w->bw", torch.cos(angle), xs)[:, None, :] + \
        torch.einsum("b,h->bh", torch.sin(angle), ys)[:, :, None]
    ramp = (1 + strength[:, None, None] * direction).clamp_min(0)[:, None]
    x01 = ((images.to(f) + 1) / 2).clamp(0, 1)
    out = (x01 ** gamma * exposure * gains * ramp).clamp(0, 1)
    return (out * 2 - 1).to(dtype)
