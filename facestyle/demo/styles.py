"""The demo's random regional styles and fine-tuning sequence (paper sections 4.6 and 4.7).

:func:`demo_styles` adds, for the first demo face, a row of random skin styles and a row of random hair
styles (the regions' mapping networks, harmonized by MRSA) and a skin fine-tuning sequence in the
flow's latent space, with the style-space baseline under it (as the paper's Fig. 9). Regions whose
networks the checkpoint lacks are skipped with a log line, so the demo runs on any generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import resolve
from ..editor.editor import Editor
from ..io import save_image
from ..visualize import contact_sheet, label_image

SAMPLE_REGIONS = ("skin", "hair")
SAMPLES = 5  # random styles per region (a row of target, labels and 5 results: the demo sheet's 7 columns)
FINETUNE_REGION = "skin"
FINETUNE_STEPS = (-6.0, -3.0, 3.0, 6.0, 9.0)  # both ways along the direction, far enough to see the change
SEED = 0


def style_columns(samples: int = SAMPLES, steps: Sequence[float] = FINETUNE_STEPS) -> list[str]:
    """The sheet's column titles: target, labels, then each result's random style number and fine-tuning
    step size (the rows above the fine-tuning rows are random styles)."""
    titles = [" / ".join(([f"style {i + 1}"] if i < samples else []) + ([f"step {steps[i]:+g}"] if i < len(steps)
                                                                       else []))
              for i in range(max(samples, len(steps)))]
    return ["target", "labels", *titles]


def demo_styles(editor: Editor, pairs: Sequence[dict], out_dir: str | Path, log: Callable[[str], Any] = print,
                samples: int = SAMPLES, steps: Sequence[float] = FINETUNE_STEPS, seed: int = SEED,
                checkpoint: str | Path | None = None) -> list[tuple[str, list]]:
    """Random skin and hair styles and a skin fine-tuning sequence for ``pairs[0]``'s target.

    ``pairs`` are :func:`facestyle.demo.sheet.demo_faces`' dicts (``target``, ``target_labels``, ``name``).
    Writes ``{name}_random_{region}_{i}.png``, ``{name}_finetune_{space}_{i}.png`` and
    ``styles_sheet.png`` (with row titles) into ``out_dir``; returns (title, row) pairs (a row: target,
    its labels, then the results) for the caller's contact sheet, or [] when the checkpoint has no mapping
    networks or flows for these regions. ``checkpoint`` (``demo`` or a directory) says where the
    networks are when the editor does not know its ``checkpoint_dir``.
    """
    if checkpoint is not None and editor.checkpoint_dir is None:
        editor.checkpoint_dir = resolve(checkpoint)
    out = Path(out_dir)
    if not pairs:
        return []
    pair = pairs[0]
    name, target, labels = pair["name"], pair["target"], pair["target_labels"]
    head = [target, label_image(labels, editor.label_set)]
    rows: list[list] = []
    titles: list[str] = []
    mapped = editor.style_regions("mapping")
    for region in SAMPLE_REGIONS:
        if region not in mapped:
            log(f"random {region} styles: skipped (no mapping network for {region}; "
                f"available: {', '.join(mapped) or 'none'})")
            continue
        tic = time.perf_counter()
        images = editor.sample(target, labels, region=region, n=samples, seed=seed)
        for i, image in enumerate(images):
            save_image(image, out / f"{name}_random_{region}_{i}.png")
        rows.append([*head, *images])
        titles.append(f"random {region}")
        log(f"{name}: {samples} random {region} styles in {time.perf_counter() - tic:.1f} s")
    if FINETUNE_REGION in editor.style_regions("flow"):
        for space in ("z", "style"):
            tic = time.perf_counter()
            images = editor.finetune(target, labels, region=FINETUNE_REGION, step=list(steps), seed=seed,
                                     space=space)
            for i, image in enumerate(images):
                save_image(image, out / f"{name}_finetune_{space}_{i}.png")
            rows.append([*head, *images])
            titles.append(f"tune {FINETUNE_REGION} ({space})")
            log(f"{name}: {FINETUNE_REGION} fine-tuning in {space} space, steps "
                f"{', '.join(f'{s:g}' for s in steps)}, in {time.perf_counter() - tic:.1f} s")
    else:
        log(f"{FINETUNE_REGION} fine-tuning: skipped (no flow for {FINETUNE_REGION})")
    if rows:
        columns = style_columns(samples, steps)
        save_image(contact_sheet(rows, columns, row_titles=titles, cell=128), out / "styles_sheet.png")
    return list(zip(titles, rows))
