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
- A metric whose weights are missing (LPIPS's backbone, FID's InceptionV3) or that was not asked for
  (HS without ``--harmony-classifier``) is *skipped*: its cells say so and the report gives the reason.
  Nothing is ever computed with random weights.

**Cross-dataset transfer between label sets.** A checkpoint is trained on one label set. Label maps of
another set are mapped into the checkpoint's through the classes both sets share
(:data:`facestyle.labels.SHARED_CLASSES`: skin, nose, eyes, brows, lips, mouth, hair and background):
for *encoding*, pixels of classes without a counterpart (CelebAMask-HQ's glasses, ears, hat, earrings,
necklace, neck and cloth have none in LaPa) are dropped from region pooling, so they pollute no other
class's style code (in particular not the background's); for *decoding* a target's label map, such
pixels become background, since the generator needs a class at every pixel. LaPa -> CelebAMask-HQ is
total (every LaPa class has a counterpart).

Outputs (``--out REPORT_DIR``, every file written atomically): ``report.md`` (the table, the paper's rows
beside it with ``--paper-rows``, skipped metrics and why, notes), ``results.csv`` (the table),
``results.json`` (the table, settings, skips and notes, machine-readable) and ``per_image.csv``
(one row per image, pair or image-and-region).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import os
import platform
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import __version__
from ..checkpoint import resolve
from ..errors import FacestyleError, InputError, WeightsError
from ..io import atomic_write_bytes
from ..labels import SHARED_CLASSES, LabelSet, get_label_set
from ..model import FaceStyleNet
from ..nn.pooling import IGNORE

TASKS = ("reconstruction", "transfer", "cross-transfer", "multimodal")
TABLE_OF_TASK = {"reconstruction": "Table 1", "transfer": "Table 2", "cross-transfer": "Table 3",
                 "multimodal": "Table 4"}
DATASETS = ("CelebAMask-HQ", "FFHQ", "LaPa")
DATASET_ALIASES = {"celebamask-hq": "CelebAMask-HQ", "celebamask": "CelebAMask-HQ", "celeba": "CelebAMask-HQ",
                   "ffhq": "FFHQ", "lapa": "LaPa"}
DEFAULT_REGIONS = ("skin", "hair")
DEFAULT_STYLES = 10  # paper 4.6: "we manipulate each image using 10 random styles"

# ---------------------------------------------------------------------------------------------------------
# The paper's own rows, typed from its text (section 4). The PDF's text extraction dropped some decimal
# points ("4555", "05142"); they are restored here from the column's magnitude.

#: Table 1, reconstruction: dataset -> method -> (PSNR, SSIM, LPIPS, FID).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "CelebAMask-HQ": {
        "pix2pixHD": (17.32, 0.5387, 0.2117, 21.68), "SPADE": (16.87, 0.5142, 0.2462, 25.46),
        "GroupDNet": (16.40, 0.5184, 0.2526, 38.87), "SEAN": (18.55, 0.5741, 0.1749, 17.12),
        "CLADE": (16.18, 0.4863, 0.2518, 24.47), "CLADE-ICPE": (16.57, 0.4997, 0.2507, 23.75),
        "Ours": (18.60, 0.5787, 0.1702, 15.26),
    },
    "FFHQ": {
        "pix2pixHD": (16.08, 0.5200, 0.2506, 45.55), "SPADE": (15.82, 0.4894, 0.2923, 53.10),
        "GroupDNet": (15.27, 0.4913, 0.2981, 71.83), "SEAN": (17.23, 0.5368, 0.2099, 34.29),
        "CLADE": (15.16, 0.4653, 0.2952, 57.45), "CLADE-ICPE": (15.57, 0.4794, 0.2967, 56.46),
        "Ours": (17.41, 0.5510, 0.2020, 32.84),
    },
    "LaPa": {
        "pix2pixHD": (13.16, 0.4387, 0.3817, 68.87), "SPADE": (14.82, 0.4607, 0.3927, 89.96),
        "GroupDNet": (14.22, 0.4454, 0.3928, 93.35), "SEAN": (14.72, 0.4841, 0.3281, 47.94),
        "CLADE": (14.67, 0.4681, 0.4012, 76.58), "CLADE-ICPE": (14.07, 0.4495, 0.3925, 85.93),
        "Ours": (14.75, 0.4891, 0.3295, 46.62),
    },
}

