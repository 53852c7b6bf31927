"""Reports of ``facestyle evaluate`` and ``facestyle bench-harmony``: tables of measured rows (and the
paper's rows beside them), written atomically into a folder as ``report.md`` (tables, skipped metrics and
why, notes), ``results.csv`` (the tables), ``results.json`` (the same with settings, skips and notes) and
a per-image CSV (one row per image, pair or image-and-region)."""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..checkpoint import resolve
from ..errors import InputError
from ..io import atomic_path
from ..model import FaceStyleNet


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
    if isinstance(value, (float, np.floating)):
        value = json_number(float(value))  # NaN: an empty cell; infinities: "inf" / "-inf"
        if isinstance(value, float):
            return f"{value:.6g}"
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


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
    """Write ``report.md``, ``results.csv``, ``results.json`` and the per-image CSV into ``out_dir``, all or
    nothing: every file is written under a temporary name first and renamed only when all were written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    header: list[str] = []
    for row in report.per_image:
        header += [k for k in row if k not in header]
    files = {report.per_image_name: _csv_text(header, report.per_image), "results.csv": results_csv(report),
             "results.json": json.dumps(results_json(report), indent=2, allow_nan=False, ensure_ascii=False) + "\n",
             "report.md": report_markdown(report)}
    try:
        out.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            for name, text in files.items():
                stack.enter_context(atomic_path(out / name)).write_bytes(text.encode())
    except OSError as exc:
        raise InputError(f"cannot write the report in {out}: {exc.strerror or exc}; nothing was written") from None
    return out / "report.md"


def add_measured_rows(table: Table, records: Sequence[dict[str, Any]], methods: Sequence[str],
                      labels: dict[str, str]) -> None:
    """One measured row per method: the mean of each column over the records of that method (``record["method"]``),
    with the count of averaged values kept for the columns the table does not skip."""
    for method in methods:
        values: dict[str, float | None] = {}
        for c in table.columns:
            values[c.key], count = mean_of([r[c.key] for r in records if r["method"] == method])
            if c.key not in table.skipped:
                table.counts[c.key] = count
        table.rows.append(Row(labels[method], "measured", values))


def mean_of(values: Sequence[float]) -> tuple[float, int]:
    """Mean of the non-NaN values, and how many there were (NaN when none)."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return (float(arr.mean()) if arr.size else math.nan), int(arr.size)


def run_info(checkpoint: str, model: FaceStyleNet, device: torch.device) -> list[tuple[str, str]]:
    cfg = model.config
    if isinstance(model, FaceStyleNet):
        alpha = None if model.mrsa is None else float(model.mrsa.alpha.detach())
        attention = "off" if alpha is None else f"on (alpha = {alpha:.4g})"
        about = (f"label set {cfg.label_set}, {cfg.image_size}x{cfg.image_size}, style length {cfg.style_dim}, "
                 f"fusion {cfg.fusion}, MRSA {attention}")
    else:  # a compared system (facestyle.arch)
        about = f"{model.arch}, label set {cfg.label_set}, {cfg.image_size}x{cfg.image_size}, {model.code_kind} codes"
    return [
        ("checkpoint", str(resolve(checkpoint))),
        ("model", about),
        ("device", f"{device} (torch {torch.__version__}, {platform.machine()})"),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("facestyle", __version__),
    ]

