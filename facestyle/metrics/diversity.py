"""mCSD and mOCD: how much one region's style varies, and how much the rest stays put.

GroupDNet (Zhu et al., "Semantically Multi-modal Image Synthesis", CVPR 2020) introduced, for a fixed
semantic class c and a fixed label map, N images generated with N random styles for class c only:

- **mCSD** (mean Class-Specific Diversity): the mean LPIPS distance over all N(N-1)/2 pairs of those
  images, restricted to the area of class c. Higher is better: the region is diverse.
- **mOCD** (mean Other-Classes Diversity): the same restricted to the area of all the other classes.
  Lower is better: the rest of the image does not change.

The paper (section 4.1, Table 4) uses 10 random styles per image and reports means over the test images
for skin (skin + nose, the paper's skin region) and hair. "Restricted to an area" is the masked LPIPS of
:class:`~facestyle.metrics.lpips.LPIPS`: each layer's distance map averaged over the mask resized to that
layer's grid. The functions here give one value per source image; a table averages them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .lpips import LPIPS


def class_mask(labels: Tensor, classes: int | Sequence[int]) -> Tensor:
    """Boolean mask of the pixels of ``labels`` (int class indices, any shape) in ``classes``."""
    ids = torch.as_tensor([classes] if isinstance(classes, int) else list(classes), device=labels.device)
    if ids.numel() == 0:
        raise InputError("class_mask: no class given")
    return torch.isin(labels, ids.to(labels.dtype))


@dataclass(frozen=True)
class RegionDiversity:
    """mCSD and mOCD of one source image (NaN where the region, or the rest, is empty)."""

    mcsd: float
    mocd: float
    pairs: int


def pairwise_lpips(lpips: LPIPS, images: Tensor, mask: Tensor | None = None) -> Tensor:
    """LPIPS between every pair (i < j) of N images, in :func:`itertools.combinations` order.

    Features are computed once per image. ``mask`` (H, W) restricts the distance to an area (masked
    LPIPS). Returns N(N-1)/2 values.
    """
    if images.dim() != 4 or images.shape[0] < 2:
        raise InputError(f"pairwise_lpips needs (N, 3, H, W) images with N >= 2, got shape {tuple(images.shape)}")
    feats = lpips.features(images)
    out = []
    for i in range(images.shape[0] - 1):
        js = torch.arange(i + 1, images.shape[0], device=feats[0].device)
        m = None if mask is None else mask.expand(len(js), *mask.shape[-2:])
        out.append(lpips.distance([f[i:i + 1].expand(len(js), -1, -1, -1) for f in feats],
                                  [f[js] for f in feats], m))
    return torch.cat(out)


def region_diversity(lpips: LPIPS, images: Tensor, labels: Tensor, classes: int | Sequence[int]) -> RegionDiversity:
    """mCSD and mOCD of N images that differ only in the style of ``classes``.

    Args:
        lpips: the LPIPS network (the paper does not say which backbone; GroupDNet used the lpips
            package's default, AlexNet).
        images: (N, 3, H, W) in [0, 1], N >= 2 (the paper: 10 random styles), all of one label map.
        labels: (H, W) class indices of that label map (resized with ``nearest`` when its size differs).
        classes: the class(es) whose style varies (e.g. ``CELEBAMASK_HQ.region_classes("skin")``).
    """
    if labels.dim() != 2:
        raise InputError(f"labels: expected one (H, W) label map, got shape {tuple(labels.shape)}")
    if tuple(labels.shape) != tuple(images.shape[-2:]):
        labels = F.interpolate(labels[None, None].float(), size=images.shape[-2:], mode="nearest")[0, 0].long()
    n = images.shape[0]
    if images.dim() != 4 or n < 2:
        raise InputError(f"region_diversity needs (N, 3, H, W) images with N >= 2, got shape "
                         f"{tuple(images.shape)}")
    inside = class_mask(labels, classes).to(images.device)
    feats = lpips.features(images)
    mcsd, mocd = [], []
    masks = torch.stack([inside, ~inside])[:, None].float()  # (2, 1, H, W)
    for i in range(n - 1):
        js = torch.arange(i + 1, n, device=feats[0].device)
        k = len(js)
        # Each pair twice: once with the region's mask, once with the rest's.
        fa = [f[i:i + 1].expand(2 * k, -1, -1, -1) for f in feats]
        fb = [f[js].repeat(2, 1, 1, 1) for f in feats]
        m = masks.repeat_interleave(k, dim=0)
        d = lpips.distance(fa, fb, m)
        mcsd.append(d[:k])
        mocd.append(d[k:])
    return RegionDiversity(mcsd=float(torch.cat(mcsd).mean()), mocd=float(torch.cat(mocd).mean()),
                           pairs=n * (n - 1) // 2)
