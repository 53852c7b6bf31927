"""Joint transforms of (image, labels) pairs: image (3, H, W) float in [-1, 1], labels (H, W) int64.

Random transforms draw from the ``torch.Generator`` they are given, else from torch's global RNG, so a
seeded run (DataLoader workers included) is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..labels import LabelSet

Pair = tuple[torch.Tensor, torch.Tensor]
PairTransform = Callable[[torch.Tensor, torch.Tensor], Pair]


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return int(h), int(w)


def resize_image(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bicubic resize with antialiasing of (..., C, H, W) to ``size``, clamped to [-1, 1]."""
    h, w = _size2(size)
    if image.shape[-2:] == (h, w):
        return image
    lead = image.shape[:-3]
    x = image.reshape(-1, *image.shape[-3:])
    dtype = x.dtype
    x = F.interpolate(x.float(), size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return x.clamp(-1, 1).to(dtype).reshape(*lead, x.shape[1], h, w)


def resize_labels_centered(labels: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of (..., H, W) class indices, sampling at pixel centres (as PIL does):
    output pixel i reads input pixel floor((i + 0.5) * H / h).

    Use it to fit a label map to its photo or to the model's input size: the map stays aligned with an
    image resized the same way. Inside the networks, :func:`facestyle.nn.pooling.resize_labels_floor`
    (SEAN's own sampling) is used instead.
    """
    h, w = _size2(size)
    H, W = labels.shape[-2:]
    if (h, w) == (H, W):
        return labels
    ys = ((torch.arange(h, dtype=torch.float64) + 0.5) * (H / h)).long().clamp_(max=H - 1)
    xs = ((torch.arange(w, dtype=torch.float64) + 0.5) * (W / w)).long().clamp_(max=W - 1)
    return labels.index_select(-2, ys.to(labels.device)).index_select(-1, xs.to(labels.device))


class Compose:
    """Apply pair transforms in order."""

    def __init__(self, transforms: Sequence[PairTransform]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, labels: torch.Tensor) -> Pair:
        for t in self.transforms:
            image, labels = t(image, labels)
        return image, labels

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class Resize:
    """Resize to ``size`` (an int is a square): bicubic + antialias for the image, nearest for labels."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _size2(size)

    def __call__(self, image: torch.Tensor, labels: torch.Tensor) -> Pair:
        return resize_image(image, self.size), resize_labels_centered(labels, self.size)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class RandomCrop:
    """Crop the same random ``size`` window from image and labels."""

    def __init__(self, size: int | Sequence[int], generator: torch.Generator | None = None):
        self.size = _size2(size)
        self.generator = generator

    def __call__(self, image: torch.Tensor, labels: torch.Tensor) -> Pair:
        h, w = self.size
        H, W = image.shape[-2:]
        if h > H or w > W:
            raise ValueError(f"cannot crop {h}x{w} from an image of {H}x{W}")
        top = int(torch.randint(H - h + 1, (1,), generator=self.generator))
        left = int(torch.randint(W - w + 1, (1,), generator=self.generator))
        return (image[..., top:top + h, left:left + w], labels[..., top:top + h, left:left + w])

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class RandomHorizontalFlip:
    """Mirror image and labels with probability ``p``, swapping left/right classes (l_eye <-> r_eye...)."""

    def __init__(self, label_set: LabelSet, p: float = 0.5, generator: torch.Generator | None = None):
        self.label_set = label_set
        self.p = p
        self.generator = generator
        self.permutation = torch.from_numpy(label_set.flip_permutation)

    def __call__(self, image: torch.Tensor, labels: torch.Tensor) -> Pair:
        if float(torch.rand((), generator=self.generator)) >= self.p:
            return image, labels
        return hflip(image, labels, self.permutation)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip({self.label_set.name}, p={self.p})"


def hflip(image: torch.Tensor, labels: torch.Tensor, permutation: torch.Tensor) -> Pair:
    """Mirror a pair; ``permutation`` (a label set's ``flip_permutation``) swaps left/right classes."""
    return image.flip(-1), permutation.to(labels.device)[labels.flip(-1)]


def train_transform(image_size: int, load_size: int | None, label_set: LabelSet, flip: bool = True) -> Compose:
    """Resize to ``load_size``, random-crop ``image_size``, random horizontal flip (SEAN's training recipe)."""
    load_size = image_size if load_size is None else load_size
    if load_size < image_size:
        raise ValueError(f"load_size {load_size} is smaller than image_size {image_size}")
    steps: list[PairTransform] = [Resize(load_size)]
    if load_size > image_size:
        steps.append(RandomCrop(image_size))
    if flip:
        steps.append(RandomHorizontalFlip(label_set))
    return Compose(steps)


def eval_transform(image_size: int) -> Compose:
    """Resize to ``image_size``."""
    return Compose([Resize(image_size)])
