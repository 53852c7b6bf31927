"""The web editor (``facestyle serve``): a Gradio page over the Editor.

Upload a target photo (and a reference photo); their label maps are parsed (when a face parser is
configured) or uploaded, and shown as a colour overlay. A photo the landmark parser labels may be any
size with the face anywhere: the faces it finds are listed (the largest is chosen; the "Face" menu picks
another), and every edit aligns that face, edits it at the model's size and pastes it back into the
full-size photo (:mod:`facestyle.editor.align`), so the result, and its download, is the whole photo. Then:

- **Transfer**: choose regions and give the target the reference's style there (MRSA-harmonized);
- **Random style**: a region's style drawn from its mapping network, with a seed (when the checkpoint has
  mapping networks);
- **Fine-tune**: nudge a region's style along a direction of its flow's latent space with a slider (when
  the checkpoint has flows);
- **Shape**: repaint the label map with the palette colours (antialiased strokes snap to the nearest
  palette colour) and redraw the face on it;
- **Colour**: paint colour strokes over the photo and have the regions under them take that colour;

and download the result (the download button on the result image), or continue editing from it.

Limits that keep a server up: uploads above ``max_upload_mb`` are refused by the upload route, images
above ``max_side`` pixels a side are refused with a message before they are decoded, the model runs one
request at a time behind a queue of bounded size (``concurrency`` handlers at once, ``queue_size`` waiting),
the page never names a file on the server (uploads come through Gradio's upload cache only), and the
server binds to 127.0.0.1 unless told otherwise.

Memory stays bounded (:mod:`facestyle.app.sessions`): a tab's photos live in an editing session that ends
after ``session_ttl_s`` idle seconds or, beyond ``max_sessions`` sessions, least recently used first; a
session keeps each photo's full-size file on disk, a preview of at most 768 pixels a side and its label map
as uint8 in memory, and deletes its files when it ends. Every request writes its images to a folder of its
own, so concurrent requests never rewrite each other's downloads. Error messages on the page name no path
of the server.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..data.transforms import resize_labels_centered
from ..editor.align import face_boxes
from ..editor.editor import Editor
from ..editor.edits import decolorize_nearest, load_label_map
from ..editor.landmarks import INSTALL_HINT, LandmarkParser
from ..editor.parser import overlay
from ..errors import FacestyleError, InputError
from ..io import save_image
from ..labels import LabelSet
from ..runtime import keep_freed_memory, worker_thread_hint
from .sessions import WORKING_SIDE, Photo, Session, SessionStore, trim_memory

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool

import gradio as gr  # noqa: E402
from gradio import utils as gradio_utils  # noqa: E402

__all__ = ["ServerLimits", "build_app", "serve", "read_upload", "read_label_upload", "labels_from_painting",
           "strokes_from_layers", "without_paths"]

logger = logging.getLogger(__name__)

EDITOR_SIDE = WORKING_SIDE  # the painting canvases (and the overlays) show photos at most this large
DEFAULT_REGIONS = ("skin", "hair")
PARSER_HINT = f"for the landmark parser: {INSTALL_HINT}"
LIVE_PROGRESS = gr.Progress()  # as a handler's default, Gradio replaces it with the event's live progress bar


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts and how much it does at once."""

    max_upload_mb: float = 10.0  # the upload route refuses larger files
    max_side: int = 4096  # images with a longer side are refused before decoding
    concurrency: int = 2  # handlers running at once (the networks themselves run one request at a time)
    queue_size: int = 32  # requests waiting beyond that; more are turned away
    session_ttl_s: float = 1800.0  # an editing session unused this long ends (its photos and files go)
    max_sessions: int = 50  # at most this many sessions; a new one ends the least recently used

    def __post_init__(self) -> None:
        if not self.session_ttl_s > 0:
            raise InputError(f"--session-ttl must be positive, got {self.session_ttl_s:g}")
        if self.max_sessions < 1:
            raise InputError(f"--max-sessions must be at least 1, got {self.max_sessions}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


# ------------------------------------------------------------------------------------ gradio-free helpers


def read_upload(path: str | os.PathLike | None, limits: ServerLimits, what: str = "the photo") -> np.ndarray | None:
    """An uploaded image as (H, W, 3) uint8, checked against the limits before it is decoded."""
    if path is None:
        return None
    return np.asarray(_decode(_open_checked(Path(path), limits, what), what))


def _open_checked(path: Path, limits: ServerLimits, what: str) -> Image.Image:
    """The image file opened (not decoded) once its bytes and its sides are within the limits."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{what} is no longer on the server: upload it again") from None
    if size > limits.max_upload_bytes:
        raise InputError(f"{what} is {size / 2**20:.1f} MB; this server takes uploads up to "
                         f"{limits.max_upload_mb:g} MB")
    im = _open(path, what, limits.max_side)
    w, h = im.size
    if max(w, h) > limits.max_side:
        raise InputError(f"{what} is {w}x{h} pixels; this server takes images up to {limits.max_side} pixels a "
                         "side: make it smaller and upload it again")
    return im


def _open(path: Path, what: str, max_side: int | None = None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check decides
            return Image.open(path)
    except FileNotFoundError:
        raise InputError(f"{what} is no longer on the server: upload it again") from None
    except Image.DecompressionBombError:
        limit = f"; this server takes images up to {max_side} pixels a side" if max_side else ""
        raise InputError(f"{what} has far too many pixels{limit}") from None
    except (UnidentifiedImageError, OSError):
        raise InputError(f"{what} is not an image this server can read (use PNG or JPEG)") from None


def _decode(im: Image.Image, what: str) -> Image.Image:
    """An opened image decoded to RGB: EXIF orientation applied, transparency over white."""
    try:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)  # in place: no second full-size copy
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{what} cannot be decoded ({str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        im = background
    return im if im.mode == "RGB" else im.convert("RGB")


def label_dtype(label_set: LabelSet) -> type:
    """The dtype label maps are held in: uint8 (every label set here has far fewer than 256 classes)."""
    return np.uint8 if label_set.num_classes <= 256 else np.int32


def read_label_upload(path: str | os.PathLike | None, label_set: LabelSet, photo_size: tuple[int, int],
                      limits: ServerLimits, what: str = "the label map") -> np.ndarray | None:
    """An uploaded label map (class indices, or palette colours) as (H, W) uint8 at the photo's size."""
    if path is None:
        return None
    im = _open_checked(Path(path), limits, what)  # the same size checks as photos, before decoding
    dtype = torch.uint8 if label_dtype(label_set) is np.uint8 else torch.int32
    if im.mode in ("L", "P") and dtype == torch.uint8:  # class indices (a palette image's indices are its classes)
        try:
            im.load()
        except (OSError, ValueError) as exc:
            raise InputError(f"{what} cannot be decoded ({str(exc).splitlines()[0] if str(exc) else 'corrupt'})") \
                from None
        arr = np.array(im)  # read as uint8: no int64 copy of a large map
        if arr.size and int(arr.max()) >= label_set.num_classes:
            label_set.validate(arr, source=what)  # raises, with the value and the label set
        labels = torch.from_numpy(arr)
    else:
        im.close()
        try:
            labels = load_label_map(path, label_set).to(dtype)
        except FacestyleError as exc:  # the reader names the file by its path on the server: name it as the user does
            raise InputError(str(exc).replace(str(path), what)) from None
    h, w = photo_size
    lh, lw = labels.shape
    if (lh, lw) != (h, w):
        if abs(lh * w - lw * h) > 0.02 * h * lw:
            raise InputError(f"{what} is {lw}x{lh}: it does not fit the {w}x{h} photo (another aspect ratio)")
        labels = resize_labels_centered(labels, (h, w))
    return labels.numpy()


def labels_from_painting(painting: dict, label_set: LabelSet) -> np.ndarray:
    """The label map an image editor's value shows: the background's classes (its nearest palette colours),
    overwritten where the painted layers are at least half opaque by the class of the brush colour.

    The brush colour is read from the layer, not the composite, so the blend of two colours at an
    antialiased stroke's edge never reads as a third class."""
    background = painting.get("background")
    if background is None:
        composite = painting.get("composite")
        if composite is None:
            raise InputError("paint on the label map first")
        background = composite
    labels = decolorize_nearest(np.asarray(background)[..., :3], label_set)
    strokes = strokes_from_layers(painting.get("layers"))
    if strokes is not None:
        if strokes.shape[:2] != labels.shape:
            raise InputError("the painted layer does not match the label map's size; reload the target")
        painted = strokes[..., 3] >= 128
        if painted.any():
            labels[painted] = decolorize_nearest(strokes[painted][None, :, :3], label_set)[0]
    return labels


def strokes_from_layers(layers: list[np.ndarray] | None) -> np.ndarray | None:
    """The painted layers of an image editor, alpha-composited into one RGBA layer; None if nothing is painted."""
    painted = [np.asarray(layer) for layer in layers or [] if layer is not None]
    painted = [layer for layer in painted if layer.ndim == 3 and layer.shape[-1] == 4 and layer[..., 3].any()]
    if not painted:
        return None
    out = Image.fromarray(np.zeros_like(painted[0]), "RGBA")
    for layer in painted:
        out = Image.alpha_composite(out, Image.fromarray(layer.astype(np.uint8), "RGBA"))
    return np.asarray(out)


def _fit(image: Image.Image, side: int, resample: int) -> Image.Image:
    w, h = image.size
    scale = side / max(w, h)
    return image if scale >= 1 else image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def legend_html(label_set: LabelSet) -> str:
    swatches = "".join(
        f'<span style="display:inline-block;margin:2px 8px 2px 0;white-space:nowrap">'
        f'<span style="display:inline-block;width:12px;height:12px;vertical-align:middle;border:1px solid #888;'
        f'background:{_hex(rgb)}"></span> {name}</span>'
        for name, rgb in zip(label_set.classes, label_set.palette))
    return f'<div style="font-size:0.85em;line-height:1.4">{swatches}</div>'


# ------------------------------------------------------------------------------------------------ the app


class _App:
    """The handlers, holding the editor, the editing sessions and the model lock; one per server.

    A page holds handles (small dicts naming a session's photo, see :class:`~facestyle.app.sessions.Photo`);
    the photos themselves are in :attr:`sessions`. Handlers return images as files written for that request."""

    def __init__(self, editor: Editor, limits: ServerLimits, sessions: SessionStore | None = None) -> None:
        self.editor = editor
        self.limits = limits
        self.sessions = sessions if sessions is not None else SessionStore(ttl=limits.session_ttl_s,
                                                                           capacity=limits.max_sessions)
        self.label_set: LabelSet = editor.label_set
        self.label_dtype = label_dtype(self.label_set)
        self.model_lock = threading.Lock()  # one forward pass at a time: CPU threads are shared anyway
        self.mapping_regions = self._style_regions("mapping")
        self.flow_regions = self._style_regions("flow")

    def _style_regions(self, kind: str) -> list[str]:
        try:
            return self.editor.style_regions(kind)
        except (FacestyleError, OSError) as exc:
            logger.warning("no %s networks: %s", kind, exc)
            return []

    # --------------------------------------------------------------------------------- photos and labels

    def load(self, photo: str | None, labels: str | None, role: str, progress: gr.Progress,
             session: str | None = None, face: int | None = None) -> tuple:
        """(handle, overlay, shape canvas, colour canvas, note) for an uploaded photo and its label map, kept
        in the editing session ``session`` (opened when missing; a fresh one when None). A photo the landmark
        parser labels is edited on face ``face`` (default 0, the largest), aligned and pasted back."""
        if photo is None:
            if session is not None and session in self.sessions:
                self.sessions.session(session).put(role, None)  # cleared on the page: its files go now
            return {}, None, None, None, ""
        what = f"the {role} photo"
        image = _decode(_open_checked(Path(photo), self.limits, what), what)
        size = (image.height, image.width)
        label_map = read_label_upload(labels, self.label_set, size, self.limits, f"the {role} label map")
        chosen, boxes = None, []
        if label_map is not None:
            note = f"{role}: label map uploaded"
        elif self.editor.finds_faces:
            progress(0.2, desc=f"Finding the faces of the {role} photo")
            with self.model_lock:
                label_map, chosen, boxes = self._parse_face(np.asarray(image), face or 0, what)
            note = (f"{role}: face {chosen} of {len(boxes)} found, parsed by the landmark parser; edits are pasted "
                    f"back into the {size[1]}x{size[0]} photo")
        elif self.editor.can_parse:
            progress(0.2, desc=f"Parsing the {role} photo")
            with self.model_lock:
                label_map = np.asarray(self.editor.parse(np.asarray(image))).astype(self.label_dtype)
            note = f"{role}: label map parsed by the face parser"
        else:
            note = (f"{role}: **upload a label map** (class indices or palette colours); this server has no "
                    f"face parser ({PARSER_HINT})")
        preview = _preview(image)
        del image  # the full-size photo stays on disk only
        kept = self.sessions.session(session, create=True)
        uploads = tuple(Path(p) for p in (photo, labels) if p is not None)
        item = kept.new_photo(Path(photo), preview, size, label_map, uploads=uploads)
        item.face, item.faces = chosen, [str(box) for box in boxes]
        views = self._show(kept, item)
        kept.put(role, item)
        return (item.handle(kept, role), *views, note)

    def _parse_face(self, rgb: np.ndarray, face: int, what: str) -> tuple[np.ndarray, int, list]:
        """(label map at the photo's size, the face's index, the boxes of all faces found) by the landmark
        parser, for face ``face`` of a photo."""
        parser: LandmarkParser = self.editor.parser
        labels, faces = parser.parse_face(rgb, int(face), what)
        return labels.numpy().astype(self.label_dtype), int(face), face_boxes(faces)

    def face_menu(self, handle: dict | None, role: str = "target") -> Any:
        """The "Face" menu of a loaded photo: its faces, the edited one chosen (hidden without faces)."""
        found = self.sessions.lookup(handle, role)
        if found is None or not found[1].faces:
            return gr.update(choices=[], value=None, visible=False)
        photo = found[1]
        return gr.update(choices=[(text, i) for i, text in enumerate(photo.faces)], value=photo.face, visible=True)

    def _input(self, photo: Photo, role: str) -> Any:
        """What the editor is given for a loaded photo: its full-size pixels, or, when a face is chosen, that
        face aligned (the edit's result is then the whole photo with the face pasted back)."""
        image = self._full(photo, role)
        return image if photo.face is None else self.editor.align(image, face=photo.face)

    def views(self, photo: dict) -> tuple:
        """The overlay and the two painting canvases (arrays) of a photo (``image``, any size: shown at most
        EDITOR_SIDE a side) and its label map (``labels``, at the photo's full size, or None)."""
        image, labels = photo.get("image"), photo.get("labels")
        if image is None:
            return None, None, None
        shown = _fit(Image.fromarray(image), EDITOR_SIDE, Image.BICUBIC)
        if labels is None:
            return np.asarray(shown), None, _canvas(shown)
        small = np.asarray(Image.fromarray(np.asarray(labels).astype(np.uint8)).resize(shown.size, Image.NEAREST))
        colours = Image.fromarray(self.label_set.colorize(small))
        return np.asarray(overlay(shown, small, self.label_set)), _canvas(colours), _canvas(shown)

    def _show(self, session: Session, photo: Photo) -> tuple:
        """The views of a photo written to this request's own folder: (overlay path, shape canvas, colour
        canvas), the canvases' backgrounds as paths."""
        shown, shape, colour = self.views({"image": photo.preview, "labels": photo.labels})
        out = session.new_output()
        photo.output = out
        paths = [None if a is None else _write(out / name, a)
                 for name, a in (("overlay.png", shown), ("labels.png", shape and shape["background"]),
                                 ("photo.png", colour["background"]))]
        return (paths[0], None if shape is None else {**shape, "background": paths[1]},
                {**colour, "background": paths[2]})

    def _loaded(self, handle: dict | None, role: str = "target") -> tuple[Session, Photo]:
        """The session and photo of a loaded target or reference, which must have a label map."""
        found = self.sessions.lookup(handle, role)
        if found is None:
            raise InputError(f"upload a {role} photo first")
        if found[1].labels is None:
            raise InputError(f"the {role} has no label map: upload one")
        return found

    @staticmethod
    def _full(photo: Photo, role: str) -> np.ndarray:
        """The photo at its full size, read back from its file."""
        return np.asarray(_decode(_open(photo.path, f"the {role} photo"), f"the {role} photo"))

    def _target_region(self, target: dict, region: str, seed: float) -> tuple[Session, Photo, int]:
        """The target's session and photo and the seed, for an edit of one chosen region."""
        session, photo = self._loaded(target)
        if not region:
            raise InputError("choose a region")
        return session, photo, int(seed or 0)

    def _run(self, progress: gr.Progress, desc: str, call: Callable[[], Any]) -> tuple[Any, list[str]]:
        """Run an editor call under the model lock, collecting the warnings it gives."""
        progress(0.1, desc=desc)
        with self.model_lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = call()
        progress(1.0, desc="Done")
        notes = list(dict.fromkeys(str(w.message) for w in caught))
        return result, notes

    def _result(self, session: Session, image: Any, labels: np.ndarray, message: str, notes: list[str],
                before: Photo | None = None) -> tuple:
        """(result file, result handle, text): the result written to this request's own folder (the page
        downloads it from there) and kept in the session as its ``result`` (the previous one can be
        brought back by undo); ``before``: the photo it was made from."""
        im = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        out = session.new_output()
        path = _write(out / "result.png", im)
        photo = session.new_photo(Path(path), _preview(im), (im.height, im.width),
                                  np.asarray(labels).astype(self.label_dtype, copy=False))
        photo.output = out
        photo.before = None if before is None else before.path
        if before is not None:  # continuing from the result edits the same face of the same photo
            photo.face, photo.faces = before.face, before.faces
        session.remember("result")
        session.put("result", photo)
        text = message + "".join(f"\n\n*note:* {n}" for n in notes)
        return path, photo.handle(session, "result"), text

    # ------------------------------------------------------------------------------------------ edits

    def transfer(self, target: dict, reference: dict, chosen: list[str], harmonized: bool, strength: float = 1.0,
                 progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        session, photo = self._loaded(target)
        _, ref = self._loaded(reference, "reference")
        if not chosen:
            raise InputError("choose at least one region to transfer")
        result, notes = self._run(progress, "Transferring", lambda: self.editor.transfer(
            self._input(photo, "target"), photo.labels, self._input(ref, "reference"), ref.labels,
            regions=list(chosen), harmonize=harmonized, strength=float(strength)))
        how = "" if float(strength) == 1 else f" at strength {float(strength):g}"
        return self._result(session, result, photo.labels,
                            f"Transferred {', '.join(chosen)} from the reference{how}.", notes, before=photo)

    def sample(self, target: dict, region: str, seed: float, progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        session, photo, seed = self._target_region(target, region, seed)
        result, notes = self._run(progress, f"Drawing a {region} style", lambda: self.editor.sample(
            self._input(photo, "target"), photo.labels, region=region, n=1, seed=seed)[0])
        return self._result(session, result, photo.labels, f"A random {region} style (seed {seed}).", notes,
                            before=photo)

    def finetune(self, target: dict, region: str, step: float, seed: float,
                 progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        session, photo, seed = self._target_region(target, region, seed)
        result, notes = self._run(progress, f"Fine-tuning the {region} style", lambda: self.editor.finetune(
            self._input(photo, "target"), photo.labels, region=region, step=float(step), seed=seed)[0])
        return self._result(session, result, photo.labels,
                            f"{region} style moved by {float(step):g} along direction {seed}.", notes, before=photo)

    def shape(self, target: dict, reference: dict, painting: dict | None, seed: float,
              progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        session, photo = self._loaded(target)
        if not painting:
            raise InputError("paint on the label map first")
        new_labels = self._painted_labels(photo.labels, painting)
        ref = ref_labels = None
        found = self.sessions.lookup(reference, "reference")
        if found is not None and found[1].labels is not None:
            ref, ref_labels = found[1], found[1].labels
        (result, details), notes = self._run(progress, "Redrawing the face", lambda: self.editor.edit_shape(
            self._input(photo, "target"), photo.labels, new_labels,
            reference=None if ref is None else self._input(ref, "reference"), reference_labels=ref_labels,
            seed=int(seed or 0), return_details=True))
        sources = details["sources"]
        new = ("; new classes: " + ", ".join(f"{k} (style from {v})" for k, v in sources.items())) if sources else ""
        return self._result(session, result, new_labels, f"Redrawn on the edited label map{new}.", notes,
                            before=photo)

    def _painted_labels(self, labels: np.ndarray, painting: dict) -> np.ndarray:
        """The edited label map at the photo's size (in the label map's dtype). The canvas may show the map
        smaller than the photo: when its background is the map it was given, only the painted pixels change
        (the rest keeps the photo's own detail); a background replaced in the editor is taken as it is, resized."""
        canvas = labels_from_painting(painting, self.label_set).astype(self.label_dtype)
        size = labels.shape
        (h, w), (ch, cw) = size, canvas.shape
        if abs(ch * w - cw * h) > 0.02 * h * cw:
            raise InputError(f"the painted label map is {cw}x{ch}: it does not fit the {w}x{h} photo")
        background = painting.get("background")
        shown = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((cw, ch), Image.NEAREST))
        painted_base = None if background is None else labels_from_painting({"background": background},
                                                                             self.label_set)
        full_canvas = resize_labels_centered(torch.from_numpy(canvas), size).numpy()
        if painted_base is None or painted_base.shape != shown.shape or (painted_base != shown).mean() > 0.01:
            return full_canvas
        changed = resize_labels_centered(torch.from_numpy(canvas != painted_base), size).numpy()
        full = labels.astype(self.label_dtype)  # a copy
        full[changed] = full_canvas[changed]
        return full

    def color(self, target: dict, painting: dict | None, chosen: list[str],
              progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        session, photo = self._loaded(target)
        strokes = strokes_from_layers((painting or {}).get("layers"))
        if strokes is None:
            raise InputError("paint colour strokes on the photo first")
        (result, details), notes = self._run(progress, "Recolouring", lambda: self.editor.edit_color(
            self._input(photo, "target"), photo.labels, strokes, regions=list(chosen) or None, return_details=True))
        return self._result(session, result, photo.labels, f"Recoloured {', '.join(details['classes'])}.", notes,
                            before=photo)

    def continue_from(self, result: dict | None) -> tuple:
        found = self.sessions.lookup(result, "result")
        if found is None:
            raise InputError("there is no result yet")
        session, photo = found
        session.remember("target")
        session.put("target", photo)
        return (photo.handle(session, "target"), *self._show(session, photo),
                "target: the last result (its label map comes with it)")

    def undo(self, handle: dict | None, request_session: str | None = None) -> tuple:
        """Undo the last edit (or "continue editing"): (result file, result handle, target handle, target
        overlay, shape canvas, colour canvas, text); what the undo leaves as it was is ``gr.skip()``."""
        session_id = (handle or {}).get("session") or request_session
        if session_id is None or session_id not in self.sessions:
            raise InputError("there is nothing to undo")
        session = self.sessions.session(session_id)
        role = session.undo()
        if role is None:
            raise InputError("there is nothing to undo")
        photo = session.photo(role)
        skip = gr.skip()
        if role == "target":
            views = (skip, skip, skip) if photo is None else self._show(session, photo)
            handle = {} if photo is None else photo.handle(session, "target")
            return (skip, skip, handle, *views, "Undone: back to the target before \"continue editing\".")
        if photo is None:
            return (None, {}, skip, skip, skip, skip, "Undone: no result.")
        return (str(photo.path), photo.handle(session, "result"), skip, skip, skip, skip,
                "Undone: back to the previous result.")

    def before_after(self, result: dict | None, before: bool) -> Any:
        """The result, or (``before``) the photo it was made from, for the result view."""
        found = self.sessions.lookup(result, "result")
        if found is None:
            return gr.skip()
        photo = found[1]
        return str(photo.before if before and photo.before is not None and photo.before.exists() else photo.path)


def _preview(image: np.ndarray | Image.Image) -> np.ndarray:
    """A photo at the working size (at most EDITOR_SIDE a side), as (h, w, 3) uint8."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return np.asarray(_fit(im, EDITOR_SIDE, Image.BICUBIC).convert("RGB"))


def _write(path: Path, image: np.ndarray | Image.Image) -> str:
    """An image written (atomically) to a request's own path; the path, for Gradio to serve."""
    save_image(image if isinstance(image, Image.Image) else Image.fromarray(image), path)
    return str(path)


def _canvas(image: Image.Image) -> dict:
    return {"background": np.asarray(image.convert("RGB")), "layers": [], "composite": None}


# Absolute paths (POSIX, or Windows with a drive) with at least one folder: shown as their file name only.
_PATH_CHARS = r"[^\s'\"`<>|()\[\]{},;:/\\]"
_ABSOLUTE_PATH = re.compile(rf"(?<![\w.~:/\\-])(?:[A-Za-z]:)?[/\\](?:{_PATH_CHARS}+[/\\])+({_PATH_CHARS}*)")


def without_paths(message: str) -> str:
    """A message with every absolute path of the server cut to its file name (``/srv/x/photo.png: ...`` reads
    ``photo.png: ...``): what the page shows never reveals the server's folders."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "(a folder)", message)


def _errors_as_messages(function: Callable) -> Callable:
    """Turn user errors into a message on the page (gr.Error), and anything else into a short one."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except FacestyleError as exc:
            raise gr.Error(without_paths(str(exc)), print_exception=False) from None
        except MemoryError:
            raise gr.Error("out of memory: try a smaller image", print_exception=False) from None
        except Exception as exc:  # a bug: log it in full, show one line
            logger.exception("the web editor failed")
            raise gr.Error(f"internal error ({type(exc).__name__}); the server log has the details",
                           print_exception=False) from None
        finally:  # a large photo's decoding buffers are freed by now: hand their pages back to the system
            trim_memory()

    return wrapper


def _theme() -> Any:
    system = [gr.themes.Font("ui-sans-serif"), gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")]
    mono = [gr.themes.Font("ui-monospace"), gr.themes.Font("monospace")]
    return gr.themes.Default(font=system, font_mono=mono)  # no web fonts: the page works offline


def _region_choice(regions: list[str], tab: str, note: str, off: str) -> tuple[bool, gr.Dropdown]:
    """The note and region menu of a tab that needs trained networks: whether it is on, and the menu."""
    on = bool(regions)
    gr.Markdown(note if on else off, elem_id=f"{tab}-note")
    return on, gr.Dropdown(regions, value=(regions or [None])[0], label="Region", visible=on, elem_id=f"{tab}-region")


CSS = """
#result-image img, #target-overlay img, #reference-overlay img { object-fit: contain; }
.facestyle-note { font-size: 0.9em; opacity: 0.85; }
"""


def build_app(editor: Editor, limits: ServerLimits | None = None, title: str = "facestyle",
              sessions: SessionStore | None = None) -> gr.Blocks:
    """The page for an editor (:meth:`Editor.from_pretrained`; with a face parser, uploads are labelled).

    ``sessions``: where the tabs' photos are kept (default: a store of ``limits``' time to live and capacity,
    whose folders lie in Gradio's cache so that the page is served the files each request writes); the
    returned Blocks carry it as ``facestyle_sessions``."""
    editor.require_facestyle_net("editing in the web editor")  # its tabs are written on FaceStyleNet's codes
    limits = limits or ServerLimits()
    if sessions is None:
        cache = gradio_utils.get_upload_folder()
        sessions = SessionStore(root=cache, upload_root=cache, ttl=limits.session_ttl_s, capacity=limits.max_sessions)
    app = _App(editor, limits, sessions)
    label_set = app.label_set
    regions = [r for r, classes in label_set.regions.items() if classes]
    cfg = editor.model.config
    parser_note = ("the landmark parser labels uploads" if isinstance(editor.parser, LandmarkParser)
                   else "a face parser labels uploads") if editor.can_parse else \
        f"no face parser: upload label maps with the photos ({PARSER_HINT})"
    need = "(optional)" if editor.can_parse else "(required: no face parser)"

    with gr.Blocks(title=f"{title}: face editor", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"## {title}: harmonized regional face editing\n"
                    f"<span class='facestyle-note'>{label_set.name} model at {cfg.image_size}x{cfg.image_size}; "
                    f"{parser_note}; uploads up to {limits.max_upload_mb:g} MB and {limits.max_side} px a side.</span>")
        target_state, reference_state, result_state = gr.State({}), gr.State({}), gr.State({})
        with gr.Row():
            with gr.Column():
                target_photo = gr.Image(label="Target photo", type="filepath", image_mode=None,
                                        sources=["upload", "clipboard"], elem_id="target-photo", height=256)
                target_labels = gr.Image(label=f"Target label map {need}", type="filepath", image_mode=None,
                                         sources=["upload"], elem_id="target-labels", height=140)
                target_overlay = gr.Image(label="Target labels", interactive=False, elem_id="target-overlay",
                                          height=256, format="png", buttons=["fullscreen"])
                target_face = gr.Dropdown([], value=None, label="Face (0 the largest; edits are pasted back into "
                                          "the full-size photo)", visible=False, interactive=True,
                                          elem_id="target-face")
            with gr.Column():
                reference_photo = gr.Image(label="Reference photo", type="filepath", image_mode=None,
                                           sources=["upload", "clipboard"], elem_id="reference-photo", height=256)
                reference_labels = gr.Image(label=f"Reference label map {need}", type="filepath",
                                            image_mode=None, sources=["upload"], elem_id="reference-labels",
                                            height=140)
                reference_overlay = gr.Image(label="Reference labels", interactive=False, buttons=["fullscreen"],
                                             elem_id="reference-overlay", height=256, format="png")
            with gr.Column():
                result_image = gr.Image(label="Result", interactive=False, format="png", elem_id="result-image",
                                        buttons=["download", "fullscreen"], height=400)
                status = gr.Markdown("Upload a target photo to start.", elem_id="status")
                with gr.Row():
                    before_toggle = gr.Checkbox(False, label="Show before", elem_id="before-after")
                    undo_button = gr.Button("Undo", elem_id="undo-button")
                continue_button = gr.Button("Continue editing from the result", elem_id="continue-button")

        with gr.Tabs():
            with gr.Tab("Transfer", id="tab-transfer"):
                transfer_regions = gr.CheckboxGroup(regions, value=[r for r in DEFAULT_REGIONS if r in regions],
                                                    label="Regions to take from the reference",
                                                    elem_id="transfer-regions")
                transfer_strength = gr.Slider(0, 1, value=1, step=0.05, elem_id="transfer-strength",
                                              label="Strength (0: the target's style, 1: the reference's)")
                harmonize = gr.Checkbox(True, label="Harmonize (MRSA)", elem_id="harmonize")
                transfer_button = gr.Button("Transfer", variant="primary", elem_id="transfer-button")
            with gr.Tab("Random style", id="tab-sample"):
                has_mapping, sample_region = _region_choice(
                    app.mapping_regions, "sample", "Draw a random style for a region from its mapping network.",
                    "This checkpoint has no mapping networks, so random styles are off "
                    "(train them with `facestyle train-mapping`).")
                sample_seed = gr.Number(0, precision=0, label="Seed", visible=has_mapping, elem_id="sample-seed")
                sample_button = gr.Button("Random style", variant="primary", visible=has_mapping,
                                          elem_id="sample-button")
            with gr.Tab("Fine-tune", id="tab-finetune"):
                has_flow, finetune_region = _region_choice(
                    app.flow_regions, "finetune", "Move a region's style along a direction of its flow's latent space.",
                    "This checkpoint has no flows, so fine-tuning is off (train them with `facestyle train-flow`).")
                finetune_step = gr.Slider(-3, 3, value=1, step=0.1, label="Step", visible=has_flow,
                                          elem_id="finetune-step")
                finetune_seed = gr.Number(0, precision=0, label="Direction (seed)", visible=has_flow,
                                          elem_id="finetune-seed")
                finetune_button = gr.Button("Fine-tune", variant="primary", visible=has_flow,
                                            elem_id="finetune-button")
            with gr.Tab("Shape", id="tab-shape"):
                gr.Markdown("Paint the label map with the class colours, then redraw. A class the target lacks "
                            "takes its style from the reference, a mapping network or the dataset mean.")
                palette = [_hex(rgb) for rgb in label_set.palette]
                hair = label_set.classes.index("hair") if "hair" in label_set.classes else 1
                shape_editor = gr.ImageEditor(
                    label="Label map", type="numpy", image_mode="RGBA", sources=("upload",), layers=False,
                    transforms=(), interactive=True, elem_id="shape-editor", height=480, format="png",
                    brush=gr.Brush(colors=palette, default_color=palette[hair], color_mode="fixed"))
                gr.HTML(legend_html(label_set))
                shape_seed = gr.Number(0, precision=0, label="Seed for mapping networks", elem_id="shape-seed")
                shape_button = gr.Button("Redraw on the edited map", variant="primary", elem_id="shape-button")
            with gr.Tab("Colour", id="tab-color"):
                gr.Markdown("Paint colour strokes over a region (hair, lips...), then recolour.")
                color_editor = gr.ImageEditor(
                    label="Photo", type="numpy", image_mode="RGBA", sources=("upload",), layers=False,
                    transforms=(), interactive=True, elem_id="color-editor", height=480, format="png",
                    brush=gr.Brush(colors=["#7a1f1f", "#c0392b", "#e67e22", "#f1c40f", "#6d4c41", "#2c3e50",
                                           "#8e44ad", "#1abc9c"], default_color="#c0392b", color_mode="defaults"))
                color_regions = gr.CheckboxGroup(regions, value=[], label="Only these regions (optional)",
                                                 elem_id="color-regions")
                color_button = gr.Button("Recolour", variant="primary", elem_id="color-button")

        loaded = [target_state, target_overlay, shape_editor, color_editor, status]
        outputs = [result_image, result_state, status]

        @_errors_as_messages
        def load_target(photo, labels, request: gr.Request, progress=LIVE_PROGRESS):
            return app.load(photo, labels, "target", progress, session=_session_id(request))

        @_errors_as_messages
        def choose_target_face(photo, labels, face, request: gr.Request, progress=LIVE_PROGRESS):
            return app.load(photo, labels, "target", progress, session=_session_id(request),
                            face=None if face is None else int(face))

        @_errors_as_messages
        def load_reference(photo, labels, request: gr.Request, progress=LIVE_PROGRESS):
            state, overlay, _, _, note = app.load(photo, labels, "reference", progress, session=_session_id(request))
            return state, overlay, note

        transfer, sample, finetune, shape, color, continue_from = map(
            _errors_as_messages, (app.transfer, app.sample, app.finetune, app.shape, app.color, app.continue_from))

        # Every handler shares one concurrency group: at most `concurrency` run at once, the rest queue.
        queued = {"concurrency_limit": limits.concurrency, "concurrency_id": "facestyle"}
        face_menu = _errors_as_messages(app.face_menu)
        gr.on([target_photo.change, target_labels.change], load_target, [target_photo, target_labels], loaded,
              api_name="load_target", **queued).then(face_menu, [target_state], [target_face], api_visibility="private")
        target_face.input(choose_target_face, [target_photo, target_labels, target_face], loaded,
                          api_name="choose_face", **queued)
        gr.on([reference_photo.change, reference_labels.change], load_reference, [reference_photo, reference_labels],
              [reference_state, reference_overlay, status], api_name="load_reference", **queued)
        def show_after() -> bool:  # a new result is shown as the result: "Show before" unticked
            return False

        def new_result(event) -> None:
            event.then(show_after, None, [before_toggle], api_visibility="private", queue=False)

        new_result(transfer_button.click(transfer, [target_state, reference_state, transfer_regions, harmonize,
                                                    transfer_strength], outputs, api_name="transfer", **queued))
        new_result(sample_button.click(sample, [target_state, sample_region, sample_seed], outputs, api_name="sample",
                                       **queued))
        new_result(gr.on([finetune_button.click, finetune_step.release], finetune,
                         [target_state, finetune_region, finetune_step, finetune_seed], outputs, api_name="finetune",
                         **queued))
        new_result(shape_button.click(shape, [target_state, reference_state, shape_editor, shape_seed], outputs,
                                      api_name="shape", **queued))
        new_result(color_button.click(color, [target_state, color_editor, color_regions], outputs, api_name="color",
                                      **queued))
        continue_button.click(continue_from, [result_state], loaded, api_name="continue_from", **queued).then(
            face_menu, [target_state], [target_face], api_visibility="private")

        @_errors_as_messages
        def undo(target, request: gr.Request):
            return app.undo(target, _session_id(request))

        undone = undo_button.click(undo, [target_state], [result_image, result_state, target_state, target_overlay,
                                                           shape_editor, color_editor, status], api_name="undo",
                                   **queued)
        new_result(undone)
        undone.then(face_menu, [target_state], [target_face], api_visibility="private")  # the face may differ
        before_toggle.input(_errors_as_messages(app.before_after), [result_state, before_toggle], [result_image],
                             api_name="before_after", **queued)

    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)  # beyond max_size: refused
    demo.facestyle_sessions = sessions
    return demo


class _WithoutShareHint(io.TextIOBase):
    """stdout without Gradio's "set `share=True` in `launch()`" line: ``facestyle serve`` has no such option
    (it serves on --host)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.dropped = stream, False

    def write(self, text: str) -> int:
        if "share=True" in text:
            self.dropped = True
            return len(text)
        if self.dropped and text == "\n":  # print() writes the line's end on its own
            self.dropped = False
            return len(text)
        self.dropped = False
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _session_id(request: gr.Request | None) -> str | None:
    """The tab's Gradio session: one editing session per tab (a key only; folders get names of our own)."""
    return getattr(request, "session_hash", None) or None


def serve(checkpoint: str | os.PathLike, parser: str | os.PathLike | None = None, host: str = "127.0.0.1",
          port: int = 7860, device: str = "cpu", limits: ServerLimits | None = None, block: bool = True,
          quiet: bool = False, sessions: SessionStore | None = None) -> gr.Blocks:
    """Load the checkpoint and run the web editor on ``host:port`` (blocking unless ``block=False``, in which
    case the running app is returned: stop it with ``app.close()`` and ``app.facestyle_sessions.close()``).
    ``sessions``: see :func:`build_app`."""
    limits = limits or ServerLimits()
    if not 0 < port < 65536:
        raise InputError(f"--port must lie in 1..65535, got {port}")
    editor = Editor.from_pretrained(checkpoint, device=device, parser=parser)
    demo = build_app(editor, limits, sessions=sessions)
    if host not in ("127.0.0.1", "localhost", "::1") and not quiet:
        logger.warning("binding to %s: anyone who can reach this machine can use the editor", host)
    if editor.device.type == "cpu":
        # Before Gradio starts its worker threads: they then allocate from the main arena and reuse freed
        # blocks as the command line does (the Editor has called it already; see facestyle.runtime).
        keep_freed_memory()
        hint = worker_thread_hint()  # only when some thread allocated before the setting
        if hint and not quiet:
            logger.warning("note: %s", hint)
    sessions: SessionStore = demo.facestyle_sessions
    # Gradio keeps a little state per tab too: bound it with the editing sessions.
    launch = {"server_name": host, "server_port": port, "max_file_size": limits.max_upload_bytes,
              "show_error": False,  # only our one-line messages reach the page: raw exceptions can name paths
              "ssr_mode": False, "prevent_thread_lock": not block, "quiet": quiet, "theme": _theme(), "css": CSS,
              "footer_links": [], "inbrowser": False, "share": False,
              "state_session_capacity": max(100, 4 * limits.max_sessions)}
    stop_on_sigterm = block and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if stop_on_sigterm else None
    try:
        with contextlib.redirect_stdout(_WithoutShareHint(sys.stdout)):
            demo.launch(**launch)
    except OSError as exc:
        sessions.close()
        raise InputError(f"cannot serve on {host}:{port} ({str(exc).splitlines()[0]})") from None
    finally:
        if stop_on_sigterm:
            signal.signal(signal.SIGTERM, previous)
            sessions.close()  # the server has stopped: the sessions' photos and results go
    return demo


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops a blocking server as Ctrl-C does, so that it closes and deletes the sessions' files."""
    raise KeyboardInterrupt
