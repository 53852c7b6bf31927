"""CLADE and CLADE-ICPE (Tan et al., "Efficient Semantic Image Synthesis via Class-Adaptive
Normalization"; ``../shared/docs/baselines.md`` section 4).

SPADE's VAE generator and encoder (:mod:`facestyle.nn.spade`) with every norm replaced by class-adaptive
normalization: a parameter-free norm, then ``norm(x) * gamma[class] + beta[class]`` from two learned
(classes x channels) tables (gamma starts uniform in [0, 1], beta at 0; no "1 +").

CLADE-ICPE adds the intra-class positional map: for every connected component (8-connectivity) of every
class but 0 (background), each pixel's offset from the component's centroid, row and column, each
divided by the component's largest absolute offset (+1e-5), so in [-1, 1]. Two 1x1 convolutions (2 -> 1)
per norm scale the tables: gamma = gamma[class] * (1 + conv_g(map)), beta = beta[class] * (1 + conv_b(map)).
CLADE precomputes the map per image and flips it along the wrong axis without negating the column
offset; here :func:`positional_map` computes it from the label map the network is given, so a flipped
map gets the flipped offsets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import Pretrained
from ..labels import get_label_set
from .pooling import resize_labels_floor
from .spade import GlobalVAE, Norm, SPADEGenerator, check_family_config, param_free_norm, xavier

__all__ = ["CLADEConfig", "CLADE_PRESETS", "CLADENet", "ClassAffineNorm", "positional_map", "connected_components"]

# the 8 neighbours (dy, dx) of a pixel
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def _shift(x: Tensor, dy: int, dx: int, fill: int) -> Tensor:
    """out[..., y, x] = x[..., y + dy, x + dx], ``fill`` outside the image."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), value=fill)
    return padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def connected_components(labels: Tensor) -> Tensor:
    """(B, H, W) int64: for every pixel, the flat index (over the whole batch) of one pixel of its
    8-connected same-class component, the same for the whole component (OpenCV's default connectivity).

    Label propagation (each pixel takes the largest index among its same-class neighbours) with pointer
    jumping, repeated until nothing changes; a loop over rounds, not over regions or images.
    """
    b, h, w = labels.shape
    ids = torch.arange(b * h * w, device=labels.device).view(b, h, w)
    same = [_shift(labels, dy, dx, -2) == labels for dy, dx in _NEIGHBOURS]  # (B, H, W) each
    while True:
        best = ids
        for (dy, dx), ok in zip(_NEIGHBOURS, same, strict=True):
            best = torch.maximum(best, torch.where(ok, _shift(ids, dy, dx, -1), -1))
        flat = best.flatten()
        for _ in range(4):  # pointer jumping: follow each pixel's pointer (same component, larger index)
            flat = torch.maximum(flat, flat[flat])
        new = flat.view(b, h, w)
        if torch.equal(new, ids):
            return ids
        ids = new


