"""VGG16 feature network (LPIPS's VGG backbone), in torchvision's exact layer layout.

``features`` is torchvision's ``vgg16().features`` module for module (configuration "D": convolutions at
indices 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), so the standard ``vgg16-397923af.pth`` loads key
for key (its ``classifier.*`` entries are ignored). The forward pass returns relu1_2, relu2_2, relu3_3,
relu4_3 and relu5_3 (indices 3, 8, 15, 22, 29), the layers LPIPS compares (Zhang et al., CVPR 2018), and
stops there. The weights come from the user's weights folder (see :mod:`facestyle.weights`); the network
is frozen and always in eval mode. (VGG19 for the perceptual loss is :mod:`facestyle.nn.features.vgg19`.)

Input normalisation is the caller's: LPIPS applies its own scaling layer (see
:mod:`facestyle.metrics.lpips`).
"""

from __future__ import annotations

from torch import nn

from .base import TorchvisionFeatures

WEIGHT_FILE = "vgg16-397923af.pth"

# torchvision's configuration "D": channels of each 3x3 conv, "M" for a 2x2 max pool.
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                    512, 512, 512, "M")
LAYER_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
LAYER_INDICES = (3, 8, 15, 22, 29)  # positions of those ReLUs in ``features``
CHANNELS = (64, 128, 256, 512, 512)


def _make_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1), nn.ReLU()]
            in_channels = int(v)
    return nn.Sequential(*layers)


class VGG16Features(TorchvisionFeatures):
    """Frozen VGG16 returning ``[relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]`` (strides 1, 2, 4, 8, 16).

    Takes images already normalised by the caller. Build it with :meth:`load_weights`; the plain
    constructor gives random weights (tests only).
    """

    weight_file = WEIGHT_FILE
    network = "torchvision VGG16"
    layer_names = LAYER_NAMES
    layer_indices = LAYER_INDICES
    channels = CHANNELS
    make_features = staticmethod(_make_features)
