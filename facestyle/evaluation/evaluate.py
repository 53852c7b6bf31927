"""The paper's tables for any checkpoint: ``facestyle evaluate`` (paper section 4, Tables 1-4).

=================  ==========  =====================================================================
task               table       what is measured
=================  ==========  =====================================================================
reconstruction     Table 1     PSNR, SSIM, LPIPS (per image, against the input) and FID (set)
transfer           Table 2     FID and harmony score (HS) per region: the test set split in halves,
                               target i gets region r of reference i
cross-transfer     Table 3     FID / HS of references from another dataset (and label set) onto
                               targets (CelebAMask-HQ -> LaPa in the paper)
multimodal         Table 4     FID, mCSD and mOCD of 10 random styles per image and region
=================  ==========  =====================================================================

Protocol (paper 4.1-4.6, and where the paper is silent, the choice made here):

- Every image is resized to the checkpoint's image size (bicubic, label maps nearest) and the metrics
  see images in [0, 1] (PSNR / SSIM with data range 1).
- FID compares the generated images with the real images of the evaluated set at the same size: for
  reconstruction the inputs, for transfer every test image (targets and references), for
  cross-transfer the targets, for multimodal the inputs. The real set's InceptionV3 features are
  cached per image set (``$FACESTYLE_CACHE/fid``) when the data are image files. FID from a few
  images is biased upwards: only values from the paper's 2,000 test images compare with its tables.
- "skin" transfer is skin + nose, as in the paper; a region absent from a reference keeps the
  target's style (:meth:`FaceStyleNet.compose`).
- HS is the probability of "real" of the harmony classifier (``facestyle train-harmony``) on the result
  with the transferred region of the target's label map as the mask; pairs whose target lacks the
  region have no HS.
- transfer with ``--harmonizer DIR``: a second measured row, ``SEAN+DoveNet``: the checkpoint's transfer
  with MRSA bypassed, then DoveNet (:mod:`facestyle.nn.dovenet`) with the transferred region of the target's
  label map as its mask; its whole output image is scored, as DoveNet's own test does. On a SEAN checkpoint
  (``facestyle import-sean``) that is the paper's row.
- A metric without its weights, or not asked for, is skipped with the reason (:mod:`.metric_networks`).
- Label maps of another label set are mapped into the checkpoint's (:mod:`.labels_map`).
- The report's files are those of :mod:`.report`; ``--save-images`` adds the results under ``images/``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..arch import arch_of, describe_tasks, load_network, require
from ..errors import FacestyleError, InputError
from ..labels import SHARED_CLASSES, LabelSet, get_label_set
from ..model import FaceStyleNet
from ..nn.synthesis import RANDOM_GLOBAL, RANDOM_REGIONAL, RECONSTRUCTION, TRANSFER
from .labels_map import label_lookup, map_labels, region_label, unmapped_classes
from .metric_networks import FeatureSet, MetricNetworks, RealFeatures, fid_cell, fid_note, load_metric_networks
from .paper import (
    PAPER_NOTES,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE3,
    PAPER_TABLE4,
    PAPER_TABLE5,
    T4_METHODS,
    T5_METHODS,
    TABLE_OF_TASK,
    infer_paper_dataset,
    paper_dataset,
)
from .report import Column, Report, Row, Table, mean_of, run_info, write_report

TASKS = ("reconstruction", "transfer", "cross-transfer", "multimodal")
DEFAULT_REGIONS = ("skin", "hair")
DOVENET_ROW = "SEAN+DoveNet"  # the transfer task's row with --harmonizer
DEFAULT_STYLES = 10  # paper 4.6: "we manipulate each image using 10 random styles"


# ---------------------------------------------------------------------------------------------------------
# Options and data


@dataclass
class EvaluateOptions:
    """Everything ``facestyle evaluate`` takes (see :func:`evaluate`)."""

    checkpoint: str
    task: str
    data: str
    out: str | os.PathLike
    reference_data: str | None = None
    regions: Sequence[str] = DEFAULT_REGIONS
    harmony_classifier: str | None = None
    harmonizer: str | None = None  # transfer: a DoveNet (or a checkpoint with harmonizer/) for the SEAN+DoveNet row
    weights_dir: str | None = None
    limit: int | None = None
    batch_size: int = 8
    device: str = "cpu"
    paper_rows: str | None = None  # None: no paper rows; "auto": from --data; else a dataset name
    split: str = "test"
    seed: int = 0
    lpips_net: str = "alex"
    styles: int = DEFAULT_STYLES
    data_label_set: str | None = None
    reference_label_set: str | None = None
    save_images: bool = False
    fid_cache: bool = True
    workers: int = 0
    progress: bool = True

    def check(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}; choose one of: {', '.join(TASKS)}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be positive, got {self.limit}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be positive, got {self.batch_size}")
        if self.styles < 2:
            raise InputError(f"--styles must be at least 2 (mCSD / mOCD compare pairs), got {self.styles}")
        if self.task == "cross-transfer" and not self.reference_data:
            raise InputError("the cross-transfer task needs --reference-data (the references' dataset, e.g. "
                             "celebamask-hq:ROOT, onto --data lapa:ROOT)")
        if self.task != "cross-transfer" and self.reference_data:
            raise InputError(f"--reference-data is for the cross-transfer task; the {self.task} task takes its "
                             "images from --data")
        if self.harmonizer is not None and self.task != "transfer":
            raise InputError(f"--harmonizer adds the SEAN+DoveNet row of the transfer task; the {self.task} task "
                             "takes none")
        if self.task != "reconstruction" and not list(self.regions):
            raise InputError("--regions is empty; name at least one region, e.g. --regions skin,hair")


def parse_regions(text: str | Sequence[str]) -> list[str]:
    if isinstance(text, str):
        return [r for r in (p.strip() for p in text.split(",")) if r]
    return list(text)


def load_dataset(spec: str, split: str, image_size: int, seed: int, label_set: str, what: str = "--data") -> Any:
    from ..data import parse_data_spec

    try:
        return parse_data_spec(spec, split=split, resolution=image_size, seed=seed, label_set=label_set)
    except InputError as exc:
        raise InputError(str(exc).replace("--data", what, 1)) from None


def dataset_label_set(dataset: Any) -> LabelSet:
    ls = getattr(dataset, "label_set", None)
    return get_label_set(ls) if isinstance(ls, str) else ls


def _collate(items: list[tuple[Tensor, Tensor, str]]) -> tuple[Tensor, Tensor, list[str]]:
    images, labels, names = zip(*items)
    return torch.stack(images), torch.stack(labels), list(names)


def iterate(dataset: Any, indices: Sequence[int], batch_size: int, workers: int = 0
            ) -> Iterator[tuple[Tensor, Tensor, list[str]]]:
    """Batches (images (B, 3, S, S), labels (B, S, S), names) of ``dataset[indices]`` in order."""
    from torch.utils.data import DataLoader, Subset

    return iter(DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False,
                           num_workers=workers, collate_fn=_collate))


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, disable=None if enabled else True)


def _unit(images: Tensor) -> Tensor:
    from ..metrics import to_unit_range

    return to_unit_range(images.float())


def _save_images(folder: Path, names: Sequence[str], images: Tensor) -> None:
    from ..io import save_image

    for name, image in zip(names, images):
        save_image(image, folder / f"{name}.png")


def _paper_dataset_for(options: EvaluateOptions, spec: str) -> str | None:
    if options.paper_rows is None:
        return None
    if options.paper_rows != "auto":
        return paper_dataset(options.paper_rows)
    found = infer_paper_dataset(spec)
    if found is None:
        raise InputError(f"--paper-rows: cannot tell which of the paper's datasets {spec} is; name it: "
                         "--paper-rows celebamask-hq|ffhq|lapa")
    return found


# ---------------------------------------------------------------------------------------------------------
# The tasks


@dataclass
class _Context:
    options: EvaluateOptions
    model: FaceStyleNet
    device: torch.device
    nets: MetricNetworks
    out: Path
    info: list[tuple[str, str]]
    notes: list[str]


def _region_masks(model: FaceStyleNet, regions: Sequence[str]) -> dict[str, tuple[tuple[int, ...], Tensor]]:
    ls = get_label_set(model.config.label_set)
    out = {}
    for region in regions:
        classes = ls.region_classes(region)  # an unknown region is an InputError listing the valid ones
        mask = torch.zeros(ls.num_classes, dtype=torch.bool)
        mask[list(classes)] = True
        out[region] = (classes, mask)
    return out


def _own_dataset(ctx: _Context) -> Any:
    """``--data`` of a task that needs the checkpoint's own label set."""
    o, cfg = ctx.options, ctx.model.config
    dataset = load_dataset(o.data, o.split, cfg.image_size, o.seed, o.data_label_set or cfg.label_set)
    ls = dataset_label_set(dataset)
    if ls.name != cfg.label_set:
        raise InputError(f"{o.data} is labelled with the {ls.name} label set, the checkpoint with {cfg.label_set}; "
                         f"the {o.task} task needs the checkpoint's label set (only cross-transfer maps label maps "
                         "between sets)")
    return dataset


