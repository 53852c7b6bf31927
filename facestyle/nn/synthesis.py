"""The interface every compared generator architecture offers (SPADE, CLADE, pix2pixHD, GroupDNet, ...).

A network of this kind is one ``nn.Module`` holding its style encoder and generator. Names follow
:class:`facestyle.model.FaceStyleNet`:

- ``encode(image, labels) -> (codes, presence)``: the deterministic codes of an image (a VAE's mean) and
  the classes present in ``labels`` (B, R). ``codes`` is (B, Z) for a global code (``code_kind ==
  "global"``) and (B, R, D) for per-class codes (``"regional"``);
- ``decode(labels, codes) -> image`` (B, 3, S, S) in [-1, 1];
- ``reconstruct(image, labels, sample=None) -> Reconstruction(image, kl)``: the training forward pass.
  A VAE samples its code when ``sample`` is true (default: in training mode) and reports SPADE's summed
  KL divergence; ``kl`` is a zero tensor for networks without one. ``forward(image, labels)`` returns
  ``reconstruct(...).image``;
- ``sample_codes(batch, generator=None) -> codes``: random codes from the prior (only where the
  architecture supports random styles);
- ``compose`` and ``transfer`` for per-class codes (:class:`RegionalCodes`), as in FaceStyleNet.

``tasks`` names what an architecture supports (:data:`TASKS`), ``code_kind`` its codes.
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import torch
from torch import Tensor

RECONSTRUCTION = "reconstruction"
TRANSFER = "transfer"  # regional style transfer
RANDOM_GLOBAL = "random-global"  # random styles of the whole image
RANDOM_REGIONAL = "random-regional"  # random styles of chosen regions, the others kept
TASKS = (RECONSTRUCTION, TRANSFER, RANDOM_GLOBAL, RANDOM_REGIONAL)


class Reconstruction(NamedTuple):
    """The training forward pass: the image (B, 3, S, S) and the KL term (a scalar; 0 without a VAE)."""

    image: Tensor
    kl: Tensor


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """SPADE's ``KLDLoss``: -0.5 * sum(1 + logvar - mu^2 - exp(logvar)), summed over batch and dimensions
    (not averaged, so its weight 0.05 acts per sample)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = mu + eps * exp(logvar / 2), eps ~ N(0, I)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)


def presence(labels: Tensor, num_classes: int) -> Tensor:
    """(B, R) bool: the classes with at least one pixel in ``labels`` (B, H, W); negative labels count for none."""
    valid = labels.clamp_min(0).flatten(1)
    counts = torch.zeros(labels.shape[0], num_classes, dtype=torch.long, device=labels.device)
    counts.scatter_add_(1, valid, (labels.flatten(1) >= 0).long())
    return counts > 0


class RegionalCodes:
    """Regional transfer for networks with per-class codes (B, R, D): mixed into an ``nn.Module`` that has
    ``encode`` and ``decode``."""

    code_kind: ClassVar[Literal["global", "regional"]] = "regional"

    @staticmethod
    def compose(target: Tensor, target_presence: Tensor, reference: Tensor, reference_presence: Tensor,
                classes: Tensor, strength: float | Tensor = 1.0) -> Tensor:
        """The target's codes with ``classes`` ((R,) or (B, R) bool) from the reference where both have them
        (:meth:`facestyle.model.FaceStyleNet.compose`'s rule); ``strength`` (a number, or (R,) / (B, R)) moves
        each taken code part of the way (1: all of it)."""
        take = classes.to(torch.bool) & reference_presence & target_presence
        weight = take.to(target.dtype) * torch.as_tensor(strength, dtype=target.dtype, device=target.device)
        return torch.lerp(target, reference, weight[..., None])

    def restyle(self, labels: Tensor, codes: Tensor, target: Tensor | None = None, presence: Tensor | None = None,
                harmonize: bool = True) -> Tensor:
        """:meth:`facestyle.model.FaceStyleNet.restyle` without MRSA (these networks have none): the decoder
        on ``labels`` with ``codes``; ``target``, ``presence`` and ``harmonize`` are accepted and unused."""
        return self.decode(labels, codes)  # type: ignore[attr-defined]

    def transfer(self, target: Tensor, target_labels: Tensor, reference: Tensor, reference_labels: Tensor,
                 classes: Tensor, harmonize: bool = True, decode_labels: Tensor | None = None) -> Tensor:
        """Draw the target's label map (``decode_labels`` when given: the map without IGNORE pixels, as in
        :meth:`facestyle.model.FaceStyleNet.transfer`) with the codes of ``classes`` taken from the reference.
        ``harmonize`` is accepted for FaceStyleNet's signature; there is no MRSA to bypass."""
        s_t, p_t = self.encode(target, target_labels)  # type: ignore[attr-defined]
        s_r, p_r = self.encode(reference, reference_labels)  # type: ignore[attr-defined]
        labels = target_labels if decode_labels is None else decode_labels
        return self.decode(labels, self.compose(s_t, p_t, s_r, p_r, classes))  # type: ignore[attr-defined]
