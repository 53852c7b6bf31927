"""The generator's and discriminator's losses (SEAN's, inherited from SPADE / pix2pixHD).

- hinge GAN loss, averaged over the discriminator's scales;
- feature matching: L1 between the discriminator's intermediate features of the fake and the real
  image, every layer but the logits, every scale, weighted ``lambda_feat / num_scales``;
- VGG19 perceptual loss: L1 on relu1_1 ... relu5_1 with layer weights 1/32, 1/16, 1/8, 1/4, 1, weighted
  ``lambda_vgg``;
- when ``use_vgg`` is off (no VGG19 weights, or the fast presets): a pixel L1 of the same weight instead,
  a documented deviation from SEAN.

Discriminator outputs are what :class:`~facestyle.nn.discriminator.MultiscaleDiscriminator` returns: one
list of features per scale whose last entry is the patch logits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nn.features.vgg19 import VGG19Features

if TYPE_CHECKING:
    from .config import TrainConfig

DiscriminatorOutput = Sequence[Sequence[Tensor]]

VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def _logits(outputs: DiscriminatorOutput | Sequence[Tensor]) -> list[Tensor]:
    """The patch logits of every scale (a bare tensor per scale is taken as the logits)."""
    return [scale if isinstance(scale, Tensor) else scale[-1] for scale in outputs]


def hinge_d_loss_terms(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> tuple[Tensor, Tensor]:
    """The discriminator's hinge loss, split: mean relu(1 - D(real)) and mean relu(1 + D(fake)),
    each averaged over scales. ``fake`` should come from detached generator outputs."""
    real_logits, fake_logits = _logits(real), _logits(fake)
    real_term = torch.stack([F.relu(1 - r).mean() for r in real_logits]).mean()
    fake_term = torch.stack([F.relu(1 + f).mean() for f in fake_logits]).mean()
    return real_term, fake_term


def hinge_d_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> Tensor:
    """The discriminator's hinge loss: mean relu(1 - D(real)) + mean relu(1 + D(fake)), over scales."""
    real_term, fake_term = hinge_d_loss_terms(real, fake)
    return real_term + fake_term


def hinge_g_loss(fake: DiscriminatorOutput) -> Tensor:
    """The generator's hinge loss: -mean D(fake), averaged over scales."""
    return torch.stack([-f.mean() for f in _logits(fake)]).mean()


def feature_matching_loss(fake: DiscriminatorOutput, real: DiscriminatorOutput,
                          weight: float = 10.0) -> Tensor:
    """pix2pixHD's feature matching: sum over scales and intermediate layers (the logits excluded) of
    L1(fake feature, real feature detached), times ``weight / number of scales``."""
    if len(fake) != len(real):
        raise ValueError(f"fake has {len(fake)} scales, real has {len(real)}")
    terms = [
        F.l1_loss(f, r.detach())
        for fake_scale, real_scale in zip(fake, real, strict=True)
        for f, r in zip(fake_scale[:-1], real_scale[:-1], strict=True)
    ]
    if not terms:  # single-layer discriminators: only logits, nothing to match
        return fake[0][-1].new_zeros(())
    return torch.stack(terms).sum() * (weight / len(fake))


class VGGLoss(nn.Module):
    """Perceptual loss: ``weight`` * sum_i w_i L1(VGG_i(fake), VGG_i(real)), w = 1/32, 1/16, 1/8, 1/4, 1
    on relu1_1 ... relu5_1; the real image's features carry no gradient."""

    def __init__(self, vgg: VGG19Features, weight: float = 10.0,
                 layer_weights: Sequence[float] = VGG_LAYER_WEIGHTS) -> None:
        super().__init__()
        self.vgg = vgg
        self.weight = weight
        self.layer_weights = tuple(layer_weights)

    @classmethod
    def load_weights(cls, weights_dir: str | os.PathLike[str] | None = None,
                        weight: float = 10.0) -> VGGLoss:
        """With VGG19 ImageNet weights from the weights folder (a clear error when they are missing)."""
        return cls(VGG19Features.load_weights(weights_dir), weight)

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        fake_features = self.vgg(fake)
        with torch.no_grad():
            real_features = self.vgg(real)
        loss = sum(w * F.l1_loss(f, r) for w, f, r in
                   zip(self.layer_weights, fake_features, real_features, strict=True))
        return self.weight * loss


def pixel_l1_loss(fake: Tensor, real: Tensor, weight: float = 10.0) -> Tensor:
    """``weight`` * mean |fake - real|: the stand-in for the VGG loss when ``use_vgg`` is off."""
    return weight * F.l1_loss(fake, real.detach())


class GeneratorLosses(nn.Module):
    """SEAN's generator objective as a dict of weighted terms: ``gan``, ``feat`` and ``vgg`` (or ``l1``
    when built without a VGG network). The total is ``sum(losses.values())``.

    Stateless apart from the frozen VGG19 it may hold.
    """

    def __init__(self, lambda_feat: float = 10.0, lambda_vgg: float = 10.0,
                 vgg: VGG19Features | None = None) -> None:
        super().__init__()
        self.lambda_feat = lambda_feat
        self.lambda_vgg = lambda_vgg
        self.vgg_loss = VGGLoss(vgg, lambda_vgg) if vgg is not None else None

    @classmethod
    def from_config(cls, cfg: TrainConfig,
                    weights_dir: str | os.PathLike[str] | None = None) -> GeneratorLosses:
        """``cfg.use_vgg`` loads VGG19 from the weights folder (:class:`WeightsError` when it is missing)."""
        vgg = VGG19Features.load_weights(weights_dir) if cfg.use_vgg else None
        return cls(cfg.lambda_feat, cfg.lambda_vgg, vgg)

    def forward(self, fake_image: Tensor, real_image: Tensor, fake_outputs: DiscriminatorOutput,
                real_outputs: DiscriminatorOutput) -> dict[str, Tensor]:
        """``fake_outputs`` / ``real_outputs``: the discriminator on the generated and the real image."""
        losses = {
            "gan": hinge_g_loss(fake_outputs),
            "feat": feature_matching_loss(fake_outputs, real_outputs, self.lambda_feat),
        }
        if self.vgg_loss is not None:
            losses["vgg"] = self.vgg_loss(fake_image, real_image)
        else:
            losses["l1"] = pixel_l1_loss(fake_image, real_image, self.lambda_vgg)
        return losses
