"""Shape and colour editing, and automatic parsing, for the :class:`~facestyle.editor.editor.Editor` (paper section 5).

>>> editor = Editor.from_pretrained("demo")
>>> out = editor.edit_shape("me.png", "me_labels.png", "me_labels_longer_hair.png")
>>> out = editor.edit_color("me.png", "me_labels.png", "red_strokes_on_hair.png")     # an RGBA layer

- **Shape editing** (Fig. 10a): the target's style codes are decoded on an edited label map. A class the
  edited map has and the target lacks needs a style from elsewhere, taken in this order: the given
  reference photo (when the reference has the class), the region's mapping network ``M_g(z)`` (when one
  is installed beside the checkpoint, see :mod:`facestyle.editor.styles`), the dataset's mean code of the
  class kept with the checkpoint (:mod:`facestyle.styles.mean`). MRSA then harmonizes the codes over the
  classes of the new map and the generator decodes them on it.
- **Colour editing** (Fig. 10b): colour strokes painted over the photo, given as an RGBA layer (alpha > 0
  where painted) or an (image, mask) pair, are composited onto the target; the composite is encoded
  again, and the classes the strokes cover take their codes from it (pooled over the painted pixels, or
  over the whole region with ``pool="region"``); MRSA harmonizes them with the rest of the face
  (eq. 4-5) and the generator redraws the face on its own label map.
- **Automatic parsing**: with a face parser configured (``editor.set_parser(DIR)``, or a parser found in
  ``CHECKPOINT/parser/``), a label map left out (``None``) is parsed from the photo
  (:meth:`FaceEditingMixin._labels_or_parse`).

Everything here uses only the editor's ``model``, ``label_set``, ``image_size``, ``device`` and its input
helpers (``_prepare_images``, ``_prepare_labels``, ``_postprocess``); :class:`FaceEditingMixin` adds the
methods to the Editor.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..data.transforms import resize_image
from ..errors import CheckpointError, InputError
from ..labels import LabelSet
from ..nn.pooling import IGNORE, one_hot

__all__ = ["FaceEditingMixin", "NewClassWarning", "load_face_editor", "decolorize_nearest", "load_label_map",
           "stroke_layers", "SOURCE_REFERENCE", "SOURCE_MEAN", "SOURCE_NONE"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

SOURCE_REFERENCE = "reference"
SOURCE_MEAN = "dataset mean"
SOURCE_NONE = "none (zero code)"
MIN_STROKE_SHARE = 0.1  # a class is recoloured when it holds at least this share of the painted area
Pool = Literal["strokes", "region"]


class NewClassWarning(UserWarning):
    """A class of an edited label map has no style source (no reference, mapping network or dataset mean)."""


# ------------------------------------------------------------------------------------------ the mixin


class FaceEditingMixin:
    """Adds :meth:`edit_shape`, :meth:`edit_color`, :meth:`parse` and automatic parsing to the Editor."""

    parser: Any = None  # a FaceParser, set with set_parser
    checkpoint_dir: Path | None = None  # where the style mean, mapping networks and parser are looked up

    # ------------------------------------------------------------------------------------- parsing

    def set_parser(self, parser: Any) -> None:
        """Configure the face parser used when a label map is not given: a
        :class:`~facestyle.editor.parser.FaceParser`, a parser checkpoint directory, or None to turn parsing off.
        It must label the classes of this editor's label set."""
        from .parser import FaceParser

        if parser is not None and not isinstance(parser, FaceParser):
            parser = FaceParser.from_pretrained(parser, device=self.device)
        if parser is not None and parser.label_set.name != self.label_set.name:
            raise CheckpointError(f"the parser labels {parser.label_set.name} classes; this model uses "
                                  f"{self.label_set.name}")
        self.parser = parser

    def parse(self, images: Any, crop: Any = "center") -> Tensor | list[Tensor]:
        """Label maps of photos from the configured parser (see :meth:`facestyle.editor.parser.FaceParser.parse`)."""
        if self.parser is None:
            raise InputError("no face parser is configured: load one with editor.set_parser(DIR) (or "
                             "Editor.from_pretrained(..., parser=DIR), or put it in CHECKPOINT/parser/)")
        return self.parser.parse(images, crop=crop)

    def _labels_or_parse(self, images: Any, labels: Any, role: str = "labels") -> Any:
        """``labels`` when given; else the parser's label maps of ``images`` (at each photo's size), in a
        form ``_prepare_labels`` takes; an InputError when there is neither a label map nor a parser."""
        if labels is not None:
            return labels
        if self.parser is None:
            raise InputError(f"no {role} given and no face parser is configured: give a label map, or load "
                             "a parser (Editor.from_pretrained(..., parser=DIR), or CHECKPOINT/parser/)")
        maps = self.parser.parse(images)
        logger.info("no %s given: parsed the photo(s) with %s", role, self.parser)
        return maps

    def _label_input(self, images: Any, labels: Any, role: str) -> Any:
        """A label map as given (class indices, or a palette-coloured image), or parsed when None."""
        return _as_label_input(self._labels_or_parse(images, labels, role), self.label_set, role)

    # --------------------------------------------------------------------------------- shape editing

    def edit_shape(self, target: Any, labels: Any, new_labels: Any, reference: Any = None,
                   reference_labels: Any = None, seed: int | None = 0, harmonize: bool = True,
                   return_details: bool = False, return_tensors: bool = False) -> Any:
        """Redraw one target face on an edited label map ``new_labels``, with the target's styles.

        Classes present in both maps keep the target's codes. A class that only the new map has takes
        its style from ``reference`` (with ``reference_labels``, parsed when None and a parser is
        configured) when the reference has it, else from the region's mapping network (``M_g(z)``, z
        drawn from ``seed``), else from the dataset mean kept with the checkpoint; with none of these it
        gets a zero code and a :class:`NewClassWarning`. MRSA harmonizes the codes over the new map's
        classes (``harmonize=False`` skips it) and the generator decodes them on the new map.

        ``labels`` may be None when a parser is configured. ``new_labels`` is a class-index map like
        ``labels`` (or a palette-coloured image, see :func:`load_label_map`). The result has the photo's
        size; with ``return_details`` it comes with ``{"sources": {class name: source}}`` for the new
        classes.
        """
        with torch.inference_mode():
            photos = self._prepare_images(target, "target")
            _one(photos, "edit_shape")
            label_maps = self._prepare_labels(self._label_input(target, labels, "target labels"), photos,
                                              "target labels")
            new_maps = self._prepare_labels(_as_label_input(new_labels, self.label_set, "new labels"), photos,
                                            "new labels")
            s_t, p_t = self.model.encode(photos.images, label_maps)
            p_new = one_hot(new_maps, self.label_set.num_classes, torch.float32).flatten(2).amax(2) > 0
            s_r = p_r = None
            if reference is not None:
                refs = self._prepare_images(reference, "reference")
                _one(refs, "edit_shape (reference)")
                ref_maps = self._prepare_labels(self._label_input(reference, reference_labels, "reference labels"),
                                                refs, "reference labels")
                s_r, p_r = self.model.encode(refs.images, ref_maps)
            elif reference_labels is not None:
                raise InputError("reference_labels given without a reference photo")
            s_c, sources = self._new_class_codes(s_t, p_t, p_new, s_r, p_r, seed)
            out = self.model.decode(new_maps, self.model.harmonize(s_c, s_c, p_new, enabled=harmonize))
            result = self._postprocess(out, photos, return_tensors)
        return (result, {"sources": sources}) if return_details else result

    def _new_class_codes(self, s_t: Tensor, p_t: Tensor, p_new: Tensor, s_r: Tensor | None = None,
                         p_r: Tensor | None = None, seed: int | None = 0) -> tuple[Tensor, dict[str, str]]:
        """The codes (1, R, D) to decode an edited map with: the target's, with every class new in ``p_new``
        taken from the reference, the region's mapping network or the dataset mean, in that order.
        Returns them and ``{class name: source}`` for the new classes."""
        classes = self.label_set.classes
        new = (p_new & ~p_t)[0].nonzero().flatten().tolist()
        s_c = s_t.clone()
        sources: dict[str, str] = {}
        sampled: dict[str, tuple[tuple[int, ...], Tensor]] = {}
        mean = None
        for c in new:
            if s_r is not None and p_r is not None and bool(p_r[0, c]):
                s_c[0, c] = s_r[0, c]
                sources[classes[c]] = SOURCE_REFERENCE
                continue
            mapped = self._mapping_code(c, seed, sampled)
            if mapped is not None:
                region, code = mapped
                s_c[0, c] = code.to(s_c.dtype)
                sources[classes[c]] = f"mapping network ({region})"
                continue
            if mean is None:
                mean = self._style_mean()
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
            warnings.warn(msg, NewClassWarning, stacklevel=3)
        for name, source in sources.items():
            logger.info("new class %s: style from %s", name, source)
        return s_c, sources

    def _mapping_code(self, c: int, seed: int | None,
                      sampled: dict[str, tuple[tuple[int, ...], Tensor]]) -> tuple[str, Tensor] | None:
        """(region, code (D,)) of class ``c`` from a mapping network whose group has it, or None. One z per
        region and edit, so that classes of one group (skin and nose) get codes drawn together."""
        try:
            from . import styles as edit_style
        except ImportError:  # the style editing module is not installed
            return None
        for region, (group, codes) in sampled.items():
            if c in group:
                return region, codes[group.index(c)]
        try:
            regions = edit_style.style_regions(self, "mapping")
        except (CheckpointError, InputError, OSError):
            return None
        for region in regions:
            try:
                network = edit_style.get_style_network(self, "mapping", region)
            except (CheckpointError, InputError) as exc:
                logger.warning("the mapping network of %s cannot be used: %s", region, exc)
                continue
            group = tuple(int(k) for k in network.config.classes)
            if c not in group:
                continue
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            codes = network.sample(1, generator=generator)[0]
            sampled[region] = (group, codes)
            return region, codes[group.index(c)]
        return None

    def _style_mean(self) -> tuple[Tensor, Tensor] | None:
        """The dataset mean kept with the checkpoint, on the editor's device (loaded once), or None."""
        cached = self.__dict__.get("_style_mean_cache", False)
        if cached is not False:
            return cached
        result = None
        if self.checkpoint_dir is not None:
            from ..styles.mean import load_style_mean

            loaded = load_style_mean(self.checkpoint_dir)
            if loaded is not None:
                mean, count = loaded
                expected = (self.label_set.num_classes, self.model.config.style_dim)
                if tuple(mean.shape) != expected:
                    raise CheckpointError(f"{self.checkpoint_dir}: the style mean has shape {tuple(mean.shape)}, "
                                          f"this model needs {expected}")
                result = (mean.to(self.device), count)
        self.__dict__["_style_mean_cache"] = result
        return result

    def set_style_mean(self, mean: Tensor | None, count: Tensor | None = None) -> None:
        """Use this dataset mean (R, D) (with per-class counts (R,), default all 1) for new classes, instead
        of the one kept with the checkpoint; None turns the fallback off."""
        if mean is None:
            self.__dict__["_style_mean_cache"] = None
            return
        expected = (self.label_set.num_classes, self.model.config.style_dim)
        if tuple(mean.shape) != expected:
            raise InputError(f"the style mean must have shape {expected}, got {tuple(mean.shape)}")
        count = torch.ones(expected[0], dtype=torch.int64) if count is None else count.to(torch.int64).cpu()
        self.__dict__["_style_mean_cache"] = (mean.to(self.device, torch.float32), count)

    # -------------------------------------------------------------------------------- colour editing

    def edit_color(self, target: Any, labels: Any, strokes: Any, regions: Any = None, pool: Pool = "strokes",
                   harmonize: bool = True, return_details: bool = False, return_tensors: bool = False) -> Any:
        """Recolour the regions of one target face that colour strokes cover (paper Fig. 10b).

        ``strokes``: an RGBA image (a path, PIL image or (H, W, 4) array) painted where alpha > 0, or an
        ``(image, mask)`` pair (the colours, and where they are painted: a mask in [0, 1], 0..255 or bool),
        at the photo's size or another of the same aspect ratio. The strokes are composited onto the
        photo (alpha-blended) and the composite is encoded again. The classes that get at least 10% of
        the painted area (or those of ``regions``, names such as ``"hair"`` or ``"lips"``) take their codes
        from it: pooled over their painted pixels (``pool="strokes"``, the default; a class whose painted
        part vanishes at the encoder's resolution falls back to the whole region) or over the whole
        region (``pool="region"``). MRSA harmonizes them against the target's codes (``harmonize=False``
        skips it) and the generator redraws the face on its own label map. ``labels`` may be None when a
        parser is configured. With ``return_details`` the result comes with ``{"classes": [names]}``.
        """
        if pool not in ("strokes", "region"):
            raise InputError(f"pool must be 'strokes' or 'region', got {pool!r}")
        with torch.inference_mode():
            photos = self._prepare_images(target, "target")
            _one(photos, "edit_color")
            label_maps = self._prepare_labels(self._label_input(target, labels, "target labels"), photos,
                                              "target labels")
            colour, alpha = stroke_layers(strokes, photos.sizes[0], photos.names[0])
            colour = resize_image(colour.to(self.device), self.image_size)
            alpha = _resize_alpha(alpha.to(self.device), self.image_size)
            images = photos.images.float()
            composite = (images * (1 - alpha) + colour * alpha).to(photos.images.dtype)

            s_t, p_t = self.model.encode(photos.images, label_maps)
            chosen = self._stroked_classes(label_maps[0], alpha, regions) & p_t[0]
            if not bool(chosen.any()):
                raise InputError("the strokes cover none of the target's regions asked for; paint over the "
                                 "region to recolour")
            s_region, p_region = self.model.encode(composite, label_maps)
            new_codes = s_region
            if pool == "strokes":
                painted = alpha[0, 0] > 0.5
                keep = painted & chosen[label_maps[0]]
                stroke_map = torch.where(keep, label_maps[0], IGNORE)[None]
                s_stroke, p_stroke = self.model.encode(composite, stroke_map)
                use = p_stroke[0] & chosen
                new_codes = torch.where(use[None, :, None], s_stroke, s_region)
            s_c = torch.where(chosen[None, :, None], new_codes, s_t)
            out = self.model.decode(label_maps, self.model.harmonize(s_c, s_t, p_t, enabled=harmonize))
            result = self._postprocess(out, photos, return_tensors)
        names = [self.label_set.classes[c] for c in chosen.nonzero().flatten().tolist()]
        logger.info("colour edit: recoloured %s", ", ".join(names))
        return (result, {"classes": names}) if return_details else result

    def _stroked_classes(self, label_map: Tensor, alpha: Tensor, regions: Any) -> Tensor:
        """(R,) bool: the classes of ``regions`` that are painted, or every class holding at least
        ``MIN_STROKE_SHARE`` of the painted area."""
        r = self.label_set.num_classes
        painted = torch.zeros(r, dtype=torch.float64, device=label_map.device)
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
        mask = torch.from_numpy(self.label_set.regions_mask(names)).to(label_map.device)
        return mask & (painted > 0)


