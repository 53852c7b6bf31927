"""The demo: reconstruction and regional transfers between synthetic faces lit differently.

Runs on the bundled model (``facestyle/assets/demo``) or any checkpoint trained on CelebAMask-HQ
classes. The faces are made by the project's renderer (:mod:`facestyle.data.synthetic`) from a stream
the demo model never saw in training; every reference is re-lit with a light unlike its target's, so the
transfers show MRSA re-lighting the moved region to fit its new face.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image

from ..data.synthetic import Illumination, render, sample_face
from ..editor.editor import Editor
from ..io import save_image
from ..visualize import contact_sheet, label_image
from .styles import demo_styles, style_columns

DEMO_SEED = 2026  # a face stream disjoint from the training stream (seed 0)
PAIRS = ((0, 1), (2, 3), (4, 5))
REGIONS = ("skin", "hair", "lips")
TARGET_LIGHT = Illumination(intensity=1.0, gains=(1.0, 1.0, 1.0), gradient_angle=0.0, gradient_strength=0.0)
REFERENCE_LIGHTS = (
    Illumination(intensity=0.7, gains=(1.2, 0.95, 0.7), gradient_angle=0.0, gradient_strength=0.45),  # warm, low
    Illumination(intensity=1.25, gains=(0.8, 0.95, 1.2), gradient_angle=3.14, gradient_strength=0.3),  # cool
    Illumination(intensity=0.6, gains=(1.0, 1.0, 1.0), gradient_angle=1.57, gradient_strength=0.5),  # dim, top
)


def demo_faces(resolution: int) -> list[dict]:
    """The demo's target/reference pairs: images in [-1, 1] (3, H, W) and labels (H, W)."""
    pairs = []
    for (t, r), light in zip(PAIRS, REFERENCE_LIGHTS):
        target, reference = sample_face(DEMO_SEED, t), sample_face(DEMO_SEED, r)
        t_img, t_lab = render(target, resolution, illumination=TARGET_LIGHT)
        r_img, r_lab = render(reference, resolution, illumination=light)
        truths = {region: torch.from_numpy(render(target, resolution, albedo_from=reference, regions=[region],
                                                  illumination=TARGET_LIGHT)[0]) for region in REGIONS}
        pairs.append({"name": f"pair{len(pairs)}", "target": torch.from_numpy(t_img),
                      "target_labels": torch.from_numpy(t_lab), "reference": torch.from_numpy(r_img),
                      "reference_labels": torch.from_numpy(r_lab), "truth": truths})
    return pairs


def run_demo(out_dir: str | Path, checkpoint: str = "demo", device: str = "cpu", log=print) -> Path:
    """Write the demo's images and ``contact_sheet.png`` into ``out_dir``; returns the sheet's path."""
    out = Path(out_dir)
    start = time.perf_counter()
    editor = Editor.from_pretrained(checkpoint, device=device)
    label_set = editor.label_set
    pairs = demo_faces(editor.image_size)
    log(f"loaded {checkpoint} in {time.perf_counter() - start:.1f} s; {len(pairs)} face pairs, "
        f"{editor.image_size}x{editor.image_size}")
    rows, columns = [], ["target", "labels", "reference", "reconstructed",
                         *(f"{r} {kind}" for r in REGIONS for kind in ("bypassed", "MRSA", "truth"))]
    for pair in pairs:
        tic = time.perf_counter()
        name = pair["name"]
        recon = editor.reconstruct(pair["target"], pair["target_labels"])
        moved = [editor.transfer(pair["target"], pair["target_labels"], pair["reference"],
                                 pair["reference_labels"], regions=[region]) for region in REGIONS]
        bypassed = [editor.transfer(pair["target"], pair["target_labels"], pair["reference"],
                                    pair["reference_labels"], regions=[region], harmonize=False) for region in REGIONS]
        save_image(pair["target"], out / f"{name}_target.png")
        save_image(pair["reference"], out / f"{name}_reference.png")
        save_image(recon, out / f"{name}_reconstruction.png")
        for region, image in zip(REGIONS, moved):
            save_image(image, out / f"{name}_{region}.png")
        shown = [cell for region, plain, image in zip(REGIONS, bypassed, moved)
                 for cell in (plain, image, pair["truth"][region])]
        rows.append([pair["target"], label_image(pair["target_labels"], label_set), pair["reference"], recon, *shown])
        log(f"{name}: reconstruction and {len(REGIONS)} transfers, with MRSA and bypassed, in "
            f"{time.perf_counter() - tic:.1f} s")
    sheet = contact_sheet(rows, columns, row_titles=[pair["name"] for pair in pairs], cell=128)
    styles = demo_styles(editor, pairs, out, log, checkpoint=checkpoint)
    if styles:  # random skin and hair styles, then fine-tuning in z space and in style space, below
        lower = contact_sheet([row for _, row in styles], style_columns(), row_titles=[title for title, _ in styles],
                              cell=128)
        both = Image.new("RGB", (max(sheet.width, lower.width), sheet.height + lower.height), "white")
        both.paste(sheet, (0, 0))
        both.paste(lower, (0, sheet.height))
        sheet = both
    path = out / "contact_sheet.png"
    save_image(sheet, path)
    log(f"wrote the results and {path} in {time.perf_counter() - start:.1f} s")
    return path