def _evaluate_reconstruction(ctx: _Context) -> Report:
    from ..metrics import psnr, ssim

    o, model, nets = ctx.options, ctx.model, ctx.nets
    size = model.config.image_size
    dataset_name = _paper_dataset_for(o, o.data)
    dataset = _own_dataset(ctx)
    indices = list(range(min(len(dataset), o.limit or len(dataset))))
    fake, real = FeatureSet(nets.inception), RealFeatures(nets.inception, dataset, indices, size, o.fid_cache)
    per_image: list[dict[str, Any]] = []
    with _progress(len(indices), "evaluate reconstruction", o.progress) as bar:
        for images, labels, names in iterate(dataset, indices, o.batch_size, o.workers):
            images, labels = images.to(ctx.device, model_dtype(model)), labels.to(ctx.device)
            with torch.inference_mode():
                out = model(images, labels)
            x, y = _unit(out), _unit(images)
            values = {"psnr": psnr(x, y), "ssim": ssim(x, y)}
            if nets.lpips is not None:
                with torch.inference_mode():
                    values["lpips"] = nets.lpips(x, y)
            fake.add(x)
            real.add(y)
            for i, name in enumerate(names):
                per_image.append({"name": name, **{k: float(v[i]) for k, v in values.items()}})
            if o.save_images:
                _save_images(ctx.out / "images", names, out)
            bar.update(len(names))
    columns = [Column("psnr", "PSNR", "higher", 2), Column("ssim", "SSIM", "higher", 4),
               Column("lpips", f"LPIPS ({o.lpips_net})", "lower", 4), Column("fid", "FID", "lower", 2)]
    table = Table(f"Reconstruction on {o.data} ({len(indices)} images), paper Table 1", columns)
    values: dict[str, float | None] = {}
    for key in ("psnr", "ssim", "lpips"):
        values[key], table.counts[key] = mean_of([r.get(key, math.nan) for r in per_image])
    if nets.lpips is None:
        table.skipped["lpips"] = nets.skipped["lpips"]
    values["fid"] = fid_cell(table, "fid", nets, fake, real)
    exact = [r["psnr"] for r in per_image if math.isinf(r["psnr"])]
    if exact:
        ctx.notes.append(f"{len(exact)} image(s) were reconstructed exactly (PSNR = inf); the PSNR mean is inf.")
    table.rows.append(Row("this checkpoint", "measured", values))
    if dataset_name:
        for method, (p, s, lp, f) in PAPER_TABLE1[dataset_name].items():
            table.rows.append(Row(method, f"paper, {dataset_name}", {"psnr": p, "ssim": s, "lpips": lp, "fid": f}))
    ctx.info.append(("data", f"{o.data} (split {o.split}, {len(indices)} of {len(dataset)} images)"))
    ctx.notes.append("PSNR and SSIM on [0, 1] images with data range 1 (SSIM: 11x11 Gaussian window, sigma 1.5); "
                     f"LPIPS v0.1 with the {o.lpips_net} backbone; all against the input at "
                     f"{size}x{size}; means over images.")
    if values["fid"] is not None:
        ctx.notes.append(fid_note(fake.count) + " Real set: the same input images.")
    ctx.notes += PAPER_NOTES["reconstruction"] if dataset_name else []
    return Report(f"facestyle evaluate: reconstruction (paper {TABLE_OF_TASK[o.task]})", ctx.info, [table],
                  ctx.notes, per_image)


