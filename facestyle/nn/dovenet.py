"""DoveNet (Cong et al., CVPR 2020): post-hoc image harmonization, the paper's "SEAN+DoveNet" row.

A composite (RGB in [-1, 1]) and its foreground mask ({0, 1}) go into an attention-enhanced U-Net
(DoveNet's ``s2ad`` generator), which returns the harmonized image; a domain-verification
discriminator (partial convolutions, spectral norm) scores the whole image (the global head) and whether
foreground and background come from the same domain (the verification head, on the element-wise
product of the foreground's and the background's features). ``../shared/docs/baselines.md`` section 10
has the reference settings; the paper-size networks have 54.76 M (generator, instance norm) and
17.79 M (discriminator) parameters.

Generator (:class:`DoveNet`), ``num_downs`` stride-2 levels with channels ``ngf * min(2**i, 8)``:

- down: 4x4 stride-2 convolutions, LeakyReLU(0.2) before each but the outermost, a norm after each but
  the outermost and the innermost;
- up: ReLU, 4x4 stride-2 transposed convolution, a norm (tanh instead on the outermost), dropout 0.5 in
  the ``num_downs - 5`` 8*ngf blocks between the innermost block and the attention blocks;
- skip: each block's input concatenated with its up-path output; in the three blocks next to the
  outermost, that tensor is multiplied by ``sigmoid(1x1 conv)`` of itself (the attention).

The output is the whole harmonized image, as DoveNet scores it (its ``cap`` = output * mask +
composite * (1 - mask) is only shown); :meth:`DoveNet.harmonize` returns it so (``paste=True`` keeps
the composite's background instead).

Discriminator (:class:`DomainVerificationDiscriminator`): ``discriminator_stages`` stride-2 3x3
partial convolutions (no padding) with channels ``ndf * min(2**i, 8)``, then one stride-1 3x3, all
spectral-normed, a norm after all but the first and the last, LeakyReLU(0.2) between. Three passes:
global (its own weights, the mask unused), foreground (mask) and background (1 - mask), the last two
sharing their weights. Heads: global score = 1x1 conv of the global features; verification score =
1x1 conv of (1x1 conv, LeakyReLU, 1x1 conv, LeakyReLU; spectral-normed) of fg * bg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ..checkpoint import Pretrained
from ..errors import InputError

__all__ = ["DoveNetConfig", "DOVENET_PRESETS", "DoveNet", "DomainVerificationDiscriminator", "PartialConv2d",
           "dovenet_input"]

Norm = Literal["instance", "batch"]


def discriminator_output_size(size: int, stages: int) -> int:
    """The side of the discriminator's score map for a ``size``-pixel input (3x3, no padding)."""
    for _ in range(stages):
        size = (size - 3) // 2 + 1
    return size - 2


@dataclass(frozen=True)
class DoveNetConfig:
    """Everything that rebuilds DoveNet's generator and discriminator.

    ``image_size``: the square size the networks work at (inputs of another size are resized);
    ``ngf`` / ``ndf``: the first level's channels of the generator / discriminator; ``num_downs``: the
    generator's stride-2 levels (``image_size / 2**num_downs`` at the bottleneck; DoveNet: 8, 256 -> 1);
    ``norm``: ``instance`` (DoveNet's training command) or ``batch`` (its released model);
    ``attention``: the attention in the three blocks next to the outermost; ``dropout``: in the inner
    8*ngf blocks (0 turns it off); ``discriminator_stages``: the discriminator's stride-2 convolutions
    (DoveNet: 6, 256 -> 3, then the stride-1 one -> 1).
    """

    image_size: int = 256
    ngf: int = 64
    ndf: int = 64
    num_downs: int = 8
    norm: Norm = "instance"
    attention: bool = True
    dropout: float = 0.5
    discriminator_stages: int = 6

    def __post_init__(self) -> None:
        for name in ("image_size", "ngf", "ndf", "num_downs", "discriminator_stages"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"dovenet: {name} must be a positive integer, got {value!r}")
        if self.norm not in ("instance", "batch"):
            raise InputError(f"dovenet: norm must be instance or batch, got {self.norm!r}")
        if self.num_downs < 5:
            raise InputError(f"dovenet: num_downs must be at least 5 (outermost, three attention blocks, "
                             f"innermost), got {self.num_downs}")
        if self.image_size % 2 ** self.num_downs:
            raise InputError(f"dovenet: image_size {self.image_size} must be a multiple of 2**num_downs "
                             f"({2 ** self.num_downs})")
        if not 0 <= self.dropout < 1:
            raise InputError(f"dovenet: dropout must be in [0, 1), got {self.dropout}")
        if discriminator_output_size(self.image_size, self.discriminator_stages) < 1:
            raise InputError(f"dovenet: {self.discriminator_stages} discriminator stages leave nothing of a "
                             f"{self.image_size}-pixel image; lower discriminator_stages")


