"""``facestyle compare``: several checkpoints (of any architecture) on one task and the same data, one table.

Each checkpoint runs :func:`facestyle.evaluation.evaluate.evaluate` with the same options; its own report
goes to ``OUT/systems/NAME/`` and its measured row becomes the row ``NAME`` of the compared table (NAME:
the architecture and the checkpoint folder's name). With ``paper_rows`` the paper's published rows are
added beside, their source ``published, DATASET``. ``OUT`` gets ``report.md``, ``results.csv`` and
``results.json`` in :mod:`.report`'s schema (the one ``evaluate`` writes), the per-image rows of every
system (a ``system`` column first) and ``contact_sheet.png``: one column per system on the same inputs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..arch import arch_of, load_network
from ..errors import InputError
from ..io import save_image
from ..labels import get_label_set
from .evaluate import TASKS, EvaluateOptions, check_task, evaluate, load_dataset
from .report import Report, Row, Table, write_report

COMPARED_TASKS = tuple(t for t in TASKS if t != "cross-transfer")
SHEET_REGIONS = ("skin",)


@dataclass
class CompareOptions:
    """``facestyle compare``'s options: the checkpoints, and evaluate's options for all of them."""

    checkpoints: Sequence[str]
    task: str
    data: str
    out: str | os.PathLike
    paper_rows: str | None = None
    regions: Sequence[str] = ("skin", "hair")
    limit: int | None = None
    batch_size: int = 8
    device: str = "cpu"
    split: str = "test"
    seed: int = 0
    styles: int = 10
    weights_dir: str | None = None
    harmony_classifier: str | None = None
    lpips_net: str = "alex"
    sheet_images: int = 4
    progress: bool = True
    names: list[str] = field(default_factory=list)  # filled by compare(): one per checkpoint


def system_names(checkpoints: Sequence[str], networks: Sequence[Any]) -> list[str]:
    """``ARCH (FOLDER)`` per checkpoint, numbered where two would read the same."""
    names = [f"{arch_of(net)} ({Path(str(ck)).resolve().name or ck})" for ck, net in zip(checkpoints, networks)]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if names.count(name) == 1 else f"{name} #{seen[name]}")
    return out


def compare(options: CompareOptions) -> Report:
    """Evaluate every checkpoint on ``options.task`` and write the compared report into ``options.out``.

    Every checkpoint is loaded and checked for the task before any is evaluated: one that cannot do it is
    an InputError naming it and what its architecture can do.
    """
    if options.task not in COMPARED_TASKS:
        raise InputError(f"compare runs the tasks {', '.join(COMPARED_TASKS)}, not {options.task!r}")
    if not options.checkpoints:
        raise InputError("--checkpoints is empty; give one or more checkpoint folders, comma-separated")
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    networks = []
    for checkpoint in options.checkpoints:
        net = load_network(checkpoint, device="cpu")
        try:
            check_task(net, options.task)
        except InputError as exc:
            raise InputError(f"{checkpoint}: {exc}") from None
        networks.append(net)
    names = system_names(options.checkpoints, networks)
    options.names = names
    label_sets = {net.config.label_set for net in networks}
    if len(label_sets) > 1:
        raise InputError(f"the checkpoints use different label sets ({', '.join(sorted(label_sets))}); compare "
                         "systems of one label set")

    reports = []
    for i, (checkpoint, name) in enumerate(zip(options.checkpoints, names)):
        reports.append(evaluate(EvaluateOptions(
            checkpoint=str(checkpoint), task=options.task, data=options.data, out=out / "systems" / _slug(name),
            regions=list(options.regions), harmony_classifier=options.harmony_classifier,
            weights_dir=options.weights_dir, limit=options.limit, batch_size=options.batch_size,
            device=options.device, paper_rows=options.paper_rows if i == 0 else None, split=options.split,
            seed=options.seed, lpips_net=options.lpips_net, styles=options.styles, progress=options.progress)))

    first = reports[0].tables[0]
    table = Table(first.title.replace("this checkpoint", "each system"), first.columns)
    per_image: list[dict[str, Any]] = []
    for name, report in zip(names, reports):
        measured = report.tables[0]
        for row in measured.rows:
            if row.source == "measured":
                method = name if row.method == "this checkpoint" else f"{name}: {row.method}"
                table.rows.append(Row(method, "measured", row.values))
        for key, why in measured.skipped.items():
            table.skipped.setdefault(key, why)
        for key, count in measured.counts.items():
            table.counts[key] = max(count, table.counts.get(key, 0))
        per_image += [{"system": name, **row} for row in report.per_image]
    published = [Row(r.method, r.source.replace("paper", "published", 1), r.values)
                 for r in first.rows if r.source.startswith("paper")]
    table.rows += published

    info = [("checkpoints", "; ".join(f"{n}: {ck}" for n, ck in zip(names, options.checkpoints))),
            *[(k, v) for k, v in reports[0].info if k not in ("checkpoint", "model")]]
    notes = [f"One row per system, each evaluated by `facestyle evaluate --task {options.task}` with the same "
             "options and data; each system's own report is in systems/NAME/."]
    if published:
        notes.append("Rows marked published are the paper's numbers, typed from its tables, not measured here.")
    notes += [n for n in reports[0].notes if n not in notes]
    report = Report(f"facestyle compare: {options.task}", info, [table], notes, per_image)
    sheet = _contact_sheet(options, networks, names, out)
    if sheet is not None:
        report.images.append(("Contact sheet: one column per system, the same inputs", sheet))
    report.settings = {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in dataclasses.asdict(options).items() if k != "progress"}
    report.settings["out"] = str(out)
    write_report(report, out)
    return report


def _sheet_title(name: str) -> str:
    """A system's column title on the contact sheet: ``ARCH (FOLDER)``, or ``ARCH`` alone when the folder is
    named after it (the titles are one cell wide)."""
    arch, _, folder = name.partition(" (")
    return arch if folder == f"{arch})" else name


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_")


@torch.no_grad()
def _contact_sheet(options: CompareOptions, networks: Sequence[Any], names: Sequence[str], out: Path) -> str | None:
    """``contact_sheet.png``: per input row, the photo, its labels, then each system's result for the task
    (reconstruction; the skin of the next input moved onto it; a random style from ``seed``)."""
    from ..editor.editor import Editor
    from ..nn.synthesis import RANDOM_GLOBAL, RANDOM_REGIONAL
    from ..visualize import contact_sheet, label_image

    if options.sheet_images < 1:
        return None
    size = networks[0].config.image_size
    dataset = load_dataset(options.data, options.split, size, options.seed, networks[0].config.label_set)
    n = min(len(dataset), options.sheet_images, options.limit or len(dataset))
    if n < 1 or (options.task == "transfer" and n < 2):
        return None
    label_set = get_label_set(networks[0].config.label_set)
    items = [dataset[i] for i in range(n)]
    rows: list[list[Any]] = [[image, label_image(labels, label_set)] for image, labels, _ in items]
    for checkpoint, net in zip(options.checkpoints, networks):
        editor = Editor.from_pretrained(checkpoint, device="cpu", parser="none")
        for i, (image, labels, _) in enumerate(items):
            if options.task == "reconstruction":
                result = editor.reconstruct(image, labels, return_tensors=True)
            elif options.task == "transfer":
                reference, reference_labels, _ = items[(i + 1) % n]
                result = editor.transfer(image, labels, reference, reference_labels, regions=list(SHEET_REGIONS),
                                         return_tensors=True)
            else:
                global_codes = not hasattr(net, "mrsa") and RANDOM_REGIONAL not in net.tasks \
                    and RANDOM_GLOBAL in net.tasks
                region = None if global_codes else options.regions[0]
                result = editor.sample(image, labels, region, n=1, seed=options.seed + i, return_tensors=True)[0]
            rows[i].append(result.float().cpu())
    columns = ["input", "labels", *(_sheet_title(name) for name in names)]
    sheet = contact_sheet(rows, columns, cell=max(96, size))
    save_image(sheet, out / "contact_sheet.png")
    return "contact_sheet.png"
