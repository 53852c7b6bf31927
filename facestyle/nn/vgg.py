"""VGG19 feature network for the perceptual loss, in torchvision's exact layer layout.

``features`` is torchvision's ``vgg19().features`` module for module (convolutions at indices 0, 2, 5,
..., 34), so the standard ``vgg19-dcbbf910.pth`` loads key for key (its ``classifier.*`` entries are
ignored). The forward pass returns relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 (indices 1, 6, 11, 20,
29), the layers of SPADE/SEAN's VGG loss, and stops there. The weights come from the user's weights
folder (see :mod:`facestyle.weights`); the network is frozen and always in eval mode.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from ..weights import find_weight, load_state_dict_file

WEIGHT_FILE = "vgg19-dcbbf910.pth"

# torchvision's configuration "E": channels of each 3x3 conv, "M" for a 2x2 max pool.
VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)
LAYER_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
LAYER_INDICES = (1, 6, 11, 20, 29)  # positions of those ReLUs in ``features``

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


class VGG19Features(nn.Module):
    """Frozen VGG19 returning ``[relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]`` for images in [-1, 1].

    ImageNet normalisation happens inside. Build it with :meth:`from_pretrained`; the plain constructor
    gives random weights (tests only).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _make_features()
        # [-1, 1] -> [0, 1] -> ImageNet statistics, in one affine map: (x - (2 mean - 1)) / (2 std).
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("shift", 2 * mean - 1, persistent=False)
        self.register_buffer("scale", 2 * std, persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        """Always stays in eval mode: a fixed feature extractor."""
        return super().train(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) images in [-1, 1] -> the five ReLU feature maps, at strides 1, 2, 4, 8, 16."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"VGG19Features expects (B, 3, H, W) images, got shape {tuple(images.shape)}")
        x = (images - self.shift) / self.scale
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in LAYER_INDICES:
                outputs.append(x)
                if len(outputs) == len(LAYER_INDICES):
                    break
        return outputs

    def load_torchvision_state_dict(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Load a torchvision ``vgg19`` state dict; ``classifier.*`` entries are ignored.

        A missing, unexpected or wrongly shaped key raises :class:`WeightsError` naming ``source`` and the
        first bad key.
        """
        features = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        expected = self.state_dict()
        for key, param in expected.items():
            if key not in features:
                raise WeightsError(f"{source}: missing key {key!r}; is it a torchvision VGG19 file?")
            if features[key].shape != param.shape:
                raise WeightsError(f"{source}: {key} has shape {tuple(features[key].shape)}, expected "
                                   f"{tuple(param.shape)}; is it a torchvision VGG19 file?")
        unexpected = [k for k in features if k not in expected]
        if unexpected:
            raise WeightsError(f"{source}: unexpected key {unexpected[0]!r}; is it a torchvision VGG19 file?")
        self.load_state_dict(features)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> VGG19Features:
        """Load a torchvision VGG19 weight file (``.pth`` or ``.safetensors``)."""
        model = cls()
        model.load_torchvision_state_dict(load_state_dict_file(path), source=str(path))
        return model

    @classmethod
    def from_pretrained(cls, weights_dir: str | os.PathLike[str] | None = None) -> VGG19Features:
        """Load ``vgg19-dcbbf910.pth`` from the weights folder (``--weights-dir`` / ``FACESTYLE_WEIGHTS``
        / torch's hub cache); a missing file raises :class:`WeightsError` saying where to get it."""
        return cls.from_file(find_weight(WEIGHT_FILE, weights_dir))