DOVENET_PRESETS: dict[str, DoveNetConfig] = {
    # DoveNet's training command: 256 x 256, ngf = ndf = 64, instance norm (54.76 M + 17.79 M parameters).
    "paper": DoveNetConfig(),
    # Seconds-long tests.
    "tiny": DoveNetConfig(image_size=64, ngf=8, ndf=8, num_downs=6, discriminator_stages=4),
    # The bundled demo's harmonizer: the demo generator's 128 px, small enough for a 2-core CPU
    # (1.5 M + 0.2 M parameters, about 1 s a step of 4 pairs on one busy core; 3 MB in float16).
    "demo": DoveNetConfig(image_size=128, ngf=12, ndf=8, num_downs=7, discriminator_stages=5),
}


def _norm(kind: str, channels: int) -> nn.Module:
    """DoveNet's norm layers: affine batch norm, or instance norm without parameters (pix2pix's)."""
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels)


def dovenet_input(images: Tensor, masks: Tensor) -> Tensor:
    """(B, 4, H, W): the composite in [-1, 1] and its {0, 1} mask, not normalised (DoveNet's input)."""
    return torch.cat([images, masks.to(images.dtype)], 1)


# ---------------------------------------------------------------------------------------------------------
# Generator


class DoveNet(Pretrained, nn.Module):
    """DoveNet's attention-enhanced U-Net (``s2ad``): (B, 4, S, S) composite + mask -> (B, 3, S, S) in [-1, 1].

    Use :meth:`harmonize` on images of any size; ``forward`` takes the 4-channel input at ``image_size``.
    """

    kind = "harmonizer"
    config_class = DoveNetConfig

    def __init__(self, config: DoveNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or DoveNetConfig()
        n, bias = cfg.num_downs, cfg.norm == "instance"  # pix2pix: a bias only where the norm has none
        channels = [cfg.ngf * min(2 ** i, 8) for i in range(n)]
        down, up = [], []
        for i in range(n):
            outer = 4 if i == 0 else channels[i - 1]
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(outer, channels[i], 4, stride=2, padding=1, bias=bias))
            if 0 < i < n - 1:
                layers.append(_norm(cfg.norm, channels[i]))
            down.append(nn.Sequential(*layers))
            inner = channels[i] if i == n - 1 else 2 * channels[i]
            if i == 0:
                layers = [nn.ReLU(), nn.ConvTranspose2d(inner, 3, 4, stride=2, padding=1), nn.Tanh()]
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias),
                          _norm(cfg.norm, outer)]
                if 4 <= i < n - 1 and cfg.dropout > 0:
                    layers.append(nn.Dropout(cfg.dropout))
            up.append(nn.Sequential(*layers))
        self.down, self.up = nn.ModuleList(down), nn.ModuleList(up)
        # attention gates of blocks 1-3 on their (input, up-path output) concatenation: 2 * input channels
        self.gates = nn.ModuleList(nn.Conv2d(2 * c, 2 * c, 1) for c in channels[:3]) if cfg.attention else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, 4, S, S) -> (B, 3, S, S) in [-1, 1]."""
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        for i in reversed(range(len(self.up))):
            x = self.up[i](x)
            if i > 0:
                x = torch.cat([skips[i], x], 1)
                if self.gates is not None and i <= 3:
                    x = x * torch.sigmoid(self.gates[i - 1](x))
        return x

    def harmonize(self, images: Tensor, masks: Tensor, paste: bool = False) -> Tensor:
        """Harmonize composites (B, 3, H, W) in [-1, 1] whose foreground is ``masks`` (B, 1, H, W) or
        (B, H, W) in {0, 1}: the whole output image (B, 3, H, W), as DoveNet scores it; with ``paste``,
        the output inside the mask and the composite outside.

        Inputs of another size are resized to ``image_size`` (bilinear; the mask thresholded at 0.5)
        and the output back to (H, W)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"dovenet: expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
        m = masks[:, None] if masks.dim() == 3 else masks
        if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] != images.shape[0] or m.shape[-2:] != images.shape[-2:]:
            raise InputError(f"dovenet: expected (B, 1, H, W) masks for images of shape {tuple(images.shape)}, "
                             f"got {tuple(masks.shape)}")
        param = self.down[0][0].weight
        x, m = images.to(param), (m > 0.5).to(param)
        size, shape = self.config.image_size, tuple(images.shape[-2:])
        if shape != (size, size):
            x_in = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            m_in = (F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False) > 0.5).to(param)
            out = F.interpolate(self(dovenet_input(x_in, m_in)), size=shape, mode="bilinear", align_corners=False,
                                antialias=shape[0] < size).clamp(-1, 1)
        else:
            out = self(dovenet_input(x, m))
        if paste:
            out = out * m + x * (1 - m)
        return out.to(images.dtype)


