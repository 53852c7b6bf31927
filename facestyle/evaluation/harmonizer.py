"""The post-hoc harmonizer row of the benchmarks: DoveNet after the bypassed transfer (the paper's
"SEAN+DoveNet"), given with ``--harmonizer DIR`` or found beside the checkpoint (``CHECKPOINT/harmonizer``)."""

from __future__ import annotations

import os
from typing import Protocol

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..styles.networks import harmonizer_beside, load_harmonizer

__all__ = ["Harmonizer", "harmonizer_for", "run_harmonizer"]


class Harmonizer(Protocol):
    def harmonize(self, images: Tensor, masks: Tensor) -> Tensor: ...


def harmonizer_for(checkpoint: str | os.PathLike, given: str | os.PathLike | None,
                   device: torch.device | str) -> tuple[Harmonizer | None, str | None]:
    """The benchmark's harmonizer and where it came from: ``given`` when set, else the checkpoint's own,
    else (None, None)."""
    if given is not None:
        try:
            return load_harmonizer(given, device), str(given)
        except CheckpointError as exc:
            raise CheckpointError(f"--harmonizer: {exc}") from None
    path = harmonizer_beside(checkpoint)
    return (None, None) if path is None else (load_harmonizer(path, device), str(path))


def run_harmonizer(harmonizer: Harmonizer, images: Tensor, masks: Tensor) -> Tensor:
    """The harmonized images (B, 3, H, W) in [-1, 1], float32, for masks (B, H, W) or (B, 1, H, W)."""
    with torch.inference_mode():
        out = harmonizer.harmonize(images, masks[:, None] if masks.dim() == 3 else masks)
    return out.float().to(images.device).clamp(-1, 1)
