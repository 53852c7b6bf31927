"""SEAN's discriminator: a multi-scale PatchGAN conditioned on the label map (pix2pixHD / SPADE).

Each scale is SPADE's ``NLayerDiscriminator`` with ``n_layers`` 4x4 convolutions (padding 2) before a
final 4x4 convolution to one channel: the first with stride 2 and no normalization, the next with
spectral norm + instance norm and stride 2 except the last of them (stride 1), LeakyReLU(0.2) after
each; channels ndf, 2 ndf, 4 ndf, ... capped at 512. The input is the one-hot label map concatenated
with the image; every further scale sees it average-pooled (3x3, stride 2, padding 1, padding not
counted). Each scale returns all its intermediate features, for the feature matching loss, and the
patch logits last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .pooling import one_hot

if TYPE_CHECKING:
    from ..config import ModelConfig

KERNEL = 4
PADDING = 2  # ceil((KERNEL - 1) / 2), as in pix2pixHD / SPADE


def _conv(in_channels: int, out_channels: int, stride: int, bias: bool = True) -> nn.Conv2d:
    """4x4 conv with SPADE's initialization (Xavier normal, gain 0.02; zero bias)."""
    conv = nn.Conv2d(in_channels, out_channels, KERNEL, stride=stride, padding=PADDING, bias=bias)
    nn.init.xavier_normal_(conv.weight, gain=0.02)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class PatchDiscriminator(nn.Module):
    """One scale: SPADE's ``NLayerDiscriminator``; returns ``n_layers + 1`` outputs, logits last."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        channels = ndf
        blocks = [nn.Sequential(_conv(in_channels, channels, stride=2), nn.LeakyReLU(0.2))]
        for n in range(1, n_layers):
            previous, channels = channels, min(channels * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            blocks.append(nn.Sequential(
                spectral_norm(_conv(previous, channels, stride, bias=False)),  # instance norm follows
                nn.InstanceNorm2d(channels, affine=False),
                nn.LeakyReLU(0.2),
            ))
        blocks.append(nn.Sequential(_conv(channels, 1, stride=1)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_discriminators`` PatchGANs on the (label map, image) pair at halving resolutions."""

    def __init__(self, num_classes: int, ndf: int = 64, num_discriminators: int = 2,
                 n_layers: int = 3) -> None:
        super().__init__()
        if num_discriminators < 1:
            raise ValueError(f"num_discriminators must be at least 1, got {num_discriminators}")
        self.num_classes = num_classes
        self.scales = nn.ModuleList(
            PatchDiscriminator(num_classes + 3, ndf, n_layers) for _ in range(num_discriminators)
        )

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> MultiscaleDiscriminator:
        return cls(cfg.num_classes, ndf=cfg.ndf, num_discriminators=cfg.num_discriminators,
                   n_layers=cfg.discriminator_layers)

    def forward(self, images: Tensor, labels: Tensor) -> list[list[Tensor]]:
        """Score ``images`` (B, 3, H, W) against ``labels``: class indices (B, H, W) or one-hot (B, R, H, W).

        Returns, per scale (full resolution first), the list of intermediate features whose last entry is
        the patch logits (B, 1, h, w).
        """
        if labels.dim() == 3:
            labels = one_hot(labels, self.num_classes, images.dtype)
        if labels.shape[1] != self.num_classes:
            raise ValueError(f"expected a one-hot map with {self.num_classes} channels, "
                             f"got {labels.shape[1]}")
        x = torch.cat([labels.to(images.dtype), images], dim=1)
        outputs = []
        for i, scale in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs
