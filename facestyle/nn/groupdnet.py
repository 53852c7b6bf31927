"""GroupDNet (Zhu et al., "Semantically Multi-modal Image Synthesis", CVPR 2020; official code
Seanseattle/SMIS; ``../shared/docs/baselines.md`` section 7), and SEAN + GroupDNet (section 9).

Encoder: for every class c, the image masked by class c, cropped to the class's bounding box and resized
(nearest) to S x S; zeros for an absent class. The C crops (3C channels) go through SPADE's encoder
with every convolution grouped by class (groups = C, so a class's code sees only its own crop):
six stride-2 3x3 convs (ndf, 2, 4, 8, 8, 8 ndf; ``encoder_layers``), then two grouped 3x3 convs give mu and
log-variance, ``latent`` channels per class at S/64 x S/64 (8 x 4 x 4 = 128 numbers per class at 256).

Generator (group-decreasing): a grouped 3x3 conv (groups = C) from the (B, latent C, S/64, S/64) code
map to 16 ngf channels, then SPADE's seven residual blocks with every convolution grouped (conditional
group blocks and norms; a block's group count decreases: DeepFashion's 8 classes use 8, 8, 4, 4, 2, 2, 1),
nearest x2 upsampling after each of the first six blocks ('more'), LeakyReLU, 3x3 conv to RGB, tanh.

Faces: the grouped convolutions need every width divisible by its group count, the label map's channels
included, and 19 or 11 classes divide almost nothing. The label map is padded with empty classes to
``group_classes`` (a multiple of 4); those classes never appear, their codes are zero in the generator and
they take no part in the KL term. See :func:`face_config` for the face settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..checkpoint import Pretrained
from ..errors import InputError
from ..labels import get_label_set
from .pooling import one_hot, resize_labels_floor
from .sean import NormOptions, SEANGenerator, StackedLinear
from .spade import BLOCKS, WIDTHS, ConvEncoder, SPADENorm, SPADETrunk, check_family_config, xavier
from .synthesis import (
    RANDOM_REGIONAL,
    RECONSTRUCTION,
    TRANSFER,
    Reconstruction,
    RegionalCodes,
    kl_divergence,
    presence,
    reparameterize,
)

__all__ = ["GroupDNetConfig", "GROUPDNET_PRESETS", "GroupDNet", "GroupedEncoder", "SEANGroupDNetConfig",
           "SEAN_GROUPDNET_PRESETS", "SEANGroupDNet", "class_crops", "face_config"]

ENCODER_LAYERS = 6  # the code map is image_size / 64 on a side, as SMIS's 4 x 4 at 256 (the default)
# the generator doubles the code map once after each of the first encoder_layers blocks (SMIS: 6, 'more' upsampling)
MAX_ENCODER_LAYERS = len(BLOCKS) - 1


def class_crops(image: Tensor, labels: Tensor, num_classes: int, size: int) -> Tensor:
    """GroupDNet's encoder input (B, 3 num_classes, size, size): per class c, ``image`` (B, 3, H, W) times
    class c's mask, cropped to the mask's bounding box and resized with nearest (output pixel i reads crop
    pixel floor(i * h / size)); zeros where class c is absent. The box comes from the mask (SMIS finds it
    from the masked pixel values, which misses rows whose values sum to 0)."""
    b, _, h, w = image.shape
    classes = torch.arange(num_classes, device=labels.device)
    mask = labels[:, None] == classes[None, :, None, None]  # (B, C, H, W)
    rows, cols = mask.any(3), mask.any(2)  # (B, C, H), (B, C, W)

    def span(hit: Tensor, n: int) -> tuple[Tensor, Tensor]:
        first = hit.int().argmax(-1)
        last = n - 1 - hit.flip(-1).int().argmax(-1)
        return first, (last - first + 1).clamp_min(1)

    y0, hy = span(rows, h)
    x0, wx = span(cols, w)
    i = torch.arange(size, device=labels.device)
    ys = y0[..., None] + (i * hy[..., None]) // size  # (B, C, size) source rows
    xs = x0[..., None] + (i * wx[..., None]) // size
    flat = (ys[..., :, None] * w + xs[..., None, :]).flatten(2)  # (B, C, size * size)
    pixels = image.flatten(2)[:, None].expand(b, num_classes, 3, h * w)
    crops = pixels.gather(3, flat[:, :, None].expand(b, num_classes, 3, flat.shape[-1]))
    inside = labels.flatten(1).gather(1, flat.flatten(1)).view(b, num_classes, 1, -1) == classes[:, None, None]
    return (crops * inside).reshape(b, 3 * num_classes, size, size)


class GroupedEncoder(nn.Module):
    """GroupDNet's encoder: ``forward(image, labels)`` -> (mu, logvar), each (B, C, latent * s * s) with
    s = image_size / 64, over the ``group_classes`` classes (padded ones included)."""

    def __init__(self, group_classes: int, image_size: int = 256, ndf: int = 256, latent: int = 8,
                 layers: int = ENCODER_LAYERS) -> None:
        super().__init__()
        c = self.group_classes = group_classes
        self.image_size, self.latent = image_size, latent
        self.trunk = ConvEncoder(3 * c, ndf, layers, groups=c)
        self.fc_mu = xavier(nn.Conv2d(self.trunk.out_channels, latent * c, 3, padding=1, groups=c))
        self.fc_var = xavier(nn.Conv2d(self.trunk.out_channels, latent * c, 3, padding=1, groups=c))

    def forward(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        x = self.trunk(class_crops(image, labels, self.group_classes, self.image_size))
        flat = "b (c k) h w -> b c (k h w)"
        return rearrange(self.fc_mu(x), flat, c=self.group_classes), rearrange(self.fc_var(x), flat,
                                                                                c=self.group_classes)


@dataclass(frozen=True)
class GroupDNetConfig:
    """GroupDNet. ``classes``: the label map's classes (0: the label set's); ``group_classes``: the classes
    the grouped convolutions see (the label map padded with empty classes; at least ``classes``);
    ``block_groups``: the group count of each of the seven residual blocks; ``fc_groups``: the first conv's
    groups (SMIS: 8); ``ngf``, ``hidden`` (the norms' hidden width; SMIS: 128), ``ndf`` the widths;
    ``latent``: code channels per class (8)."""

    label_set: str = "celebamask-hq"
    image_size: int = 256
    classes: int = 0
    group_classes: int = 20
    block_groups: tuple[int, ...] = (20, 20, 10, 10, 5, 5, 1)
    fc_groups: int = 20
    ngf: int = 160
    hidden: int = 140
    ndf: int = 260
    latent: int = 8
    norm: str = "batch"
    spectral: bool = True
    encoder_layers: int = ENCODER_LAYERS

    def __post_init__(self) -> None:
        check_family_config(self, ("classes", "group_classes", "fc_groups", "ngf", "hidden", "ndf", "latent"),
                            MAX_ENCODER_LAYERS, zero_ok=("classes",))
        c = self.group_classes
        if c < self.num_classes:
            raise InputError(f"model.group_classes ({c}) must be at least the number of classes ({self.num_classes})")
        if len(self.block_groups) != len(BLOCKS):
            raise InputError(f"model.block_groups needs {len(BLOCKS)} group counts, got {len(self.block_groups)}")
        checks = [("the label channels (group_classes)", c, g) for g in (*self.block_groups, self.fc_groups)]
        checks += [("model.hidden", self.hidden, g) for g in self.block_groups]
        for (fin, fout), g in zip(WIDTHS, self.block_groups, strict=True):
            checks += [("a block's input width (ngf * its multiple)", fin * self.ngf, g),
                       ("a block's output width (ngf * its multiple)", fout * self.ngf, g),
                       ("a block's middle width", min(fin, fout) * self.ngf, g)]
        checks += [("the code channels (latent * group_classes)", self.latent * c, self.fc_groups),
                   ("16 * ngf", 16 * self.ngf, self.fc_groups), ("model.ndf", self.ndf, c)]
        for what, width, groups in checks:
            if width % groups:
                raise InputError(f"groupdnet: {what} = {width} is not divisible by its {groups} groups; "
                                 f"choose widths that are (see facestyle.nn.groupdnet.face_config)")

    @property
    def num_classes(self) -> int:
        return self.classes or get_label_set(self.label_set).num_classes

    @property
    def code_dim(self) -> int:
        return self.latent * (self.image_size // 2 ** self.encoder_layers) ** 2


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def face_config(label_set: str, image_size: int = 256, ngf: int = 160, hidden: int = 128, ndf: int = 256,
                **fields: Any) -> GroupDNetConfig:
    """GroupDNet for a face label set, following SMIS's DeepFashion configuration (C, C, C/2, C/2, C/4, C/4,
    C/8 groups; ngf 160, hidden 128, ndf 256):

    - the classes padded to C' = the next multiple of 4 (19 -> 20, 11 -> 12); the fc conv grouped by C'
      (one group per class, as DeepFashion's 8 groups for its 8 classes);
    - block groups C', C', C'/2, C'/2, C'/4, C'/4, 1 (DeepFashion ends at 8/8 = 1);
    - ``hidden`` and ``ndf`` rounded up to multiples of C', ``ngf`` so that 8 ngf is one.
    """
    c = _round_up(get_label_set(label_set).num_classes, 4)
    return GroupDNetConfig(
        label_set=label_set, image_size=image_size, group_classes=c, block_groups=(c, c, c // 2, c // 2, c // 4,
                                                                                   c // 4, 1),
        fc_groups=c, ngf=_round_up(ngf, c // math.gcd(8, c)), hidden=_round_up(hidden, c),
        ndf=_round_up(ndf, c), **fields)


GROUPDNET_PRESETS: dict[str, GroupDNetConfig] = {
    # Faces at 256 x 256 (CelebAMask-HQ's 19 classes padded to 20): see face_config and the README.
    "paper": face_config("celebamask-hq"),
    "paper-lapa": face_config("lapa"),
    # SMIS's DeepFashion generator and encoder (8 classes, ngf 160): 96.32 M + 12.84 M parameters.
    "deepfashion": GroupDNetConfig(classes=8, group_classes=8, block_groups=(8, 8, 4, 4, 2, 2, 1), fc_groups=8,
                                   ngf=160, hidden=128, ndf=256),
    # Seconds-long tests (19 classes padded to 20).
    "tiny": face_config("celebamask-hq", image_size=64, ngf=10, hidden=20, ndf=20, latent=4, norm="instance",
                        encoder_layers=4),
}


class GroupDecreasingGenerator(nn.Module):
    """``forward(labels (B, S, S), z (B, C', latent * s * s))`` -> (B, 3, S, S)."""

    def __init__(self, cfg: GroupDNetConfig) -> None:
        super().__init__()
        c = cfg.group_classes
        self.group_classes, self.latent = c, cfg.latent
        self.start = cfg.image_size // 2 ** cfg.encoder_layers
        self.fc = xavier(nn.Conv2d(cfg.latent * c, 16 * cfg.ngf, 3, padding=1, groups=cfg.fc_groups))

        def make_norm(channels: int, groups: int) -> nn.Module:
            return SPADENorm(channels, c, cfg.hidden, cfg.norm, groups)  # type: ignore[arg-type]

        self.trunk = SPADETrunk(cfg.ngf, make_norm, cfg.spectral, cfg.block_groups,
                                upsample_after=BLOCKS[:cfg.encoder_layers])

    def condition(self, labels: Tensor, dtype: torch.dtype) -> Callable[[tuple[int, int]], Any]:
        return lambda size: one_hot(resize_labels_floor(labels, size), self.group_classes, dtype)

    def forward(self, labels: Tensor, z: Tensor) -> Tensor:
        x = self.fc(rearrange(z, "b c (k h w) -> b (c k) h w", k=self.latent, h=self.start))
        return self.trunk(x, self.condition(labels, z.dtype))


class _PerClassVAE(RegionalCodes):
    """What GroupDNet and SEAN + GroupDNet share: the grouped encoder over C' classes, codes of the C real
    classes (B, C, D), the padded classes' codes zero, KL over the real classes only."""

    tasks: ClassVar[frozenset[str]] = frozenset({RECONSTRUCTION, TRANSFER, RANDOM_REGIONAL})
    config: Any
    encoder: GroupedEncoder

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def posterior(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of the real classes, each (B, C, D)."""
        mu, logvar = self.encoder(image, labels)
        return mu[:, :self.num_classes], logvar[:, :self.num_classes]

    def encode(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The mean codes (B, C, D) and the classes present (B, C)."""
        return self.posterior(image, labels)[0], presence(labels, self.num_classes)

    def reconstruct(self, image: Tensor, labels: Tensor, sample: bool | None = None) -> Reconstruction:
        mu, logvar = self.posterior(image, labels)
        z = reparameterize(mu, logvar) if (self.training if sample is None else sample) else mu
        return Reconstruction(self.decode(labels, z), kl_divergence(mu, logvar))

    def forward(self, image: Tensor, labels: Tensor) -> Tensor:
        return self.reconstruct(image, labels).image

    def sample_codes(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """Codes (B, C, D) from N(0, I); compose them into an image's codes for chosen classes."""
        w = self.encoder.fc_mu.weight
        return torch.randn(batch, self.num_classes, self.config.code_dim, generator=generator, device=w.device,
                           dtype=w.dtype)

    def _padded(self, codes: Tensor) -> Tensor:
        return F.pad(codes, (0, 0, 0, self.config.group_classes - codes.shape[1]))


class GroupDNet(_PerClassVAE, Pretrained, nn.Module):
    """GroupDNet: the grouped per-class encoder and the group-decreasing generator."""

    kind = "groupdnet"
    arch: ClassVar[str] = "groupdnet"
    config_class = GroupDNetConfig

    def __init__(self, config: GroupDNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or GROUPDNET_PRESETS["paper"]
        self.encoder = GroupedEncoder(cfg.group_classes, cfg.image_size, cfg.ndf, cfg.latent, cfg.encoder_layers)
        self.generator = GroupDecreasingGenerator(cfg)

    def decode(self, labels: Tensor, codes: Tensor) -> Tensor:
        """The generator on ``labels`` (B, S, S) with per-class codes (B, C, D)."""
        return self.generator(labels, self._padded(codes))


@dataclass(frozen=True)
class SEANGroupDNetConfig:
    """SEAN + GroupDNet (the paper's RSM ablation): GroupDNet's encoder (``group_classes``, ``ndf``,
    ``latent``) gives per-class codes; a per-class Linear lifts each to ``style_dim`` for SEAN's generator
    (``ngf``, ``hidden``, ``norm``, ``noise``, ``spectral`` as in :class:`facestyle.config.ModelConfig`)."""

    label_set: str = "celebamask-hq"
    image_size: int = 256
    group_classes: int = 20
    ndf: int = 260
    latent: int = 8
    ngf: int = 64
    style_dim: int = 512
    hidden: int = 128
    norm: str = "batch"
    noise: str = "train"
    spectral: bool = True
    encoder_layers: int = ENCODER_LAYERS

    def __post_init__(self) -> None:
        check_family_config(self, ("group_classes", "ndf", "latent", "ngf", "style_dim", "hidden"), MAX_ENCODER_LAYERS)
        if self.group_classes < self.num_classes or self.ndf % self.group_classes:
            raise InputError(f"model.group_classes must be at least {self.num_classes} and divide model.ndf "
                             f"({self.ndf})")
        if self.noise not in ("train", "always", "off"):
            raise InputError(f"model.noise must be train, always or off, got {self.noise!r}")

    @property
    def num_classes(self) -> int:
        return get_label_set(self.label_set).num_classes

    @property
    def code_dim(self) -> int:
        return self.latent * (self.image_size // 2 ** self.encoder_layers) ** 2


SEAN_GROUPDNET_PRESETS: dict[str, SEANGroupDNetConfig] = {
    "paper": SEANGroupDNetConfig(),
    "tiny": SEANGroupDNetConfig(image_size=64, ndf=20, latent=4, ngf=8, style_dim=16, hidden=16, norm="instance",
                                encoder_layers=4),
}


class SEANGroupDNet(_PerClassVAE, Pretrained, nn.Module):
    """SEAN's generator fed by GroupDNet's per-class VAE encoder (a per-class Linear from the code to the
    style length)."""

    kind = "sean-groupdnet"
    arch: ClassVar[str] = "sean-groupdnet"
    config_class = SEANGroupDNetConfig

    def __init__(self, config: SEANGroupDNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SEANGroupDNetConfig()
        self.encoder = GroupedEncoder(cfg.group_classes, cfg.image_size, cfg.ndf, cfg.latent, cfg.encoder_layers)
        self.lift = StackedLinear(cfg.num_classes, cfg.code_dim, cfg.style_dim)
        options = NormOptions(cfg.num_classes, cfg.style_dim, cfg.hidden, cfg.norm, cfg.noise)  # type: ignore[arg-type]
        self.generator = SEANGenerator(options, cfg.image_size, cfg.ngf, cfg.spectral)

    def decode(self, labels: Tensor, codes: Tensor) -> Tensor:
        return self.generator(labels, self.lift(codes))

