"""The harmony classifier behind the harmony score (paper 4.1): a small CNN that tells real photos from
composites, given the image and the foreground mask (4 channels in, one logit of "real" out).

As the realism score of Zhu et al. (ICCV 2015), it is trained on real photos and composites; the paper
uses HAdobe5k, the Adobe-5k part of iHarmony4 (Cong et al., "DoveNet", CVPR 2020). Checkpoints are
facestyle checkpoint directories of kind ``harmony`` (``facestyle train-harmony`` writes them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import Pretrained
from ..errors import InputError


@dataclass(frozen=True)
class HarmonyConfig:
    """Everything that rebuilds a :class:`HarmonyClassifier`.

    ``image_size``: the square input the classifier sees (images and masks are resized to it);
    ``width``: channels of the first stage, doubled per stage up to ``8 * width``; ``depth``: number of
    stride-2 stages (256 px and depth 5 leave an 8x8 grid before the global pooling).
    """

    image_size: int = 256
    width: int = 32
    depth: int = 5

    def __post_init__(self) -> None:
        for name in ("image_size", "width", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"harmony classifier: {name} must be a positive integer, got {value!r}")
        if self.image_size < 2 ** self.depth:
            raise InputError(f"harmony classifier: image_size {self.image_size} is too small for {self.depth} "
                             f"stride-2 stages (at least {2 ** self.depth})")


def resize_square(x: Tensor, size: int) -> Tensor:
    """(B, C, H, W) -> (B, C, size, size), bilinear with antialiasing when shrinking (identity if equal)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class HarmonyClassifier(Pretrained, nn.Module):
    """Real-vs-composite CNN: (image, foreground mask) -> logit of "real".

    A 3x3 stem, ``depth`` stages of (4x4 stride-2 conv, GroupNorm, LeakyReLU 0.2, 3x3 conv, GroupNorm,
    LeakyReLU 0.2), then global average and max pooling, concatenated, and a linear layer. GroupNorm
    keeps a sample's score independent of the rest of its batch.
    """

    kind = "harmony"
    config_class = HarmonyConfig

    def __init__(self, config: HarmonyConfig | None = None) -> None:
        super().__init__()
        self.config = config or HarmonyConfig()
        cfg = self.config
        layers: list[nn.Module] = [nn.Conv2d(4, cfg.width, 3, padding=1), nn.LeakyReLU(0.2)]
        channels = cfg.width
        for i in range(cfg.depth):
            out = cfg.width * 2 ** min(i + 1, 3)
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), _norm(out), nn.LeakyReLU(0.2),
                       nn.Conv2d(out, out, 3, padding=1), _norm(out), nn.LeakyReLU(0.2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, 1)

    def prepare(self, images: Tensor, masks: Tensor) -> Tensor:
        """Images in [0, 1] (B, 3, H, W) and masks (B, H, W) or (B, 1, H, W) -> the (B, 4, S, S) input in
        [-1, 1] at the input size."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"harmony classifier: expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
        m = masks[:, None] if masks.dim() == 3 else masks
        if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] != images.shape[0]:
            raise InputError(f"harmony classifier: expected (B, H, W) or (B, 1, H, W) masks for {images.shape[0]} "
                             f"image(s), got shape {tuple(masks.shape)}")
        param = self.head.weight
        size = self.config.image_size
        image = resize_square(images.to(param), size)
        mask = resize_square(m.to(param), size).clamp(0, 1)
        return 2 * torch.cat([image, mask], 1) - 1

    def forward(self, images: Tensor, masks: Tensor) -> Tensor:
        """(B,) logits of "real" for images in [0, 1] and their foreground masks."""
        h = self.features(self.prepare(images, masks))
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return self.head(pooled)[:, 0]
