"""SPADE with its VAE style encoder (Park et al., CVPR 2019), and the SPADE-family skeleton CLADE and
GroupDNet share (``../shared/docs/baselines.md`` sections 2.1 and 3).

Generator: ``fc`` (a Linear from the 256-d code z to 16 ngf channels at S/32 x S/32), then seven residual
blocks ``head_0``, ``G_middle_0``, ``G_middle_1``, ``up_0`` .. ``up_3`` (16, 16, 16, 8, 4, 2, 1 times ngf
channels), nearest x2 upsampling after ``head_0``, ``G_middle_1``, ``up_0``, ``up_1``, ``up_2``, then
LeakyReLU(0.2), a 3x3 conv to RGB and tanh. A block is norm -> LeakyReLU -> 3x3 conv twice plus a
shortcut (norm -> 1x1 conv without bias when the width changes); its convolutions are spectral-normed.
The SPADE norm: a parameter-free batch (or instance) norm, modulated as ``norm(x) * (1 + gamma) + beta``
with gamma, beta from 3x3 convs of ReLU(3x3 conv of the one-hot label map to 128 channels).

Style encoder (SPADE's ``ConvEncoder``): six 3x3 stride-2 convolutions (64, 128, 256, 512, 512, 512
channels at ndf 64; spectral norm + instance norm, no bias, LeakyReLU(0.2)) from S x S to S/64 x S/64,
flattened into two Linear layers giving mu and log-variance of z. Weights start as SPADE's
(Xavier normal, gain 0.02; zero biases).

Codes are global (one z per image): reconstruction and random styles of the whole image, no regional
transfer (the paper's Table 2 leaves SPADE out for that reason).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ..checkpoint import Pretrained
from ..config import MAX_WIDTH, check_image_size, check_size
from ..errors import InputError
from ..labels import get_label_set
from .pooling import one_hot, resize_labels_floor
from .synthesis import RANDOM_GLOBAL, RECONSTRUCTION, Reconstruction, kl_divergence, presence, reparameterize

__all__ = ["SPADEConfig", "SPADE_PRESETS", "SPADENet", "SPADENorm", "SPADEResBlock", "SPADETrunk", "ConvEncoder",
           "xavier", "BLOCKS", "NORMAL_UPSAMPLING"]

Norm = Literal["batch", "instance"]
BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
WIDTHS = ((16, 16), (16, 16), (16, 16), (16, 8), (8, 4), (4, 2), (2, 1))  # (in, out) times ngf
NORMAL_UPSAMPLING = ("head_0", "G_middle_1", "up_0", "up_1", "up_2")  # 'normal': 5 doublings, start at S/32


def xavier(module: nn.Module) -> nn.Module:
    """SPADE's ``init_weights`` on one layer: Xavier normal with gain 0.02 and a zero bias."""
    nn.init.xavier_normal_(module.weight, gain=0.02)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def param_free_norm(kind: Norm, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels, affine=False) if kind == "batch" else nn.InstanceNorm2d(channels, affine=False)


class SPADENorm(nn.Module):
    """SPADE normalization; with ``groups`` > 1 its convolutions are grouped (GroupDNet's CG-Norm).

    ``forward(x, segmap)``: x (B, C, H, W), segmap (B, L, H, W) the one-hot label map at x's size.
    """

    def __init__(self, channels: int, label_channels: int, hidden: int = 128, norm: Norm = "batch",
                 groups: int = 1) -> None:
        super().__init__()
        self.param_free_norm = param_free_norm(norm, channels)
        self.mlp_shared = xavier(nn.Conv2d(label_channels, hidden, 3, padding=1, groups=groups))
        self.mlp_gamma = xavier(nn.Conv2d(hidden, channels, 3, padding=1, groups=groups))
        self.mlp_beta = xavier(nn.Conv2d(hidden, channels, 3, padding=1, groups=groups))

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        actv = F.relu(self.mlp_shared(segmap))
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


# make_norm(channels, groups) -> a norm whose forward is (x, condition at x's size)
NormFactory = Callable[[int, int], nn.Module]


class SPADEResBlock(nn.Module):
    """SPADE's residual block (GroupDNet's CG-Block when ``groups`` > 1): ``forward(x, condition)``."""

    def __init__(self, fin: int, fout: int, make_norm: NormFactory, spectral: bool = True, groups: int = 1) -> None:
        super().__init__()
        fmid = min(fin, fout)
        sn = spectral_norm if spectral else (lambda m: m)
        self.learned_shortcut = fin != fout
        self.conv_0 = sn(xavier(nn.Conv2d(fin, fmid, 3, padding=1, groups=groups)))
        self.conv_1 = sn(xavier(nn.Conv2d(fmid, fout, 3, padding=1, groups=groups)))
        self.norm_0 = make_norm(fin, groups)
        self.norm_1 = make_norm(fmid, groups)
        if self.learned_shortcut:
            self.conv_s = sn(xavier(nn.Conv2d(fin, fout, 1, bias=False, groups=groups)))
            self.norm_s = make_norm(fin, groups)

    def forward(self, x: Tensor, condition: Any) -> Tensor:
        shortcut = self.conv_s(self.norm_s(x, condition)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, condition), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, condition), 0.2))
        return shortcut + dx


