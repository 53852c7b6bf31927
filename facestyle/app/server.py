"""The web editor (``facestyle serve``): a Gradio page over the Editor.

Upload a target photo (and a reference photo); their label maps are parsed (when a face parser is
configured) or uploaded, and shown as a colour overlay. Then:

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
"""

from __future__ import annotations

import functools
import logging
import os
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
from ..editor.editor import Editor
from ..editor.edits import decolorize_nearest, load_label_map
from ..editor.parser import overlay
from ..errors import FacestyleError, InputError
from ..labels import LabelSet
from ..runtime import worker_thread_hint

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool

import gradio as gr  # noqa: E402

__all__ = ["ServerLimits", "build_app", "serve", "read_upload", "read_label_upload", "labels_from_painting",
           "strokes_from_layers"]

logger = logging.getLogger(__name__)

EDITOR_SIDE = 768  # the painting canvases show photos and label maps at most this large
DEFAULT_REGIONS = ("skin", "hair")
LIVE_PROGRESS = gr.Progress()  # as a handler's default, Gradio replaces it with the event's live progress bar


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts and how much it does at once."""

    max_upload_mb: float = 10.0  # the upload route refuses larger files
    max_side: int = 4096  # images with a longer side are refused before decoding
    concurrency: int = 2  # handlers running at once (the networks themselves run one request at a time)
    queue_size: int = 32  # requests waiting beyond that; more are turned away

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


# ------------------------------------------------------------------------------------ gradio-free helpers


def read_upload(path: str | os.PathLike | None, limits: ServerLimits, what: str = "the photo") -> np.ndarray | None:
    """An uploaded image as (H, W, 3) uint8, checked against the limits before it is decoded."""
    if path is None:
        return None
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise InputError(f"{what} is {size / 2**20:.1f} MB; this server takes uploads up to "
                         f"{limits.max_upload_mb:g} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below decides
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise InputError(f"{what} has far too many pixels; this server takes images up to {limits.max_side} "
                         "pixels a side") from None
    except (UnidentifiedImageError, OSError):
        raise InputError(f"{what} is not an image this server can read (use PNG or JPEG)") from None
    w, h = im.size
    if max(w, h) > limits.max_side:
        raise InputError(f"{what} is {w}x{h} pixels; this server takes images up to {limits.max_side} pixels a "
                         "side: make it smaller and upload it again")
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{what} cannot be decoded ({str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        im = background
    return np.asarray(im.convert("RGB"))


def read_label_upload(path: str | os.PathLike | None, label_set: LabelSet, photo_size: tuple[int, int],
                      limits: ServerLimits, what: str = "the label map") -> np.ndarray | None:
    """An uploaded label map (class indices, or palette colours) as (H, W) int64 at the photo's size."""
    if path is None:
        return None
    read_upload(path, limits, what)  # the same size checks as photos
    labels = load_label_map(path, label_set)
    h, w = photo_size
    lh, lw = labels.shape
    if (lh, lw) != (h, w):
        if abs(lh * w - lw * h) > 0.02 * h * lw:
            raise InputError(f"{what} is {lw}x{lh}: it does not fit the {w}x{h} photo (another aspect ratio)")
        labels = resize_labels_centered(labels, (h, w))
    return torch.as_tensor(labels).numpy().astype(np.int64)


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
    """The handlers, holding the editor and the locks; one per server."""

    def __init__(self, editor: Editor, limits: ServerLimits) -> None:
        self.editor = editor
        self.limits = limits
        self.label_set: LabelSet = editor.label_set
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

    def load(self, photo: str | None, labels: str | None, role: str, progress: gr.Progress) -> tuple:
        """(state, overlay, shape canvas, colour canvas, note) for an uploaded photo and its label map."""
        image = read_upload(photo, self.limits, f"the {role} photo")
        if image is None:
            return {}, None, None, None, ""
        size = image.shape[:2]
        label_map = read_label_upload(labels, self.label_set, size, self.limits, f"the {role} label map")
        if label_map is not None:
            note = f"{role}: label map uploaded"
        elif self.editor.parser is not None:
            progress(0.2, desc=f"Parsing the {role} photo")
            with self.model_lock:
                label_map = np.asarray(self.editor.parse(image), dtype=np.int64)
            note = f"{role}: label map parsed by the face parser"
        else:
            note = (f"{role}: **upload a label map** (class indices or palette colours); this server has no "
                    "face parser")
        state = {"image": image, "labels": label_map}
        return (state, *self.views(state), note)

    def views(self, state: dict) -> tuple:
        """The overlay and the two painting canvases of a loaded photo."""
        image, labels = state.get("image"), state.get("labels")
        if image is None:
            return None, None, None
        photo = Image.fromarray(image)
        if labels is None:
            return image, None, _canvas(_fit(photo, EDITOR_SIDE, Image.BICUBIC))
        colours = Image.fromarray(self.label_set.colorize(labels))
        return (np.asarray(overlay(photo, labels, self.label_set)),
                _canvas(_fit(colours, EDITOR_SIDE, Image.NEAREST)),
                _canvas(_fit(photo, EDITOR_SIDE, Image.BICUBIC)))

    @staticmethod
    def _loaded(state: dict | None, role: str = "target") -> tuple[np.ndarray, np.ndarray]:
        """The photo and label map of a loaded target or reference."""
        if not state or state.get("image") is None:
            raise InputError(f"upload a {role} photo first")
        if state.get("labels") is None:
            raise InputError(f"the {role} has no label map: upload one")
        return state["image"], state["labels"]

    def _target_region(self, target: dict, region: str, seed: float) -> tuple[np.ndarray, np.ndarray, int]:
        """The target's photo and label map and the seed, for an edit of one chosen region."""
        image, labels = self._loaded(target)
        if not region:
            raise InputError("choose a region")
        return image, labels, int(seed or 0)

    def _run(self, progress: gr.Progress, desc: str, call: Callable[[], Any]) -> tuple[Any, list[str]]:
        """Run an editor call under the model lock, collecting the warnings it gives."""
        progress(0.1, desc=desc)
        with self.model_lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = call()
        progress(1.0, desc="Done")
        notes = list(dict.fromkeys(str(w.message) for w in caught))
        return result, notes

    @staticmethod
    def _result(image: Any, labels: np.ndarray, message: str, notes: list[str]) -> tuple:
        array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        text = message + "".join(f"\n\n*note:* {n}" for n in notes)
        return array, {"image": array, "labels": labels}, text

    # ------------------------------------------------------------------------------------------ edits

    def transfer(self, target: dict, reference: dict, chosen: list[str], harmonized: bool,
                 progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        image, labels = self._loaded(target)
        ref_image, ref_labels = self._loaded(reference, "reference")
        if not chosen:
            raise InputError("choose at least one region to transfer")
        result, notes = self._run(progress, "Transferring", lambda: self.editor.transfer(
            image, labels, ref_image, ref_labels, regions=list(chosen), harmonize=harmonized))
        return self._result(result, labels, f"Transferred {', '.join(chosen)} from the reference.", notes)

    def sample(self, target: dict, region: str, seed: float, progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        image, labels, seed = self._target_region(target, region, seed)
        result, notes = self._run(progress, f"Drawing a {region} style", lambda: self.editor.sample(
            image, labels, region=region, n=1, seed=seed)[0])
        return self._result(result, labels, f"A random {region} style (seed {seed}).", notes)

    def finetune(self, target: dict, region: str, step: float, seed: float,
                 progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        image, labels, seed = self._target_region(target, region, seed)
        result, notes = self._run(progress, f"Fine-tuning the {region} style", lambda: self.editor.finetune(
            image, labels, region=region, step=float(step), seed=seed)[0])
        return self._result(result, labels, f"{region} style moved by {float(step):g} along direction {seed}.", notes)

    def shape(self, target: dict, reference: dict, painting: dict | None, seed: float,
              progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        image, labels = self._loaded(target)
        if not painting:
            raise InputError("paint on the label map first")
        new_labels = self._painted_labels(labels, painting)
        ref_image = ref_labels = None
        if reference and reference.get("image") is not None and reference.get("labels") is not None:
            ref_image, ref_labels = reference["image"], reference["labels"]
        (result, details), notes = self._run(progress, "Redrawing the face", lambda: self.editor.edit_shape(
            image, labels, new_labels, reference=ref_image, reference_labels=ref_labels, seed=int(seed or 0),
            return_details=True))
        sources = details["sources"]
        new = ("; new classes: " + ", ".join(f"{k} (style from {v})" for k, v in sources.items())) if sources else ""
        return self._result(result, new_labels, f"Redrawn on the edited label map{new}.", notes)

    def _painted_labels(self, labels: np.ndarray, painting: dict) -> np.ndarray:
        """The edited label map at the photo's size. The canvas may show the map smaller than the photo:
        when its background is the map it was given, only the painted pixels change (the rest keeps the
        photo's own detail); a background replaced in the editor is taken as it is, resized."""
        canvas = labels_from_painting(painting, self.label_set)
        size = labels.shape
        (h, w), (ch, cw) = size, canvas.shape
        if abs(ch * w - cw * h) > 0.02 * h * cw:
            raise InputError(f"the painted label map is {cw}x{ch}: it does not fit the {w}x{h} photo")
        background = painting.get("background")
        shown = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((cw, ch), Image.NEAREST))
        painted_base = None if background is None else labels_from_painting({"background": background},
                                                                             self.label_set)
        if painted_base is None or painted_base.shape != shown.shape or (painted_base != shown).mean() > 0.01:
            return resize_labels_centered(torch.from_numpy(canvas), size).numpy()
        changed = resize_labels_centered(torch.from_numpy((canvas != painted_base).astype(np.int64)), size).numpy() > 0
        full = labels.copy()
        full[changed] = resize_labels_centered(torch.from_numpy(canvas), size).numpy()[changed]
        return full

    def color(self, target: dict, painting: dict | None, chosen: list[str],
              progress: gr.Progress = LIVE_PROGRESS) -> tuple:
        image, labels = self._loaded(target)
        strokes = strokes_from_layers((painting or {}).get("layers"))
        if strokes is None:
            raise InputError("paint colour strokes on the photo first")
        (result, details), notes = self._run(progress, "Recolouring", lambda: self.editor.edit_color(
            image, labels, strokes, regions=list(chosen) or None, return_details=True))
        return self._result(result, labels, f"Recoloured {', '.join(details['classes'])}.", notes)

    def continue_from(self, result: dict | None) -> tuple:
        if not result or result.get("image") is None:
            raise InputError("there is no result yet")
        state = {"image": result["image"], "labels": result["labels"]}
        return (state, *self.views(state), "target: the last result (its label map comes with it)")


def _canvas(image: Image.Image) -> dict:
    return {"background": np.asarray(image.convert("RGB")), "layers": [], "composite": None}


def _errors_as_messages(function: Callable) -> Callable:
    """Turn user errors into a message on the page (gr.Error), and anything else into a short one."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except FacestyleError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except MemoryError:
            raise gr.Error("out of memory: try a smaller image", print_exception=False) from None
        except Exception as exc:  # a bug: log it in full, show one line
            logger.exception("the web editor failed")
            raise gr.Error(f"internal error ({type(exc).__name__}); the server log has the details",
                           print_exception=False) from None

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


def build_app(editor: Editor, limits: ServerLimits | None = None, title: str = "facestyle") -> gr.Blocks:
    """The page for an editor (:meth:`Editor.from_pretrained`; with a face parser, uploads are labelled)."""
    limits = limits or ServerLimits()
    app = _App(editor, limits)
    label_set = app.label_set
    regions = [r for r, classes in label_set.regions.items() if classes]
    cfg = editor.model.config
    parser_note = "a face parser labels uploads" if editor.parser is not None else \
        "no face parser: upload label maps with the photos"

    with gr.Blocks(title=f"{title}: face editor", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"## {title}: harmonized regional face editing\n"
                    f"<span class='facestyle-note'>{label_set.name} model at {cfg.image_size}x{cfg.image_size}; "
                    f"{parser_note}; uploads up to {limits.max_upload_mb:g} MB and {limits.max_side} px a side.</span>")
        target_state, reference_state, result_state = gr.State({}), gr.State({}), gr.State({})
        with gr.Row():
            with gr.Column():
                target_photo = gr.Image(label="Target photo", type="filepath", image_mode=None,
                                        sources=["upload", "clipboard"], elem_id="target-photo", height=256)
                target_labels = gr.Image(label="Target label map (optional)", type="filepath", image_mode=None,
                                         sources=["upload"], elem_id="target-labels", height=140)
                target_overlay = gr.Image(label="Target labels", interactive=False, elem_id="target-overlay",
                                          height=256, format="png", buttons=["fullscreen"])
            with gr.Column():
                reference_photo = gr.Image(label="Reference photo", type="filepath", image_mode=None,
                                           sources=["upload", "clipboard"], elem_id="reference-photo", height=256)
                reference_labels = gr.Image(label="Reference label map (optional)", type="filepath",
                                            image_mode=None, sources=["upload"], elem_id="reference-labels",
                                            height=140)
                reference_overlay = gr.Image(label="Reference labels", interactive=False, buttons=["fullscreen"],
                                             elem_id="reference-overlay", height=256, format="png")
            with gr.Column():
                result_image = gr.Image(label="Result", interactive=False, format="png", elem_id="result-image",
                                        buttons=["download", "fullscreen"], height=400)
                status = gr.Markdown("Upload a target photo to start.", elem_id="status")
                continue_button = gr.Button("Continue editing from the result", elem_id="continue-button")

        with gr.Tabs():
            with gr.Tab("Transfer", id="tab-transfer"):
                transfer_regions = gr.CheckboxGroup(regions, value=[r for r in DEFAULT_REGIONS if r in regions],
                                                    label="Regions to take from the reference",
                                                    elem_id="transfer-regions")
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
        def load_target(photo, labels, progress=LIVE_PROGRESS):
            return app.load(photo, labels, "target", progress)

        @_errors_as_messages
        def load_reference(photo, labels, progress=LIVE_PROGRESS):
            state, overlay, _, _, note = app.load(photo, labels, "reference", progress)
            return state, overlay, note

        transfer, sample, finetune, shape, color, continue_from = map(
            _errors_as_messages, (app.transfer, app.sample, app.finetune, app.shape, app.color, app.continue_from))

        # Every handler shares one concurrency group: at most `concurrency` run at once, the rest queue.
        queued = {"concurrency_limit": limits.concurrency, "concurrency_id": "facestyle"}
        for trigger in (target_photo.change, target_labels.change):
            trigger(load_target, [target_photo, target_labels], loaded, **queued)
        for trigger in (reference_photo.change, reference_labels.change):
            trigger(load_reference, [reference_photo, reference_labels], [reference_state, reference_overlay, status],
                    **queued)
        transfer_button.click(transfer, [target_state, reference_state, transfer_regions, harmonize], outputs,
                              **queued)
        sample_button.click(sample, [target_state, sample_region, sample_seed], outputs, **queued)
        for trigger in (finetune_button.click, finetune_step.release):
            trigger(finetune, [target_state, finetune_region, finetune_step, finetune_seed], outputs, **queued)
        shape_button.click(shape, [target_state, reference_state, shape_editor, shape_seed], outputs, **queued)
        color_button.click(color, [target_state, color_editor, color_regions], outputs, **queued)
        continue_button.click(continue_from, [result_state], loaded, **queued)

    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)  # beyond max_size: refused
    return demo


def serve(checkpoint: str | os.PathLike, parser: str | os.PathLike | None = None, host: str = "127.0.0.1",
          port: int = 7860, device: str = "cpu", limits: ServerLimits | None = None, block: bool = True,
          quiet: bool = False) -> gr.Blocks:
    """Load the checkpoint and run the web editor on ``host:port`` (blocking unless ``block=False``, in which
    case the running app is returned: stop it with ``app.close()``)."""
    limits = limits or ServerLimits()
    if not 0 < port < 65536:
        raise InputError(f"--port must lie in 1..65535, got {port}")
    editor = Editor.from_pretrained(checkpoint, device=device, parser=parser)
    demo = build_app(editor, limits)
    if host not in ("127.0.0.1", "localhost", "::1") and not quiet:
        logger.warning("binding to %s: anyone who can reach this machine can use the editor", host)
    hint = worker_thread_hint()
    if hint and editor.device.type == "cpu" and not quiet:
        logger.warning("note: %s", hint)
    try:
        demo.launch(server_name=host, server_port=port, max_file_size=limits.max_upload_bytes, show_error=True,
                    ssr_mode=False, prevent_thread_lock=not block, quiet=quiet, theme=_theme(), css=CSS,
                    footer_links=[], inbrowser=False, share=False)
    except OSError as exc:
        raise InputError(f"cannot serve on {host}:{port} ({str(exc).splitlines()[0]})") from None
    return demo
