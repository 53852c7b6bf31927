"""Multi-region style attention (MRSA, paper section 3.2, eq. 4-5).

Q is computed from the composite codes s_c (the target's, with the transferred classes taken from the
reference), K and V from the target's codes s_t; the attention runs over the target's present classes:

    M = softmax(Q K^T / sqrt(D))        (eq. 4; ``scale="none"`` drops the 1/sqrt(D), as the paper writes it)
    s_out = s_c + alpha * (M V)         (eq. 5; alpha learned, starting at 0)

``mix="mlp"`` (beyond the paper, ``model.attention_mix``) adds to eq. 5's correction a small MLP of the
composite code and that correction, ``s_out = s_c + alpha * (M V + MLP([s_c, M V]))``, the MLP's last layer
starting at 0 (so that it starts as eq. 5). Eq. 5's correction is a mix of the *target's* value vectors
whatever the moved region holds; relighting a region is multiplicative (a blond region needs a larger change
than a black one under the same light), which the MLP of the region's own code can express.

Rows of absent classes are left unchanged; a sample with no present class gets no correction.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from ..config import ModelConfig


class MRSA(nn.Module):
    def __init__(self, style_dim: int, scale: Literal["sqrt_d", "none"] = "sqrt_d",
                 mix: Literal["linear", "mlp"] = "linear") -> None:
        super().__init__()
        if mix not in ("linear", "mlp"):
            raise ValueError(f"mix must be linear or mlp, got {mix!r}")
        self.query = nn.Linear(style_dim, style_dim)
        self.key = nn.Linear(style_dim, style_dim)
        self.value = nn.Linear(style_dim, style_dim)
        self.alpha = nn.Parameter(torch.zeros(()))
        self.scale = 1.0 / math.sqrt(style_dim) if scale == "sqrt_d" else 1.0
        self.mix = None
        if mix == "mlp":
            self.mix = nn.Sequential(nn.Linear(2 * style_dim, 2 * style_dim), nn.LeakyReLU(0.2),
                                     nn.Linear(2 * style_dim, style_dim))
            nn.init.zeros_(self.mix[-1].weight)
            nn.init.zeros_(self.mix[-1].bias)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> MRSA | None:
        """The model's MRSA, or None when ``cfg.attention`` is off."""
        return cls(cfg.style_dim, cfg.attention_scale, cfg.attention_mix) if cfg.attention == "on" else None

    def attention(self, composite: Tensor, target: Tensor, presence: Tensor) -> Tensor:
        """The attention matrix M (B, R, R) of eq. 4, zero in absent rows and columns."""
        q, k = self.query(composite), self.key(target)
        logits = torch.einsum("bid,bjd->bij", q, k) * self.scale
        # A finite fill keeps gradients finite when a sample has no present class at all.
        logits = logits.masked_fill(~presence[:, None, :], torch.finfo(logits.dtype).min)
        mask = presence[:, :, None] & presence[:, None, :]
        return torch.softmax(logits, dim=-1) * mask.to(logits.dtype)

    def forward(self, composite: Tensor, target: Tensor, presence: Tensor) -> Tensor:
        """Correct the composite codes (B, R, D) against the target's (B, R, D); presence (B, R) bool."""
        m = self.attention(composite, target, presence)
        correction = torch.einsum("bij,bjd->bid", m, self.value(target))
        if self.mix is not None:  # rows of absent classes (m all zero there) stay unchanged
            present = presence[..., None].to(correction.dtype)
            correction = correction + present * self.mix(torch.cat([composite, correction], dim=-1))
        return composite + self.alpha * correction
