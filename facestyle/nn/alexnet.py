"""AlexNet feature network (LPIPS's AlexNet backbone), in torchvision's exact layer layout.

``features`` is torchvision's ``alexnet().features`` module for module (convolutions at indices 0, 3,
6, 8, 10), so the standard ``alexnet-owt-7be5be79.pth`` loads key for key (its ``classifier.*`` entries
are ignored). The forward pass returns the five ReLU outputs relu1..relu5 (indices 1, 4, 7, 9, 11), the
layers LPIPS compares (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018), and stops there. The weights come from the user's weights folder (see
:mod:`facestyle.weights`); the network is frozen and always in eval mode.

Input normalisation is the caller's: LPIPS applies its own scaling layer (see
:mod:`facestyle.metrics.lpips`).
"""

from __future__ import annotations

import os

from torch import Tensor, nn

from ..weights import find_weight, load_state_dict_file
from .pretrained import load_published_state_dict

WEIGHT_FILE = "alexnet-owt-7be5be79.pth"

LAYER_NAMES = ("relu1", "relu2", "relu3", "relu4", "relu5")
LAYER_INDICES = (1, 4, 7, 9, 11)  # positions of those ReLUs in ``features``
CHANNELS = (64, 192, 384, 256, 256)


def _make_features() -> nn.Sequential:
    """torchvision's ``AlexNet.features`` (the "one weird trick" variant, 64-192-384-256-256)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


class AlexNetFeatures(nn.Module):
    """Frozen AlexNet returning ``[relu1, ..., relu5]`` (64, 192, 384, 256, 256 channels).

    Takes images already normalised by the caller. Build it with :meth:`from_pretrained`; the plain
    constructor gives random weights (tests only).
    """

    layer_names = LAYER_NAMES
    channels = CHANNELS

    def __init__(self) -> None:
        super().__init__()
        self.features = _make_features()
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> AlexNetFeatures:
        """Always stays in eval mode: a fixed feature extractor."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) normalised images -> the five ReLU feature maps (strides 4, 8, 16, 16, 16)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"AlexNetFeatures expects (B, 3, H, W) images, got shape {tuple(x.shape)}")
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in LAYER_INDICES:
                outputs.append(x)
                if len(outputs) == len(LAYER_INDICES):
                    break
        return outputs

    def load_torchvision_state_dict(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Load a torchvision ``alexnet`` state dict; ``classifier.*`` entries are ignored.

        A missing, unexpected or wrongly shaped key raises :class:`~facestyle.errors.WeightsError`.
        """
        load_published_state_dict(self, state, source=source, network="torchvision AlexNet",
                                  ignore_prefixes=("classifier.",))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AlexNetFeatures:
        """Load a torchvision AlexNet weight file (``.pth`` or ``.safetensors``)."""
        model = cls()
        model.load_torchvision_state_dict(load_state_dict_file(path), source=str(path))
        return model

    @classmethod
    def from_pretrained(cls, weights_dir: str | os.PathLike[str] | None = None) -> AlexNetFeatures:
        """Load ``alexnet-owt-7be5be79.pth`` from the weights folder (``--weights-dir`` /
        ``FACESTYLE_WEIGHTS`` / torch's hub cache); a missing file raises
        :class:`~facestyle.errors.WeightsError` saying where to get it."""
        return cls.from_file(find_weight(WEIGHT_FILE, weights_dir))