#: Table 2, regional transfer within a dataset: dataset -> method -> (skin FID, hair FID).
PAPER_TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "CelebAMask-HQ": {"pix2pixHD": (26.39, 26.58), "GroupDNet": (45.65, 44.09), "SEAN": (24.04, 24.59),
                      "SEAN+DoveNet": (29.62, 24.67), "Ours": (22.65, 22.97)},
    "FFHQ": {"pix2pixHD": (57.13, 56.44), "GroupDNet": (77.89, 78.20), "SEAN": (44.84, 43.64),
             "SEAN+DoveNet": (52.96, 44.32), "Ours": (42.82, 41.85)},
    "LaPa": {"pix2pixHD": (85.49, 84.72), "GroupDNet": (104.52, 104.02), "SEAN": (61.19, 60.68),
             "SEAN+DoveNet": (65.70, 63.46), "Ours": (60.14, 58.85)},
}

#: Table 3, transfer onto LaPa targets: reference dataset -> method -> ((skin FID, HS), (hair FID, HS)).
PAPER_TABLE3: dict[str, dict[str, tuple[tuple[float, float], tuple[float, float]]]] = {
    "CelebAMask-HQ": {
        "pix2pixHD": ((73.62, 0.7923), (73.80, 0.8075)), "GroupDNet": ((96.20, 0.8965), (93.36, 0.8752)),
        "SEAN": ((48.25, 0.7420), (48.43, 0.6940)), "Ours w/o softmax": ((52.98, 0.8071), (54.90, 0.7353)),
        "Ours w/o SA": ((48.06, 0.7749), (47.72, 0.7130)), "Ours": ((47.46, 0.8490), (47.05, 0.7742)),
    },
    "FFHQ": {
        "pix2pixHD": ((77.36, 0.8538), (73.98, 0.8137)), "GroupDNet": ((94.78, 0.9131), (93.34, 0.8753)),
        "SEAN": ((48.17, 0.7105), (48.62, 0.7164)), "Ours w/o softmax": ((53.10, 0.8100), (54.68, 0.7495)),
        "Ours w/o SA": ((47.84, 0.7598), (48.39, 0.7310)), "Ours": ((46.71, 0.8341), (47.36, 0.7854)),
    },
    "LaPa": {
        "pix2pixHD": ((85.49, 0.8314), (84.72, 0.8035)), "GroupDNet": ((104.52, 0.9093), (104.02, 0.8736)),
        "SEAN": ((61.19, 0.7396), (60.68, 0.6996)), "Ours w/o softmax": ((66.67, 0.8003), (65.25, 0.7348)),
        "Ours w/o SA": ((61.43, 0.7872), (59.99, 0.6964)), "Ours": ((60.14, 0.8537), (58.85, 0.7566)),
    },
}

#: Table 4, regional multi-modal synthesis: dataset -> region -> method -> (FID, mCSD, mOCD).
_T4_METHODS = ("SPADE", "GroupDNet", "CLADE", "CLADE-ICPE", "Ours w/ CNF", "Ours")


def _t4(fid: Sequence[float], mcsd: Sequence[float], mocd: Sequence[float]) -> dict[str, tuple[float, float, float]]:
    return {m: (f, c, o) for m, f, c, o in zip(_T4_METHODS, fid, mcsd, mocd, strict=True)}


