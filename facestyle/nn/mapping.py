"""Regional style mapping (RSM, paper section 3.1, eq. 3) and its code-space discriminator (eq. 6).

One mapping network per region group (the paper's: skin + nose, and hair) turns a latent z ~ N(0, I)
into the style codes of the group's K classes, ``s_g = M_g(z)`` (eq. 3). The network is StarGAN-v2's
mapping network with its per-domain heads turned into per-class heads::

    z (latent_dim) -> [Linear(hidden) + ReLU] x shared_layers -> h (hidden)
    h, for each class k of the group: [Linear(hidden) + ReLU] x head_layers -> Linear(D)   -> (K, D)

The K heads are stacked parameters applied with one einsum (no loop over classes). Codes are produced
in a standardised space (the bank's per-coordinate mean and std, stored as buffers in the checkpoint)
and mapped back, so that the MLP works at unit scale whatever the encoder's code statistics.

Training is adversarial on the style-code space (eq. 6): a discriminator per group tells encoded codes
s from mapped codes M_g(z); see :mod:`facestyle.train.mapping`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from ..checkpoint import Pretrained
from ..config import MAX_DEPTH, MAX_WIDTH, check_size
from ..errors import InputError
from .sean import StackedLinear

__all__ = ["MappingConfig", "MAPPING_PRESETS", "MappingNetwork", "CodeDiscriminator", "CodeStandardizer",
           "CodeWhitener"]


@dataclass(frozen=True)
class MappingConfig:
    """Everything that rebuilds a group's mapping network and its discriminator.

    ``label_set``, ``region``, ``classes`` (the group's class indices, in the label set's order) and
    ``style_dim`` (D) come from the style bank; the rest is the architecture.
    """

    label_set: str = "celebamask-hq"
    region: str = "skin"
    classes: tuple[int, ...] = (1, 2)
    style_dim: int = 512
    latent_dim: int = 16  # StarGAN-v2's z
    hidden_dim: int = 512
    shared_layers: int = 4
    head_layers: int = 3
    discriminator_hidden: int = 512
    discriminator_layers: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        checks = [
            (len(self.classes) >= 1, "a mapping group needs at least one class"),
            (len(set(self.classes)) == len(self.classes), f"repeated class in {self.classes}"),
            (self.style_dim >= 1 and self.latent_dim >= 1 and self.hidden_dim >= 1,
             "style_dim, latent_dim and hidden_dim must be positive"),
            (self.shared_layers >= 1, f"shared_layers must be at least 1, got {self.shared_layers}"),
            (self.head_layers >= 0, f"head_layers must be >= 0, got {self.head_layers}"),
            (self.discriminator_hidden >= 1 and self.discriminator_layers >= 1,
             "discriminator_hidden and discriminator_layers must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"mapping config: {message}")
        for name in ("style_dim", "latent_dim", "hidden_dim", "discriminator_hidden"):
            check_size(f"mapping config: {name}", getattr(self, name), 1, MAX_WIDTH)
        for name in ("shared_layers", "head_layers", "discriminator_layers"):
            check_size(f"mapping config: {name}", getattr(self, name), 0 if name == "head_layers" else 1, MAX_DEPTH)
        for c in self.classes:
            check_size("mapping config: classes", c, 0, 255)

    @property
    def group_size(self) -> int:
        """K, the number of classes the network generates codes for."""
        return len(self.classes)

    @property
    def code_dim(self) -> int:
        """K * D, the dimension of the group's code space."""
        return self.group_size * self.style_dim


# Architecture presets; the bank fills in label_set, region, classes and style_dim.
MAPPING_PRESETS: dict[str, MappingConfig] = {
    # StarGAN-v2's sizes: 4 shared Linear(512) + ReLU, per-head 3 Linear(512) + ReLU and a Linear to D.
    "paper": MappingConfig(),
    # The bundled demo (D = 64): a few hundred kB per group.
    "demo": MappingConfig(hidden_dim=256, shared_layers=2, head_layers=1, discriminator_hidden=256,
                          discriminator_layers=2),
    # Seconds-long tests.
    "tiny": MappingConfig(hidden_dim=32, shared_layers=2, head_layers=1, discriminator_hidden=32,
                          discriminator_layers=2),
}


def _mlp(d_in: int, hidden: int, layers: int, activation: type[nn.Module], **kwargs: Any) -> list[nn.Module]:
    """``layers`` x (Linear + activation), from ``d_in`` to ``hidden``."""
    out: list[nn.Module] = []
    for i in range(layers):
        out += [nn.Linear(d_in if i == 0 else hidden, hidden), activation(**kwargs)]
    return out


class CodeStandardizer(nn.Module):
    """Per-coordinate standardisation of a group's codes (K, D) by the style bank's mean and std.

    Buffers, saved with the network, so that a checkpoint maps to and from the encoder's own scale.
    Before :meth:`fit` it is the identity (mean 0, std 1).
    """

    def __init__(self, group_size: int, style_dim: int, min_std: float = 1e-4) -> None:
        super().__init__()
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(group_size, style_dim))
        self.register_buffer("std", torch.ones(group_size, style_dim))

    @torch.no_grad()
    def fit(self, codes: Tensor) -> None:
        """Set mean and std from codes (N, K, D) (std floored at ``min_std`` x the mean std)."""
        codes = codes.to(self.mean)
        std = codes.std(dim=0) if len(codes) > 1 else torch.ones_like(self.std)
        floor = self.min_std * std.mean().clamp_min(torch.finfo(std.dtype).tiny)
        self.mean.copy_(codes.mean(dim=0))
        self.std.copy_(std.clamp_min(floor))

    def normalize(self, codes: Tensor) -> Tensor:
        """(B, K, D) codes -> (B, K, D) standardised codes."""
        return (codes - self.mean) / self.std

    def denormalize(self, x: Tensor) -> Tensor:
        """(B, K, D) standardised codes -> codes at the encoder's scale."""
        return x * self.std + self.mean

    def log_abs_det(self) -> Tensor:
        """log |det d normalize / d codes| (a change of variables term)."""
        return -self.std.log().sum()


