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

from torch import nn

from .base import TorchvisionFeatures

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


class AlexNetFeatures(TorchvisionFeatures):
    """Frozen AlexNet returning ``[relu1, ..., relu5]`` (64, 192, 384, 256, 256 channels, strides 4, 8, 16,
    16, 16).

    Takes images already normalised by the caller. Build it with :meth:`load_weights`; the plain
    constructor gives random weights (tests only).
    """

    weight_file = WEIGHT_FILE
    network = "torchvision AlexNet"
    layer_names = LAYER_NAMES
    layer_indices = LAYER_INDICES
    channels = CHANNELS
    make_features = staticmethod(_make_features)