def model_dtype(model: FaceStyleNet) -> torch.dtype:
    return next(model.parameters()).dtype


def _transfer_table(ctx: _Context, title: str, regions: Sequence[str], fakes: dict[str, FeatureSet],
                    real: RealFeatures, per_image: list[dict[str, Any]],
                    more: Sequence[tuple[str, str, dict[str, FeatureSet], list[dict[str, Any]]]] = ()) -> Table:
    """The transfer table: the checkpoint's row, then ``more`` measured rows ((method, source, fakes,
    per-pair rows))."""
    columns = []
    for region in regions:
        columns += [Column(f"{region}_fid", f"{region} FID", "lower", 2), Column(f"{region}_hs", f"{region} HS",
                                                                                   "higher", 4)]
    table = Table(title, columns)
    for method, source, row_fakes, rows in (("this checkpoint", "measured", fakes, per_image), *more):
        values: dict[str, float | None] = {}
        for region in regions:
            values[f"{region}_fid"] = fid_cell(table, f"{region}_fid", ctx.nets, row_fakes[region], real)
            if ctx.nets.harmony is None:
                table.skipped[f"{region}_hs"] = ctx.nets.skipped["hs"]
                values[f"{region}_hs"] = None
            else:
                values[f"{region}_hs"], table.counts[f"{region}_hs"] = mean_of(
                    [r["hs"] for r in rows if r["region"] == region])
        table.rows.append(Row(method, source, values))
    return table


