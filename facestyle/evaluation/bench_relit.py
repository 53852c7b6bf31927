"""Harmony against ground truth on real photos: ``facestyle bench-harmony --data SPEC``.

Photos have no ground truth for "region r of photo B onto photo A". Image-harmonization datasets
(iHarmony4) make one the other way round: they change the appearance of a region of a real photo, and
the unchanged photo is what harmonizing the region back must give. This benchmark does that to face
regions (the *relit* protocol of :mod:`facestyle.data.composites`):

- **target**: photo i of ``--data`` (its own label map), each of the first ``--pairs`` photos (default:
  all) once for each region of ``--regions`` (``skin`` = skin + nose, then ``hair``);
- **reference**: the same photo after the photometric change ``change_for(seed, i)`` of
  :mod:`facestyle.data.relight` (exposure 2^(+-0.25..0.8), white balance and tint, gamma, a directional
  light gradient: one fixed distribution, seeded per (seed, photo), the same change for every region of
  the photo), on the same label map;
- the region's codes come from the reference, everything else from the target; the **ground truth** is the
  unchanged target photo.

Rows, in this order:

====================================  ==============================================================
MRSA                                  the checkpoint's transfer with multi-region style attention
MRSA bypassed at inference            the same transfer with MRSA skipped (``harmonize=False``)
composite (no harmonization)          the changed photo pasted into the region: the "do nothing" row of
                                      harmonization papers
DoveNet after the bypassed transfer   the post-hoc harmonizer on the bypassed transfer (only when the
                                      checkpoint holds one, or ``--harmonizer`` names one)
ground-truth reconstruction (floor)   the checkpoint's reconstruction of the unchanged target: the least
                                      error any transfer through this decoder can reach
====================================  ==============================================================

Metrics as iHarmony4 reports them, on the 0-255 scale (:func:`facestyle.metrics.fmse`): ``mse`` and
``psnr`` over the whole image, ``fmse`` and ``fpsnr`` over the moved region only, and ``colour_in``, the
error of the region's mean colour in [0, 1] units as the synthetic benchmark computes it
(:func:`.bench_harmony.masked_errors`). Values are means over photos (PSNR: mean of per-photo PSNRs);
a photo without the region is left out of that region's means. Images are compared at the checkpoint's
size as floats (not rounded to 8 bits).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.composites import relit_pairs
from ..data.relight import change_for
from ..errors import InputError
from ..labels import get_label_set
from ..model import FaceStyleNet
from . import harmonizer as harmonizers
from .bench_harmony import masked_errors, report_folder_and_device
from .labels_map import region_label
from .report import Column, Report, Table, add_measured_rows, format_value, run_info, write_report

#: (key, label) of the compared methods, in the tables' order.
METHODS = (
    ("mrsa", "MRSA"),
    ("bypass", "MRSA bypassed at inference"),
    ("composite", "composite (no harmonization)"),
    ("dovenet", "DoveNet after the bypassed transfer"),
    ("oracle", "ground-truth reconstruction (floor)"),
)
METHOD_LABELS = dict(METHODS)
COLUMNS = (
    Column("mse", "MSE", "lower", 2),
    Column("psnr", "PSNR", "higher", 2),
    Column("fmse", "fMSE", "lower", 2),
    Column("fpsnr", "fPSNR", "higher", 2),
    Column("colour_in", "mean-colour error in", "lower", 4),
)
CHANGES = ("exposure 2^(+-U(0.25, 0.8)); white balance: red x (1 + 0.15 t), blue x (1 - 0.15 t), t ~ U(-1, 1), "
           "green x (1 + U(-0.05, 0.05)); gamma exp(U(-0.25, 0.25)); a directional light gradient of strength "
           "U(0, 0.35) (facestyle.data.relight.sample_change)")


@dataclass
class RelitOptions:
    """Everything ``facestyle bench-harmony --data SPEC`` takes."""

    checkpoint: str
    data: str
    out: str | os.PathLike
    pairs: int | None = None  # the first N photos; None: all
    seed: int = 0
    regions: Sequence[str] = ("skin", "hair")
    split: str = "test"
    data_label_set: str | None = None
    harmonizer: str | None = None  # a DoveNet folder; default: the checkpoint's own ``harmonizer/`` when present
    device: str = "cpu"
    batch_size: int = 8
    sheet_pairs: int = 4
    workers: int = 0
    progress: bool = True

    def check(self) -> None:
        if self.pairs is not None and self.pairs < 1:
            raise InputError(f"--pairs must be positive, got {self.pairs}")
        if self.seed < 0:
            raise InputError(f"--seed must be 0 or more, got {self.seed}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be positive, got {self.batch_size}")
        if not list(self.regions):
            raise InputError("--regions is empty; name at least one region, e.g. --regions skin,hair")


def errors_to_truth(output: Tensor, truth: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per-image ``mse``, ``psnr``, ``fmse``, ``fpsnr`` (0-255 scale) and ``colour_in`` of ``output`` to ``truth``
    (both (B, 3, H, W) in [-1, 1]) with the region ``mask`` (B, 1, H, W) or (B, H, W)."""
    from ..metrics import fmse, fpsnr, mse_255, psnr_255, to_unit_range

    out01, truth01 = to_unit_range(output.float()), to_unit_range(truth.float())
    region = (mask[:, 0] if mask.dim() == 4 else mask) > 0
    return {"mse": mse_255(out01, truth01), "psnr": psnr_255(out01, truth01),
            "fmse": fmse(out01, truth01, region), "fpsnr": fpsnr(out01, truth01, region),
            "colour_in": masked_errors(out01, truth01, region)["colour"]}


