"""BiSeNet as face-parsing.PyTorch defines it, so its published ``79999_iter.pth`` loads key for key.

face-parsing.PyTorch (zllrunning) trained a BiSeNet (Yu et al., 2018) on CelebAMask-HQ: 19 classes in its
own order (:data:`FACE_PARSING_CLASSES`), a ResNet-18 backbone. Its ``model.py`` drops BiSeNet's spatial
path and feeds the backbone's stride-8 map to the fusion module in its place::

    image (B, 3, H, W), ImageNet-normalised RGB in [0, 1]
      -> cp.resnet: ResNet-18 (torchvision's names, no fc)    feat8 (128, /8), feat16 (256, /16), feat32 (512, /32)
      -> cp: arm32(feat32) + conv_avg(global mean of feat32), nearest to /16, conv_head32    context16 (128, /16)
             arm16(feat16) + context16, nearest to /8, conv_head16                          context8 (128, /8)
      -> ffm: concat(feat8, context8), 1x1 ConvBNReLU, channel attention (x * a + x)       (256, /8)
      -> conv_out: 3x3 ConvBNReLU + 1x1 classifier, bilinear (align_corners) to H x W      logits (B, 19, H, W)

``conv_out16`` and ``conv_out32`` are the training-time auxiliary heads: they are built (the file holds
them) but inference reads the main head only, as the repository's ``test.py`` does (input 512 x 512,
argmax of ``net(img)[0]``).

:class:`BiSeNetParserNet` is the network as a face parser of this project: photos in [-1, 1] in, and the
classes of a label set out (log-probabilities, each target class gathering the face-parsing.PyTorch
classes of its name, :func:`class_remap`; for CelebAMask-HQ's 19 classes a permutation). Weights come
only from a published file (:meth:`BiSeNetParserNet.from_file`), read without unpickling code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weights import load_state_dict_file
from .features.base import load_published_state_dict

__all__ = ["FACE_PARSING_CLASSES", "WEIGHT_FILE", "NETWORK", "class_remap", "BiSeNet", "BiSeNetParserConfig",
           "BiSeNetParserNet", "load_bisenet"]

# face-parsing.PyTorch's classes, in its label order (its prepropess_data.py numbers CelebAMask-HQ's part
# masks in this order, from 1; 0 is background).
FACE_PARSING_CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
                        "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
WEIGHT_FILE = "79999_iter.pth"  # the published checkpoint's name
NETWORK = f"face-parsing.PyTorch BiSeNet ({WEIGHT_FILE})"  # what the file should hold, for error messages
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def class_remap(classes: Sequence[str]) -> list[int]:
    """For each face-parsing.PyTorch class (in :data:`FACE_PARSING_CLASSES`' order), the index of the class
    of the same name in ``classes``; background (0) where ``classes`` has none (e.g. LaPa has no neck)."""
    return [classes.index(name) if name in classes else 0 for name in FACE_PARSING_CLASSES]


class ConvBNReLU(nn.Module):
    """Conv (no bias) -> batch norm -> ReLU; face-parsing.PyTorch's building block (``conv``, ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet's basic block (two 3x3 convs), with a 1x1 projection shortcut where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_channels, out_channels, stride), BasicBlock(out_channels, out_channels))


class Resnet18(nn.Module):
    """ResNet-18 without its classifier, returning the stride-8, -16 and -32 maps (128, 256, 512 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _stage(64, 64, 1)
        self.layer2 = _stage(64, 128, 2)
        self.layer3 = _stage(128, 256, 2)
        self.layer4 = _stage(256, 512, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinementModule(nn.Module):
    """ConvBNReLU, then a channel attention from the globally pooled map (1x1 conv, batch norm, sigmoid)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))
        return feat * attention