PAPER_TABLE4: dict[str, dict[str, dict[str, tuple[float, float, float]]]] = {
    "CelebAMask-HQ": {
        "skin": _t4((21.09, 39.72, 21.39, 19.40, 12.21, 12.67), (0.0354, 0.0321, 0.0437, 0.0416, 0.0408, 0.0395),
                    (0.2126, 0.1280, 0.2561, 0.2382, 0.0721, 0.0752)),
        "hair": _t4((21.12, 50.43, 21.42, 19.39, 12.84, 12.55), (0.1848, 0.0001, 0.1855, 0.1954, 0.2323, 0.2078),
                    (0.1230, 0.0000, 0.1203, 0.1417, 0.0585, 0.0505)),
    },
    "FFHQ": {
        "skin": _t4((51.38, 72.34, 55.38, 52.24, 30.57, 31.43), (0.0392, 0.0360, 0.0395, 0.0393, 0.0458, 0.0413),
                    (0.2020, 0.0820, 0.2097, 0.2278, 0.0285, 0.0279)),
        "hair": _t4((51.36, 81.71, 55.32, 52.28, 28.45, 28.45), (0.0723, 0.0000, 0.1167, 0.1533, 0.0826, 0.0875),
                    (0.1920, 0.0000, 0.1757, 0.1797, 0.0157, 0.0150)),
    },
    "LaPa": {
        "skin": _t4((74.61, 96.75, 53.83, 60.29, 40.54, 40.47), (0.0455, 0.0446, 0.0462, 0.0466, 0.0685, 0.0600),
                    (0.3005, 0.1657, 0.3375, 0.3201, 0.1185, 0.1071)),
        "hair": _t4((74.68, 150.46, 53.76, 60.21, 41.11, 41.26), (0.0512, 0.0047, 0.0884, 0.0957, 0.1076, 0.0958),
                    (0.3080, 0.0000, 0.3299, 0.3405, 0.1238, 0.1004)),
    },
}

#: What the paper's text says about its tables, checked against the tables themselves.
PAPER_NOTES: dict[str, list[str]] = {
    "reconstruction": [
        "Paper 4.3 says the model 'outperforms other SOTA methods on all datasets' in Table 1; the table itself "
        "shows two exceptions on LaPa: SPADE's PSNR (14.82) is above Ours (14.75) and SEAN's LPIPS (0.3281) "
        "below Ours (0.3295). The second claim, the lowest FID on all datasets, holds (15.26, 32.84, 46.62).",
        "Table 1's FID is between the reconstructions and the real test images (2,000 per dataset at 256x256).",
    ],
    "transfer": [
        "Paper 4.4: the test set is split into halves, targets and references; FID is measured on the whole "
        "image; skin transfer is skin with nose. Table 2 reports FID only (no HS); its LaPa column repeats "
        "Table 3's LaPa->LaPa FIDs.",
    ],
    "cross-transfer": [
        "The paper's Table 3 caption says 'PSNR/HS', but its values are FID/HS: the text (4.4) says it "
        "'calculate[s] FID and HS', and the LaPa->LaPa column repeats Table 2's LaPa FIDs (e.g. Ours 60.14 / "
        "58.85, SEAN 61.19 / 60.68). This report gives FID/HS.",
        "Table 3's columns are the references' dataset; the targets are always LaPa's test set.",
    ],
    "multimodal": [
        "Paper 4.6: 10 random styles per image; mCSD is the mean LPIPS between pairs of results inside the "
        "region (higher: more diverse), mOCD outside it (lower: the rest stays put).",
        "The paper's Table 5 repeats Table 4's 'Ours' FIDs, except LaPa hair: 41.27 in Table 5, 41.26 in "
        "Table 4.",
    ],
}


def paper_dataset(name: str) -> str:
    """One of :data:`DATASETS` from a user's spelling (``celebamask-hq``, ``ffhq``, ``lapa``...)."""
    key = name.strip().lower()
    if key in DATASET_ALIASES:
        return DATASET_ALIASES[key]
    for d in DATASETS:
        if d.lower() == key:
            return d
    raise InputError(f"unknown paper dataset {name!r}; choose one of: celebamask-hq, ffhq, lapa")


def infer_paper_dataset(spec: str) -> str | None:
    """The paper's dataset that a ``--data`` spec names, when its kind says it (``celebamask-hq:``, ``lapa:``)."""
    kind = spec.partition(":")[0].strip().lower()
    return {"celebamask-hq": "CelebAMask-HQ", "lapa": "LaPa"}.get(kind)