class SPADETrunk(nn.Module):
    """The seven residual blocks and the RGB head of the SPADE-family generators.

    ``forward(x, condition)``: x (B, 16 ngf, s, s) the generator's start; ``condition(size)`` returns what
    the norms take at a block's resolution (computed once per block).
    """

    def __init__(self, ngf: int, make_norm: NormFactory, spectral: bool = True,
                 groups: tuple[int, ...] = (1,) * 7, upsample_after: tuple[str, ...] = NORMAL_UPSAMPLING) -> None:
        super().__init__()
        self.upsample_after = frozenset(upsample_after)
        for name, (fin, fout), g in zip(BLOCKS, WIDTHS, groups, strict=True):
            self.add_module(name, SPADEResBlock(fin * ngf, fout * ngf, make_norm, spectral, g))
        self.conv_img = xavier(nn.Conv2d(ngf, 3, 3, padding=1))

    def forward(self, x: Tensor, condition: Callable[[tuple[int, int]], Any]) -> Tensor:
        for name in BLOCKS:
            x = getattr(self, name)(x, condition(tuple(x.shape[-2:])))
            if name in self.upsample_after:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def encoder_widths(ndf: int, layers: int) -> list[int]:
    """SPADE's encoder widths: ndf, 2 ndf, 4 ndf, 8 ndf, then 8 ndf (64, 128, 256, 512, 512, 512 at 64)."""
    return [ndf * min(2 ** i, 8) for i in range(layers)]