class ContextPath(nn.Module):
    """The backbone and the context branch: stride-8 backbone map, and the context at strides 8 and 16."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(512, 128, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(feat32.mean((2, 3), keepdim=True))  # broadcast: the official nearest 1 -> H32
        up32 = self.conv_head32(F.interpolate(self.arm32(feat32) + context, size=feat16.shape[-2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[-2:], mode="nearest"))
        return feat8, up16, up32


class FeatureFusionModule(nn.Module):
    """Concatenate, 1x1 ConvBNReLU, then a squeeze-excitation attention added back: ``x * a + x``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, 1)
        self.conv1 = nn.Conv2d(out_channels, out_channels // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels // 4, out_channels, 1, bias=False)

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * attention + feat


class BiSeNetOutput(nn.Module):
    """A head: 3x3 ConvBNReLU and a 1x1 classifier (no bias)."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3)
        self.conv_out = nn.Conv2d(mid_channels, num_classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """face-parsing.PyTorch's BiSeNet: ImageNet-normalised RGB (B, 3, H, W) -> main-head logits
    (B, num_classes, H, W). The auxiliary heads ``conv_out16``/``conv_out32`` hold the file's weights and
    are run only by :meth:`heads`."""

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, num_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, num_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, num_classes)

    def _upsample(self, logits: Tensor, size: Sequence[int]) -> Tensor:
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)

    def forward(self, x: Tensor) -> Tensor:
        feat8, context8, _ = self.cp(x)
        return self._upsample(self.conv_out(self.ffm(feat8, context8)), x.shape[-2:])

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The three heads' logits at the input's size, as the official forward returns them."""
        feat8, context8, context16 = self.cp(x)
        outs = (self.conv_out(self.ffm(feat8, context8)), self.conv_out16(context8), self.conv_out32(context16))
        return tuple(self._upsample(o, x.shape[-2:]) for o in outs)  # type: ignore[return-value]


def load_bisenet(path: str | os.PathLike[str], state: Mapping[str, Tensor] | None = None) -> BiSeNet:
    """face-parsing.PyTorch's BiSeNet with the weights of ``path`` (``79999_iter.pth``, or a
    ``.safetensors`` copy), read with ``torch.load(weights_only=True)``: no code is unpickled.

    A ``module.`` prefix (a file saved from DataParallel) is dropped. Every key must match in name and
    shape (BatchNorm's ``num_batches_tracked`` may be absent); otherwise
    :class:`~facestyle.errors.WeightsError` names the file and the first bad key.
    """
    state = dict(load_state_dict_file(path) if state is None else state)
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    net = BiSeNet(len(FACE_PARSING_CLASSES))
    load_published_state_dict(net, state, source=str(path), network=NETWORK)
    return net.eval()


@dataclass(frozen=True)
class BiSeNetParserConfig:
    """What the face-parser wrapper needs to know: the label set it writes and the size it parses at."""

    label_set: str = "celebamask-hq"
    image_size: int = 512  # face-parsing.PyTorch's test.py parses at 512 x 512


class BiSeNetParserNet(nn.Module):
    """BiSeNet as a face parser: photos (B, 3, S, S) in [-1, 1] -> log-probabilities (B, R, S, S) of the
    ``classes`` given (a label set's, in its order).

    The photo is mapped to ImageNet statistics inside; each output class sums the probabilities of the
    face-parsing.PyTorch classes :func:`class_remap` sends to it, so argmax picks the same pixel classes as
    the official network, renamed.
    """

    def __init__(self, net: BiSeNet, classes: Sequence[str], label_set: str = "celebamask-hq",
                 image_size: int = 512) -> None:
        super().__init__()
        self.net = net
        self.config = BiSeNetParserConfig(label_set=label_set, image_size=image_size)
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("shift", 2 * mean - 1, persistent=False)  # [-1, 1] -> ImageNet: (x - shift) / scale
        self.register_buffer("scale", 2 * std, persistent=False)
        remap = F.one_hot(torch.tensor(class_remap(classes)), len(classes)).float()  # (19, R)
        self.register_buffer("remap", remap, persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], classes: Sequence[str], label_set: str = "celebamask-hq",
                  image_size: int = 512) -> BiSeNetParserNet:
        """Load ``79999_iter.pth`` (see :func:`load_bisenet`)."""
        return cls(load_bisenet(path), classes, label_set=label_set, image_size=image_size)

    def forward(self, x: Tensor) -> Tensor:
        probs = self.net((x - self.shift) / self.scale).softmax(1)
        out = torch.einsum("bchw,cr->brhw", probs, self.remap.to(probs.dtype))
        return out.clamp_min(torch.finfo(out.dtype).tiny).log()
