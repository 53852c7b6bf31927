"""Multi-scale style encoder (paper section 3.1, eq. 1-2).

SEAN's style encoder (3x3 conv, two stride-2 convs, a stride-2 transposed conv, a 3x3 conv + tanh, with
instance norm and LeakyReLU(0.2) between) keeps only its last map. Its instance norm makes the codes blind
to the image's overall brightness and colour cast (a decoder cannot tell a face under a dim warm light from
the same face under a bright neutral one); ``norm="none"`` (beyond the paper) leaves it out so that the
codes keep the light, which reconstruction and harmonization need. The multi-scale encoder resizes every
layer's map to one resolution (half the input, where SEAN's output lies), projects each to the style
length D with a 1x1 conv, and fuses them with learned weights:

    alpha = softmax(a)            (eq. 1; ``fusion="sum"`` uses a directly, without the softmax)
    F = sum_i alpha_i * F_i       (eq. 2)

``fusion="last"`` is SEAN's encoder (its last map only, projected to D unless ``encoder_projection`` is
off, which is how an imported SEAN checkpoint uses its 512-channel map as the code).

Region average pooling, the 1x1 projections and the weighted sum are all linear, so :meth:`region_codes`
pools every layer's map first and projects the (B, R, C_i) means: the same codes as pooling F, without
projecting every pixel (about 17 GFLOP of 1x1 convolutions per 256x256 image at the paper's size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .pooling import pool_regions, region_masks

if TYPE_CHECKING:
    from ..config import ModelConfig


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


class MultiScaleEncoder(nn.Module):
    """Image (B, 3, H, W) in [-1, 1] -> fused feature map (B, D, H/2, W/2)."""

    def __init__(self, style_dim: int, ngf: int = 32, out_channels: int = 512,
                 fusion: Literal["softmax", "sum", "last"] = "softmax", projection: bool = True,
                 spectral: bool = True, norm: Literal["instance", "none"] = "instance") -> None:
        super().__init__()
        e, sn = ngf, spectral
        self.fusion = fusion
        self.norm = norm
        # Layer names follow SEAN's Zencoder.model indices (1, 4, 7, 10, 14) in order.
        self.conv0 = _sn(nn.Conv2d(3, e, 3), sn)  # after reflection padding
        self.conv1 = _sn(nn.Conv2d(e, 2 * e, 3, stride=2, padding=1), sn)
        self.conv2 = _sn(nn.Conv2d(2 * e, 4 * e, 3, stride=2, padding=1), sn)
        self.conv3 = _sn(nn.ConvTranspose2d(4 * e, 8 * e, 3, stride=2, padding=1, output_padding=1), sn)
        self.conv4 = _sn(nn.Conv2d(8 * e, out_channels, 3), sn)  # after reflection padding, then tanh
        widths = (e, 2 * e, 4 * e, 8 * e, out_channels)
        if fusion == "last":
            widths = widths[-1:]
        self.projections = nn.ModuleList(
            nn.Conv2d(w, style_dim, 1) for w in widths) if projection else None
        if fusion == "softmax":
            self.fusion_logits = nn.Parameter(torch.zeros(len(widths)))  # a_i of eq. 1, uniform at start
        elif fusion == "sum":
            self.fusion_logits = nn.Parameter(torch.full((len(widths),), 1.0 / len(widths)))

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> MultiScaleEncoder:
        return cls(cfg.style_dim, cfg.encoder_ngf, cfg.encoder_out, cfg.fusion, cfg.encoder_projection,
                   cfg.encoder_spectral_norm, cfg.encoder_norm)

    def layers(self, x: Tensor) -> list[Tensor]:
        """The maps of SEAN's encoder layers, after their activations, at their own resolutions."""
        def act(y: Tensor) -> Tensor:
            return F.leaky_relu(F.instance_norm(y) if self.norm == "instance" else y, 0.2)

        f0 = act(self.conv0(F.pad(x, (1, 1, 1, 1), mode="reflect")))
        f1 = act(self.conv1(f0))
        f2 = act(self.conv2(f1))
        f3 = act(self.conv3(f2))
        f4 = torch.tanh(self.conv4(F.pad(f3, (1, 1, 1, 1), mode="reflect")))
        return [f0, f1, f2, f3, f4]

    def fusion_weights(self) -> Tensor | None:
        """The normalised weights alpha_i of eq. 1 (None for ``fusion="last"``)."""
        if self.fusion == "softmax":
            return torch.softmax(self.fusion_logits, dim=0)
        if self.fusion == "sum":
            return self.fusion_logits
        return None

    def _fused_layers(self, x: Tensor) -> list[Tensor]:
        """The maps that eq. 2 fuses, each resized to the output resolution (half the input's)."""
        maps = self.layers(x)
        if self.fusion == "last":
            return maps[-1:]
        size = maps[-1].shape[-2:]
        return [m if m.shape[-2:] == size else _resize(m, size) for m in maps]

    def _fuse(self, parts: list[Tensor], project) -> Tensor:
        if self.projections is not None:
            parts = [project(proj, part) for proj, part in zip(self.projections, parts)]
        weights = self.fusion_weights()
        if weights is None:
            return parts[0]
        return torch.einsum("k,k...->...", weights.to(parts[0].dtype), torch.stack(parts))

    def forward(self, x: Tensor) -> Tensor:
        """The fused style feature map F of eq. 2, (B, D, H/2, W/2)."""
        return self._fuse(self._fused_layers(x), lambda proj, m: proj(m))

    def region_codes(self, x: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
        """Region-average-pooled F: style codes (B, R, D) and presence (B, R), pooling before projecting."""
        maps = self._fused_layers(x)
        mask, area = region_masks(labels, maps[0].shape[-2:], num_classes, maps[0].dtype)
        presence = area > 0
        pooled = [pool_regions(m, mask, area) for m in maps]

        def project(proj: nn.Conv2d, means: Tensor) -> Tensor:
            return F.linear(means, proj.weight[:, :, 0, 0], proj.bias) * presence[..., None].to(means.dtype)

        return self._fuse(pooled, project), presence


def _resize(x: Tensor, size: torch.Size) -> Tensor:
    """Antialiased bilinear resize (computed in float32 for half types, which CPU kernels lack)."""
    low = x.dtype in (torch.float16, torch.bfloat16)
    out = F.interpolate(x.float() if low else x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.to(x.dtype)
