"""SEAN generator (paper section 3.3; Zhu et al., CVPR 2020) with an exact, factorized style branch.

SEAN normalization modulates a parameter-free normalized activation with a blend of two branches:
a style branch (per class j: ReLU(Linear_j(s_j)) broadcast over the class's pixels, then 3x3 convs
D -> C) and a SPADE branch (3x3 conv R -> hidden + ReLU, then 3x3 convs hidden -> C):

    gamma = a_g * gamma_style + (1 - a_g) * gamma_spade,  a_g = sigmoid(blending_gamma)   (same for beta)
    out = norm(x) * (1 + gamma) + beta

Factorized style branch: the broadcast map is sum_j onehot_j * mu_j, and convolution is linear, so
conv(W, broadcast) = conv(K_b, onehot) with the per-sample kernel K_b[c, j] = sum_d W[c, d] * mu_b[j, d]:
R input channels instead of D. The blend weights fold into the kernels, and the SPADE hidden map joins
the one-hot map as extra input channels, so one grouped convolution (groups = batch) yields gamma and
beta. Exact for hard one-hot label maps resized with ``nearest`` (what SEAN feeds); the naive path
(broadcast, then convolve) is kept as the oracle and the benchmark's baseline.

Sparse boundary path (``style_branch="sparse"``, the default): where a pixel's 5x5 neighbourhood lies
inside the image and inside one class j, every tap of both branches sees class j only, so gamma and beta
there are a per-(sample, class) constant that a small table holds. Only the remaining boundary pixels
(about 18% of a 256x256 face, 33% at 128, 57% at 64) are convolved, from gathered 3x3 patches. Also
exact; when nearly every pixel is boundary (over 95%: a face at 16x16) it falls back to the dense
factorized convolution.

Both fast paths return ``(1 + gamma, beta)`` (the 1 is folded into the kernels' bias), so the modulation
is one ``addcmul``. The generator runs channels-last (NHWC): the sparse path writes gamma and beta as
rows of 2C channels per pixel, which the modulation then reads in the activation's own layout (batch
norm keeps NHWC; instance norm returns NCHW), and oneDNN convolves NHWC maps without reordering them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .pooling import one_hot, resize_labels_floor

if TYPE_CHECKING:
    from ..config import ModelConfig


class StackedLinear(nn.Module):
    """R independent Linear(d_in, d_out) layers, one per class, as one (R, d_out, d_in) parameter."""

    def __init__(self, num: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(num, d_out, d_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num, d_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """(B, R, d_in) -> (B, R, d_out), class r through its own linear layer."""
        return torch.einsum("bri,roi->bro", x, self.weight) + self.bias


@dataclass(frozen=True)
class NormOptions:
    """What every SEAN norm of a generator shares: R classes, style length D, the SPADE branch's width,
    the parameter-free norm, the noise mode and how the style branch is computed (all exact)."""

    num_classes: int
    style_dim: int
    hidden: int = 128
    norm: Literal["batch", "instance"] = "batch"
    noise: Literal["train", "always", "off"] = "train"
    style_branch: Literal["sparse", "factorized", "naive"] = "sparse"


class SEANNorm(nn.Module):
    """SEAN normalization (SEAN's ``ACE``); without a style branch it is SPADE (SEAN's last block)."""

    def __init__(self, channels: int, options: NormOptions, use_style: bool = True) -> None:
        super().__init__()
        r, d, hidden = options.num_classes, options.style_dim, options.hidden
        self.use_style = use_style
        self.noise = options.noise
        self.style_branch = options.style_branch
        # kept with noise off (checkpoints keep one layout) but frozen: an unused trainable parameter would stop
        # DistributedDataParallel, which expects a gradient for each one
        self.noise_var = nn.Parameter(torch.zeros(channels), requires_grad=options.noise != "off")
        self._cache: tuple | None = None  # kernels prepared for inference, see _kernels
        if options.norm == "batch":
            self.param_free_norm: nn.Module = nn.BatchNorm2d(channels, affine=False)
        else:
            self.param_free_norm = nn.InstanceNorm2d(channels, affine=False)
        self.spade_shared = nn.Conv2d(r, hidden, 3, padding=1)
        self.spade_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.spade_beta = nn.Conv2d(hidden, channels, 3, padding=1)
        if use_style:
            self.fc_mu = StackedLinear(r, d, d)
            self.conv_gamma = nn.Conv2d(d, channels, 3, padding=1)
            self.conv_beta = nn.Conv2d(d, channels, 3, padding=1)
            self.blending_gamma = nn.Parameter(torch.zeros(1))
            self.blending_beta = nn.Parameter(torch.zeros(1))

    # Above this fraction of boundary pixels the dense grouped convolution is as cheap as gathering
    # (measured at batch 4: sparse wins at 64x64 (57% boundary) and 32x32 (84%), ties at 16x16).
    SPARSE_MAX_BOUNDARY = 0.95

    def forward(self, x: Tensor, segmap: Tensor, codes: Tensor | None, labels: Tensor | None = None) -> Tensor:
        """x (B, C, H, W); segmap (B, R, H, W) one-hot at x's size (``labels`` (B, H, W) its class indices,
        needed by the sparse path); codes (B, R, D) style codes."""
        if self.noise == "always" or (self.noise == "train" and self.training):
            b, _, h, w = x.shape
            x = x + torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype) * self.noise_var[:, None, None]
        normalized = self.param_free_norm(x)
        hidden = F.relu(self.spade_shared(segmap))
        if self.style_branch == "sparse" and labels is not None:
            scale, shift = self._sparse(labels, segmap, hidden, codes)
        elif self.style_branch == "naive":  # the oracle: no folded kernels, with or without a style branch
            gamma, beta = self._naive(segmap, hidden, codes)
            return normalized * (1 + gamma) + beta
        else:
            scale, shift = self._dense(segmap, hidden, codes)
        return torch.addcmul(shift, normalized, scale)  # the fast paths' kernels hold the 1 of 1 + gamma

    def _blend(self) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(self.blending_gamma), torch.sigmoid(self.blending_beta)

    def _naive(self, segmap: Tensor, hidden: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        """SEAN's own computation: broadcast mu_j over class j's pixels into (B, D, H, W), then convolve."""
        if not self.use_style:
            return self.spade_gamma(hidden), self.spade_beta(hidden)
        mu = F.relu(self.fc_mu(codes))
        broadcast = torch.einsum("brhw,brd->bdhw", segmap, mu)
        a_g, a_b = self._blend()
        gamma = a_g * self.conv_gamma(broadcast) + (1 - a_g) * self.spade_gamma(hidden)
        beta = a_b * self.conv_beta(broadcast) + (1 - a_b) * self.spade_beta(hidden)
        return gamma, beta

    def _kernels(self, dtype: torch.dtype) -> _Kernels:
        """The blended kernels in the layouts the fast paths use, in ``dtype`` (the activations' own: bfloat16
        under autocast); folded in the parameters' precision, outside autocast, and cached while no gradient
        is recorded."""
        params = tuple(p for p in self.parameters(recurse=True) if p is not self.noise_var)
        if torch.is_grad_enabled():
            self._cache = None
            return self._cast(self._compute_kernels(), dtype)
        key = (dtype, *((p.data_ptr(), p._version, p.dtype, p.device) for p in params))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._cast(self._compute_kernels(), dtype))
        return self._cache[1]

    @staticmethod
    def _cast(k: _Kernels, dtype: torch.dtype) -> _Kernels:
        return _Kernels(*(None if t is None else t.to(dtype) for t in k))

    def _compute_kernels(self) -> _Kernels:
        with torch.autocast(self.spade_shared.weight.device.type, enabled=False):
            return self._fold_kernels()

    def _fold_kernels(self) -> _Kernels:
        spade_w = torch.cat([self.spade_gamma.weight, self.spade_beta.weight])  # (2C, hidden, 3, 3)
        bias = torch.cat([self.spade_gamma.bias, self.spade_beta.bias])
        style_w = None
        if self.use_style:
            c = self.conv_gamma.out_channels
            a_g, a_b = self._blend()
            blend = torch.cat([a_g.expand(c), a_b.expand(c)])  # (2C,): the blend, folded into the kernels
            style_w = torch.cat([self.conv_gamma.weight, self.conv_beta.weight]) * blend[:, None, None, None]
            spade_w = spade_w * (1 - blend)[:, None, None, None]
            bias = blend * torch.cat([self.conv_gamma.bias, self.conv_beta.bias]) + (1 - blend) * bias
        c2 = spade_w.shape[0]
        bias = bias + torch.arange(c2, device=bias.device).lt(c2 // 2).to(bias.dtype)  # scale = 1 + gamma
        # Interior of class j: every 3x3 tap sees class j, so each conv reduces to its kernel summed over taps.
        inside = F.relu(self.spade_shared.weight.sum((2, 3)).T + self.spade_shared.bias)  # (R, hidden)
        return _Kernels(
            spade=spade_w,
            spade_rows=spade_w.permute(2, 3, 1, 0).reshape(-1, c2),  # (9 * hidden, 2C), taps (dy, dx) major
            bias=bias,
            interior=torch.einsum("chkl,rh->rc", spade_w, inside) + bias,  # (R, 2C)
            style_taps=None if style_w is None else style_w.permute(2, 3, 0, 1).reshape(9 * c2, -1),  # (9*2C, D)
            style_sum=None if style_w is None else style_w.sum((2, 3)),  # (2C, D)
        )

    def _style_kernels(self, k: _Kernels, mu: Tensor) -> Tensor:
        """Per-sample kernels on the one-hot map, (B, R, 9, 2C): K[b, j, tap] = W[tap] @ mu[b, j]."""
        b, r, _ = mu.shape
        return (mu.reshape(b * r, -1).to(k.style_taps.dtype) @ k.style_taps.T).reshape(b, r, 9, -1)

    def _dense(self, segmap: Tensor, hidden: Tensor, codes: Tensor | None) -> tuple[Tensor, Tensor]:
        """(1 + gamma, beta) as :meth:`_naive` computes them, with R (not D) style input channels and one
        grouped convolution."""
        k = self._kernels(hidden.dtype)
        c2 = k.bias.shape[0]
        if not self.use_style:
            return F.conv2d(hidden, k.spade, k.bias, padding=1).split(c2 // 2, dim=1)
        b, r, h, w = segmap.shape
        style = self._style_kernels(k, F.relu(self.fc_mu(codes))).permute(0, 3, 1, 2).reshape(b, c2, r, 3, 3)
        kernel = torch.cat([style, k.spade.expand(b, -1, -1, -1, -1)], dim=2)  # (B, 2C, R + hidden, 3, 3)
        inputs = torch.cat([segmap, hidden], dim=1).reshape(1, -1, h, w)
        out = F.conv2d(inputs, kernel.reshape(b * c2, -1, 3, 3), k.bias.repeat(b), padding=1, groups=b)
        return out.reshape(b, c2, h, w).split(c2 // 2, dim=1)

    def _sparse(self, labels: Tensor, segmap: Tensor, hidden: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        """(1 + gamma, beta) again: per-class tables in region interiors, gathered 3x3 patches at boundaries."""
        b, r, h, w = segmap.shape
        boundary = _boundary_mask(labels).flatten()
        index = boundary.nonzero().squeeze(1)  # flat (b, y, x) positions of boundary pixels
        if index.numel() > self.SPARSE_MAX_BOUNDARY * boundary.numel():
            return self._dense(segmap, hidden, codes)
        dtype = hidden.dtype  # the activations' (bfloat16 under autocast): tables and patches in it too
        k = self._kernels(dtype)
        c2 = k.bias.shape[0]
        table = k.interior.expand(b, r, c2)  # (B, R, 2C)
        if self.use_style:
            mu = F.relu(self.fc_mu(codes)).to(dtype)  # (B, R, D)
            table = table + torch.einsum("cd,brd->brc", k.style_sum, mu).to(dtype)
        sample = torch.arange(b, device=labels.device)[:, None, None]
        out = F.embedding((sample * r + labels).flatten(), table.reshape(b * r, c2))  # (B*H*W, 2C)
        # Boundary: 3x3 patches gathered from the zero-padded maps (padding = class r, a zero kernel row).
        taps = (torch.arange(3, device=labels.device)[:, None] * (w + 2)
                + torch.arange(3, device=labels.device)).flatten()  # (9,) offsets in the padded map
        y, x = (index // w) % h, index % w
        patch = ((index // (h * w)) * (h + 2) * (w + 2) + y * (w + 2) + x)[:, None] + taps  # (N, 9)
        hidden_pad = F.pad(hidden.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1)).reshape(-1, hidden.shape[1])
        exact = torch.addmm(k.bias, F.embedding(patch, hidden_pad).flatten(1), k.spade_rows).to(dtype)
        if self.use_style:
            labels_pad = F.pad(labels, (1, 1, 1, 1), value=r).flatten()
            kernels = F.pad(self._style_kernels(k, mu), (0, 0, 0, 0, 0, 1))  # (B, R + 1, 9, 2C)
            rows = (((index // (h * w))[:, None] * (r + 1) + labels_pad[patch]) * 9
                    + torch.arange(9, device=labels.device))  # (N, 9) rows of the kernel table, one per tap
            exact = exact + F.embedding_bag(rows, kernels.reshape(-1, c2).to(dtype), mode="sum").to(dtype)
        out.index_copy_(0, index, exact)  # out is fresh: embedding's backward does not need it
        return out.reshape(b, h, w, c2).permute(0, 3, 1, 2).split(c2 // 2, dim=1)


class _Kernels(NamedTuple):
    """SEAN norm kernels for (gamma, beta) stacked on 2C outputs, with the style/SPADE blend folded in."""

    spade: Tensor  # (2C, hidden, 3, 3)
    spade_rows: Tensor  # (9 * hidden, 2C)
    bias: Tensor  # (2C,)
    interior: Tensor  # (R, 2C): the SPADE branch plus bias inside a region of each class
    style_taps: Tensor | None  # (9 * 2C, D)
    style_sum: Tensor | None  # (2C, D)


def _boundary_mask(labels: Tensor) -> Tensor:
    """(B, H, W) bool: pixels whose 5x5 neighbourhood leaves the image or holds more than one class."""
    lab = labels[:, None].float()
    uniform = F.max_pool2d(lab, 5, 1, 2) == -F.max_pool2d(-lab, 5, 1, 2)
    uniform[..., :2, :] = False
    uniform[..., -2:, :] = False
    uniform[..., :2] = False
    uniform[..., -2:] = False
    return ~uniform[:, 0]


class SEANResBlock(nn.Module):
    """norm -> LeakyReLU(0.2) -> 3x3 conv, twice, plus a shortcut (norm -> 1x1 conv) when channels change."""

    def __init__(self, fin: int, fout: int, options: NormOptions, spectral: bool = True,
                 use_style: bool = True) -> None:
        super().__init__()
        fmid = min(fin, fout)
        sn = spectral_norm if spectral else (lambda m: m)
        self.learned_shortcut = fin != fout
        self.conv_0 = sn(nn.Conv2d(fin, fmid, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(fmid, fout, 3, padding=1))
        self.ace_0 = SEANNorm(fin, options, use_style)
        self.ace_1 = SEANNorm(fmid, options, use_style)
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, bias=False))
            self.ace_s = SEANNorm(fin, options, use_style)

    def forward(self, x: Tensor, segmap: Tensor, codes: Tensor | None, labels: Tensor | None = None) -> Tensor:
        shortcut = self.conv_s(self.ace_s(x, segmap, codes, labels)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.ace_0(x, segmap, codes, labels), 0.2))
        dx = self.conv_1(F.leaky_relu(self.ace_1(dx, segmap, codes, labels), 0.2))
        return shortcut + dx


class SEANGenerator(nn.Module):
    """Label map + style codes -> image. SEAN's face settings at ngf = 64, 256x256 (reference.md)."""

    BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")

    def __init__(self, options: NormOptions, image_size: int = 256, ngf: int = 64, spectral: bool = True) -> None:
        super().__init__()
        nf, r = ngf, options.num_classes
        self.num_classes = r
        self.start_size = image_size // 32  # five nearest x2 upsamplings
        self.fc = nn.Conv2d(r, 16 * nf, 3, padding=1)
        widths = {"head_0": (16, 16), "G_middle_0": (16, 16), "G_middle_1": (16, 16), "up_0": (16, 8),
                  "up_1": (8, 4), "up_2": (4, 2), "up_3": (2, 1)}
        for name, (fin, fout) in widths.items():
            self.add_module(name, SEANResBlock(fin * nf, fout * nf, options, spectral, use_style=name != "up_3"))
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> SEANGenerator:
        options = NormOptions(cfg.num_classes, cfg.style_dim, cfg.spade_hidden, cfg.norm, cfg.noise, cfg.style_branch)
        return cls(options, cfg.image_size, cfg.ngf, cfg.generator_spectral_norm)

    def forward(self, labels: Tensor, codes: Tensor) -> Tensor:
        """labels (B, H, W) class indices at the output size; codes (B, R, D) -> image (B, 3, H, W)."""
        dtype = codes.dtype
        x = self.fc(one_hot(resize_labels_floor(labels, self.start_size), self.num_classes, dtype))
        x = x.contiguous(memory_format=torch.channels_last)  # see the module docstring
        upsample_after = {"head_0", "G_middle_1", "up_0", "up_1", "up_2"}
        for name in self.BLOCKS:
            resized = resize_labels_floor(labels, x.shape[-2:])
            x = getattr(self, name)(x, one_hot(resized, self.num_classes, dtype), codes, resized)
            if name in upsample_after:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))

    def set_style_branch(self, branch: str) -> None:
        """Switch every SEAN norm between the ``sparse``, ``factorized`` and ``naive`` computations."""
        for module in self.modules():
            if isinstance(module, SEANNorm):
                module.style_branch = branch
