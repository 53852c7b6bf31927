"""Harmony against ground truth: ``facestyle bench-harmony`` on the synthetic faces.

No published comparison of regional style transfer can measure harmony against a ground truth: for
photos there is none. For the procedural faces of :mod:`facestyle.data.synthetic` there is, because a
pixel's colour depends only on its own class's appearance and the global light:

- a **target** face A, rendered under its own light;
- a **reference** face B, rendered under another light (B's own, redrawn from B's stream until it
  differs from A's by at least ``min_light_difference``, see :func:`light_difference`);
- the **ground truth** of transferring region r from B onto A: A re-rendered with B's appearance
  (albedo, accent, texture) in r's classes under A's light,
  ``render(A, albedo_from=B, regions=r, illumination=A.illumination)``. Outside r it equals A exactly.

A harmonious transfer takes B's *material* and shows it under A's *light*; a naive one carries B's light
along. For each region (``skin`` = skin + nose, ``hair``) the benchmark reports the error to the ground
truth inside the region (L1, PSNR, the error of the region's mean colour, and masked LPIPS when its
weights are there) and outside it (L1, PSNR, LPIPS), and the harmony score (HS) when a harmony classifier
is given, for:

==========================  ==============================================================================
MRSA                        the checkpoint, transfer with multi-region style attention (paper eq. 4-5)
MRSA bypassed               the same checkpoint with MRSA skipped at inference (``harmonize=False``)
w/o SA                      a separately trained ``attention = off`` checkpoint (the paper's "w/o SA"),
                            when ``--attention-off-checkpoint`` is given
cut-and-paste               a naive composite (:func:`cut_and_paste`): the reference's pixels pasted into
                            the target's region where both label maps have the class, the reference
                            class's mean colour on the target's pixels of the class that the reference
                            does not cover; the target elsewhere
no transfer                 the target as it is (what doing nothing scores)
ground-truth reconstruction the checkpoint's reconstruction of the ground truth itself: the best this
                            decoder can do, so the gap to it is the transfer's own error
DoveNet                     "DoveNet after the bypassed transfer": the post-hoc harmonizer (the paper's
                            "SEAN+DoveNet") on the bypassed transfer, the region as its mask, when the
                            checkpoint holds one (``CHECKPOINT/harmonizer``) or ``--harmonizer`` names
                            one (:mod:`.harmonizer`)
MRSA, compared checkpoint   a second checkpoint's transfer with MRSA (``--compare-checkpoint``, e.g. the
                            same preset trained without harmony supervision)
==========================  ==============================================================================

The last two rows come after the others when present; the others keep their labels and order.

Pairs: pair i is target face ``FIRST_INDEX + 2i`` and reference face ``FIRST_INDEX + 2i + 1`` of synthetic
stream ``seed``, with ``FIRST_INDEX`` = 1,000,000: beyond the faces any ``synthetic:N`` training set of
fewer than a million faces uses, so a model trained on synthetic faces has not seen them. A pair whose
target lacks the region, or whose reference lacks a class of the region that the target has, is left out
of that region's means (counted in the report). Values are means over pairs; PSNR is the mean of per-pair
PSNRs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.composites import (
    BENCH_FIRST_INDEX as FIRST_INDEX,
)
from ..data.composites import (
    DEFAULT_MIN_LIGHT_DIFFERENCE,
    ground_truth,
    make_pair,
    render_pair,
)
from ..data.transforms import resize_image, resize_labels_centered
from ..errors import CheckpointError, InputError
from ..labels import CELEBAMASK_HQ
from ..model import FaceStyleNet
from . import harmonizer as harmonizers
from .labels_map import region_label
from .metric_networks import MetricNetworks, load_metric_networks
from .report import Column, Report, Table, add_measured_rows, format_value, mean_of, run_info, write_report

#: (key, label) of the compared methods, in the tables' order.
METHODS = (
    ("mrsa", "MRSA"),
    ("bypass", "MRSA bypassed at inference"),
    ("wo_sa", "w/o SA (attention = off model)"),
    ("cut_paste", "cut-and-paste"),
    ("no_transfer", "no transfer (the target)"),
    ("oracle", "ground-truth reconstruction (floor)"),
    ("dovenet", "DoveNet after the bypassed transfer"),
    ("compare", "MRSA, compared checkpoint"),
)
METHOD_LABELS = dict(METHODS)


def compare_label(path: str | os.PathLike) -> str:
    """The compared checkpoint's row label: ``MRSA, compared checkpoint (NAME)`` with the folder's name."""
    from ..checkpoint import resolve

    return f"{METHOD_LABELS['compare']} ({resolve(path).resolve().name or path})"
COLUMNS = (
    Column("l1_in", "L1 in", "lower", 4),
    Column("psnr_in", "PSNR in", "higher", 2),
    Column("colour_in", "mean-colour error in", "lower", 4),
    Column("lpips_in", "LPIPS in", "lower", 4),
    Column("l1_out", "L1 out", "lower", 4),
    Column("psnr_out", "PSNR out", "higher", 2),
    Column("lpips_out", "LPIPS out", "lower", 4),
    Column("hs", "HS", "higher", 4),
)


# ---------------------------------------------------------------------------------------------------------
# Pairs and ground truth


def cut_and_paste(target: Tensor, target_labels: Tensor, reference: Tensor, reference_labels: Tensor,
                  classes: Sequence[int]) -> Tensor:
    """The naive composite, batched: images (B, 3, H, W), labels (B, H, W).

    For each class c of ``classes``: where both label maps have c, the reference's pixel; on the target's
    other pixels of c, the reference's mean colour of c; a class the reference lacks keeps the target.
    Elsewhere the target. (The faces' shapes differ, so no warping could be right; this is what pasting
    without a model gives.)
    """
    out = target.clone()
    for c in classes:
        t_c = target_labels == c  # (B, H, W)
        r_c = reference_labels == c
        area = r_c.sum((1, 2))  # (B,)
        mean = (reference * r_c[:, None]).sum((2, 3)) / area.clamp_min(1)[:, None]  # (B, 3)
        filled = torch.where(r_c[:, None], reference, mean[:, :, None, None].expand_as(reference))
        take = t_c & (area > 0)[:, None, None]
        out = torch.where(take[:, None], filled, out)
    return out


# ---------------------------------------------------------------------------------------------------------
# Errors to ground truth


def masked_errors(output: Tensor, truth: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per-image errors of ``output`` to ``truth`` (both (B, 3, H, W) in [0, 1]) over ``mask`` (B, H, W):
    ``l1`` (mean absolute error over the masked pixels and channels), ``psnr`` (10 log10(1 / MSE), inf
    when exact) and ``colour`` (mean over channels of |mean colour of output - of truth|). NaN where the
    mask is empty."""
    m = mask[:, None].to(output.dtype)
    pixels = m.sum((1, 2, 3))
    diff = output - truth
    count = (pixels * output.shape[1]).clamp_min(1)
    l1 = (diff.abs() * m).sum((1, 2, 3)) / count
    mse = (diff.pow(2) * m).sum((1, 2, 3)) / count
    psnr = 10 * torch.log10(1 / mse)
    mean_out = (output * m).sum((2, 3)) / pixels.clamp_min(1)[:, None]
    mean_truth = (truth * m).sum((2, 3)) / pixels.clamp_min(1)[:, None]
    colour = (mean_out - mean_truth).abs().mean(1)
    empty = pixels == 0
    nan = torch.full_like(l1, math.nan)
    return {"l1": torch.where(empty, nan, l1), "psnr": torch.where(empty, nan, psnr),
            "colour": torch.where(empty, nan, colour)}