def _run_transfers(ctx: _Context, targets: tuple[Any, Sequence[int]], references: tuple[Any, Sequence[int]],
                   regions: Sequence[str], target_lookup: np.ndarray, reference_lookup: np.ndarray,
                   real: RealFeatures, desc: str, real_from_targets: bool = False, harmonize: bool = True,
                   harmonizer: Any = None, method: str | None = None, images_dir: str = "images"
                   ) -> tuple[dict[str, FeatureSet], list[dict[str, Any]]]:
    """Transfer each region from reference i to target i for every pair: the results' FID features per region
    and the per-pair rows (``real`` is filled with the targets when ``real_from_targets``). ``harmonize``
    False bypasses MRSA; a ``harmonizer`` (DoveNet) then runs on each result with the region as its mask;
    ``method`` (when given) labels the per-pair rows."""
    from ..metrics import harmony_score

    o, model, nets = ctx.options, ctx.model, ctx.nets
    masks = _region_masks(model, regions)
    fakes = {r: FeatureSet(nets.inception) for r in regions}
    target_set, target_idx = targets
    reference_set, reference_idx = references
    per_image: list[dict[str, Any]] = []
    dtype = model_dtype(model)
    with _progress(len(target_idx), desc, o.progress) as bar:
        for start in range(0, len(target_idx), o.batch_size):
            t_idx = target_idx[start:start + o.batch_size]
            r_idx = reference_idx[start:start + o.batch_size]
            t_img, t_lab, t_names = _collate([target_set[i] for i in t_idx])
            r_img, r_lab, r_names = _collate([reference_set[i] for i in r_idx])
            t_img, r_img = t_img.to(ctx.device, dtype), r_img.to(ctx.device, dtype)
            t_enc = map_labels(t_lab.to(ctx.device), target_lookup, void_to_background=False)
            t_dec = map_labels(t_lab.to(ctx.device), target_lookup, void_to_background=True)
            r_enc = map_labels(r_lab.to(ctx.device), reference_lookup, void_to_background=False)
            if real_from_targets:
                real.add(_unit(t_img))
            for region in regions:
                classes, class_mask = masks[region]
                ids = torch.as_tensor(classes, device=ctx.device)
                region_mask = torch.isin(t_dec, ids)
                with torch.inference_mode():
                    out = model.transfer(t_img, t_enc, r_img, r_enc, class_mask.to(ctx.device), harmonize=harmonize,
                                         decode_labels=t_dec)
                    if harmonizer is not None:
                        out = harmonizer.harmonize(out, region_mask[:, None].to(out.dtype))
                out01 = _unit(out)
                fakes[region].add(out01)
                t_has = region_mask.flatten(1).any(1)
                r_has = torch.isin(r_enc, ids).flatten(1).any(1)
                hs = None
                if nets.harmony is not None:
                    hs = harmony_score(nets.harmony, out01, region_mask)
                for i in range(len(t_idx)):
                    row = {} if method is None else {"method": method}
                    row |= {"target": t_names[i], "reference": r_names[i], "region": region,
                           "target_has_region": bool(t_has[i]), "reference_has_region": bool(r_has[i]),
                           "region_fraction": float(region_mask[i].float().mean())}
                    row["hs"] = float(hs[i]) if hs is not None and bool(t_has[i]) else math.nan
                    per_image.append(row)
                if o.save_images:
                    _save_images(ctx.out / images_dir / region,
                                 [f"{a}__{b}" for a, b in zip(t_names, r_names)], out)
            bar.update(len(t_idx))
    for region in regions:
        rows = [r for r in per_image if r["region"] == region]
        no_target = sum(not r["target_has_region"] for r in rows)
        no_ref = sum(r["target_has_region"] and not r["reference_has_region"] for r in rows)
        if no_target:
            ctx.notes.append(f"{region}: {no_target} of {len(rows)} target(s) lack the region (nothing transferred; "
                             "no HS).")
        if no_ref:
            ctx.notes.append(f"{region}: {no_ref} of {len(rows)} reference(s) lack the region; those targets keep "
                             "their own style there.")
    return fakes, per_image


