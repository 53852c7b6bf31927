"""Cross-dataset transfer between label sets (paper Table 3).

A checkpoint is trained on one label set. Label maps of another set are mapped into the checkpoint's
through the classes both sets share (:data:`facestyle.labels.SHARED_CLASSES`: skin, nose, eyes, brows,
lips, mouth, hair and background): for *encoding*, pixels of classes without a counterpart
(CelebAMask-HQ's glasses, ears, hat, earrings, necklace, neck and cloth have none in LaPa) are dropped
from region pooling, so they pollute no other class's style code (in particular not the background's);
for *decoding* a target's label map, such pixels become background, since the generator needs a class
at every pixel. LaPa -> CelebAMask-HQ is total (every LaPa class has a counterpart).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..labels import LabelSet, class_mapping
from ..nn.pooling import IGNORE

VOID = IGNORE  # a class without a counterpart in the checkpoint's label set: left out of pooling


def label_lookup(src: LabelSet, dst: LabelSet) -> np.ndarray:
    """(src classes,) int64 table: ``src`` class -> ``dst`` class, :data:`VOID` where ``dst`` has no
    counterpart. Between different sets, only :data:`~facestyle.labels.SHARED_CLASSES` are mapped."""
    if src.name == dst.name:
        return np.arange(src.num_classes, dtype=np.int64)
    table = np.full(src.num_classes, VOID, dtype=np.int64)
    for s, d in class_mapping(src, dst).items():
        table[s] = d
    return table


def unmapped_classes(src: LabelSet, dst: LabelSet) -> list[str]:
    """Names of ``src``'s classes without a counterpart in ``dst``."""
    table = label_lookup(src, dst)
    return [src.classes[i] for i in np.flatnonzero(table == VOID)]


def map_labels(labels: Tensor, lookup: np.ndarray, void_to_background: bool) -> Tensor:
    """Map (..., H, W) class indices through ``lookup``; void pixels become background (0) when asked
    (for the generator's label map) or stay :data:`VOID` (for pooling: dropped)."""
    table = torch.as_tensor(lookup, device=labels.device)
    mapped = table[labels.long()]
    return mapped.clamp_min(0) if void_to_background else mapped


def region_label(label_set: LabelSet, region: str) -> str:
    """A region's name for a report, with its classes when they differ from it: ``skin (skin + nose)``."""
    names = [label_set.classes[c] for c in label_set.region_classes(region)]
    return region if names == [region] else f"{region} ({' + '.join(names)})"
