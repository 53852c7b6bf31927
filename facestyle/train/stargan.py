"""StarGAN-v2's training strategy for the ``sean-stargan`` architecture (the paper's RSM ablation, section 4.8).

Each generator step adds, to SEAN's supervised reconstruction losses, StarGAN-v2's latent-guided terms
(``clovaai/stargan-v2:core/solver.py``, ``compute_g_loss``) on images drawn with mapped codes: the
target's codes with its groups' classes (skin + nose, hair) replaced by ``s = M(z)``
(:meth:`~facestyle.nn.sean_stargan.SEANStarGAN.mapped_into`):

- ``stargan_adv``: the adversarial term on ``G(m, s1)`` (the harness's hinge, as for every system);
- ``stargan_sty``: style reconstruction, L1 between the encoder's codes of ``G(m, s1)`` and ``s1`` over the
  mapped classes, times ``train.stargan_sty_weight``;
- ``stargan_ds``: minus the diversity-sensitive term, L1 between ``G(m, s1)`` and ``G(m, s2)`` (the second
  detached) for two draws, times ``train.stargan_ds_weight`` decayed linearly to 0 over
  ``train.stargan_ds_steps``.

The discriminator then takes ``G(m, s1)`` as one more fake. StarGAN-v2's cycle term is left out (the
supervised reconstruction is a stronger form of it), as are its R1 penalty and the weights' moving average
(no system in the harness has them); see the README's decisions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..losses import hinge_g_loss
from .common import frozen

__all__ = ["StarGANTerms", "stargan_terms", "diversity_weight", "generator_param_groups", "generator_rates"]


class StarGANTerms(NamedTuple):
    """The weighted generator terms, and the latent-guided image for the discriminator (detached)."""

    losses: dict[str, Tensor]
    fake: Tensor


def diversity_weight(cfg: TrainConfig, step: int) -> float:
    """``stargan_ds_weight`` decayed linearly to 0 at ``stargan_ds_steps`` (StarGAN-v2's ``ds_iter``)."""
    if cfg.stargan_ds_steps <= 0:
        return 0.0
    return cfg.stargan_ds_weight * max(0.0, 1.0 - step / cfg.stargan_ds_steps)


def stargan_terms(model: nn.Module, discriminator: nn.Module, image: Tensor, labels: Tensor, cfg: TrainConfig,
                  step: int) -> StarGANTerms:
    """StarGAN-v2's latent-guided generator terms for a ``SEANStarGAN`` on a batch (B, 3, S, S), (B, S, S)."""
    codes, presence = model.encode(image, labels)
    first = model.mapped_into(codes, presence)
    second = model.mapped_into(codes, presence)
    fake = model.decode(labels, first)
    with torch.no_grad():
        other = model.decode(labels, second)
    with frozen(discriminator):
        adversarial = hinge_g_loss(discriminator(fake, labels))
    mapped = (model.sampled & presence)[..., None].to(fake.dtype)  # (B, C, 1): the classes drawn from M(z)
    encoded, _ = model.encode(fake, labels)
    style = ((encoded - first).abs() * mapped).sum() / (mapped.sum() * first.shape[-1]).clamp_min(1)
    diversity = (fake - other).abs().mean()
    losses = {"stargan_adv": adversarial, "stargan_sty": cfg.stargan_sty_weight * style,
              "stargan_ds": -diversity_weight(cfg, step) * diversity}
    return StarGANTerms(losses, fake.detach())


def generator_param_groups(model: nn.Module, stargan: bool) -> list[dict]:
    """The generator optimizer's parameter groups: everything; with ``stargan``, the network's mapping
    networks in a second group (their rate: :func:`generator_rates`)."""
    if not stargan:
        return [{"params": list(model.parameters())}]
    mapped = {id(p) for p in model.mapping.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) not in mapped]},
            {"params": list(model.mapping.parameters())}]


def generator_rates(cfg: TrainConfig, stargan: bool) -> list[float]:
    """The base learning rate of each group of :func:`generator_param_groups`: ``lr_g``, and with ``stargan``
    ``stargan_mapping_lr`` (StarGAN-v2's f_lr). Read from the config at every step, so that a resumed run's
    ``--set`` takes effect."""
    return [cfg.lr_g, cfg.stargan_mapping_lr] if stargan else [cfg.lr_g]