def _evaluate_transfer(ctx: _Context) -> Report:
    o, model = ctx.options, ctx.model
    harmonizer = None
    if o.harmonizer is not None:  # a missing or broken harmonizer fails before any work
        from ..styles.networks import load_harmonizer

        harmonizer = load_harmonizer(o.harmonizer, device=ctx.device, dtype=model_dtype(model))
    size = model.config.image_size
    regions = parse_regions(o.regions)
    _region_masks(model, regions)  # check the names before any work
    dataset_name = _paper_dataset_for(o, o.data)
    dataset = _own_dataset(ctx)
    n = min(len(dataset), o.limit or len(dataset))
    half = n // 2
    if half < 1:
        raise InputError(f"the transfer task splits the test set into halves of targets and references and "
                         f"needs at least 2 images; {o.data} gives {n}")
    targets, references = list(range(half)), list(range(half, 2 * half))
    real = RealFeatures(ctx.nets.inception, dataset, list(range(2 * half)), size, o.fid_cache)
    if real.needed:
        with _progress(2 * half, "FID features of the real images", o.progress) as bar:
            for images, _, names in iterate(dataset, range(2 * half), o.batch_size, o.workers):
                real.add(_unit(images.to(ctx.device)))
                bar.update(len(names))
    identity = np.arange(model.num_classes)
    pairs = ((dataset, targets), (dataset, references), regions, identity, identity, real)
    method = None if harmonizer is None else "this checkpoint"
    fakes, per_image = _run_transfers(ctx, *pairs, "evaluate transfer", method=method)
    more = []
    if harmonizer is not None:  # the paper's SEAN+DoveNet: DoveNet on the transfer with MRSA bypassed
        dove_fakes, dove_rows = _run_transfers(ctx, *pairs, "evaluate transfer + DoveNet", harmonize=False,
                                               harmonizer=harmonizer, method=DOVENET_ROW,
                                               images_dir="images/dovenet")
        more.append((DOVENET_ROW, "measured", dove_fakes, dove_rows))
        per_image = per_image + dove_rows
        ctx.info.append(("harmonizer", f"{o.harmonizer} (DoveNet, {harmonizer.config.image_size} px)"))
        ctx.notes.append(f"{DOVENET_ROW} (measured): this checkpoint's transfer with MRSA bypassed, then DoveNet "
                         "with the transferred region of the target's label map as its mask (its whole output "
                         "image, as DoveNet is scored); on a SEAN checkpoint this is the paper's row.")
    table = _transfer_table(ctx, f"Regional transfer on {o.data} ({half} pairs), paper Table 2", regions, fakes,
                            real, per_image, more)
    if dataset_name:
        for method, (skin, hair) in PAPER_TABLE2[dataset_name].items():
            vals = {f"{r}_fid": {"skin": skin, "hair": hair}.get(r) for r in regions}
            table.rows.append(Row(method, f"paper, {dataset_name}", vals))
    names = getattr(dataset, "names", None)
    left_out = f"; {names[2 * half] if names else f'image {2 * half}'} left out (odd count)" if n % 2 else ""
    ctx.info.append(("data", f"{o.data} (split {o.split}, {n} of {len(dataset)} images: targets = the first "
                             f"{half}, references = the next {half}, target i with reference i{left_out})"))
    ctx.info.append(("regions", ", ".join(region_label(get_label_set(model.config.label_set), r) for r in regions)))
    ctx.notes.insert(0, "Each region is transferred on its own (one result per pair and region); FID on the "
                        "whole image against the real images of both halves; HS with the target's region as mask.")
    if any(f"{r}_fid" in table.counts for r in regions):
        ctx.notes.append(fid_note(half))
    if dataset_name:
        ctx.notes += PAPER_NOTES["transfer"]
    return Report(f"facestyle evaluate: regional transfer (paper {TABLE_OF_TASK[o.task]})", ctx.info, [table],
                  ctx.notes, per_image, per_image_name="per_image.csv")


