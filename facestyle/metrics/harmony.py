"""Harmony score (HS): the probability of "real" of the harmony classifier (:mod:`facestyle.nn.harmony`)
on a result with the transferred region's mask (paper 4.1, Table 3, Fig. 7), and the classifier's loss and
accuracy on real photos and composites.

Images are in [0, 1] like every metric of :mod:`facestyle.metrics`; masks are (B, H, W) or (B, 1, H, W),
bool or float in [0, 1]. Both are resized (bilinear, antialiased) to the classifier's square input size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..nn.harmony import HarmonyClassifier
from .pixel import check_unit_range


@torch.no_grad()
def harmony_score(classifier: HarmonyClassifier, images: Tensor, masks: Tensor, batch_size: int = 64) -> Tensor:
    """The harmony score: per-image probability of "real", in [0, 1].

    Args:
        classifier: a trained :class:`~facestyle.nn.harmony.HarmonyClassifier` (``facestyle train-harmony``).
        images: (B, 3, H, W) results in [0, 1].
        masks: (B, H, W) or (B, 1, H, W) masks of the transferred region (bool or [0, 1]).

    Returns:
        (B,) float tensor on the images' device.
    """
    check_unit_range(images, "images")
    was_training = classifier.training
    classifier.eval()
    try:
        out = [torch.sigmoid(classifier(images[i:i + batch_size], masks[i:i + batch_size]).float())
               for i in range(0, images.shape[0], batch_size)]
    finally:
        classifier.train(was_training)
    return torch.cat(out).to(images.device)


@dataclass(frozen=True)
class HarmonyEvaluation:
    """Mean binary cross-entropy and accuracy (threshold 1/2) over ``count`` samples."""

    loss: float
    accuracy: float
    count: int


@torch.no_grad()
def evaluate_harmony(classifier: HarmonyClassifier, dataset: Dataset, batch_size: int = 32,
                     max_samples: int | None = None, num_workers: int = 0) -> HarmonyEvaluation:
    """Loss and accuracy of ``classifier`` on a :class:`~facestyle.data.harmony.HarmonyDataset` (no augmentation).

    ``max_samples`` evaluates an evenly spaced subset of real/composite pairs (both items of each).
    """
    n = len(dataset)
    if max_samples is not None and n > max_samples:
        pairs = n // 2
        keep = np.linspace(0, pairs - 1, max(1, max_samples // 2)).round().astype(int)
        dataset = Subset(dataset, [int(i) for p in np.unique(keep) for i in (2 * p, 2 * p + 1)])
    was_training = classifier.training
    classifier.eval()
    device = classifier.head.weight.device
    loss_sum, correct, count = 0.0, 0, 0
    try:
        for image, mask, target in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
            target = target.to(device)
            logits = classifier(image.to(device), mask.to(device))
            loss_sum += float(F.binary_cross_entropy_with_logits(logits, target, reduction="sum"))
            correct += int(((logits > 0).float() == target).sum())
            count += target.numel()
    finally:
        classifier.train(was_training)
    if count == 0:
        return HarmonyEvaluation(math.nan, math.nan, 0)
    return HarmonyEvaluation(loss_sum / count, correct / count, count)