# ---------------------------------------------------------------------------------------------------------
# Reports: tables in Markdown, CSV and JSON


@dataclass(frozen=True)
class Column:
    """One column of a table: ``key`` (CSV / JSON), ``label`` (Markdown), which way is better, decimals."""

    key: str
    label: str
    better: str = ""  # "higher", "lower" or ""
    digits: int = 4

    @property
    def header(self) -> str:
        arrow = {"higher": " ↑", "lower": " ↓"}.get(self.better, "")
        return f"{self.label}{arrow}"


@dataclass
class Row:
    """A method's values; ``source`` is ``measured`` (this run) or ``paper, DATASET`` (typed from the paper)."""

    method: str
    source: str
    values: dict[str, float | None]


@dataclass
class Table:
    """A results table. ``skipped`` maps column keys of the measured rows to why they have no value."""

    title: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # column key -> how many values were averaged


@dataclass
class Report:
    """Everything :func:`write_report` writes."""

    title: str
    info: list[tuple[str, str]]
    tables: list[Table]
    notes: list[str] = field(default_factory=list)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    per_image_name: str = "per_image.csv"
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name) shown in the report
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def format_value(value: float | None, digits: int) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}"


def json_number(value: Any) -> Any:
    """Finite floats as they are; NaN as null; infinities as the strings ``"inf"`` / ``"-inf"``."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _json_clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return json_number(obj)


def md_cell(text: str) -> str:
    """Text made safe for a Markdown table cell (``|`` escaped, no line breaks)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    lines = [f"### {table.title}", "", "| Method | " + " | ".join(md_cell(c.header) for c in table.columns) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for row in table.rows:
        cells = []
        for c in table.columns:
            if row.source == "measured" and c.key in table.skipped:
                cells.append("skipped")
            else:
                cells.append(format_value(row.values.get(c.key), c.digits))
        name = f"**{md_cell(row.method)}**" if row.source == "measured" else md_cell(f"{row.method} ({row.source})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if table.skipped:
        lines += ["", "Skipped:"]
        by_reason: dict[str, list[str]] = {}
        for key, reason in table.skipped.items():
            label = next(c.label for c in table.columns if c.key == key)
            by_reason.setdefault(reason, []).append(label)
        lines += [f"- {', '.join(labels)}: {reason}" for reason, labels in by_reason.items()]
    return "\n".join(lines)


def report_markdown(report: Report) -> str:
    lines = [f"# {report.title}", "", "| | |", "|---|---|"]
    lines += [f"| {md_cell(k)} | {md_cell(v)} |" for k, v in report.info]
    for table in report.tables:
        lines += ["", table_markdown(table)]
    for caption, name in report.images:
        lines += ["", f"### {caption}", "", f"![{caption}]({name})"]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    lines += ["", "## Files", "",
              "- `results.csv`: the tables above, one row per method (empty cell: no value)",
              "- `results.json`: the same with the settings, skipped metrics and notes",
              f"- `{report.per_image_name}`: {len(report.per_image)} per-image rows"]
    return "\n".join(lines) + "\n"


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return str(value)


def _csv_text(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_cell(row.get(k)) for k in header])
    return buf.getvalue()


def results_csv(report: Report) -> str:
    keys: list[str] = []
    for table in report.tables:
        keys += [c.key for c in table.columns if c.key not in keys]
    rows = []
    for table in report.tables:
        for row in table.rows:
            values = {k: (None if row.source == "measured" and k in table.skipped else v)
                      for k, v in row.values.items()}
            rows.append({"table": table.title, "method": row.method, "source": row.source, **values})
    return _csv_text(["table", "method", "source", *keys], rows)


def results_json(report: Report) -> dict[str, Any]:
    tables = []
    for table in report.tables:
        tables.append({
            "title": table.title,
            "columns": [{"key": c.key, "label": c.label, "better": c.better or None} for c in table.columns],
            "rows": [{"method": r.method, "source": r.source,
                      "values": {c.key: (None if r.source == "measured" and c.key in table.skipped
                                         else r.values.get(c.key)) for c in table.columns}}
                     for r in table.rows],
            "skipped": table.skipped,
            "counts": table.counts,
        })
    payload = {"title": report.title, "info": dict(report.info), "settings": report.settings, "tables": tables,
               "notes": report.notes, "per_image": report.per_image_name, **report.extra,
               "facestyle": __version__}
    return _json_clean(payload)


def write_report(report: Report, out_dir: str | os.PathLike) -> Path:
    """Write ``report.md``, ``results.csv``, ``results.json`` and the per-image CSV into ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    header: list[str] = []
    for row in report.per_image:
        header += [k for k in row if k not in header]
    atomic_write_bytes(out / report.per_image_name, _csv_text(header, report.per_image).encode())
    atomic_write_bytes(out / "results.csv", results_csv(report).encode())
    text = json.dumps(results_json(report), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    atomic_write_bytes(out / "results.json", text.encode())
    atomic_write_bytes(out / "report.md", report_markdown(report).encode())
    return out / "report.md"


def mean_of(values: Sequence[float]) -> tuple[float, int]:
    """Mean of the non-NaN values, and how many there were (NaN when none)."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return (float(arr.mean()) if arr.size else math.nan), int(arr.size)


def run_info(checkpoint: str, model: FaceStyleNet, device: torch.device) -> list[tuple[str, str]]:
    cfg = model.config
    alpha = None if model.mrsa is None else float(model.mrsa.alpha.detach())
    attention = "off" if alpha is None else f"on (alpha = {alpha:.4g})"
    return [
        ("checkpoint", str(resolve(checkpoint))),
        ("model", f"label set {cfg.label_set}, {cfg.image_size}x{cfg.image_size}, style length {cfg.style_dim}, "
                  f"fusion {cfg.fusion}, MRSA {attention}"),
        ("device", f"{device} (torch {torch.__version__}, {platform.machine()})"),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("facestyle", __version__),
    ]


# ---------------------------------------------------------------------------------------------------------
# Metric networks: loaded when their weights are there, skipped with the reason otherwise


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
    from ..metrics import LPIPS, HarmonyClassifier
    from ..nn.features.inception import FIDInceptionV3

    nets = MetricNetworks()
    if lpips:
        try:
            nets.lpips = LPIPS.from_pretrained(lpips_net, weights_dir).to(device)
        except WeightsError as exc:
            nets.skipped["lpips"] = str(exc)
    if fid:
        try:
            nets.inception = FIDInceptionV3.from_pretrained(weights_dir).to(device)
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


def fid_value(nets: MetricNetworks, fake: FeatureSet, real: FeatureSet) -> tuple[float | None, str | None]:
    """(FID, None), or (None, why it is skipped)."""
    from ..metrics import fid_from_features

    if nets.inception is None:
        return None, nets.skipped.get("fid", "not computed")
    f, r = fake.features(), real.features()
    if f.shape[0] < 2 or r.shape[0] < 2:
        return None, f"FID needs at least 2 images per set (got {f.shape[0]} generated, {r.shape[0]} real)"
    return fid_from_features(f, r), None


def fid_note(count: int) -> str:
    return (f"FID from {count} generated images; FID is biased upwards on small sets, so only values from the "
            "paper's 2,000 test images compare with its tables.")


# ---------------------------------------------------------------------------------------------------------
# Label sets: mapping another set's label maps into the checkpoint's

VOID = IGNORE  # a class without a counterpart in the checkpoint's label set: left out of pooling


def label_lookup(src: LabelSet, dst: LabelSet) -> np.ndarray:
    """(src classes,) int64 table: ``src`` class -> ``dst`` class, :data:`VOID` where ``dst`` has no
    counterpart. Between different sets, only :data:`~facestyle.labels.SHARED_CLASSES` are mapped."""
    if src.name == dst.name:
        return np.arange(src.num_classes, dtype=np.int64)
    from ..labels import class_mapping

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


def transfer_codes(model: FaceStyleNet, target: Tensor, target_labels: Tensor, reference: Tensor,
                   reference_labels: Tensor, classes: Tensor, harmonize: bool = True,
                   decode_labels: Tensor | None = None) -> Tensor:
    """Transfer ``classes`` ((R,) bool) from references to targets (batched, pair i with pair i).

    ``target_labels`` / ``reference_labels`` are the maps pooled by the encoder (may hold :data:`VOID`);
    ``decode_labels`` is the target's map the generator draws (default: ``target_labels``).
    """
    s_t, p_t = model.encode(target, target_labels)
    s_r, p_r = model.encode(reference, reference_labels)
    s_c = model.compose(s_t, p_t, s_r, p_r, classes)
    labels = target_labels if decode_labels is None else decode_labels
    return model.decode(labels, model.harmonize(s_c, s_t, p_t, enabled=harmonize))


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

    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate)
    yield from loader


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, disable=None if enabled else True)