def _evaluate_cross_transfer(ctx: _Context) -> Report:
    o, model = ctx.options, ctx.model
    size = model.config.image_size
    model_ls = get_label_set(model.config.label_set)
    regions = parse_regions(o.regions)
    _region_masks(model, regions)
    src = _paper_dataset_for(o, o.reference_data)
    targets = load_dataset(o.data, o.split, size, o.seed, o.data_label_set or model_ls.name)
    references = load_dataset(o.reference_data, o.split, size, o.seed, o.reference_label_set or model_ls.name,
                              what="--reference-data")
    t_ls, r_ls = dataset_label_set(targets), dataset_label_set(references)
    n_t = min(len(targets), o.limit or len(targets))
    n_r = min(len(references), o.limit or len(references))
    t_idx = list(range(n_t))
    r_idx = [i % n_r for i in range(n_t)]
    real = RealFeatures(ctx.nets.inception, targets, t_idx, size, o.fid_cache)
    t_lookup, r_lookup = label_lookup(t_ls, model_ls), label_lookup(r_ls, model_ls)
    for ls in (t_ls, r_ls):
        if ls.name == model_ls.name:
            continue
        # Every region asked for must be reachable from this set, or the transfer is meaningless.
        for region in regions:
            mapped = [model_ls.classes[c] for c in model_ls.region_classes(region)
                      if c in set(label_lookup(ls, model_ls).tolist())]
            if not mapped:
                raise InputError(f"region {region!r} has no class shared by the {ls.name} and {model_ls.name} "
                                 f"label sets; shared classes: {', '.join(SHARED_CLASSES)}")
    fakes, per_image = _run_transfers(ctx, (targets, t_idx), (references, r_idx), regions, t_lookup, r_lookup,
                                      real, "evaluate cross-transfer", real_from_targets=True)
    tgt = infer_paper_dataset(o.data) or o.data
    table = _transfer_table(ctx, f"Transfer {o.reference_data} -> {o.data} ({n_t} pairs), FID / HS, paper Table 3",
                            regions, fakes, real, per_image)
    if src:
        for method, (skin, hair) in PAPER_TABLE3[src].items():
            by_region = {"skin": skin, "hair": hair}
            vals: dict[str, float | None] = {}
            for r in regions:
                pair = by_region.get(r)
                vals[f"{r}_fid"], vals[f"{r}_hs"] = pair if pair else (None, None)
            table.rows.append(Row(method, f"paper, {src} -> LaPa", vals))
    cycle = f", references reused cyclically (target i gets reference i mod {n_r})" if n_r < n_t else ""
    ctx.info.append(("targets", f"{o.data} ({t_ls.name} labels, split {o.split}, {n_t} images)"))
    ctx.info.append(("references", f"{o.reference_data} ({r_ls.name} labels, split {o.split}, {n_r} images"
                                   f"{cycle})"))
    ctx.info.append(("regions", ", ".join(region_label(get_label_set(model.config.label_set), r) for r in regions)))
    for what, ls in (("targets", t_ls), ("references", r_ls)):
        if ls.name != model_ls.name:
            dropped = unmapped_classes(ls, model_ls)
            shared = [c for c in SHARED_CLASSES if c in ls.classes and c in model_ls.classes]
            ctx.notes.append(
                f"Label mapping ({what}): {ls.name} -> {model_ls.name} through the shared classes "
                f"({', '.join(shared)}). "
                + (f"Classes without a counterpart ({', '.join(dropped)}) are left out of region pooling, and "
                   "become background in a target's label map drawn by the generator." if dropped else
                   "Every class has a counterpart."))
    ctx.notes.insert(0, "Each region is transferred on its own; FID on the whole image against the real target "
                        f"images; HS with the target's region as mask. Targets: {tgt}.")
    if any(f"{r}_fid" in table.counts for r in regions):
        ctx.notes.append(fid_note(n_t))
    ctx.notes += PAPER_NOTES["cross-transfer"]
    return Report(f"facestyle evaluate: cross-dataset transfer (paper {TABLE_OF_TASK[o.task]})", ctx.info,
                  [table], ctx.notes, per_image)


