"""Shape and colour editing (paper section 5, Fig. 10) as plain functions; the Editor's ``edit_shape``
and ``edit_color`` prepare the inputs and call them.

- **Shape editing** (Fig. 10a): the target's style codes are decoded on an edited label map. A class the
  edited map has and the target lacks takes its style from the reference photo (when it has the class),
  else the region's mapping network ``M_g(z)``, else the dataset mean kept with the checkpoint
  (:mod:`facestyle.styles.mean`): :func:`new_class_codes`.
- **Colour editing** (Fig. 10b): colour strokes (an RGBA layer, or an (image, mask) pair) are composited
  onto the photo, the composite is encoded again, and the classes the strokes cover take their codes
  from it, pooled over the painted pixels or over the whole region: :func:`recoloured_codes`.
- Label maps may also be drawn in the label set's palette colours (:func:`load_label_map`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..data.transforms import resize_image
from ..errors import CheckpointError, InputError
from ..io import LABEL_MODES, load_labels, open_image
from ..labels import LabelSet
from ..model import FaceStyleNet
from ..nn.mapping import MappingNetwork
from ..nn.pooling import IGNORE
from ..styles.mean import load_style_mean
from .inputs import ImageInput, ImageLike, photo_tensor

__all__ = ["NewClassWarning", "Pool", "Strokes", "new_class_codes", "checkpoint_style_mean", "stroked_classes",
           "recoloured_codes", "stroke_layers", "resize_alpha", "as_label_input", "decolorize_nearest",
           "load_label_map", "SOURCE_REFERENCE", "SOURCE_MEAN", "SOURCE_NONE", "MIN_STROKE_SHARE"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

SOURCE_REFERENCE = "reference"
SOURCE_MEAN = "dataset mean"
SOURCE_NONE = "none (zero code)"
MIN_STROKE_SHARE = 0.1  # a class is recoloured when it holds at least this share of the painted area
Pool = Literal["strokes", "region"]
Strokes = ImageLike | tuple[ImageLike, ImageLike]  # an RGBA layer, or (colours, mask)
StyleMean = tuple[Tensor, Tensor]  # (R, D) mean codes, (R,) counts


class NewClassWarning(UserWarning):
    """A class of an edited label map has no style source (no reference, mapping network or dataset mean)."""


# ------------------------------------------------------------------------------------------ shape editing


def new_class_codes(s_t: Tensor, p_t: Tensor, p_new: Tensor, label_set: LabelSet,
                    mapping_networks: Callable[[], Iterable[tuple[str, MappingNetwork]]],
                    style_mean: Callable[[], StyleMean | None], s_r: Tensor | None = None,
                    p_r: Tensor | None = None, seed: int | None = 0) -> tuple[Tensor, dict[str, str]]:
    """The codes (1, R, D) to decode an edited map with: the target's ``s_t``, with every class new in
    ``p_new`` (present there, absent from ``p_t``) taken from the reference ``s_r`` (where ``p_r`` has
    it), a region's mapping network (``mapping_networks()`` yields (region, network); one z per region
    from ``seed``, so that the classes of one group get codes drawn together) or ``style_mean()``, in
    that order. Returns them and ``{class name: source}`` for the new classes."""
    classes = label_set.classes
    new = (p_new & ~p_t)[0].nonzero().flatten().tolist()
    s_c = s_t.clone()
    sources: dict[str, str] = {}
    sampled: dict[str, tuple[tuple[int, ...], Tensor]] = {}  # region -> (its classes, their codes)
    mean: StyleMean | None = None
    for c in new:
        if s_r is not None and p_r is not None and bool(p_r[0, c]):
            s_c[0, c] = s_r[0, c]
            sources[classes[c]] = SOURCE_REFERENCE
            continue
        mapped = _mapping_code(c, seed, sampled, mapping_networks)
        if mapped is not None:
            region, code = mapped
            s_c[0, c] = code.to(s_c.dtype)
            sources[classes[c]] = f"mapping network ({region})"
            continue
        if mean is None:
            mean = style_mean()
        if mean is not None and int(mean[1][c]) > 0:
            s_c[0, c] = mean[0][c].to(s_c)
            sources[classes[c]] = SOURCE_MEAN
            continue
        s_c[0, c] = 0
        sources[classes[c]] = SOURCE_NONE
        msg = (f"class {classes[c]!r} is new in the edited label map and has no style source (no reference "
               "with it, no mapping network for it, no dataset mean with the checkpoint): it is drawn with "
               "a zero style code")
        logger.warning(msg)
        warnings.warn(msg, NewClassWarning, stacklevel=4)
    for name, source in sources.items():
        logger.info("new class %s: style from %s", name, source)
    return s_c, sources


def _mapping_code(c: int, seed: int | None, sampled: dict[str, tuple[tuple[int, ...], Tensor]],
                  mapping_networks: Callable[[], Iterable[tuple[str, MappingNetwork]]]) -> tuple[str, Tensor] | None:
    """(region, code (D,)) of class ``c`` from a mapping network whose group has it, or None."""
    for region, (group, codes) in sampled.items():
        if c in group:
            return region, codes[group.index(c)]
    for region, network in mapping_networks():
        group = tuple(int(k) for k in network.config.classes)
        if c not in group:
            continue
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        codes = network.sample(1, generator=generator)[0]
        sampled[region] = (group, codes)
        return region, codes[group.index(c)]
    return None


def checkpoint_style_mean(checkpoint_dir: Path | None, num_classes: int, style_dim: int,
                          device: torch.device) -> StyleMean | None:
    """The dataset mean kept with the checkpoint, on ``device``, or None when there is none."""
    loaded = None if checkpoint_dir is None else load_style_mean(checkpoint_dir)
    if loaded is None:
        return None
    mean, count = loaded
    if tuple(mean.shape) != (num_classes, style_dim):
        raise CheckpointError(f"{checkpoint_dir}: the style mean has shape {tuple(mean.shape)}, "
                              f"this model needs {(num_classes, style_dim)}")
    return mean.to(device), count


# ----------------------------------------------------------------------------------------- colour editing


def stroked_classes(label_map: Tensor, alpha: Tensor, regions: str | Iterable[str] | None,
                    label_set: LabelSet) -> Tensor:
    """(R,) bool: the classes of ``regions`` that are painted, or every class holding at least
    ``MIN_STROKE_SHARE`` of the painted area."""
    painted = torch.zeros(label_set.num_classes, dtype=torch.float64, device=label_map.device)
    painted.index_add_(0, label_map.flatten(), alpha.flatten().double())
    total = float(painted.sum())
    if total <= 0:
        raise InputError("the strokes are empty at the model's resolution: nothing is painted")
    if regions is None:
        return (painted / total) >= MIN_STROKE_SHARE
    names = [x.strip() for x in regions.split(",") if x.strip()] if isinstance(regions, str) else list(regions)
    if not names:
        raise InputError("regions is empty; name at least one region, or leave it out to recolour the "
                         "regions under the strokes")
    mask = torch.from_numpy(label_set.regions_mask(names)).to(label_map.device)
    return mask & (painted > 0)


def recoloured_codes(model: FaceStyleNet, composite: Tensor, labels: Tensor, alpha: Tensor, chosen: Tensor,
                     s_t: Tensor, pool: Pool = "strokes") -> Tensor:
    """The target's codes ``s_t`` (1, R, D) with the ``chosen`` classes (R,) encoded from the ``composite``
    photo (1, 3, S, S): pooled over their painted pixels (``alpha`` (1, 1, S, S) > 0.5; a class whose
    painted part vanishes at the encoder's resolution falls back to the whole region), or over the
    whole region with ``pool="region"``."""
    new_codes, _ = model.encode(composite, labels)
    if pool == "strokes":
        keep = (alpha[0, 0] > 0.5) & chosen[labels[0]]
        s_stroke, p_stroke = model.encode(composite, torch.where(keep, labels[0], IGNORE)[None])
        new_codes = torch.where((p_stroke[0] & chosen)[None, :, None], s_stroke, new_codes)
    return torch.where(chosen[None, :, None], new_codes, s_t)


# ------------------------------------------------------------------------------------------ input helpers



def resize_alpha(alpha: Tensor, size: int) -> Tensor:
    """(H, W) alpha in [0, 1] -> (1, 1, size, size), antialiased."""
    x = alpha[None, None].float()
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1)


def as_label_input(labels: ImageInput, label_set: LabelSet, name: str) -> ImageInput:
    """Paths go through :func:`load_label_map` (class indices, or palette colours); the rest as given."""
    if isinstance(labels, (str, os.PathLike)):
        return load_label_map(labels, label_set)
    arr = None
    if isinstance(labels, Image.Image) and labels.mode in ("RGB", "RGBA"):
        arr = np.asarray(labels.convert("RGB"))
    elif (isinstance(labels, np.ndarray) and labels.dtype == np.uint8 and labels.ndim == 3
          and labels.shape[-1] in (3, 4)):
        arr = labels[..., :3]
    if arr is not None and not ((arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all()):
        return torch.from_numpy(decolorize_nearest(arr, label_set, max_distance=_COLOUR_TOLERANCE, source=name))
    return labels


_COLOUR_TOLERANCE = 60.0  # RGB distance within which an antialiased pixel counts as its nearest palette colour


def decolorize_nearest(rgb: np.ndarray, label_set: LabelSet, max_distance: float | None = None,
                       source: str = "label map") -> np.ndarray:
    """(H, W, 3) colours -> (H, W) int64 class indices by the nearest palette colour (antialiased brush
    strokes blend colours at their edges). With ``max_distance``, a map whose pixels are mostly far from
    every palette colour (a photo, not a label map) is an InputError."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] < 3:
        raise InputError(f"{source}: expected an (H, W, 3) colour image, got shape {arr.shape}")
    pixels = arr[..., :3].reshape(-1, 3).astype(np.int32)
    palette = np.asarray(label_set.palette, dtype=np.int32)
    out = np.empty(len(pixels), dtype=np.int64)
    best = np.empty(len(pixels), dtype=np.int32)
    chunk = 1 << 16
    for start in range(0, len(pixels), chunk):
        block = pixels[start:start + chunk]
        d = ((block[:, None, :] - palette[None]) ** 2).sum(-1)
        out[start:start + chunk] = d.argmin(1)
        best[start:start + chunk] = d.min(1)
    if max_distance is not None and len(best):
        far = np.sqrt(best) > max_distance
        if far.mean() > 0.05:
            raise InputError(f"{source}: {far.mean():.0%} of its pixels are not {label_set.name} palette colours; "
                             "expected a class-index map or a map drawn in the palette colours")
    return out.reshape(arr.shape[:2])


def load_label_map(path: str | os.PathLike, label_set: LabelSet) -> Tensor:
    """A label map file as (H, W) int64 class indices: a class-index PNG (as :func:`facestyle.io.
    load_labels` reads), or an image drawn in the label set's palette colours (nearest colour)."""
    im = open_image(path)
    if im.mode in LABEL_MODES or im.mode == "LA":
        return load_labels(path, label_set)
    arr = np.asarray(im.convert("RGB"))
    if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
        return load_labels(path, label_set)
    return torch.from_numpy(decolorize_nearest(arr, label_set, max_distance=_COLOUR_TOLERANCE, source=str(path)))


def stroke_layers(strokes: Strokes, size: tuple[int, int], photo: str = "the photo") -> tuple[Tensor, Tensor]:
    """Colour strokes -> (colours (3, H, W) in [-1, 1], alpha (H, W) in [0, 1]) at the photo's ``size``.

    ``strokes``: an RGBA image (path, PIL image, (H, W, 4) array; alpha > 0 where painted) or an
    ``(image, mask)`` pair."""
    if isinstance(strokes, (tuple, list)):
        if len(strokes) != 2:
            raise InputError("strokes as a pair must be (image, mask)")
        colour = photo_tensor(strokes[0], "stroke colours")
        alpha = _mask_tensor(strokes[1])
    else:
        colour, alpha = _rgba(strokes)
    if tuple(colour.shape[-2:]) != tuple(alpha.shape):
        raise InputError(f"the stroke colours ({colour.shape[-1]}x{colour.shape[-2]}) and mask "
                         f"({alpha.shape[-1]}x{alpha.shape[-2]}) differ in size")
    (h, w), (sh, sw) = size, alpha.shape
    if (sh, sw) != (h, w):
        if abs(sh * w - sw * h) > 0.02 * h * sw:
            raise InputError(f"the strokes ({sw}x{sh}) do not fit {photo} ({w}x{h}): different aspect ratio")
        colour = resize_image(colour, (h, w))
        alpha = F.interpolate(alpha[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
    if float(alpha.max()) <= 0:
        raise InputError("the strokes are empty: no pixel is painted (alpha is 0 everywhere)")
    return colour, alpha


def _rgba(strokes: ImageLike) -> tuple[Tensor, Tensor]:
    name = str(strokes) if isinstance(strokes, (str, os.PathLike)) else "strokes"
    if isinstance(strokes, (str, os.PathLike)):
        strokes = open_image(strokes)
    if isinstance(strokes, Image.Image):
        has_alpha = strokes.mode in ("RGBA", "LA", "PA") or (strokes.mode == "P" and "transparency" in strokes.info)
        if not has_alpha:
            raise InputError(f"{name}: the strokes need an alpha channel (an RGBA PNG, transparent where nothing "
                             f"is painted; mode is {strokes.mode}), or give them as an (image, mask) pair")
        arr = np.asarray(strokes.convert("RGBA"))
    elif isinstance(strokes, np.ndarray):
        arr = strokes
    else:
        raise InputError(f"{name}: expected an RGBA image (path, PIL image or (H, W, 4) array) or an "
                         f"(image, mask) pair, got {type(strokes).__name__}")
    if arr.ndim != 3 or arr.shape[-1] != 4:
        raise InputError(f"{name}: expected an (H, W, 4) RGBA array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < -1e-3 or x.max() > 1 + 1e-3:
            raise InputError(f"{name}: float RGBA arrays must lie in [0, 1]")
    else:
        raise InputError(f"{name}: unsupported RGBA array dtype {arr.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(x.clip(0, 1).transpose(2, 0, 1)))
    return t[:3] * 2 - 1, t[3]


def _mask_tensor(mask: ImageLike) -> Tensor:
    """A stroke mask -> (H, W) float32 in [0, 1] (bool; uint8 0..255; float in [0, 1]; a path or PIL image)."""
    if isinstance(mask, (str, os.PathLike)):
        mask = open_image(mask)
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.getchannel("A") if mask.mode in ("RGBA", "LA") else mask.convert("L"))
    if isinstance(mask, Tensor):
        mask = mask.detach().cpu().numpy()
    if not isinstance(mask, np.ndarray):
        raise InputError(f"stroke mask: expected a path, PIL image, array or tensor, got {type(mask).__name__}")
    if mask.ndim == 3 and 1 in (mask.shape[0], mask.shape[-1]):
        mask = mask.reshape(mask.shape[1:] if mask.shape[0] == 1 else mask.shape[:2])
    if mask.ndim != 2:
        raise InputError(f"stroke mask: expected an (H, W) mask, got shape {mask.shape}")
    if mask.dtype == bool:
        x = mask.astype(np.float32)
    elif mask.dtype == np.uint8:
        x = mask.astype(np.float32) / 255.0
    elif np.issubdtype(mask.dtype, np.floating):
        x = mask.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise InputError("stroke mask: float masks must lie in [0, 1]")
    else:
        raise InputError(f"stroke mask: unsupported dtype {mask.dtype}")
    return torch.from_numpy(np.ascontiguousarray(x))


