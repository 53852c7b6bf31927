"""Harmonization pairs with a ground truth: a target, a reference whose regions disagree with it, and what
moving those regions harmoniously must give.

- **synthetic** (the renderer's faces, :mod:`facestyle.data.synthetic`): target face A under its light, reference
  face B under another light (:func:`make_pair`); the ground truth of moving region set R from B onto A is A
  re-rendered with B's appearance in R under A's light (:func:`ground_truth`). Outside R it equals A.
- **relit** (any labelled photo, :func:`relit_pairs`): the reference is the target photo after a seeded
  photometric change (:mod:`facestyle.data.relight`), on the same label map; the ground truth is the
  unchanged target. This is how iHarmony4 builds its composites, applied to face regions.

Each pair also carries its pixel *composite*: the reference's appearance pasted into R on the target's label
map (synthetic: A drawn with B's appearance under B's light in R; relit: the changed photo in R), the input
of post-hoc harmonizers such as DoveNet, and the "do nothing" row of harmonization benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..labels import CELEBAMASK_HQ, LabelSet
from .relight import apply_changes, change_for
from .synthetic import FaceParams, Illumination, render, sample_face, sample_illumination

__all__ = ["BENCH_FIRST_INDEX", "TRAIN_FIRST_INDEX", "DEFAULT_MIN_LIGHT_DIFFERENCE", "REGION_CHOICES", "SyntheticPair",
           "CompositeBatch", "light_field", "light_difference", "make_pair", "ground_truth", "render_pair",
           "classes_on_map", "draw_regions", "synthetic_pairs", "relit_pairs"]

BENCH_FIRST_INDEX = 1_000_000  # bench-harmony's faces: beyond any synthetic:N training set under a million
TRAIN_FIRST_INDEX = 2_000_000  # harmony training's faces: apart from the benchmark's and the training set's
DEFAULT_MIN_LIGHT_DIFFERENCE = 0.15
MAX_LIGHT_DRAWS = 1000
#: named regions a composite moves, with their weights: skin and hair most often
REGION_CHOICES = (("skin", 0.35), ("hair", 0.3), ("lips", 0.1), ("eyes", 0.1), ("brows", 0.1), ("neck", 0.05))
SECOND_REGION = 0.3  # probability that a second region moves too


def light_field(light: Illumination, grid: int = 16) -> np.ndarray:
    """(3, grid, grid) multiplicative light of :func:`~facestyle.data.synthetic.render` over the image."""
    c = (np.arange(grid) + 0.5) / grid * 2 - 1
    x, y = np.meshgrid(c, c)
    ramp = np.clip(1 + light.gradient_strength * (x * math.cos(light.gradient_angle)
                                                   + y * math.sin(light.gradient_angle)), 1e-3, None)
    return light.intensity * np.asarray(light.gains)[:, None, None] * ramp[None]


def light_difference(a: Illumination, b: Illumination) -> float:
    """Mean over the image and the colour channels of ``|log L_a - log L_b|``: 0.1 is about a 10% change of
    brightness or colour. Two independent synthetic lights (:func:`sample_illumination`) differ by 0.28 on
    average, and by less than 0.15 (the default least difference) one time in six."""
    return float(np.abs(np.log(light_field(a)) - np.log(light_field(b))).mean())


@dataclass(frozen=True)
class SyntheticPair:
    """Pair ``index``: the target and reference faces and the reference's light."""

    index: int
    target: FaceParams
    reference: FaceParams
    reference_light: Illumination
    light_difference: float

    @property
    def target_light(self) -> Illumination:
        return self.target.illumination


def make_pair(seed: int, index: int, min_light_difference: float = DEFAULT_MIN_LIGHT_DIFFERENCE,
              first_index: int = BENCH_FIRST_INDEX) -> SyntheticPair:
    """Pair ``index`` of stream ``seed``: faces ``first_index + 2 index`` (target) and ``+ 1`` (reference).
    The reference keeps its own light unless it is closer than ``min_light_difference`` to the target's;
    then lights are drawn from the reference's own seeded stream until one is far enough (the farthest of
    :data:`MAX_LIGHT_DRAWS` otherwise)."""
    target = sample_face(seed, first_index + 2 * index)
    reference = sample_face(seed, first_index + 2 * index + 1)
    light = reference.illumination
    diff = light_difference(target.illumination, light)
    if diff < min_light_difference:
        rng = np.random.default_rng(np.random.SeedSequence([seed, first_index + 2 * index + 1, 1]))
        best = (diff, light)
        for _ in range(MAX_LIGHT_DRAWS):
            candidate = sample_illumination(rng)
            d = light_difference(target.illumination, candidate)
            if d > best[0]:
                best = (d, candidate)
            if d >= min_light_difference:
                break
        diff, light = best
    return SyntheticPair(index, target, reference, light, diff)


