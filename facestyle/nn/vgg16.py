"""VGG16 feature network (LPIPS's VGG backbone), in torchvision's exact layer layout.

``features`` is torchvision's ``vgg16().features`` module for module (configuration "D": convolutions at
indices 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), so the standard ``vgg16-397923af.pth`` loads key
for key (its ``classifier.*`` entries are ignored). The forward pass returns relu1_2, relu2_2, relu3_3,
relu4_3 and relu5_3 (indices 3, 8, 15, 22, 29), the layers LPIPS compares (Zhang et al., CVPR 2018), and
stops there. The weights come from the user's weights folder (see :mod:`facestyle.weights`); the network
is frozen and always in eval mode. (VGG19 for the perceptual loss is :mod:`facestyle.nn.vgg`.)

Input normalisation is the caller's: LPIPS applies its own scaling layer (see
:mod:`facestyle.metrics.lpips`).
"""

from __future__ import annotations

import os

from torch import Tensor, nn

from ..weights import find_weight, load_state_dict_file
from .pretrained import load_published_state_dict

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


class VGG16Features(nn.Module):
    """Frozen VGG16 returning ``[relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]``.

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

    def train(self, mode: bool = True) -> VGG16Features:
        """Always stays in eval mode: a fixed feature extractor."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) normalised images -> the five ReLU feature maps, at strides 1, 2, 4, 8, 16."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16Features expects (B, 3, H, W) images, got shape {tuple(x.shape)}")
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in LAYER_INDICES:
                outputs.append(x)
                if len(outputs) == len(LAYER_INDICES):
                    break
        return outputs

    def load_torchvision_state_dict(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Load a torchvision ``vgg16`` state dict; ``classifier.*`` entries are ignored.

        A missing, unexpected or wrongly shaped key raises :class:`~facestyle.errors.WeightsError`.
        """
        load_published_state_dict(self, state, source=source, network="torchvision VGG16",
                                  ignore_prefixes=("classifier.",))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> VGG16Features:
        """Load a torchvision VGG16 weight file (``.pth`` or ``.safetensors``)."""
        model = cls()
        model.load_torchvision_state_dict(load_state_dict_file(path), source=str(path))
        return model

    @classmethod
    def from_pretrained(cls, weights_dir: str | os.PathLike[str] | None = None) -> VGG16Features:
        """Load ``vgg16-397923af.pth`` from the weights folder (``--weights-dir`` / ``FACESTYLE_WEIGHTS``
        / torch's hub cache); a missing file raises :class:`~facestyle.errors.WeightsError` saying where
        to get it."""
        return cls.from_file(find_weight(WEIGHT_FILE, weights_dir))