def bench_relit(options: RelitOptions) -> Report:
    """Run the relit benchmark (see the module docstring) and write its report into ``options.out``."""
    from tqdm import tqdm

    from .evaluate import _collate, dataset_label_set, load_dataset, model_dtype

    options.check()
    out_dir, device = report_folder_and_device(options.out, options.device)
    model = FaceStyleNet.from_pretrained(options.checkpoint, device=device)
    cfg = model.config
    label_set = get_label_set(cfg.label_set)
    regions = list(options.regions)
    class_masks = {}
    for region in regions:
        mask = torch.zeros(label_set.num_classes, dtype=torch.bool, device=device)
        mask[list(label_set.region_classes(region))] = True  # an unknown region fails here, listing the valid ones
        class_masks[region] = mask
    dataset = load_dataset(options.data, options.split, cfg.image_size, options.seed,
                           options.data_label_set or cfg.label_set)
    if dataset_label_set(dataset).name != cfg.label_set:
        raise InputError(f"{options.data} is labelled with the {dataset_label_set(dataset).name} label set, the "
                         f"checkpoint with {cfg.label_set}; bench-harmony needs the checkpoint's label set")
    count = len(dataset) if options.pairs is None else min(options.pairs, len(dataset))
    if count < 1:
        raise InputError(f"{options.data}: no labelled photos in split {options.split}")
    harmonizer, harmonizer_from = harmonizers.harmonizer_for(options.checkpoint, options.harmonizer, device)
    methods = [k for k, _ in METHODS if k != "dovenet" or harmonizer is not None]
    dtype = model_dtype(model)
    torch.manual_seed(options.seed)

    per_pair: list[dict[str, Any]] = []
    sheet: list[tuple[tuple[int, int], str, list[Tensor]]] = []  # ((region, photo), title, cells)
    with tqdm(total=count, desc="bench-harmony (relit)", unit="photo", dynamic_ncols=True,
              disable=None if options.progress else True) as bar:
        for start in range(0, count, options.batch_size):
            indices = list(range(start, min(start + options.batch_size, count)))
            images, labels, names = _collate([dataset[i] for i in indices])
            images, labels = images.to(device, dtype), labels.to(device)
            with torch.inference_mode():
                floor = model(images, labels)
            for region in regions:
                pairs = relit_pairs(images, labels, label_set, options.seed, indices, classes=class_masks[region])
                inside = pairs.mask
                with torch.inference_mode():
                    results = {
                        "mrsa": model.transfer(pairs.target, pairs.target_labels, pairs.reference,
                                               pairs.reference_labels, class_masks[region], harmonize=True),
                        "bypass": model.transfer(pairs.target, pairs.target_labels, pairs.reference,
                                                 pairs.reference_labels, class_masks[region], harmonize=False),
                        "composite": pairs.composite,
                        "oracle": floor,
                    }
                if harmonizer is not None:
                    results["dovenet"] = harmonizers.run_harmonizer(harmonizer, results["bypass"], inside)
                has_region = inside.flatten(1).amax(1) > 0
                for method in methods:
                    values = errors_to_truth(results[method], pairs.truth, inside)
                    for i, index in enumerate(indices):
                        ok = bool(has_region[i])
                        change = change_for(options.seed, index)
                        row = {"photo": names[i], "index": index, "region": region, "method": method,
                               "region_fraction": float(inside[i].float().mean()),
                               "excluded": "" if ok else "the photo lacks the region",
                               "exposure": change.exposure, "gain_r": change.gains[0], "gain_g": change.gains[1],
                               "gain_b": change.gains[2], "gamma": change.gamma,
                               "gradient_strength": change.gradient_strength}
                        row.update({c.key: (float(values[c.key][i]) if ok else math.nan) for c in COLUMNS})
                        per_pair.append(row)
                for i, index in enumerate(indices):
                    if index < options.sheet_pairs:
                        keys = ["oracle"] if harmonizer is None else ["dovenet", "oracle"]
                        cells = [pairs.target[i], pairs.reference[i], pairs.composite[i], results["bypass"][i],
                                 results["mrsa"][i]] + [results[k][i] for k in keys]
                        sheet.append(((regions.index(region), index), f"{names[i]} {region}",
                                      [c.detach().float().cpu() for c in cells]))
            bar.update(len(indices))

    tables, notes = _tables(per_pair, regions, methods, label_set)
    info = run_info(options.checkpoint, model, device)
    info.append(("data", f"{options.data} (split {options.split}, the first {count} of {len(dataset)} photos), "
                         f"{cfg.image_size}x{cfg.image_size}"))
    info.append(("pairs", f"each photo once per region: its own label map; the reference is the photo after "
                          f"change_for({options.seed}, photo index); the ground truth is the photo itself"))
    info.append(("changes", CHANGES))
    if harmonizer_from is not None:
        info.append(("harmonizer", harmonizer_from))
    info.append(("regions", ", ".join(region_label(label_set, r) for r in regions)))
    notes = _verdicts(tables, regions, model) + notes + [
        "Ground truth: the unchanged photo. MSE / PSNR over the whole image and fMSE / fPSNR over the moved region "
        "only, on the 0-255 scale as iHarmony4 reports them (fMSE = sum over the region's pixels and channels of "
        "the squared error / (3 x its pixels)); PSNR and fPSNR are means of per-photo values.",
        "'mean-colour error in': mean over R, G, B of |mean colour of the result in the region - of the ground "
        "truth|, in [0, 1] units, as the synthetic benchmark computes it.",
        "composite (no harmonization): the changed photo in the region, the photo elsewhere (exact outside the "
        "region, so its MSE is its fMSE scaled by the region's area). A decoder cannot reproduce a photo's pixels "
        "as pasting does: compare the transfers with each other and with the floor.",
        "ground-truth reconstruction: the checkpoint reconstructing the unchanged photo from its own codes.",
    ]
    images = []
    if sheet:
        from ..io import save_image
        from ..visualize import contact_sheet

        sheet.sort(key=lambda item: item[0])  # skin's photos first, then hair's

        columns = ["target = truth", "changed ref.", "composite", "bypassed", "MRSA"]
        columns += ["DoveNet"] if harmonizer is not None else []
        columns += ["reconstruction"]
        picture = contact_sheet([cells for _, _, cells in sheet], columns, [title for _, title, _ in sheet],
                                cell=max(128, cfg.image_size))
        out_dir.mkdir(parents=True, exist_ok=True)
        save_image(picture, out_dir / "contact_sheet.png")
        shown = ", DoveNet after it" if harmonizer is not None else ""
        images.append((f"Contact sheet (photo, region): the target (the ground truth), the changed reference, the "
                       f"composite, the transfer bypassed{shown}, with MRSA, the floor", "contact_sheet.png"))
    report = Report("facestyle bench-harmony: harmony against ground truth on relit photos", info, tables, notes,
                    per_pair, per_image_name="per_pair.csv", images=images)
    report.settings = {**dataclasses.asdict(options), "out": str(out_dir), "regions": regions, "photos": count,
                       "protocol": "relit"}
    report.settings.pop("progress")
    report.extra = {"mrsa_alpha": None if model.mrsa is None else float(model.mrsa.alpha.detach())}
    write_report(report, out_dir)
    return report


