"""pix2pixHD's global generator with its instance-wise feature encoder, in the face form
(Wang et al., CVPR 2018; ``../shared/docs/baselines.md`` section 6).

Feature encoder (``Encoder``, nef 16): reflect-pad + 7x7 conv to nef, ``n_down`` stride-2 3x3 convs
doubling the width, as many stride-2 transposed convs halving it, reflect-pad + 7x7 conv to ``feat``
(3) channels and tanh; instance norm (no affine) and ReLU after every inner layer. Its output is averaged
inside every instance; faces have no instance maps, so pix2pixHD's ``--label_feat`` applies: the label
map is the instance map, and each class gets one ``feat``-dimensional code (region average pooling,
:mod:`facestyle.nn.pooling`).

Global generator G1 (ngf 64, 4 downsamplings, 9 residual blocks): the one-hot label map with the codes
broadcast over their classes' pixels, reflect-pad + 7x7 conv, ``n_down`` stride-2 3x3 convs (x2 width),
``n_blocks`` residual blocks (reflect-pad, 3x3, IN, ReLU, reflect-pad, 3x3, IN; identity skip), as many
stride-2 transposed convs, reflect-pad + 7x7 conv to RGB and tanh; IN + ReLU after every inner conv.
The label map enters only at the input. Weights start as pix2pixHD's (convolutions N(0, 0.02)).

At 256 x 256 this is G1 alone: pix2pixHD's own 512-pixel model is G1, and its local enhancer only
doubles G1's resolution (G1 + G2 at 256 would run G1 at 128). Codes are per class: reconstruction and
regional transfer; pix2pixHD draws random styles from k-means centres of a training set's codes, which
is not part of the network (no random styles here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..checkpoint import Pretrained
from ..config import MAX_IMAGE_SIZE, MAX_WIDTH, check_size
from ..errors import InputError
from ..labels import get_label_set
from .pooling import one_hot, pool_regions, region_masks
from .synthesis import RECONSTRUCTION, TRANSFER, Reconstruction, RegionalCodes

__all__ = ["Pix2PixHDConfig", "PIX2PIXHD_PRESETS", "Pix2PixHDNet", "GlobalGenerator", "FeatureEncoder"]


def _normal(module: nn.Module) -> nn.Module:
    """pix2pixHD's ``weights_init`` for a convolution: N(0, 0.02) weights (the bias keeps its default)."""
    nn.init.normal_(module.weight, 0.0, 0.02)
    return module


def _conv_in_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [_normal(conv), nn.InstanceNorm2d(channels, affine=False), nn.ReLU(True)]


def _down_up(in_channels: int, ngf: int, n_down: int) -> tuple[list[nn.Module], list[nn.Module]]:
    """The stem and the stride-2 convolutions, and the transposed convolutions back to ngf channels."""
    down = [nn.ReflectionPad2d(3), *_conv_in_relu(nn.Conv2d(in_channels, ngf, 7), ngf)]
    for i in range(n_down):
        c = ngf * 2 ** i
        down += _conv_in_relu(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), 2 * c)
    up = []
    for i in reversed(range(n_down)):
        c = ngf * 2 ** i
        up += _conv_in_relu(nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1), c)
    return down, up


