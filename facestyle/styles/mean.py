"""The dataset's mean style code per class, kept with a generator checkpoint.

Shape editing (:meth:`Editor.edit_shape`) needs a style for a class the target photo does not have (a
hat painted on, hair where there was none): when no reference and no mapping network gives one, it
falls back to the mean code of that class over a dataset, stored beside the generator as
``CHECKPOINT/style_mean.safetensors``::

    mean   (R, D) float32   the mean code of each class over the samples where it is present (0 if none)
    count  (R,)   int64     how many samples had the class

The file records the SHA-256 of the generator's ``model.safetensors`` it was encoded with, so that a mean
made with another generator is refused. Make one from a style bank (``facestyle encode-styles``) or from
a dataset with ``facestyle style-mean --checkpoint DIR --data SPEC``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ..checkpoint import WEIGHTS_NAME, check_writable, resolve, save_tensors
from ..errors import CheckpointError, InputError

__all__ = ["STYLE_MEAN_NAME", "compute_style_mean", "save_style_mean", "load_style_mean", "style_mean_path"]

STYLE_MEAN_NAME = "style_mean.safetensors"
FORMAT = "facestyle-style-mean"


def style_mean_path(directory: str | os.PathLike) -> Path:
    return resolve(directory) / STYLE_MEAN_NAME


def compute_style_mean(codes: Tensor, presence: Tensor) -> tuple[Tensor, Tensor]:
    """Per-class mean (R, D) of codes (N, R, D) over the samples where the class is present ((N, R) bool),
    and the per-class sample count (R,). A class never present has a zero mean and count 0."""
    if codes.ndim != 3 or presence.shape != codes.shape[:2]:
        raise InputError(f"expected codes (N, R, D) and presence (N, R), got {tuple(codes.shape)} and "
                         f"{tuple(presence.shape)}")
    weight = presence.to(torch.float64)
    count = weight.sum(0)
    total = torch.einsum("nrd,nr->rd", codes.to(torch.float64), weight)
    mean = total / count.clamp_min(1)[:, None]
    return mean.to(torch.float32), count.to(torch.int64)


def save_style_mean(directory: str | os.PathLike, mean: Tensor, count: Tensor) -> Path:
    """Write ``DIRECTORY/style_mean.safetensors`` atomically (``directory``: the generator checkpoint)."""
    if mean.ndim != 2 or count.shape != mean.shape[:1]:
        raise InputError(f"expected mean (R, D) and count (R,), got {tuple(mean.shape)} and {tuple(count.shape)}")
    if not torch.isfinite(mean).all():
        raise InputError("the style mean holds NaN or infinite values")
    directory = check_writable(directory, "a style mean")
    metadata = {"format": FORMAT}
    weights = directory / WEIGHTS_NAME
    if weights.is_file():
        from .bank import file_sha256

        metadata["checkpoint_sha256"] = file_sha256(weights)
    path = directory / STYLE_MEAN_NAME
    try:
        save_tensors({"mean": mean.float(), "count": count.to(torch.int64)}, path, metadata=metadata)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def load_style_mean(directory: str | os.PathLike) -> tuple[Tensor, Tensor] | None:
    """(mean (R, D), count (R,)) kept with a generator checkpoint, or None when it has none. A file that is
    unreadable, malformed or made with another generator is a :class:`CheckpointError`."""
    directory = resolve(directory)
    path = directory / STYLE_MEAN_NAME
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            keys = set(f.keys())
            if not {"mean", "count"} <= keys:
                raise CheckpointError(f"{path}: expected tensors 'mean' and 'count', found {sorted(keys)}")
            mean, count = f.get_tensor("mean").float(), f.get_tensor("count").to(torch.int64)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if mean.ndim != 2 or count.shape != mean.shape[:1]:
        raise CheckpointError(f"{path}: expected mean (R, D) and count (R,), got {tuple(mean.shape)} and "
                              f"{tuple(count.shape)}")
    made_with = metadata.get("checkpoint_sha256")
    weights = directory / WEIGHTS_NAME
    if made_with and weights.is_file():
        from .bank import file_sha256

        if file_sha256(weights) != made_with:
            raise CheckpointError(f"{path} was computed with another generator than {directory}; "
                                  "compute it again (facestyle style-mean)")
    return mean, count