def _check_same_label_set(dataset: Any, model: FaceStyleNet, spec: str, task: str) -> None:
    ls = dataset_label_set(dataset)
    if ls.name != model.config.label_set:
        raise InputError(f"{spec} is labelled with the {ls.name} label set, the checkpoint with "
                         f"{model.config.label_set}; the {task} task needs the checkpoint's label set (only "
                         "cross-transfer maps label maps between sets)")


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


def _region_label(model: FaceStyleNet, region: str) -> str:
    ls = get_label_set(model.config.label_set)
    classes = ls.region_classes(region)
    names = [ls.classes[c] for c in classes]
    return region if names == [region] else f"{region} ({' + '.join(names)})"


def _evaluate_reconstruction(ctx: _Context) -> Report:
    from ..metrics import psnr, ssim

    o, model, nets = ctx.options, ctx.model, ctx.nets
    size = model.config.image_size
    dataset_name = _paper_dataset_for(o, o.data)
    dataset = load_dataset(o.data, o.split, size, o.seed, o.data_label_set or model.config.label_set)
    _check_same_label_set(dataset, model, o.data, o.task)
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
    values["fid"], why = fid_value(nets, fake, real)
    if why:
        table.skipped["fid"] = why
    else:
        table.counts["fid"] = fake.count
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


