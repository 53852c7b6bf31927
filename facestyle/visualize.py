"""Contact sheets: a grid of images with column and row titles, for the demo and the reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .io import to_pil
from .labels import LabelSet


def label_image(labels: torch.Tensor | np.ndarray, label_set: LabelSet) -> Image.Image:
    """A label map drawn in its palette colours."""
    arr = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return Image.fromarray(label_set.colorize(arr))


def contact_sheet(rows: Sequence[Sequence[Image.Image | torch.Tensor]], columns: Sequence[str] = (),
                  row_titles: Sequence[str] = (), cell: int | None = None, pad: int = 4) -> Image.Image:
    """Lay ``rows`` of images out on a white sheet, every cell ``cell`` pixels square, with titles."""
    images = [[im if isinstance(im, Image.Image) else to_pil(im) for im in row] for row in rows]
    cell = cell or max(im.width for row in images for im in row)
    title_h = 14 if columns else 0
    left = 8 + 7 * max((len(t) for t in row_titles), default=0) if row_titles else 0
    ncols = max(len(row) for row in images)
    sheet = Image.new("RGB", (left + ncols * (cell + pad) + pad, title_h + len(images) * (cell + pad) + pad),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(columns):
        draw.text((left + pad + j * (cell + pad), 1), title, fill="black")
    for i, row in enumerate(images):
        y = title_h + pad + i * (cell + pad)
        if i < len(row_titles):
            draw.text((4, y + cell // 2 - 6), row_titles[i], fill="black")
        for j, im in enumerate(row):
            sheet.paste(im.convert("RGB").resize((cell, cell), Image.BICUBIC), (left + pad + j * (cell + pad), y))
    return sheet