def _evaluate_multimodal(ctx: _Context) -> Report:
    from ..data.transforms import resize_image
    from ..editor.editor import Editor
    from ..metrics import region_diversity

    o, model, nets = ctx.options, ctx.model, ctx.nets
    size = model.config.image_size
    regions = parse_regions(o.regions)
    masks = _region_masks(model, regions)
    dataset_name = _paper_dataset_for(o, o.data)
    dataset = _own_dataset(ctx)
    indices = list(range(min(len(dataset), o.limit or len(dataset))))
    editor = Editor.from_pretrained(o.checkpoint, device=ctx.device)
    whole_image = not isinstance(model, FaceStyleNet) and RANDOM_REGIONAL not in model.tasks  # spade, clade
    real = RealFeatures(nets.inception, dataset, indices, size, o.fid_cache)
    fakes = {r: FeatureSet(nets.inception) for r in regions}
    per_image: list[dict[str, Any]] = []
    with _progress(len(indices), "evaluate multimodal", o.progress) as bar:
        for index in indices:
            image, labels, name = dataset[index]
            real.add(_unit(image[None].to(ctx.device)))
            for region in regions:
                seed = int(np.random.SeedSequence([o.seed, index, regions.index(region)]).generate_state(1)[0])
                try:
                    results = editor.sample(image.to(ctx.device), labels.to(ctx.device),
                                            None if whole_image else region, o.styles, seed, return_tensors=True)
                except FacestyleError as exc:
                    raise InputError(f"the multimodal task (Table 4) samples {region} styles with the checkpoint's "
                                     f"regional style mapping networks: {exc}") from None
                batch = resize_image(results.to(ctx.device).float(), size)
                out01 = _unit(batch)
                fakes[region].add(out01)
                row = {"name": name, "region": region, "styles": int(batch.shape[0]), "seed": seed}
                classes = masks[region][0]
                if nets.lpips is not None and bool(torch.isin(labels, torch.as_tensor(classes)).any()):
                    with torch.inference_mode():
                        d = region_diversity(nets.lpips, out01, labels.to(ctx.device), classes)
                    row.update(mcsd=d.mcsd, mocd=d.mocd)
                else:
                    row.update(mcsd=math.nan, mocd=math.nan)
                per_image.append(row)
                if o.save_images:
                    _save_images(ctx.out / "images" / region, [f"{name}_{k}" for k in range(batch.shape[0])], batch)
            bar.update(1)
    columns = []
    for region in regions:
        columns += [Column(f"{region}_fid", f"{region} FID", "lower", 2),
                    Column(f"{region}_mcsd", f"{region} mCSD", "higher", 4),
                    Column(f"{region}_mocd", f"{region} mOCD", "lower", 4)]
    table = Table(f"Regional multi-modal synthesis on {o.data} ({len(indices)} images x {o.styles} styles), "
                  "paper Table 4", columns)
    values: dict[str, float | None] = {}
    for region in regions:
        values[f"{region}_fid"] = fid_cell(table, f"{region}_fid", nets, fakes[region], real)
        for key in ("mcsd", "mocd"):
            rows = [r[key] for r in per_image if r["region"] == region]
            values[f"{region}_{key}"], table.counts[f"{region}_{key}"] = mean_of(rows)
            if nets.lpips is None:
                table.skipped[f"{region}_{key}"] = nets.skipped["lpips"]
    table.rows.append(Row("this checkpoint", "measured", values))
    if dataset_name:
        for method in T4_METHODS:
            vals = {}
            for region in regions:
                triple = PAPER_TABLE4[dataset_name].get(region, {}).get(method)
                for key, v in zip(("fid", "mcsd", "mocd"), triple or (None, None, None)):
                    vals[f"{region}_{key}"] = v
            table.rows.append(Row(method, f"paper, {dataset_name}", vals))
        for method in T5_METHODS:  # the RSM ablation (Table 5): FID only
            vals = {f"{region}_{key}": PAPER_TABLE5[dataset_name].get(region, {}).get(method) if key == "fid" else None
                    for region in regions for key in ("fid", "mcsd", "mocd")}
            table.rows.append(Row(f"{method} (Table 5)", f"paper, {dataset_name}", vals))
    ctx.info.append(("data", f"{o.data} (split {o.split}, {len(indices)} of {len(dataset)} images)"))
    ctx.info.append(("regions", ", ".join(region_label(get_label_set(model.config.label_set), r) for r in regions)))
    ctx.notes.insert(0, f"{o.styles} random styles per image and region (seeded from --seed {o.seed}, the image "
                        f"and the region); mCSD / mOCD with LPIPS ({o.lpips_net}) restricted to the target's region "
                        "/ the rest; FID of all sampled images against the real input images.")
    if whole_image:
        ctx.notes.insert(1, f"{arch_of(model)} has one code per image: each random style changes the whole image "
                            "(mOCD measures how much of it moves outside the region).")
    if dataset_name:
        ctx.notes += PAPER_NOTES["multimodal"]
    return Report(f"facestyle evaluate: regional multi-modal synthesis (paper {TABLE_OF_TASK[o.task]})", ctx.info,
                  [table], ctx.notes, per_image)


