"""InceptionV3 in the FID variant, as pytorch-fid defines it, for the Frechet Inception Distance.

FID (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", NeurIPS 2017) compares the statistics of pool3 features, the 2048-d output of the final
average pooling of the TensorFlow Inception network ``inception-2015-12-05``. pytorch-fid ported that
network to PyTorch as ``pt_inception-2015-12-05-6726825d.pth``; to reproduce its numbers the network
must differ from torchvision's Inception3 the way pytorch-fid's does:

- the average-pooling branches of the A, C and first E blocks exclude the zero padding from the
  average (``count_include_pad=False``, TensorFlow's behaviour): :class:`FIDInceptionA`,
  :class:`FIDInceptionC`, :class:`FIDInceptionE` with ``pool="avg"``;
- the last E block (``Mixed_7c``) pools with a 3x3 *max* pool: :class:`FIDInceptionE` with
  ``pool="max"``;
- the classifier has 1008 outputs (``fc``, unused for FID: its keys are accepted and ignored).

Module names are torchvision's (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``,
...), so the published file loads key for key. Input: images in [0, 1], resized to 299x299 (bilinear,
``align_corners=False``, no antialiasing) and scaled to [-1, 1], exactly as pytorch-fid's ``InceptionV3``
with ``resize_input=True, normalize_input=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...weights import find_weight, load_state_dict_file
from .base import load_published_state_dict

WEIGHT_FILE = "pt_inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 0.001, TensorFlow's), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: Tensor) -> Tensor:
    """3x3 stride-1 average pool that, like TensorFlow's, does not count the zero padding."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """Inception block A (35x35 grid): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 (padding not counted)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (``Mixed_6a``): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), branch3x3dbl, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    """Inception block C (17x17 grid, factorised 7x7): 1x1 | 1x7-7x1 | 7x1-1x7-7x1-1x7 | avgpool-1x1."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        y = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            y = conv(y)
        return torch.cat([self.branch1x1(x), branch7x7, y, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (``Mixed_7a``): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """Inception block E (8x8 grid, expanded): 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

    ``pool="avg"`` is pytorch-fid's ``FIDInceptionE_1`` (``Mixed_7b``: average pool not counting the
    padding); ``pool="max"`` its ``FIDInceptionE_2`` (``Mixed_7c``: a 3x3 stride-1 max pool, as the
    TensorFlow graph the weights come from has it).
    """

    def __init__(self, in_channels: int, pool: str = "avg") -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3)], 1)
        pooled = _avg_pool_tf(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """Frozen FID InceptionV3: (B, 3, H, W) images in [0, 1] -> (B, 2048) pool3 features.

    Build it with :meth:`load_weights` (or :meth:`from_file`); the plain constructor gives random
    weights (tests only). ``weights_id`` identifies the loaded file (path, size, modification time) so
    that feature caches are keyed by the weights they were computed with; it is ``None`` for random
    weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.weights_id: str | None = None
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Always stays in eval mode: a fixed feature extractor."""
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) images in [0, 1] -> (B, 2048) pool3 features (pytorch-fid's block 3 output)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"FIDInceptionV3 expects (B, 3, H, W) images, got shape {tuple(images.shape)}")
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        # Block 0: 299 -> 73
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        # Block 1: 73 -> 35
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        # Block 2: 35 -> 17
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        # Block 3: 17 -> 8 -> pool3
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)

    def load_pytorch_fid_state_dict(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Load pytorch-fid's state dict (torchvision Inception3 names, 1008-way ``fc`` ignored).

        A missing, unexpected or wrongly shaped key raises :class:`~facestyle.errors.WeightsError`.
        """
        load_published_state_dict(self, state, source=source, network="pytorch-fid InceptionV3",
                                  ignore_prefixes=("fc.",))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> FIDInceptionV3:
        """Load ``pt_inception-2015-12-05-6726825d.pth`` (or a copy: ``.pth`` or ``.safetensors``)."""
        path = Path(path)
        model = cls()
        model.load_pytorch_fid_state_dict(load_state_dict_file(path), source=str(path))
        stat = path.stat()
        model.weights_id = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        return model

    @classmethod
    def load_weights(cls, weights_dir: str | os.PathLike[str] | None = None) -> FIDInceptionV3:
        """Load ``pt_inception-2015-12-05-6726825d.pth`` from the weights folder (``--weights-dir`` /
        ``FACESTYLE_WEIGHTS`` / torch's hub cache, where pytorch-fid itself puts it); a missing file
        raises :class:`~facestyle.errors.WeightsError` saying where to get it."""
        return cls.from_file(find_weight(WEIGHT_FILE, weights_dir))