class ResnetBlock(nn.Module):
    """pix2pixHD's residual block: x + (pad, 3x3, IN, ReLU, pad, 3x3, IN)(x)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), *_conv_in_relu(nn.Conv2d(channels, channels, 3), channels),
            nn.ReflectionPad2d(1), _normal(nn.Conv2d(channels, channels, 3)), nn.InstanceNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class GlobalGenerator(nn.Module):
    """pix2pixHD's G1: (B, in_channels, S, S) -> (B, 3, S, S) in [-1, 1]."""

    def __init__(self, in_channels: int, ngf: int = 64, n_down: int = 4, n_blocks: int = 9) -> None:
        super().__init__()
        down, up = _down_up(in_channels, ngf, n_down)
        blocks = [ResnetBlock(ngf * 2 ** n_down) for _ in range(n_blocks)]
        self.model = nn.Sequential(*down, *blocks, *up, nn.ReflectionPad2d(3), _normal(nn.Conv2d(ngf, 3, 7)),
                                   nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class FeatureEncoder(nn.Module):
    """pix2pixHD's ``Encoder``: (B, 3, S, S) -> (B, feat, S, S) in [-1, 1], before instance pooling."""

    def __init__(self, nef: int = 16, n_down: int = 4, feat: int = 3) -> None:
        super().__init__()
        down, up = _down_up(3, nef, n_down)
        self.model = nn.Sequential(*down, *up, nn.ReflectionPad2d(3), _normal(nn.Conv2d(nef, feat, 7)), nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


@dataclass(frozen=True)
class Pix2PixHDConfig:
    """pix2pixHD's G1 and feature encoder: ``ngf``, ``n_down`` (stride-2 levels), ``n_blocks`` (residual
    blocks) of the generator; ``nef``, ``encoder_down`` and ``feat`` (the code length per class) of the
    encoder."""

    label_set: str = "celebamask-hq"
    image_size: int = 256
    ngf: int = 64
    n_down: int = 4
    n_blocks: int = 9
    nef: int = 16
    encoder_down: int = 4
    feat: int = 3

    def __post_init__(self) -> None:
        get_label_set(self.label_set)
        for name in ("ngf", "nef", "feat"):
            check_size(f"model.{name}", getattr(self, name), 1, MAX_WIDTH)
        for name in ("n_down", "encoder_down"):
            check_size(f"model.{name}", getattr(self, name), 1, 10)
        check_size("model.n_blocks", self.n_blocks, 0, 64)
        check_size("model.image_size", self.image_size, 16, MAX_IMAGE_SIZE)
        step = 2 ** max(self.n_down, self.encoder_down)
        if self.image_size % step:
            raise InputError(f"model.image_size {self.image_size} must be a multiple of {step} (2**n_down)")

    @property
    def num_classes(self) -> int:
        return get_label_set(self.label_set).num_classes


PIX2PIXHD_PRESETS: dict[str, Pix2PixHDConfig] = {
    # G1 at 256 x 256 with 19 + 3 input channels (182.50 M parameters) and the encoder (0.79 M).
    "paper": Pix2PixHDConfig(),
    # Seconds-long tests.
    "tiny": Pix2PixHDConfig(image_size=64, ngf=8, n_down=3, n_blocks=2, nef=4, encoder_down=2),
}


class Pix2PixHDNet(RegionalCodes, Pretrained, nn.Module):
    """pix2pixHD (``--label_feat``): per-class codes (B, R, feat) from the feature encoder, G1 draws them."""

    kind = "pix2pixhd"
    arch: ClassVar[str] = "pix2pixhd"
    config_class = Pix2PixHDConfig
    tasks: ClassVar[frozenset[str]] = frozenset({RECONSTRUCTION, TRANSFER})

    def __init__(self, config: Pix2PixHDConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or Pix2PixHDConfig()
        self.encoder = FeatureEncoder(cfg.nef, cfg.encoder_down, cfg.feat)
        self.generator = GlobalGenerator(cfg.num_classes + cfg.feat, cfg.ngf, cfg.n_down, cfg.n_blocks)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def encode(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Per-class codes (B, R, feat), the encoder's output averaged over each class, and presence (B, R)."""
        features = self.encoder(image)
        mask, area = region_masks(labels, features.shape[-2:], self.num_classes, features.dtype)
        return pool_regions(features, mask, area), area > 0

    def decode(self, labels: Tensor, codes: Tensor) -> Tensor:
        """G1 on the one-hot map of ``labels`` (B, S, S) with each class's code broadcast over its pixels."""
        seg = one_hot(labels, self.num_classes, codes.dtype)
        return self.generator(torch.cat([seg, torch.einsum("brhw,brd->bdhw", seg, codes)], 1))

    def reconstruct(self, image: Tensor, labels: Tensor, sample: bool | None = None) -> Reconstruction:
        image = self.decode(labels, self.encode(image, labels)[0])
        return Reconstruction(image, image.new_zeros(()))

    def forward(self, image: Tensor, labels: Tensor) -> Tensor:
        return self.reconstruct(image, labels).image