def _tables(per_pair: list[dict[str, Any]], regions: Sequence[str], methods: Sequence[str],
            label_set: Any) -> tuple[list[Table], list[str]]:
    tables, notes = [], []
    for region in regions:
        rows = [r for r in per_pair if r["region"] == region]
        photos = {r["index"] for r in rows}
        excluded = {r["index"] for r in rows if r["excluded"]}
        title = (f"{region_label(label_set, region)}: error to the unchanged photo, mean over "
                 f"{len(photos) - len(excluded)} photos")
        table = Table(title, list(COLUMNS))
        add_measured_rows(table, rows, methods, METHOD_LABELS)
        tables.append(table)
        if excluded:
            notes.append(f"{region}: {len(excluded)} photo(s) lack the region and are left out of its means.")
    return tables, notes


def _verdicts(tables: list[Table], regions: Sequence[str], model: FaceStyleNet) -> list[str]:
    notes = []
    alpha = None if model.mrsa is None else float(model.mrsa.alpha.detach())
    if alpha is None:
        notes.append("The checkpoint has attention = off: its 'MRSA' and 'MRSA bypassed' rows are the same network.")
    elif alpha == 0:
        notes.append("The checkpoint's MRSA has alpha = 0 (its initial value): MRSA is the identity, so 'MRSA' and "
                     "'MRSA bypassed' are equal.")
    for region, table in zip(regions, tables):
        by = {row.method: row.values for row in table.rows}
        mrsa, bypass = by[METHOD_LABELS["mrsa"]], by[METHOD_LABELS["bypass"]]
        better = mrsa["fmse"] is not None and bypass["fmse"] is not None and mrsa["fmse"] < bypass["fmse"]
        parts = [f"{region}: fMSE MRSA {format_value(mrsa['fmse'], 2)} vs bypassed {format_value(bypass['fmse'], 2)} "
                 f"({'MRSA better' if better else 'MRSA NOT better'})",
                 f"composite {format_value(by[METHOD_LABELS['composite']]['fmse'], 2)}"]
        if METHOD_LABELS["dovenet"] in by:
            parts.append(f"DoveNet {format_value(by[METHOD_LABELS['dovenet']]['fmse'], 2)}")
        parts.append(f"floor {format_value(by[METHOD_LABELS['oracle']]['fmse'], 2)}")
        notes.append(", ".join(parts) + ".")
    return notes


__all__ = ["COLUMNS", "METHODS", "RelitOptions", "bench_relit", "errors_to_truth"]
