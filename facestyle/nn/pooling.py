"""Region average pooling: per-class mean of a feature map, as one einsum (SEAN's region-wise pooling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -1  # a label value for pixels that no region pools over (they still need a class to be drawn)


def one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(B, H, W) class indices -> (B, R, H, W) one-hot map of the given dtype."""
    return F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).to(dtype)


def resize_labels_floor(labels: Tensor, size: tuple[int, int] | int) -> Tensor:
    """Resize (B, H, W) class indices with torch's ``nearest``: output pixel i reads input pixel
    floor(i * H / h), as SEAN resizes its maps.

    Use it inside the networks (region pooling, the generator's per-block maps), where an imported SEAN
    must see SEAN's own maps. To fit a label map to a photo or to the model's input size, use
    :func:`facestyle.data.transforms.resize_labels_centered`, which keeps the map aligned with the image.
    """
    if isinstance(size, int):
        size = (size, size)
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return resized[:, 0].long()


def region_average_pool(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Average ``features`` (B, D, h, w) inside every class of ``labels`` (B, H, W).

    The label map is resized to the feature map's size with ``nearest``. Returns the style codes
    (B, R, D), zero for absent classes, and the presence mask (B, R) (class has at least one pixel).
    """
    mask, area = region_masks(labels, features.shape[-2:], num_classes, features.dtype)
    return pool_regions(features, mask, area), area > 0


def region_masks(labels: Tensor, size: tuple[int, int], num_classes: int,
                 dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """One-hot masks (B, R, h, w) of ``labels`` resized to ``size``, and each class's area (B, R).

    Pixels labelled :data:`IGNORE` belong to no class: they are left out of every region's pool.
    """
    resized = resize_labels_floor(labels, tuple(size))
    mask = one_hot(resized.clamp_min(0), num_classes, dtype) * (resized != IGNORE)[:, None].to(dtype)
    return mask, mask.sum(dim=(2, 3))


def pool_regions(features: Tensor, mask: Tensor, area: Tensor) -> Tensor:
    """Per-class means (B, R, D) of ``features`` (B, D, h, w) under one-hot ``mask``; zero where absent."""
    return torch.einsum("bdhw,brhw->brd", features, mask) / area.clamp_min(1)[..., None]