def positional_map(labels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """CLADE-ICPE's intra-class positional map (B, 2, H, W) of class indices (B, H, W): (row, column) offset
    from the centroid of the pixel's connected component, normalised per component to [-1, 1]; 0 on class 0.

    Sums are integers, so the map of a horizontally flipped label map is exactly the flipped map with its
    column channel negated."""
    b, h, w = labels.shape
    comp = connected_components(labels).flatten()
    n = b * h * w
    rows = torch.arange(h, device=labels.device).view(1, h, 1).expand(b, h, w).flatten()
    cols = torch.arange(w, device=labels.device).view(1, 1, w).expand(b, h, w).flatten()
    count = torch.zeros(n, dtype=torch.long, device=labels.device).index_add_(0, comp, torch.ones_like(comp))
    sum_r = torch.zeros_like(count).index_add_(0, comp, rows)
    sum_c = torch.zeros_like(count).index_add_(0, comp, cols)
    cnt = count[comp]
    # offset * count as exact integers, then one division per pixel
    num = torch.stack([rows * cnt - sum_r[comp], cols * cnt - sum_c[comp]])  # (2, N)
    offset = num.to(torch.float32) / cnt.to(torch.float32)
    peak = torch.zeros(2, n, device=labels.device).scatter_reduce_(1, comp.expand(2, n), offset.abs(), "amax")
    out = offset / (peak[:, comp] + 1e-5) * (labels.flatten() != 0)
    return out.view(2, b, h, w).transpose(0, 1).to(dtype)


class ClassAffineNorm(nn.Module):
    """Class-adaptive normalization (CLADE's ``SPADELight`` + ``ClassAffine``); ``positional`` adds ICPE.

    ``forward(x, condition)``: condition = (labels (B, H, W) at x's size, positional map (B, 2, H, W) or None).
    """

    def __init__(self, channels: int, num_classes: int, norm: Norm = "batch", positional: bool = False) -> None:
        super().__init__()
        self.param_free_norm = param_free_norm(norm, channels)
        self.weight = nn.Parameter(torch.empty(num_classes, channels).uniform_(0, 1))
        self.bias = nn.Parameter(torch.zeros(num_classes, channels))
        self.positional = positional
        if positional:
            self.dist_gamma = xavier(nn.Conv2d(2, 1, 1))
            self.dist_beta = xavier(nn.Conv2d(2, 1, 1))

    def forward(self, x: Tensor, condition: tuple[Tensor, Tensor | None]) -> Tensor:
        labels, dist = condition
        gamma = F.embedding(labels, self.weight).permute(0, 3, 1, 2)  # (B, C, H, W)
        beta = F.embedding(labels, self.bias).permute(0, 3, 1, 2)
        if self.positional:
            gamma = gamma * (1 + self.dist_gamma(dist))
            beta = beta * (1 + self.dist_beta(dist))
        return self.param_free_norm(x) * gamma + beta


@dataclass(frozen=True)
class CLADEConfig:
    """CLADE (``positional`` False) or CLADE-ICPE (True); the other fields as
    :class:`facestyle.nn.spade.SPADEConfig` (CLADE has no SPADE hidden layer)."""

    label_set: str = "celebamask-hq"
    image_size: int = 256
    ngf: int = 64
    norm: Norm = "batch"
    spectral: bool = True
    ndf: int = 64
    z_dim: int = 256
    encoder_layers: int = 6
    positional: bool = False

    def __post_init__(self) -> None:
        check_family_config(self, ("ngf", "ndf", "z_dim"))

    @property
    def num_classes(self) -> int:
        return get_label_set(self.label_set).num_classes


CLADE_PRESETS: dict[str, CLADEConfig] = {
    # CLADE's --use_vae generator at 256 x 256 (83.99 M parameters at 19 classes) and SPADE's encoder.
    "paper": CLADEConfig(),
    "paper-icpe": CLADEConfig(positional=True),
    # Seconds-long tests.
    "tiny": CLADEConfig(image_size=64, ngf=8, norm="instance", ndf=8, z_dim=16, encoder_layers=4),
    "tiny-icpe": CLADEConfig(image_size=64, ngf=8, norm="instance", ndf=8, z_dim=16, encoder_layers=4,
                             positional=True),
}


class CLADEGenerator(SPADEGenerator):
    """SPADE's VAE generator with class-adaptive norms (and the positional map with ICPE)."""

    def __init__(self, num_classes: int, image_size: int = 256, ngf: int = 64, z_dim: int = 256,
                 norm: Norm = "batch", spectral: bool = True, positional: bool = False) -> None:
        def make_norm(channels: int, groups: int) -> nn.Module:
            return ClassAffineNorm(channels, num_classes, norm, positional)

        super().__init__(num_classes, image_size, ngf, z_dim, norm=norm, spectral=spectral, make_norm=make_norm)
        self.positional = positional

    def condition(self, labels: Tensor, dtype: torch.dtype) -> Callable[[tuple[int, int]], Any]:
        dist = positional_map(labels, dtype) if self.positional else None

        def at(size: tuple[int, int]) -> tuple[Tensor, Tensor | None]:
            small = dist if dist is None or tuple(dist.shape[-2:]) == size else F.interpolate(dist, size=size)
            return resize_labels_floor(labels, size), small

        return at


class CLADENet(GlobalVAE, Pretrained, nn.Module):
    """CLADE or CLADE-ICPE with SPADE's VAE encoder."""

    kind = "clade"
    config_class = CLADEConfig

    def __init__(self, config: CLADEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or CLADEConfig()
        self._build_encoder(cfg.image_size, cfg.ndf, cfg.z_dim, cfg.encoder_layers)
        self.generator = CLADEGenerator(cfg.num_classes, cfg.image_size, cfg.ngf, cfg.z_dim, cfg.norm, cfg.spectral,
                                        cfg.positional)

    @property
    def arch(self) -> str:  # type: ignore[override]
        return "clade-icpe" if self.config.positional else "clade"