def _transfer_table(ctx: _Context, title: str, regions: Sequence[str], fids: dict[str, tuple[float | None, str | None]],
                    per_image: list[dict[str, Any]], fid_counts: dict[str, int]) -> Table:
    columns = []
    for region in regions:
        columns += [Column(f"{region}_fid", f"{region} FID", "lower", 2), Column(f"{region}_hs", f"{region} HS",
                                                                                   "higher", 4)]
    table = Table(title, columns)
    values: dict[str, float | None] = {}
    for region in regions:
        values[f"{region}_fid"], why = fids[region]
        if why:
            table.skipped[f"{region}_fid"] = why
        else:
            table.counts[f"{region}_fid"] = fid_counts[region]
        if ctx.nets.harmony is None:
            table.skipped[f"{region}_hs"] = ctx.nets.skipped["hs"]
            values[f"{region}_hs"] = None
        else:
            values[f"{region}_hs"], table.counts[f"{region}_hs"] = mean_of(
                [r["hs"] for r in per_image if r["region"] == region])
    table.rows.append(Row("this checkpoint", "measured", values))
    return table


def _run_transfers(ctx: _Context, targets: tuple[Any, Sequence[int]], references: tuple[Any, Sequence[int]],
                   regions: Sequence[str], target_lookup: np.ndarray, reference_lookup: np.ndarray,
                   real: RealFeatures, desc: str, real_from_targets: bool = False
                   ) -> tuple[dict[str, tuple[float | None, str | None]], list[dict], dict[str, int]]:
    """Transfer each region from reference i to target i for every pair; FID against ``real`` (filled with
    the targets when ``real_from_targets``)."""
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
                with torch.inference_mode():
                    out = transfer_codes(model, t_img, t_enc, r_img, r_enc, class_mask.to(ctx.device),
                                         decode_labels=t_dec)
                out01 = _unit(out)
                fakes[region].add(out01)
                ids = torch.as_tensor(classes, device=ctx.device)
                region_mask = torch.isin(t_dec, ids)
                t_has = region_mask.flatten(1).any(1)
                r_has = torch.isin(r_enc, ids).flatten(1).any(1)
                hs = None
                if nets.harmony is not None:
                    hs = harmony_score(nets.harmony, out01, region_mask)
                for i in range(len(t_idx)):
                    row = {"target": t_names[i], "reference": r_names[i], "region": region,
                           "target_has_region": bool(t_has[i]), "reference_has_region": bool(r_has[i]),
                           "region_fraction": float(region_mask[i].float().mean())}
                    row["hs"] = float(hs[i]) if hs is not None and bool(t_has[i]) else math.nan
                    per_image.append(row)
                if o.save_images:
                    _save_images(ctx.out / "images" / region,
                                 [f"{a}__{b}" for a, b in zip(t_names, r_names)], out)
            bar.update(len(t_idx))
    fids, counts = {}, {}
    for region in regions:
        fids[region] = fid_value(nets, fakes[region], real)
        counts[region] = fakes[region].count
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
    return fids, per_image, counts