# ---------------------------------------------------------------------------------------------------------
# Discriminator


class PartialConv2d(nn.Conv2d):
    """A partial convolution (Liu et al. 2018) on a single-channel mask: the input is masked, the
    response rescaled by window size / mask coverage and zeroed where the window sees no mask pixel.
    ``forward(x, mask)`` returns (output, the updated mask); without a mask it is a plain convolution."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:  # type: ignore[override]
        if mask is None:
            return super().forward(x), None
        with torch.no_grad():
            window = mask.new_ones(1, 1, *self.kernel_size)
            covered = F.conv2d(mask, window, stride=self.stride, padding=self.padding, dilation=self.dilation)
            updated = covered.clamp(0, 1)
            ratio = window.numel() / (covered + 1e-8) * updated
        out = F.conv2d(x * mask, self.weight, None, self.stride, self.padding, self.dilation, self.groups) * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out * updated, updated


class _Tower(nn.Module):
    """The discriminator's stack of spectral-normed partial convolutions (one set of weights)."""

    def __init__(self, ndf: int, stages: int, norm: str) -> None:
        super().__init__()
        bias = norm == "instance"
        channels = [ndf * min(2 ** i, 8) for i in range(stages)]
        convs, norms = [], []
        for i, c in enumerate(channels):
            previous = 3 if i == 0 else channels[i - 1]
            convs.append(spectral_norm(PartialConv2d(previous, c, 3, stride=2, padding=0, bias=bias or i == 0)))
            norms.append(nn.Identity() if i == 0 else _norm(norm, c))
        convs.append(spectral_norm(PartialConv2d(channels[-1], channels[-1], 3, stride=1, padding=0, bias=bias)))
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.out_channels = channels[-1]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x, mask = conv(x, mask)
            x = F.leaky_relu(norm(x), 0.2)
        return self.convs[-1](x, mask)[0]


class DomainVerificationDiscriminator(nn.Module):
    """DoveNet's discriminator: ``forward(images (B, 3, S, S), masks (B, 1, S, S))`` -> (global score,
    verification score), each (B, 1, s, s)."""

    def __init__(self, ndf: int = 64, stages: int = 6, norm: Norm = "instance") -> None:
        super().__init__()
        self.whole = _Tower(ndf, stages, norm)  # the global pass, mask unused
        self.region = _Tower(ndf, stages, norm)  # the foreground and background passes share it
        c = self.whole.out_channels
        self.global_head = nn.Conv2d(c, 1, 1)
        self.verification = nn.Sequential(spectral_norm(nn.Conv2d(c, c, 1)), nn.LeakyReLU(0.2),
                                          spectral_norm(nn.Conv2d(c, c, 1)), nn.LeakyReLU(0.2), nn.Conv2d(c, 1, 1))

    @classmethod
    def from_config(cls, config: DoveNetConfig) -> DomainVerificationDiscriminator:
        return cls(config.ndf, config.discriminator_stages, config.norm)

    def forward(self, images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        masks = masks.to(images.dtype)
        whole = self.whole(images)
        # foreground and background through the same weights, in two passes (as batch norm needs)
        fg, bg = self.region(images, masks), self.region(images, 1 - masks)
        return self.global_head(whole), self.verification(fg * bg)

    def penalty_score(self, images: Tensor, masks: Tensor) -> Tensor:
        """The score the gradient penalty differentiates: the mean of the two heads (DoveNet's ``gp=True``)."""
        score, verification = self(images, masks)
        return 0.5 * (score + verification)