# ----------------------------------------------------------------------------------------- helpers


def _one(photos: Any, what: str) -> None:
    if len(photos) != 1:
        raise InputError(f"{what} takes one photo, got {len(photos)}; call it once per photo")


def _resize_alpha(alpha: Tensor, size: int) -> Tensor:
    """(H, W) alpha in [0, 1] -> (1, 1, size, size), antialiased."""
    x = alpha[None, None].float()
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1)


def _as_label_input(labels: Any, label_set: LabelSet, name: str) -> Any:
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
    from ..io import LABEL_MODES, load_labels, open_image

    im = open_image(path)
    if im.mode in LABEL_MODES or im.mode == "LA":
        return load_labels(path, label_set)
    arr = np.asarray(im.convert("RGB"))
    if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
        return load_labels(path, label_set)
    return torch.from_numpy(decolorize_nearest(arr, label_set, max_distance=_COLOUR_TOLERANCE, source=str(path)))


def stroke_layers(strokes: Any, size: tuple[int, int], photo: str = "the photo") -> tuple[Tensor, Tensor]:
    """Colour strokes -> (colours (3, H, W) in [-1, 1], alpha (H, W) in [0, 1]) at the photo's ``size``.

    ``strokes``: an RGBA image (path, PIL image, (H, W, 4) array; alpha > 0 where painted) or an
    ``(image, mask)`` pair."""
    from .parser import photo_tensor

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