def check_task(model: Any, task: str) -> None:
    """An InputError, one line naming what the checkpoint's architecture can do, for a task it cannot do."""
    if task in ("transfer", "cross-transfer"):
        require(model, TRANSFER)
    elif task == "multimodal" and not isinstance(model, FaceStyleNet):
        if not {RANDOM_GLOBAL, RANDOM_REGIONAL} & model.tasks:
            arch = arch_of(model)
            raise InputError(f"{arch} cannot draw random styles (the multimodal task); it supports "
                             f"{describe_tasks(arch)}")
    else:
        require(model, RECONSTRUCTION)


_TASK_RUNNERS = {"reconstruction": _evaluate_reconstruction, "transfer": _evaluate_transfer,
                 "cross-transfer": _evaluate_cross_transfer, "multimodal": _evaluate_multimodal}
_NEEDS = {"reconstruction": {"lpips": True, "fid": True, "hs": False},
          "transfer": {"lpips": False, "fid": True, "hs": True},
          "cross-transfer": {"lpips": False, "fid": True, "hs": True},
          "multimodal": {"lpips": True, "fid": True, "hs": False}}


def evaluate(options: EvaluateOptions) -> Report:
    """Run one task of ``facestyle evaluate`` and write its report into ``options.out``.

    Returns the :class:`Report` (its first table is the paper-style table). Bad input (an unknown task,
    a missing checkpoint, data of the wrong label set...) raises :class:`~facestyle.errors.InputError` /
    :class:`~facestyle.errors.CheckpointError` before any long computation.
    """
    from ..editor.editor import resolve_device

    options.check()
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if options.paper_rows not in (None, "auto"):
        paper_dataset(options.paper_rows)
    device = resolve_device(options.device)
    model = load_network(options.checkpoint, device=device)  # any architecture (facestyle.arch)
    check_task(model, options.task)
    nets = load_metric_networks(**_NEEDS[options.task], lpips_net=options.lpips_net, weights_dir=options.weights_dir,
                                harmony_classifier=options.harmony_classifier, device=device)
    torch.manual_seed(options.seed)
    ctx = _Context(options, model, device, nets, out, run_info(options.checkpoint, model, device), [])
    report = _TASK_RUNNERS[options.task](ctx)
    if options.save_images:
        report.notes.append("The generated images are in images/ (transfers: images/REGION/TARGET__REFERENCE.png, "
                            "multimodal: images/REGION/NAME_K.png).")
    report.settings = {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in dataclasses.asdict(options).items() if k != "progress"}
    report.settings["out"] = str(out)
    write_report(report, out)
    return report