class CodeWhitener(nn.Module):
    """Whitening of a group's codes (K, D) by the style bank's mean and covariance (ZCA):
    ``x = Sigma^(-1/2) (s - mean)``, eigenvalues floored at ``min_eigenvalue`` x the largest.

    Whitening gives the codes the second moments of N(0, I), so that a flow only has to model what is
    not Gaussian. (Measured on a curved synthetic bank, ``benchmarks/style_speed.py --normalization
    whiten``: it does not make the flows cheaper to solve, since a curved manifold stays thin locally,
    and per-coordinate standardisation is the flows' default.) Buffers, saved with the network.
    """

    def __init__(self, group_size: int, style_dim: int, min_eigenvalue: float = 1e-4) -> None:
        super().__init__()
        self.shape = (group_size, style_dim)
        self.min_eigenvalue = min_eigenvalue
        dim = group_size * style_dim
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("whiten", torch.eye(dim))
        self.register_buffer("unwhiten", torch.eye(dim))
        self.register_buffer("log_det", torch.zeros(()))

    @torch.no_grad()
    def fit(self, codes: Tensor) -> None:
        """Set the mean and the whitening matrix from codes (N, K, D) (in float64, then stored)."""
        flat = rearrange(codes, "n k d -> n (k d)").double()
        mean = flat.mean(dim=0)
        cov = torch.cov(flat.T) if len(flat) > 1 else torch.eye(flat.shape[1], dtype=flat.dtype)
        cov = torch.atleast_2d(cov)
        eigenvalues, vectors = torch.linalg.eigh(cov)
        top = eigenvalues.max().clamp_min(torch.finfo(torch.float32).tiny)
        eigenvalues = eigenvalues.clamp_min(self.min_eigenvalue * top)
        self.mean.copy_(mean)
        self.whiten.copy_(torch.einsum("ik,k,jk->ij", vectors, eigenvalues.rsqrt(), vectors))
        self.unwhiten.copy_(torch.einsum("ik,k,jk->ij", vectors, eigenvalues.sqrt(), vectors))
        self.log_det.copy_(-0.5 * eigenvalues.log().sum())

    def normalize(self, codes: Tensor) -> Tensor:
        """(B, K, D) codes -> (B, K, D) whitened codes."""
        flat = rearrange(codes, "b k d -> b (k d)") - self.mean
        return rearrange(torch.einsum("ij,bj->bi", self.whiten, flat), "b (k d) -> b k d", k=self.shape[0])

    def denormalize(self, x: Tensor) -> Tensor:
        """(B, K, D) whitened codes -> codes at the encoder's scale."""
        flat = torch.einsum("ij,bj->bi", self.unwhiten, rearrange(x, "b k d -> b (k d)")) + self.mean
        return rearrange(flat, "b (k d) -> b k d", k=self.shape[0])

    def log_abs_det(self) -> Tensor:
        """log |det d normalize / d codes| = -1/2 log det Sigma (a change of variables term)."""
        return self.log_det


class MappingNetwork(Pretrained, nn.Module):
    """M_g of eq. 3: z (B, latent_dim) -> the group's style codes (B, K, D). Saved and loaded as a
    checkpoint directory of kind ``mapping`` (:class:`~facestyle.checkpoint.Pretrained`)."""

    kind = "mapping"
    config_class = MappingConfig

    def __init__(self, config: MappingConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.shared = nn.Sequential(*_mlp(c.latent_dim, c.hidden_dim, c.shared_layers, nn.ReLU))
        self.heads = nn.ModuleList(StackedLinear(c.group_size, c.hidden_dim, c.hidden_dim)
                                   for _ in range(c.head_layers))
        self.to_style = StackedLinear(c.group_size, c.hidden_dim, c.style_dim)
        self.normalizer = CodeStandardizer(c.group_size, c.style_dim)

    def forward_normalized(self, z: Tensor) -> Tensor:
        """z (B, latent_dim) -> standardised codes (B, K, D) (what the discriminator sees)."""
        h = repeat(self.shared(z), "b h -> b k h", k=self.config.group_size)
        for layer in self.heads:
            h = torch.relu(layer(h))
        return self.to_style(h)

    def forward(self, z: Tensor) -> Tensor:
        """s_g = M_g(z) (eq. 3): z (B, latent_dim) -> codes (B, K, D) at the encoder's scale."""
        return self.normalizer.denormalize(self.forward_normalized(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random style codes (n, K, D), z drawn on the CPU from ``generator`` (the same codes on
        every device for a given seed)."""
        z = torch.randn(n, self.config.latent_dim, generator=generator)
        param = next(self.parameters())
        return self(z.to(device=param.device, dtype=param.dtype))


class CodeDiscriminator(nn.Module):
    """D_g of eq. 6: an MLP on the group's standardised codes (B, K, D) -> one logit per sample."""

    def __init__(self, config: MappingConfig) -> None:
        super().__init__()
        c = config
        self.net = nn.Sequential(*_mlp(c.code_dim, c.discriminator_hidden, c.discriminator_layers,
                                       nn.LeakyReLU, negative_slope=0.2),
                                 nn.Linear(c.discriminator_hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, K, D) standardised codes -> (B,) logits (real: encoded codes; fake: mapped ones)."""
        return self.net(rearrange(x, "b k d -> b (k d)"))[:, 0]
