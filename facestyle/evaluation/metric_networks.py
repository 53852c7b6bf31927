"""The networks behind the metrics (LPIPS, FID's InceptionV3, the harmony classifier) and the FID feature
sets of a run. A metric whose weights are missing, or that was not asked for (HS without
``--harmony-classifier``), is skipped: its cells say so and the report gives the reason. Nothing is ever
computed with random weights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import WeightsError
from .report import Table


@dataclass
class MetricNetworks:
    """LPIPS, FID's InceptionV3 and the harmony classifier, each None with a reason in ``skipped``."""

    lpips: Any = None
    inception: Any = None
    harmony: Any = None
    skipped: dict[str, str] = field(default_factory=dict)  # "lpips" | "fid" | "hs" -> reason


def load_metric_networks(*, lpips: bool = False, fid: bool = False, hs: bool = False, lpips_net: str = "alex",
                         weights_dir: str | os.PathLike | None = None, harmony_classifier: str | None = None,
                         device: torch.device | str = "cpu") -> MetricNetworks:
    """Load the networks the asked-for metrics need. A missing weight file is a skip (with the
    :class:`~facestyle.errors.WeightsError`'s message), never random weights; a harmony classifier that
    was asked for but does not load is an error."""
    from ..metrics import LPIPS
    from ..nn.features.inception import FIDInceptionV3
    from ..nn.harmony import HarmonyClassifier

    nets = MetricNetworks()
    if lpips:
        try:
            nets.lpips = LPIPS.load_weights(lpips_net, weights_dir).to(device)
        except WeightsError as exc:
            nets.skipped["lpips"] = str(exc)
    if fid:
        try:
            nets.inception = FIDInceptionV3.load_weights(weights_dir).to(device)
        except WeightsError as exc:
            nets.skipped["fid"] = str(exc)
    if hs:
        if harmony_classifier is None:
            nets.skipped["hs"] = "no --harmony-classifier given (train one with facestyle train-harmony)"
        else:
            nets.harmony = HarmonyClassifier.from_pretrained(harmony_classifier, device=device)
    return nets


class FeatureSet:
    """InceptionV3 pool3 features of a set of images, accumulated batch by batch."""

    def __init__(self, inception: Any, batch_size: int = 50) -> None:
        self.inception = inception
        self.batch_size = batch_size
        self.parts: list[Tensor] = []

    def add(self, images01: Tensor) -> None:
        from ..metrics import inception_features

        if self.inception is not None:
            self.parts.append(inception_features(self.inception, images01, self.batch_size))

    @property
    def count(self) -> int:
        return sum(p.shape[0] for p in self.parts)

    def features(self) -> Tensor:
        return torch.cat(self.parts) if self.parts else torch.zeros(0, 2048)


class RealFeatures(FeatureSet):
    """Features of the real images of a dataset, from the FID feature cache when the same image files at
    the same size were seen before with the same InceptionV3 weights (see :class:`~facestyle.metrics.FeatureCache`)."""

    def __init__(self, inception: Any, dataset: Any, indices: Sequence[int], image_size: int,
                 use_cache: bool = True, batch_size: int = 50) -> None:
        from ..metrics import FeatureCache

        super().__init__(inception, batch_size)
        self.cache = self.key = self.cached = None
        self.size = len(indices)
        paths = getattr(dataset, "image_paths", None)
        if inception is None or not use_cache or paths is None or inception.weights_id is None:
            return
        self.cache = FeatureCache()
        self.weights_id = f"{inception.weights_id};resized to {image_size}x{image_size} (bicubic, antialias)"
        self.key = FeatureCache.key([paths[i] for i in indices], self.weights_id)
        self.cached = self.cache.load(self.key, self.size)

    @property
    def needed(self) -> bool:
        return self.inception is not None and self.cached is None

    def add(self, images01: Tensor) -> None:
        if self.needed:
            super().add(images01)

    def features(self) -> Tensor:
        if self.cached is not None:
            return self.cached
        features = super().features()
        if self.key is not None and features.shape[0] == self.size:
            self.cache.save(self.key, features, self.size, self.weights_id)
        return features


def fid_cell(table: Table, key: str, nets: MetricNetworks, fake: FeatureSet, real: FeatureSet) -> float | None:
    """FID of ``fake`` against ``real`` for column ``key`` of ``table``: counted there, or None and skipped
    with the reason."""
    from ..metrics import fid_from_features

    f, r = fake.features(), real.features()
    if nets.inception is None:
        table.skipped[key] = nets.skipped.get("fid", "not computed")
    elif f.shape[0] < 2 or r.shape[0] < 2:
        table.skipped[key] = f"FID needs at least 2 images per set (got {f.shape[0]} generated, {r.shape[0]} real)"
    else:
        table.counts[key] = fake.count
        return fid_from_features(f, r)
    return None


def fid_note(count: int) -> str:
    return (f"FID from {count} generated images; FID is biased upwards on small sets, so only values from the "
            "paper's 2,000 test images compare with its tables.")

