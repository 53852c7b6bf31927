"""VGG19 feature network for the perceptual loss, in torchvision's exact layer layout.

``features`` is torchvision's ``vgg19().features`` module for module (convolutions at indices 0, 2, 5,
..., 34), so the standard ``vgg19-dcbbf910.pth`` loads key for key (its ``classifier.*`` entries are
ignored). The forward pass returns relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 (indices 1, 6, 11, 20,
29), the layers of SPADE/SEAN's VGG loss, and stops there. The weights come from the user's weights
folder (see :mod:`facestyle.weights`); the network is frozen and always in eval mode.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import TorchvisionFeatures

WEIGHT_FILE = "vgg19-dcbbf910.pth"

# torchvision's configuration "E": channels of each 3x3 conv, "M" for a 2x2 max pool.
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)
LAYER_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
LAYER_INDICES = (1, 6, 11, 20, 29)  # positions of those ReLUs in ``features``
CHANNELS = (64, 128, 256, 512, 512)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _make_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = int(v)
    return nn.Sequential(*layers)


class VGG19Features(TorchvisionFeatures):
    """Frozen VGG19 returning ``[relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]`` for images in [-1, 1]
    (strides 1, 2, 4, 8, 16).

    ImageNet normalisation happens inside (:meth:`prepare`). Build it with :meth:`load_weights`; the
    plain constructor gives random weights (tests only).
    """

    weight_file = WEIGHT_FILE
    network = "torchvision VGG19"
    layer_names = LAYER_NAMES
    layer_indices = LAYER_INDICES
    channels = CHANNELS
    count_unexpected = False
    make_features = staticmethod(_make_features)

    def __init__(self) -> None:
        super().__init__()
        # [-1, 1] -> [0, 1] -> ImageNet statistics, in one affine map: (x - (2 mean - 1)) / (2 std).
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("shift", 2 * mean - 1, persistent=False)
        self.register_buffer("scale", 2 * std, persistent=False)

    def prepare(self, x: Tensor) -> Tensor:
        """Images in [-1, 1] -> ImageNet-normalised input."""
        return (x - self.shift) / self.scale