# ---------------------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class BenchOptions:
    """Everything ``facestyle bench-harmony`` takes."""

    checkpoint: str
    pairs: int
    out: str | os.PathLike
    seed: int = 0
    attention_off_checkpoint: str | None = None
    compare_checkpoint: str | None = None
    harmonizer: str | None = None  # a DoveNet folder; default: the checkpoint's own ``harmonizer/`` when present
    harmony_classifier: str | None = None
    regions: Sequence[str] = ("skin", "hair")
    weights_dir: str | None = None
    device: str = "cpu"
    batch_size: int = 8
    lpips_net: str = "alex"
    sheet_pairs: int = 4
    min_light_difference: float | None = None
    progress: bool = True

    def check(self) -> None:
        if self.pairs < 1:
            raise InputError(f"--pairs must be positive, got {self.pairs}")
        if self.seed < 0:
            raise InputError(f"--seed must be 0 or more, got {self.seed}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be positive, got {self.batch_size}")
        if not list(self.regions):
            raise InputError("--regions is empty; name at least one region, e.g. --regions skin,hair")
        if self.min_light_difference is not None and not 0 <= self.min_light_difference < 1:
            raise InputError(f"--min-light-difference must be in [0, 1), got {self.min_light_difference}")


def _load_model(path: str, device: torch.device, role: str) -> FaceStyleNet:
    model = FaceStyleNet.from_pretrained(path, device=device)
    if model.config.label_set != CELEBAMASK_HQ.name:
        raise CheckpointError(f"{role} {path} uses the {model.config.label_set} label set; the synthetic faces "
                              f"of bench-harmony are labelled with {CELEBAMASK_HQ.name}")
    return model