class ConvEncoder(nn.Module):
    """SPADE's ``ConvEncoder`` trunk: ``layers`` 3x3 stride-2 convolutions (spectral norm, instance norm, no
    bias; LeakyReLU(0.2) between), grouped by ``groups`` (GroupDNet's per-class encoder). Returns the last
    layer's LeakyReLU'd features (B, 8 ndf, S / 2**layers, S / 2**layers)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, layers: int = 6, groups: int = 1) -> None:
        super().__init__()
        widths = encoder_widths(ndf, layers)
        self.convs = nn.ModuleList(
            spectral_norm(xavier(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False, groups=groups)))
            for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True))
        self.norms = nn.ModuleList(nn.InstanceNorm2d(c, affine=False) for c in widths)
        self.out_channels = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = norm(conv(x if i == 0 else F.leaky_relu(x, 0.2)))
        return F.leaky_relu(x, 0.2)


@dataclass(frozen=True)
class SPADEConfig:
    """SPADE with its VAE encoder. ``ngf`` the generator's base width (16 ngf at the start); ``hidden`` the
    SPADE norms' hidden width (128); ``norm`` the parameter-free norm (SPADE: synchronized batch norm);
    ``spectral`` spectral norm on the generator's block convolutions; ``ndf`` the encoder's base width
    (SPADE uses ngf); ``z_dim`` the code length; ``encoder_layers`` its stride-2 convolutions (the
    features end at image_size / 2**encoder_layers)."""

    label_set: str = "celebamask-hq"
    image_size: int = 256
    ngf: int = 64
    hidden: int = 128
    norm: Norm = "batch"
    spectral: bool = True
    ndf: int = 64
    z_dim: int = 256
    encoder_layers: int = 6

    def __post_init__(self) -> None:
        check_family_config(self, ("ngf", "hidden", "ndf", "z_dim"))

    @property
    def num_classes(self) -> int:
        return get_label_set(self.label_set).num_classes


def check_family_config(cfg: Any, widths: tuple[str, ...], max_layers: int = 12, zero_ok: tuple[str, ...] = ()) -> None:
    """The checks the SPADE family's configs share (SPADE, CLADE, GroupDNet): a known label set, each of
    ``widths`` from 1 (0 for ``zero_ok``) to MAX_WIDTH, ``encoder_layers`` from 1 to ``max_layers``, an image
    size that is a multiple of 32 and of 2**encoder_layers, and a batch or instance parameter-free norm."""
    get_label_set(cfg.label_set)
    for name in widths:
        check_size(f"model.{name}", getattr(cfg, name), 0 if name in zero_ok else 1, MAX_WIDTH)
    check_size("model.encoder_layers", cfg.encoder_layers, 1, max_layers)
    check_image_size(cfg.image_size)
    if cfg.image_size % 2 ** cfg.encoder_layers:
        raise InputError(f"model.image_size {cfg.image_size} must be a multiple of 2**encoder_layers "
                         f"({2 ** cfg.encoder_layers})")
    if cfg.norm not in ("batch", "instance"):
        raise InputError(f"model.norm must be batch or instance, got {cfg.norm!r}")


SPADE_PRESETS: dict[str, SPADEConfig] = {
    # SPADE's --use_vae generator at 256 x 256 (109.21 M parameters at 19 classes) and its encoder (10.46 M).
    "paper": SPADEConfig(),
    # Seconds-long tests.
    "tiny": SPADEConfig(image_size=64, ngf=8, hidden=16, norm="instance", ndf=8, z_dim=16, encoder_layers=4),
}


class SPADEGenerator(nn.Module):
    """SPADE's generator in VAE mode: ``forward(labels (B, S, S), z (B, Z))`` -> (B, 3, S, S).

    ``make_norm`` and ``condition`` swap the norm (CLADE); by default SPADE norms on the one-hot map."""

    def __init__(self, num_classes: int, image_size: int = 256, ngf: int = 64, z_dim: int = 256, hidden: int = 128,
                 norm: Norm = "batch", spectral: bool = True, make_norm: NormFactory | None = None) -> None:
        super().__init__()
        self.num_classes, self.ngf = num_classes, ngf
        self.start = image_size // 32
        self.fc = xavier(nn.Linear(z_dim, 16 * ngf * self.start ** 2))
        if make_norm is None:
            def make_norm(channels: int, groups: int) -> nn.Module:
                return SPADENorm(channels, num_classes, hidden, norm, groups)
        self.trunk = SPADETrunk(ngf, make_norm, spectral)

    def condition(self, labels: Tensor, dtype: torch.dtype) -> Callable[[tuple[int, int]], Any]:
        """The norms' input at a block's size: the one-hot label map, nearest-resized."""
        return lambda size: one_hot(resize_labels_floor(labels, size), self.num_classes, dtype)

    def forward(self, labels: Tensor, z: Tensor) -> Tensor:
        x = self.fc(z).view(z.shape[0], 16 * self.ngf, self.start, self.start)
        return self.trunk(x, self.condition(labels, z.dtype))


class GlobalVAE(nn.Module):
    """The global VAE half shared by SPADE and CLADE: ``encoder`` (:class:`ConvEncoder`), ``fc_mu``,
    ``fc_var`` and a ``generator`` taking (labels, z); the :mod:`facestyle.nn.synthesis` interface."""

    code_kind: ClassVar[str] = "global"
    tasks: ClassVar[frozenset[str]] = frozenset({RECONSTRUCTION, RANDOM_GLOBAL})
    config: Any
    generator: nn.Module

    def _build_encoder(self, image_size: int, ndf: int, z_dim: int, layers: int) -> None:
        self.encoder = ConvEncoder(3, ndf, layers)
        flat = self.encoder.out_channels * (image_size // 2 ** layers) ** 2
        self.fc_mu = xavier(nn.Linear(flat, z_dim))
        self.fc_var = xavier(nn.Linear(flat, z_dim))

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def posterior(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar), each (B, Z), of an image (B, 3, S, S) at the model's size."""
        x = self.encoder(image).flatten(1)
        return self.fc_mu(x), self.fc_var(x)

    def encode(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The mean code (B, Z) and the classes present in ``labels`` (B, R)."""
        return self.posterior(image)[0], presence(labels, self.num_classes)

    def decode(self, labels: Tensor, codes: Tensor) -> Tensor:
        return self.generator(labels, codes)

    def reconstruct(self, image: Tensor, labels: Tensor, sample: bool | None = None) -> Reconstruction:
        mu, logvar = self.posterior(image)
        z = reparameterize(mu, logvar) if (self.training if sample is None else sample) else mu
        return Reconstruction(self.decode(labels, z), kl_divergence(mu, logvar))

    def forward(self, image: Tensor, labels: Tensor) -> Tensor:
        return self.reconstruct(image, labels).image

    def sample_codes(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """Random codes (B, Z) from N(0, I): a random style of the whole image."""
        w = self.fc_mu.weight
        return torch.randn(batch, w.shape[0], generator=generator, device=w.device, dtype=w.dtype)


class SPADENet(GlobalVAE, Pretrained, nn.Module):
    """SPADE (``--use_vae``): the :class:`ConvEncoder` with mu / logvar heads and the SPADE generator."""

    kind = "spade"
    arch: ClassVar[str] = "spade"
    config_class = SPADEConfig

    def __init__(self, config: SPADEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SPADEConfig()
        self._build_encoder(cfg.image_size, cfg.ndf, cfg.z_dim, cfg.encoder_layers)
        self.generator = SPADEGenerator(cfg.num_classes, cfg.image_size, cfg.ngf, cfg.z_dim, cfg.hidden, cfg.norm,
                                        cfg.spectral)