def _evaluate_transfer(ctx: _Context) -> Report:
    o, model = ctx.options, ctx.model
    size = model.config.image_size
    regions = parse_regions(o.regions)
    _region_masks(model, regions)  # check the names before any work
    dataset_name = _paper_dataset_for(o, o.data)
    dataset = load_dataset(o.data, o.split, size, o.seed, o.data_label_set or model.config.label_set)
    _check_same_label_set(dataset, model, o.data, o.task)
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
    fids, per_image, counts = _run_transfers(ctx, (dataset, targets), (dataset, references), regions, identity,
                                             identity, real, "evaluate transfer")
    table = _transfer_table(ctx, f"Regional transfer on {o.data} ({half} pairs), paper Table 2", regions, fids,
                            per_image, counts)
    if dataset_name:
        for method, (skin, hair) in PAPER_TABLE2[dataset_name].items():
            vals = {f"{r}_fid": {"skin": skin, "hair": hair}.get(r) for r in regions}
            table.rows.append(Row(method, f"paper, {dataset_name}", vals))
    names = getattr(dataset, "names", None)
    left_out = f"; {names[2 * half] if names else f'image {2 * half}'} left out (odd count)" if n % 2 else ""
    ctx.info.append(("data", f"{o.data} (split {o.split}, {n} of {len(dataset)} images: targets = the first "
                             f"{half}, references = the next {half}, target i with reference i{left_out})"))
    ctx.info.append(("regions", ", ".join(_region_label(model, r) for r in regions)))
    ctx.notes.insert(0, "Each region is transferred on its own (one result per pair and region); FID on the "
                        "whole image against the real images of both halves; HS with the target's region as mask.")
    if any(v[0] is not None for v in fids.values()):
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
    fids, per_image, counts = _run_transfers(ctx, (targets, t_idx), (references, r_idx), regions, t_lookup,
                                             r_lookup, real, "evaluate cross-transfer", real_from_targets=True)
    tgt = infer_paper_dataset(o.data) or o.data
    table = _transfer_table(ctx, f"Transfer {o.reference_data} -> {o.data} ({n_t} pairs), FID / HS, paper Table 3",
                            regions, fids, per_image, counts)
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
    ctx.info.append(("regions", ", ".join(_region_label(model, r) for r in regions)))
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
    if any(v[0] is not None for v in fids.values()):
        ctx.notes.append(fid_note(n_t))
    ctx.notes += PAPER_NOTES["cross-transfer"]
    return Report(f"facestyle evaluate: cross-dataset transfer (paper {TABLE_OF_TASK[o.task]})", ctx.info,
                  [table], ctx.notes, per_image)


def style_sampler() -> Callable[..., Any]:
    """``facestyle.editor.styles.sample(editor, target, labels, region, n, seed, return_tensors=True)``, or an
    InputError saying the multimodal task needs the regional style mapping networks."""
    import importlib

    try:
        module = importlib.import_module("facestyle.editor.styles")
    except ModuleNotFoundError as exc:
        if exc.name != "facestyle.editor.styles":
            raise
        module = None
    sample = getattr(module, "sample", None)
    if sample is None:
        raise InputError("the multimodal task (Table 4) samples random styles with the regional style mapping "
                         "networks (facestyle.editor.styles.sample), which this installation does not provide")
    return sample


