"""The post-hoc harmonizer row of the benchmarks: DoveNet (paper's "SEAN+DoveNet") after a transfer.

A harmonizer is any object with ``harmonize(images, masks)``: images (B, 3, H, W) in [-1, 1] and masks
(B, 1, H, W) in {0, 1} (the region to harmonize), giving harmonized images (B, 3, H, W). The project's is
``facestyle.nn.dovenet.DoveNet`` (a :class:`~facestyle.checkpoint.Pretrained` network), stored beside a
generator checkpoint in ``CHECKPOINT/harmonizer/`` or given as a folder of its own (``--harmonizer DIR``).
The benchmarks load it through :func:`load_harmonizer` and run it through :func:`run_harmonizer`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

#: the folder beside a generator checkpoint's files that holds its harmonizer
HARMONIZER_DIR = "harmonizer"


class Harmonizer(Protocol):
    def harmonize(self, images: Tensor, masks: Tensor) -> Tensor: ...


def find_harmonizer(checkpoint: str | os.PathLike) -> Path | None:
    """``CHECKPOINT/harmonizer`` when it holds a saved network (``config.json``), else None."""
    from ..checkpoint import resolve

    folder = resolve(checkpoint) / HARMONIZER_DIR
    return folder if (folder / "config.json").is_file() else None


def load_harmonizer(path: str | os.PathLike, device: torch.device | str = "cpu") -> Harmonizer:
    """The DoveNet saved in ``path`` (``DoveNet.from_pretrained``), in evaluation mode on ``device``."""
    from ..nn.dovenet import DoveNet  # another module's network: imported only when a harmonizer is used

    net = DoveNet.from_pretrained(path, device=device)
    net.eval()
    return net


def harmonizer_for(checkpoint: str | os.PathLike, given: str | os.PathLike | None,
                   device: torch.device | str) -> tuple[Harmonizer | None, str | None]:
    """The harmonizer of a benchmark and where it came from: ``given`` (``--harmonizer``) when set, else the
    checkpoint's own (:func:`find_harmonizer`), else (None, None)."""
    if given is not None:
        from ..errors import InputError

        if not Path(given).is_dir():
            raise InputError(f"--harmonizer {given}: not a folder (a saved harmonizer holds config.json and "
                             "model.safetensors)")
        return load_harmonizer(given, device), str(given)
    found = find_harmonizer(checkpoint)
    return (None, None) if found is None else (load_harmonizer(found, device), str(found))


def run_harmonizer(harmonizer: Harmonizer, images: Tensor, masks: Tensor) -> Tensor:
    """``harmonizer.harmonize`` on images (B, 3, H, W) in [-1, 1] with masks (B, H, W) or (B, 1, H, W), on the
    harmonizer's own device and dtype when it has parameters, at its own ``config.image_size`` when it has
    one; the result comes back as float32 at the images' size and device, clamped to [-1, 1]."""
    from ..data.transforms import resize_image

    if masks.dim() == 3:
        masks = masks[:, None]
    size = images.shape[-1]
    device, dtype = images.device, images.dtype
    param = next(iter(harmonizer.parameters()), None) if isinstance(harmonizer, torch.nn.Module) else None
    if param is not None:
        device, dtype = param.device, param.dtype
    own = getattr(getattr(harmonizer, "config", None), "image_size", None)
    x, m = images.float(), masks.float()
    if isinstance(own, int) and own != size:
        x = resize_image(x, own)
        m = torch.nn.functional.interpolate(m, size=(own, own), mode="nearest")
    with torch.inference_mode():
        out: Any = harmonizer.harmonize(x.to(device, dtype), m.to(device, dtype))
    out = out.float().to(images.device)
    if out.shape[-1] != size:
        out = resize_image(out, size)
    return out.clamp(-1, 1)


__all__ = ["HARMONIZER_DIR", "Harmonizer", "find_harmonizer", "harmonizer_for", "load_harmonizer", "run_harmonizer"]
