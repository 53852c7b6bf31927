"""A DeepLab-v3-style face parser: residual backbone with atrous stages, ASPP and a light decoder.

The paper parses FFHQ with a DeepLab-v3 (Chen et al., 2017) trained on CelebAMask-HQ. This network is
the same design, sized by a config and trained from scratch (no ImageNet weights are assumed)::

    image (B, 3, S, S) in [-1, 1]
      -> stem: three 3x3 convs (the first with stride 2) + 3x3 max pool           stride 4
      -> stage 1: residual basic blocks, width w                                   stride 4  (low-level)
      -> stage 2: 2w, stride 2                                                     stride 8
      -> stage 3: 4w, stride 2 (output stride 16) or dilation 2 (output stride 8)
      -> stage 4: 8w, dilation 2 (16) or 4 (8)                                     stride 8 or 16
      -> ASPP: 1x1 conv, three 3x3 atrous convs (``aspp_rates``), image pooling; concat -> 1x1 conv
      -> decoder (as DeepLab-v3+): upsample to stride 4, concat the projected low-level map, two 3x3
         convs, a 1x1 classifier, bilinear upsampling to S                         logits (B, R, S, S)

Normalisation is group norm by default: it behaves the same in training and evaluation and at any batch
size (DeepLab's batch norm needs large batches; ``norm="batch"`` is available). Atrous rates are those
of the output-stride map, so choose them with the feature map's size in mind (the presets do: a 256
input at output stride 8 is a 32 x 32 map, hence rates 4, 8, 12).

Checkpoints are facestyle checkpoint directories of kind ``parser`` (``FaceParserNet.from_pretrained`` /
``save_pretrained``): ``config.json`` (this config, the label set included) + ``model.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import Pretrained
from ..config import MAX_DEPTH, MAX_IMAGE_SIZE, MAX_WIDTH, check_size
from ..errors import InputError

__all__ = ["ParserConfig", "PARSER_PRESETS", "FaceParserNet", "ASPP"]


@dataclass(frozen=True)
class ParserConfig:
    """Everything that rebuilds a parser network (written to its checkpoint's ``config.json``)."""

    label_set: str = "celebamask-hq"
    image_size: int = 256  # photos are parsed at this size (square)
    width: int = 64  # stage-1 channels; stages 2-4 have 2w, 4w, 8w
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)  # residual blocks per stage (ResNet-18's)
    output_stride: Literal[8, 16] = 8
    aspp_channels: int = 256
    aspp_rates: tuple[int, ...] = (4, 8, 12)  # dilations of the 3x3 ASPP branches, on the output-stride map
    low_level_channels: int = 48  # the projected stage-1 map the decoder concatenates
    decoder_channels: int = 256
    norm: Literal["group", "batch"] = "group"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        from ..labels import get_label_set

        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "aspp_rates", tuple(int(r) for r in self.aspp_rates))
        get_label_set(self.label_set)  # an unknown name is an InputError
        checks = [
            (self.image_size >= 32 and self.image_size % 16 == 0,
             f"image_size must be a multiple of 16 and at least 32, got {self.image_size}"),
            (self.width >= 4, f"width must be at least 4, got {self.width}"),
            (len(self.blocks) == 4 and all(b >= 1 for b in self.blocks),
             f"blocks must be four positive counts, got {self.blocks}"),
            (self.output_stride in (8, 16), f"output_stride must be 8 or 16, got {self.output_stride}"),
            (len(self.aspp_rates) >= 1 and all(r >= 1 for r in self.aspp_rates),
             f"aspp_rates must be positive dilations, got {self.aspp_rates}"),
            (min(self.aspp_channels, self.low_level_channels, self.decoder_channels) >= 4,
             "aspp_channels, low_level_channels and decoder_channels must be at least 4"),
            (self.norm in ("group", "batch"), f"norm must be group or batch, got {self.norm!r}"),
            (0.0 <= self.dropout < 1.0, f"dropout must lie in [0, 1), got {self.dropout}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"parser config: {message}")
        check_size("parser config: image_size", self.image_size, 32, MAX_IMAGE_SIZE)
        for name in ("width", "aspp_channels", "low_level_channels", "decoder_channels"):
            check_size(f"parser config: {name}", getattr(self, name), 4, MAX_WIDTH)
        for b in self.blocks:
            check_size("parser config: blocks", b, 1, MAX_DEPTH)
        for r in self.aspp_rates:
            check_size("parser config: aspp_rates", r, 1, MAX_DEPTH)

    @property
    def num_classes(self) -> int:
        from ..labels import get_label_set

        return get_label_set(self.label_set).num_classes


PARSER_PRESETS: dict[str, ParserConfig] = {
    # For a GPU: a ResNet-18-sized backbone at 256 x 256, output stride 8 (about 16 M parameters).
    "base": ParserConfig(),
    # Trains usefully on a CPU in minutes on a few hundred faces (about 0.5 M parameters).
    "small": ParserConfig(image_size=128, width=16, blocks=(1, 1, 2, 1), aspp_channels=64, aspp_rates=(2, 4, 6),
                          low_level_channels=16, decoder_channels=64),
    # Seconds-long tests.
    "tiny": ParserConfig(image_size=64, width=8, blocks=(1, 1, 1, 1), aspp_channels=32, aspp_rates=(1, 2, 3),
                         low_level_channels=16, decoder_channels=32, dropout=0.0),
}


# ------------------------------------------------------------------------------------------- layers


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    groups = min(32, max(1, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


def _conv_norm_relu(c_in: int, c_out: int, kernel: int, norm: str, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
                         _norm(norm, c_out), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet's basic block (two 3x3 convs and a shortcut), with an optional stride or dilation."""

    def __init__(self, c_in: int, c_out: int, norm: str, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.norm1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = _norm(norm, c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(norm, c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)), inplace=True)
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


def _stage(c_in: int, c_out: int, blocks: int, norm: str, stride: int, dilation: int) -> nn.Sequential:
    layers = [BasicBlock(c_in, c_out, norm, stride=stride, dilation=dilation)]
    layers += [BasicBlock(c_out, c_out, norm, dilation=dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 conv, 3x3 convs at several dilations and image-level pooling,
    concatenated and projected (DeepLab-v3, section 3.3)."""

    def __init__(self, c_in: int, c_out: int, rates: tuple[int, ...], norm: str, dropout: float) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_conv_norm_relu(c_in, c_out, 1, norm)] +
                                      [_conv_norm_relu(c_in, c_out, 3, norm, dilation=r) for r in rates])
        # Image pooling: no norm after the 1x1 conv (a group norm of a 1x1 map would be degenerate).
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(_conv_norm_relu((len(rates) + 2) * c_out, c_out, 1, norm), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class FaceParserNet(Pretrained, nn.Module):
    """Image (B, 3, S, S) in [-1, 1] -> class logits (B, R, S, S) (see the module docstring)."""

    kind = "parser"
    config_class = ParserConfig

    def __init__(self, config: ParserConfig) -> None:
        super().__init__()
        self.config = c = config
        w, norm = c.width, c.norm
        self.stem = nn.Sequential(
            _conv_norm_relu(3, w // 2, 3, norm, stride=2), _conv_norm_relu(w // 2, w // 2, 3, norm),
            _conv_norm_relu(w // 2, w, 3, norm), nn.MaxPool2d(3, stride=2, padding=1))
        os8 = c.output_stride == 8
        self.stage1 = _stage(w, w, c.blocks[0], norm, stride=1, dilation=1)
        self.stage2 = _stage(w, 2 * w, c.blocks[1], norm, stride=2, dilation=1)
        self.stage3 = _stage(2 * w, 4 * w, c.blocks[2], norm, stride=1 if os8 else 2, dilation=2 if os8 else 1)
        self.stage4 = _stage(4 * w, 8 * w, c.blocks[3], norm, stride=1, dilation=4 if os8 else 2)
        self.aspp = ASPP(8 * w, c.aspp_channels, c.aspp_rates, norm, c.dropout)
        self.low_level = _conv_norm_relu(w, c.low_level_channels, 1, norm)
        self.decoder = nn.Sequential(
            _conv_norm_relu(c.aspp_channels + c.low_level_channels, c.decoder_channels, 3, norm),
            _conv_norm_relu(c.decoder_channels, c.decoder_channels, 3, norm),
        )
        self.classifier = nn.Conv2d(c.decoder_channels, c.num_classes, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():  # zero-init the last norm of each residual branch (as torchvision's option)
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.norm2.weight)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, image: Tensor) -> Tensor:
        size = image.shape[-2:]
        low = self.stage1(self.stem(image))
        high = self.aspp(self.stage4(self.stage3(self.stage2(low))))
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = self.decoder(torch.cat([high, self.low_level(low)], dim=1))
        return F.interpolate(self.classifier(x), size=size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict(self, image: Tensor) -> Tensor:
        """Class indices (B, H, W) of images (B, 3, H, W) in [-1, 1]."""
        return self(image).argmax(dim=1)