def ground_truth(pair: SyntheticPair, classes: Sequence[int], resolution: int,
                 illumination: Illumination | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image (3, H, W) in [-1, 1], labels) of the target with the reference's appearance in ``classes``,
    under ``illumination`` (default: the target's own light, the benchmark's ground truth)."""
    light = pair.target_light if illumination is None else illumination
    return render(pair.target, resolution, albedo_from=pair.reference, regions=list(classes), illumination=light)


def render_pair(pair: SyntheticPair, resolution: int) -> dict[str, np.ndarray]:
    """The target under its light and the reference under the pair's reference light."""
    target, target_labels = render(pair.target, resolution)
    reference, reference_labels = render(pair.reference, resolution, illumination=pair.reference_light)
    return {"target": target, "target_labels": target_labels, "reference": reference,
            "reference_labels": reference_labels}


# ---------------------------------------------------------------------------------------------------------
# Batches for training


@dataclass
class CompositeBatch:
    """A batch of harmonization pairs, every image (B, 3, H, W) in [-1, 1], every label map (B, H, W)."""

    target: Tensor
    target_labels: Tensor
    reference: Tensor  # where the moved classes' styles come from
    reference_labels: Tensor
    classes: Tensor  # (B, R) bool: the moved classes
    truth: Tensor  # the ground truth of the harmonized transfer, on the target's label map
    composite: Tensor  # the reference's appearance pasted into the moved classes (no harmonization)

    @property
    def mask(self) -> Tensor:
        """(B, 1, H, W) float: the moved classes on the target's label map."""
        return classes_on_map(self.classes, self.target_labels).to(self.target.dtype)

    def to(self, device: torch.device | str) -> CompositeBatch:
        return CompositeBatch(**{k: v.to(device) for k, v in vars(self).items()})


def classes_on_map(classes: Tensor, labels: Tensor) -> Tensor:
    """(B, 1, H, W) bool: where the label maps (B, H, W) hold one of the classes ((B, R) bool)."""
    return torch.gather(classes, 1, labels.flatten(1).long()).reshape_as(labels)[:, None]


def draw_regions(rng: np.random.Generator, label_set: LabelSet, present: np.ndarray) -> list[str]:
    """One named region (drawn by :data:`REGION_CHOICES`' weights among those with a class in ``present``,
    (R,) bool), and with probability :data:`SECOND_REGION` a second one."""
    names = [n for n, _ in REGION_CHOICES if present[list(label_set.region_classes(n))].any()]
    if not names:
        return ["skin"]
    weights = np.array([w for n, w in REGION_CHOICES if n in names])
    count = 2 if len(names) > 1 and rng.random() < SECOND_REGION else 1
    return list(rng.choice(names, size=count, replace=False, p=weights / weights.sum()))


def synthetic_pairs(seed: int, indices: Sequence[int], resolution: int,
                    min_light_difference: float = DEFAULT_MIN_LIGHT_DIFFERENCE,
                    first_index: int = TRAIN_FIRST_INDEX) -> CompositeBatch:
    """Synthetic pairs ``indices`` of stream ``seed`` (:func:`make_pair`), each moving regions drawn from
    the pair's own seeded stream (:func:`draw_regions`)."""
    items = []
    for i in indices:
        pair = make_pair(seed, i, min_light_difference, first_index)
        rendered = render_pair(pair, resolution)
        rng = np.random.default_rng(np.random.SeedSequence([seed, first_index + 2 * i, 2]))
        present = np.bincount(rendered["target_labels"].ravel(), minlength=CELEBAMASK_HQ.num_classes) > 0
        classes = CELEBAMASK_HQ.regions_mask(draw_regions(rng, CELEBAMASK_HQ, present))
        moved = np.flatnonzero(classes).tolist()
        truth, _ = ground_truth(pair, moved, resolution)
        pasted, _ = ground_truth(pair, moved, resolution, illumination=pair.reference_light)
        inside = classes[rendered["target_labels"]][None]
        items.append((rendered["target"], rendered["target_labels"], rendered["reference"],
                      rendered["reference_labels"], classes, truth, np.where(inside, pasted, rendered["target"])))
    tensors = [torch.from_numpy(np.stack(column)) for column in zip(*items)]
    return CompositeBatch(*tensors)


def relit_pairs(images: Tensor, labels: Tensor, label_set: LabelSet, seed: int, indices: Sequence[int],
                classes: Tensor | None = None) -> CompositeBatch:
    """Relit pairs of photos (B, 3, H, W) with their label maps (B, H, W): item i's reference is its photo
    after the photometric change ``change_for(seed, indices[i])``; the ground truth is the photo itself. The
    moved classes are ``classes`` ((R,) or (B, R) bool) when given, else regions drawn from item i's own
    seeded stream."""
    if len(indices) != images.shape[0]:
        raise ValueError(f"{len(indices)} indices for {images.shape[0]} photos")
    changed = apply_changes(images, [change_for(seed, i) for i in indices])
    if classes is None:
        present = torch.nn.functional.one_hot(labels.flatten(1).long().cpu(), label_set.num_classes).amax(1).numpy() > 0
        classes = torch.from_numpy(np.stack([
            label_set.regions_mask(draw_regions(np.random.default_rng(np.random.SeedSequence([seed, i, 3])),
                                                label_set, row)) for row, i in zip(present, indices)]))
    classes = classes.to(labels.device).expand(images.shape[0], -1)
    inside = classes_on_map(classes, labels)
    return CompositeBatch(images, labels, changed, labels, classes, images, torch.where(inside, changed, images))