def _as_batch(results: Any, size: int, device: torch.device) -> Tensor:
    """The sampler's results (a (N, 3, H, W) tensor in [-1, 1], or a list of tensors / PIL images) as a
    (N, 3, size, size) tensor in [-1, 1]."""
    from PIL import Image

    from ..data.transforms import resize_image
    from ..editor.inputs import _pil_image

    if isinstance(results, Tensor):
        items = list(results) if results.dim() == 4 else [results]
    else:
        items = list(results)
    out = []
    for item in items:
        t = _pil_image(item) if isinstance(item, Image.Image) else torch.as_tensor(item).float()
        out.append(resize_image(t.to(device), size))
    return torch.stack(out)


def _evaluate_multimodal(ctx: _Context) -> Report:
    from ..editor.editor import Editor
    from ..metrics import region_diversity

    o, model, nets = ctx.options, ctx.model, ctx.nets
    sample = style_sampler()  # fails before any work when mapping networks are unavailable
    size = model.config.image_size
    regions = parse_regions(o.regions)
    masks = _region_masks(model, regions)
    dataset_name = _paper_dataset_for(o, o.data)
    dataset = load_dataset(o.data, o.split, size, o.seed, o.data_label_set or model.config.label_set)
    _check_same_label_set(dataset, model, o.data, o.task)
    indices = list(range(min(len(dataset), o.limit or len(dataset))))
    editor = Editor.from_pretrained(o.checkpoint, device=ctx.device)
    if getattr(editor, "checkpoint_dir", None) is None:  # where edit_style finds CHECKPOINT/mapping/REGION
        editor.checkpoint_dir = resolve(o.checkpoint)
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
                    results = sample(editor, image.to(ctx.device), labels.to(ctx.device), region, o.styles, seed,
                                     return_tensors=True)
                except FacestyleError as exc:
                    raise InputError(f"the multimodal task (Table 4) samples {region} styles with the checkpoint's "
                                     f"regional style mapping networks: {exc}") from None
                batch = _as_batch(results, size, ctx.device)
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
        values[f"{region}_fid"], why = fid_value(nets, fakes[region], real)
        if why:
            table.skipped[f"{region}_fid"] = why
        else:
            table.counts[f"{region}_fid"] = fakes[region].count
        for key in ("mcsd", "mocd"):
            rows = [r[key] for r in per_image if r["region"] == region]
            values[f"{region}_{key}"], table.counts[f"{region}_{key}"] = mean_of(rows)
            if nets.lpips is None:
                table.skipped[f"{region}_{key}"] = nets.skipped["lpips"]
    table.rows.append(Row("this checkpoint", "measured", values))
    if dataset_name:
        for method in _T4_METHODS:
            vals = {}
            for region in regions:
                triple = PAPER_TABLE4[dataset_name].get(region, {}).get(method)
                for key, v in zip(("fid", "mcsd", "mocd"), triple or (None, None, None)):
                    vals[f"{region}_{key}"] = v
            table.rows.append(Row(method, f"paper, {dataset_name}", vals))
    ctx.info.append(("data", f"{o.data} (split {o.split}, {len(indices)} of {len(dataset)} images)"))
    ctx.info.append(("regions", ", ".join(_region_label(model, r) for r in regions)))
    ctx.notes.insert(0, f"{o.styles} random styles per image and region (seeded from --seed {o.seed}, the image "
                        f"and the region); mCSD / mOCD with LPIPS ({o.lpips_net}) restricted to the target's region "
                        "/ the rest; FID of all sampled images against the real input images.")
    if dataset_name:
        ctx.notes += PAPER_NOTES["multimodal"]
    return Report(f"facestyle evaluate: regional multi-modal synthesis (paper {TABLE_OF_TASK[o.task]})", ctx.info,
                  [table], ctx.notes, per_image)


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
    model = FaceStyleNet.from_pretrained(options.checkpoint, device=device)
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