def _rgba(strokes: Any) -> tuple[Tensor, Tensor]:
    from ..io import open_image

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


def _mask_tensor(mask: Any) -> Tensor:
    """A stroke mask -> (H, W) float32 in [0, 1] (bool; uint8 0..255; float in [0, 1]; a path or PIL image)."""
    from ..io import open_image

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


# ------------------------------------------------------------------------------------------- loading


def _face_editor_class() -> type:
    """The Editor class, with this module's (and the style module's) methods mixed in where it lacks them."""
    from .editor import Editor

    bases: list[type] = []
    if not issubclass(Editor, FaceEditingMixin):
        bases.append(FaceEditingMixin)
    try:
        from .styles import StyleEditingMixin
    except ImportError:
        StyleEditingMixin = None  # noqa: N806
    if StyleEditingMixin is not None and not issubclass(Editor, StyleEditingMixin):
        bases.append(StyleEditingMixin)
    if not bases:
        return Editor
    global _MIXED
    if _MIXED is None:
        _MIXED = type("Editor", (*bases, Editor), {"__module__": Editor.__module__, "__doc__": Editor.__doc__})
    return _MIXED


_MIXED: type | None = None


def load_face_editor(checkpoint: str | os.PathLike = "demo", device: str | torch.device = "cpu",
                     label_set: str | None = None, parser: Any = None) -> Any:
    """An Editor for ``checkpoint`` with face editing: its ``checkpoint_dir`` set (style mean, mapping
    networks, ``parser/``), and ``parser`` (a directory or FaceParser) or the one in ``CHECKPOINT/parser/``
    configured for automatic parsing."""
    from ..checkpoint import resolve
    from .parser import find_parser

    editor = _face_editor_class().from_pretrained(checkpoint, device=device, label_set=label_set)
    if getattr(editor, "checkpoint_dir", None) is None:
        editor.checkpoint_dir = resolve(checkpoint)
    if parser is not None:
        editor.set_parser(parser)
    elif getattr(editor, "parser", None) is None:
        found = find_parser(editor.checkpoint_dir)
        if found is not None:
            editor.set_parser(found)
    return editor