class _Runner:
    """A checkpoint run at its own image size on images of the benchmark's resolution."""

    def __init__(self, model: FaceStyleNet, resolution: int) -> None:
        self.model = model
        self.size = model.config.image_size
        self.resolution = resolution
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype

    def _in(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        return (resize_image(images, self.size).to(self.device, self.dtype),
                resize_labels_centered(labels, self.size).to(self.device))

    @torch.inference_mode()
    def transfer(self, target: Tensor, target_labels: Tensor, reference: Tensor, reference_labels: Tensor,
                 classes: Sequence[int], harmonize: bool) -> Tensor:
        mask = torch.zeros(self.model.num_classes, dtype=torch.bool, device=self.device)
        mask[list(classes)] = True
        t, tl = self._in(target, target_labels)
        r, rl = self._in(reference, reference_labels)
        out = self.model.transfer(t, tl, r, rl, mask, harmonize=harmonize)
        return resize_image(out.float(), self.resolution)

    @torch.inference_mode()
    def reconstruct(self, images: Tensor, labels: Tensor) -> Tensor:
        x, lab = self._in(images, labels)
        return resize_image(self.model(x, lab).float(), self.resolution)


def _stack(arrays: Sequence[np.ndarray], device: torch.device) -> Tensor:
    return torch.from_numpy(np.stack(arrays)).to(device)


def report_folder_and_device(out: str | os.PathLike, device: str) -> tuple[Path, torch.device]:
    """The benchmarks' report folder (refused when it names a file, before any work) and their device."""
    from ..editor.editor import resolve_device

    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    return out_dir, resolve_device(device)


def bench_harmony(options: BenchOptions) -> Report:
    """Run the benchmark and write its report (see the module docstring) into ``options.out``."""
    from tqdm import tqdm

    from ..metrics import harmony_score, to_unit_range

    options.check()
    out_dir, device = report_folder_and_device(options.out, options.device)
    regions = list(options.regions)
    classes_of = {r: CELEBAMASK_HQ.region_classes(r) for r in regions}  # unknown names fail here
    model = _load_model(options.checkpoint, device, "--checkpoint")
    other = None
    if options.attention_off_checkpoint:
        other = _load_model(options.attention_off_checkpoint, device, "--attention-off-checkpoint")
        if other.config.attention != "off":
            raise CheckpointError(f"--attention-off-checkpoint {options.attention_off_checkpoint} has attention = "
                                  "on; give a checkpoint trained with attention = off (the paper's 'w/o SA')")
    nets = load_metric_networks(lpips=True, hs=True, lpips_net=options.lpips_net, weights_dir=options.weights_dir,
                                harmony_classifier=options.harmony_classifier, device=device)
    compared = None
    if options.compare_checkpoint:
        compared = _load_model(options.compare_checkpoint, device, "--compare-checkpoint")
    harmonizer, harmonizer_from = harmonizers.harmonizer_for(options.checkpoint, options.harmonizer, device)
    torch.manual_seed(options.seed)
    resolution = model.config.image_size
    main, off = _Runner(model, resolution), (_Runner(other, resolution) if other is not None else None)
    cmp = _Runner(compared, resolution) if compared is not None else None
    present = {"wo_sa": off is not None, "dovenet": harmonizer is not None, "compare": cmp is not None}
    methods = [k for k, _ in METHODS if present.get(k, True)]
    labels = dict(METHOD_LABELS)
    if options.compare_checkpoint:
        labels["compare"] = compare_label(options.compare_checkpoint)
    min_diff = DEFAULT_MIN_LIGHT_DIFFERENCE if options.min_light_difference is None else options.min_light_difference

    per_pair: list[dict[str, Any]] = []
    mrsa_vs_bypass: dict[str, list[float]] = {r: [] for r in regions}
    hs_truth: dict[str, list[float]] = {r: [] for r in regions}
    sheet_rows: list[list[Tensor]] = []
    sheet_titles: list[str] = []
    pairs = [make_pair(options.seed, i, min_diff) for i in range(options.pairs)]
    with tqdm(total=len(pairs), desc="bench-harmony", unit="pair", dynamic_ncols=True,
              disable=None if options.progress else True) as bar:
        for start in range(0, len(pairs), options.batch_size):
            batch = pairs[start:start + options.batch_size]
            rendered = [render_pair(p, resolution) for p in batch]
            target = _stack([r["target"] for r in rendered], device)
            t_lab = _stack([r["target_labels"] for r in rendered], device)
            reference = _stack([r["reference"] for r in rendered], device)
            r_lab = _stack([r["reference_labels"] for r in rendered], device)
            for region in regions:
                classes = classes_of[region]
                truth = _stack([ground_truth(p, classes, resolution)[0] for p in batch], device)
                results = {
                    "mrsa": main.transfer(target, t_lab, reference, r_lab, classes, harmonize=True),
                    "bypass": main.transfer(target, t_lab, reference, r_lab, classes, harmonize=False),
                    "cut_paste": cut_and_paste(target, t_lab, reference, r_lab, classes),
                    "no_transfer": target,
                    "oracle": main.reconstruct(truth, t_lab),
                }
                if off is not None:
                    results["wo_sa"] = off.transfer(target, t_lab, reference, r_lab, classes, harmonize=False)
                ids = torch.as_tensor(classes, device=device)
                inside = torch.isin(t_lab, ids)
                if harmonizer is not None:
                    results["dovenet"] = harmonizers.run_harmonizer(harmonizer, results["bypass"], inside)
                if cmp is not None:
                    results["compare"] = cmp.transfer(target, t_lab, reference, r_lab, classes, harmonize=True)
                t_has = torch.stack([(t_lab == c).flatten(1).any(1) for c in classes], 1)  # (B, C)
                r_has = torch.stack([(r_lab == c).flatten(1).any(1) for c in classes], 1)
                valid = t_has.any(1) & ~(t_has & ~r_has).any(1)
                truth01 = to_unit_range(truth)
                truth_feats = nets.lpips.features(truth01) if nets.lpips is not None else None
                if nets.harmony is not None:
                    hs_truth[region] += harmony_score(nets.harmony, truth01, inside)[valid].tolist()
                diff = masked_errors(to_unit_range(results["mrsa"]), to_unit_range(results["bypass"]), inside)
                mrsa_vs_bypass[region] += diff["l1"][valid].tolist()
                for method in methods:
                    out01 = to_unit_range(results[method])
                    e_in, e_out = masked_errors(out01, truth01, inside), masked_errors(out01, truth01, ~inside)
                    values = {"l1_in": e_in["l1"], "psnr_in": e_in["psnr"], "colour_in": e_in["colour"],
                              "l1_out": e_out["l1"], "psnr_out": e_out["psnr"]}
                    if nets.lpips is not None:
                        with torch.inference_mode():
                            feats = nets.lpips.features(out01)
                            values["lpips_in"] = nets.lpips.distance(feats, truth_feats, inside)
                            values["lpips_out"] = nets.lpips.distance(feats, truth_feats, ~inside)
                    if nets.harmony is not None:
                        values["hs"] = harmony_score(nets.harmony, out01, inside)
                    for i, pair in enumerate(batch):
                        ok = bool(valid[i])
                        reason = "" if ok else ("target lacks the region" if not bool(t_has[i].any())
                                                else "reference lacks a class of the region")
                        row = {"pair": pair.index, "target_face": FIRST_INDEX + 2 * pair.index,
                               "reference_face": FIRST_INDEX + 2 * pair.index + 1,
                               "light_difference": pair.light_difference, "region": region, "method": method,
                               "region_fraction": float(inside[i].float().mean()), "excluded": reason}
                        row.update({c.key: (float(values[c.key][i]) if c.key in values and ok else math.nan)
                                    for c in COLUMNS})
                        per_pair.append(row)
                for i, pair in enumerate(batch):
                    if pair.index < options.sheet_pairs:
                        cells = [target[i], reference[i], truth[i], results["mrsa"][i], results["bypass"][i]]
                        cells += [results["wo_sa"][i]] if off is not None else []
                        cells += [results["cut_paste"][i]]
                        cells += [results[k][i] for k in ("dovenet", "compare") if k in results]
                        sheet_rows.append([c.detach().cpu() for c in cells])
                        sheet_titles.append(f"{pair.index} {region}")
            bar.update(len(batch))

    tables, notes = _tables(per_pair, regions, methods, nets, labels)
    info = run_info(options.checkpoint, model, device)
    info.append(("pairs", f"{len(pairs)} (synthetic stream {options.seed}, faces {FIRST_INDEX}.."
                          f"{FIRST_INDEX + 2 * len(pairs) - 1}; target 2i, reference 2i + 1), "
                          f"{resolution}x{resolution}"))
    diffs = [p.light_difference for p in pairs]
    info.append(("lighting", f"reference light differs from the target's by {np.mean(diffs):.3f} on average "
                             f"(mean |log light|; at least {min_diff:g}, reached by {sum(d >= min_diff for d in diffs)}"
                             f" of {len(pairs)} pairs)"))
    if other is not None:
        info.append(("w/o SA", str(options.attention_off_checkpoint)))
    if harmonizer_from is not None:
        info.append(("harmonizer", harmonizer_from))
    if compared is not None:
        info.append(("compared checkpoint", f"{options.compare_checkpoint} ({labels['compare']})"))
    info.append(("regions", ", ".join(region_label(CELEBAMASK_HQ, r) for r in regions)))
    notes += _verdicts(tables, regions, model, mrsa_vs_bypass, off is not None)
    if nets.harmony is not None:
        for region in regions:
            value, n = mean_of(hs_truth[region])
            notes.append(f"{region}: the harmony classifier scores the ground truth itself {format_value(value, 4)} "
                         f"on average ({n} pairs): the ceiling HS can reach on these faces.")
    notes += [
        "Ground truth: the target re-rendered with the reference's appearance in the region under the target's "
        "light; outside the region it equals the target exactly, so 'out' errors measure what the transfer (or "
        "the decoder) changes elsewhere.",
        "'mean-colour error in': mean over R, G, B of |mean colour of the result in the region - of the ground "
        "truth|, in [0, 1] units: the part of the error that harmony (carrying the target's light) is about, "
        "insensitive to texture.",
        "cut-and-paste: the reference's pixels where both label maps have the class, the reference class's mean "
        "colour on the target's other pixels of the class, the target elsewhere.",
        "LPIPS in / out: LPIPS with each layer's distance map averaged over the mask (as for mCSD / mOCD); deep "
        "features near the border see both sides, so a result equal to the ground truth outside the region still "
        "has LPIPS out > 0.",
        "ground-truth reconstruction: the checkpoint reconstructing the ground truth from its own codes: "
        "about the least error any transfer through this decoder can reach.",
    ]
    images = []
    if sheet_rows:
        from ..io import save_image
        from ..visualize import contact_sheet

        columns = ["target", "reference", "ground truth", "MRSA", "bypass"]
        columns += ["w/o SA"] if off is not None else []
        columns += ["cut-and-paste"]
        columns += ["DoveNet"] if harmonizer is not None else []
        columns += ["compared"] if cmp is not None else []
        sheet = contact_sheet(sheet_rows, columns, sheet_titles, cell=max(128, resolution))
        out_dir.mkdir(parents=True, exist_ok=True)
        save_image(sheet, out_dir / "contact_sheet.png")
        images.append(("Contact sheet (pair, region)", "contact_sheet.png"))
    report = Report("facestyle bench-harmony: harmony against ground truth on synthetic faces", info, tables, notes,
                    per_pair, per_image_name="per_pair.csv", images=images)
    report.settings = {**dataclasses.asdict(options), "out": str(out_dir), "regions": regions,
                       "min_light_difference": min_diff, "first_index": FIRST_INDEX}
    report.settings.pop("progress")
    report.extra = {"mrsa_alpha": None if model.mrsa is None else float(model.mrsa.alpha.detach())}
    write_report(report, out_dir)
    return report


def _tables(per_pair: list[dict[str, Any]], regions: Sequence[str], methods: Sequence[str], nets: MetricNetworks,
            labels: dict[str, str]) -> tuple[list[Table], list[str]]:
    tables, notes = [], []
    for region in regions:
        rows = [r for r in per_pair if r["region"] == region]
        excluded = {r["pair"]: r["excluded"] for r in rows if r["excluded"]}
        counted = len({r["pair"] for r in rows}) - len(excluded)
        title = f"{region_label(CELEBAMASK_HQ, region)}: error to ground truth, mean over {counted} pairs"
        table = Table(title, list(COLUMNS))
        if nets.lpips is None:
            table.skipped["lpips_in"] = table.skipped["lpips_out"] = nets.skipped["lpips"]
        if nets.harmony is None:
            table.skipped["hs"] = nets.skipped["hs"]
        add_measured_rows(table, rows, methods, labels)
        tables.append(table)
        if excluded:
            reasons = Counter(excluded.values())
            notes.append(f"{region}: left out of the means: "
                         + ", ".join(f"{n} pair(s) ({why})" for why, n in reasons.items()) + ".")
    return tables, notes


def _verdicts(tables: list[Table], regions: Sequence[str], model: FaceStyleNet,
              mrsa_vs_bypass: dict[str, list[float]], with_off: bool) -> list[str]:
    notes = []
    alpha = None if model.mrsa is None else float(model.mrsa.alpha.detach())
    if alpha is None:
        notes.append("The checkpoint has attention = off: its 'MRSA' and 'MRSA bypassed' rows are the same network.")
    elif alpha == 0:
        notes.append("The checkpoint's MRSA has alpha = 0 (its initial value: untrained, or trained without "
                     "transfers that move it): MRSA is the identity, so 'MRSA' and 'MRSA bypassed' are equal.")
    for region, table in zip(regions, tables):
        by = {row.method: row.values for row in table.rows}
        mrsa, bypass = by[METHOD_LABELS["mrsa"]], by[METHOD_LABELS["bypass"]]
        change, _ = mean_of(mrsa_vs_bypass[region])
        parts = [f"{region}: MRSA vs bypassed inside the region: L1 {format_value(mrsa['l1_in'], 4)} vs "
                 f"{format_value(bypass['l1_in'], 4)}, mean-colour error {format_value(mrsa['colour_in'], 4)} vs "
                 f"{format_value(bypass['colour_in'], 4)} (MRSA moves the region by L1 {format_value(change, 4)})"]
        if with_off:
            off = by[METHOD_LABELS["wo_sa"]]
            better = mrsa["l1_in"] < off["l1_in"]
            parts.append(f"vs w/o SA: L1 {format_value(mrsa['l1_in'], 4)} vs {format_value(off['l1_in'], 4)} "
                         f"({'MRSA better' if better else 'MRSA NOT better'}), mean-colour error "
                         f"{format_value(mrsa['colour_in'], 4)} vs {format_value(off['colour_in'], 4)}")
        cut = by[METHOD_LABELS["cut_paste"]]
        parts.append(f"cut-and-paste: L1 {format_value(cut['l1_in'], 4)}, mean-colour error "
                     f"{format_value(cut['colour_in'], 4)}")
        notes.append("; ".join(parts) + ".")
    return notes


__all__ = ["BenchOptions", "METHODS", "bench_harmony", "compare_label", "cut_and_paste", "masked_errors"]
