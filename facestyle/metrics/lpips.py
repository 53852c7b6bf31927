"""LPIPS v0.1 (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
CVPR 2018), with the project's AlexNet / VGG16 backbones and an optional spatial mask.

For images x, y the metric is

    d(x, y) = sum_l  mean_{h,w}  sum_c  w_{l,c} (f^l_{hwc}(x) - f^l_{hwc}(y))^2

where f^l are the backbone's five ReLU feature maps, each unit-normalised along channels
(``f / (||f||_2 + 1e-10)``), and w_l >= 0 are the learned "linear heads" of LPIPS v0.1. Images enter the
backbone through LPIPS's scaling layer: [-1, 1] values, shifted by (-0.030, -0.088, -0.188) and divided by
(0.458, 0.448, 0.450) per channel.

Weights: the backbone from the weights folder (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``, see
:mod:`facestyle.weights`), the linear heads from ``alex.pth`` / ``vgg.pth``, which ship inside the
``lpips`` and ``torchmetrics`` packages (found there when not in the weights folder) and are read with
``torch.load(weights_only=True)``. A missing file raises :class:`~facestyle.errors.WeightsError`; there is
no fallback to random weights.

**Masked LPIPS** (for mCSD / mOCD, :mod:`facestyle.metrics.diversity`): with a mask m over the image, the
spatial mean of each layer becomes a mask-weighted mean, the mask being resized to that layer's grid by
area averaging (adaptive average pooling):

    d_m(x, y) = sum_l  sum_{h,w} m^l_{hw} D^l_{hw} / sum_{h,w} m^l_{hw},   D^l_{hw} = sum_c w_{l,c} (...)^2

An all-ones mask gives exactly d(x, y).

Unlike the reference implementation, inputs are images in **[0, 1]** like every metric of
:mod:`facestyle.metrics` (convert the project's [-1, 1] tensors with
:func:`~facestyle.metrics.pixel.to_unit_range`); they are mapped to [-1, 1] inside.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError, WeightsError
from ..nn.features import alexnet, vgg16
from ..weights import find_weight, load_state_dict_file
from .pixel import check_unit_range

# net -> (backbone class, backbone weight file, linear-head file)
NETWORKS: dict[str, tuple[type[nn.Module], str, str]] = {
    "alex": (alexnet.AlexNetFeatures, alexnet.WEIGHT_FILE, "alex.pth"),
    "vgg": (vgg16.VGG16Features, vgg16.WEIGHT_FILE, "vgg.pth"),
}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


def _check_net(net: str) -> tuple[type[nn.Module], str, str]:
    try:
        return NETWORKS[net]
    except KeyError:
        raise InputError(f"unknown LPIPS network {net!r}; choose one of: {', '.join(NETWORKS)}") from None


def normalize_channels(features: Tensor) -> Tensor:
    """Unit-normalise a (B, C, H, W) map along channels, as LPIPS does: ``f / (||f||_2 + 1e-10)``."""
    return features / (features.pow(2).sum(1, keepdim=True).sqrt() + EPS)


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, 1, H, W) float mask -> (B, 1, h, w) by area averaging (each cell: the mask's mean over it)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.adaptive_avg_pool2d(mask, size)


def as_mask(mask: Tensor, batch: int) -> Tensor:
    """A mask given as (H, W), (B, H, W) or (B, 1, H, W), bool or float in [0, 1] -> (B, 1, H, W) float."""
    if not torch.is_tensor(mask):
        raise InputError(f"mask: expected a tensor, got {type(mask).__name__}")
    m = mask
    if m.dim() == 2:
        m = m[None, None].expand(batch, 1, *m.shape)
    elif m.dim() == 3:
        m = m[:, None]
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] not in (1, batch):
        raise InputError(f"mask: expected (H, W), (B, H, W) or (B, 1, H, W) for a batch of {batch}, "
                         f"got shape {tuple(mask.shape)}")
    return m.expand(batch, -1, -1, -1).float()


class LPIPS(nn.Module):
    """LPIPS v0.1 with an AlexNet (``net="alex"``, the default of the lpips package) or VGG16 backbone.

    ``lpips(a, b)`` gives one distance per image pair, ``lpips(a, b, mask)`` the masked distance (see the
    module docstring). For many comparisons among the same images, compute :meth:`features` once and call
    :meth:`distance` per pair. Build it with :meth:`load_weights` or :meth:`from_files`; the plain
    constructor gives random weights (tests only). Frozen and always in eval mode; gradients flow to the
    inputs, so it can serve as a loss.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        backbone_cls, _, _ = _check_net(net)
        self.net = net
        self.backbone = backbone_cls()
        self.heads = nn.ParameterList([nn.Parameter(torch.zeros(c)) for c in self.backbone.channels])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Always stays in eval mode (the heads' dropout is inactive at evaluation)."""
        return super().train(False)

    # ------------------------------------------------------------------ loading

    def load_heads(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Load LPIPS v0.1 linear heads: ``lin{k}.model.1.weight`` of shape (1, C_k, 1, 1), k = 0..4."""
        expected = {f"lin{k}.model.1.weight": c for k, c in enumerate(self.backbone.channels)}
        for key, channels in expected.items():
            if key not in state:
                raise WeightsError(f"{source}: missing key {key!r}; is it an LPIPS v0.1 {self.net}.pth file?")
            if tuple(state[key].shape) != (1, channels, 1, 1):
                raise WeightsError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected "
                                   f"(1, {channels}, 1, 1); is it the LPIPS {self.net}.pth file?")
        unexpected = [k for k in state if k not in expected]
        if unexpected:
            raise WeightsError(f"{source}: unexpected key {unexpected[0]!r}; is it an LPIPS v0.1 file?")
        with torch.no_grad():
            for head, key in zip(self.heads, expected):
                head.copy_(state[key].reshape(-1))

    @classmethod
    def from_files(cls, backbone: str | os.PathLike[str], heads: str | os.PathLike[str],
                   net: str = "alex") -> LPIPS:
        """Load a torchvision backbone file and an LPIPS linear-head file."""
        model = cls(net)
        model.backbone.load_torchvision_state_dict(load_state_dict_file(backbone), source=str(backbone))
        model.load_heads(load_state_dict_file(heads), source=str(heads))
        return model

    @classmethod
    def load_weights(cls, net: str = "alex", weights_dir: str | os.PathLike[str] | None = None) -> LPIPS:
        """The backbone's torchvision file from the weights folder and the heads (``alex.pth`` /
        ``vgg.pth``) from there or from the installed lpips / torchmetrics package. A missing file raises
        :class:`~facestyle.errors.WeightsError` naming it and where it is published."""
        _, backbone_file, heads_file = _check_net(net)
        backbone = find_weight(backbone_file, weights_dir)
        heads = find_weight(heads_file, weights_dir)
        return cls.from_files(backbone, heads, net)

    # ------------------------------------------------------------------ computing

    def features(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) images in [0, 1] -> the five channel-normalised feature maps."""
        check_unit_range(images, "images")
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"LPIPS expects (B, 3, H, W) images, got shape {tuple(images.shape)}")
        x = images.to(device=self.shift.device, dtype=self.heads[0].dtype)
        x = ((2 * x - 1) - self.shift) / self.scale
        return [normalize_channels(f) for f in self.backbone(x)]

    def spatial_maps(self, features_a: list[Tensor], features_b: list[Tensor]) -> list[Tensor]:
        """Per-layer distance maps ``D^l = sum_c w_{l,c} (f_a - f_b)^2``, each (B, 1, h_l, w_l)."""
        return [torch.einsum("bchw,c->bhw", (fa - fb).pow(2), w)[:, None]
                for fa, fb, w in zip(features_a, features_b, self.heads, strict=True)]

    def distance(self, features_a: list[Tensor], features_b: list[Tensor], mask: Tensor | None = None) -> Tensor:
        """LPIPS from precomputed :meth:`features` (broadcasting over the batch), masked when ``mask`` is
        given: (B,) distances; NaN where the mask is empty."""
        maps = self.spatial_maps(features_a, features_b)
        if mask is None:
            return sum(d.mean((1, 2, 3)) for d in maps)
        m = as_mask(mask, maps[0].shape[0]).to(maps[0])
        total = torch.zeros(maps[0].shape[0], dtype=maps[0].dtype, device=maps[0].device)
        for d in maps:
            ml = resize_mask(m, tuple(d.shape[-2:]))
            total = total + (d * ml).sum((1, 2, 3)) / ml.sum((1, 2, 3))
        return total

    def forward(self, images_a: Tensor, images_b: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B,) LPIPS distances between two batches of images in [0, 1] (optionally masked)."""
        if images_a.shape != images_b.shape:
            raise InputError(f"LPIPS compares images of one shape, got {tuple(images_a.shape)} and "
                             f"{tuple(images_b.shape)}")
        return self.distance(self.features(images_a), self.features(images_b), mask)

