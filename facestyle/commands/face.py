"""Editing face photos (paper section 5): ``parse``, ``train-parser``, ``edit-shape``, ``edit-color``,
``style-mean`` and ``serve`` (the web editor).

    facestyle train-parser --data celebamask-hq:ROOT --out runs/parser --preset base --device cuda
    facestyle parse photo1.jpg photo2.jpg --out-dir labels/          # the landmark parser (photo extra)
    facestyle parse --checkpoint runs/parser photo1.jpg photo2.jpg --out-dir labels/
    facestyle parse --parser bisenet:79999_iter.pth photo1.jpg --out-dir labels/   # face-parsing.PyTorch's
    facestyle edit-shape --checkpoint CKPT --image me.png --labels me.png --new-labels edited.png --out out.png
    facestyle edit-color --checkpoint CKPT --image me.png --labels me.png --strokes strokes.png --out out.png
    facestyle style-mean --checkpoint CKPT --data celebamask-hq:ROOT
    facestyle serve --checkpoint CKPT [--parser DIR] [--host 127.0.0.1] [--port 7860]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..accel import DEVICE_HELP
from ..errors import InputError
from .core import (
    FACE_HELP,
    add_face_options,
    add_model_options,
    add_parser_option,
    batched,
    check_input_file,
    check_not_overwriting_inputs,
    check_output_dir,
    check_output_file,
    cli_warnings,
    face_of,
    load_editor,
    nonnegative_int,
    positive_float,
    positive_int,
    progress,
)

if TYPE_CHECKING:
    from PIL import Image

    from ..editor.editor import Editor

# ------------------------------------------------------------------------------------------------ parse


def run_parse(args: argparse.Namespace) -> int:
    images = [check_input_file(path, "an image") for path in args.images]
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise InputError(f"two images are named {path.stem!r} ({stems[path.stem]}, {path}): their label maps "
                             "would collide in --out-dir")
        stems[path.stem] = path
    out_dir = check_output_dir(args.out_dir)
    outputs = [out_dir / f"{path.stem}.png" for path in images]
    previews = [out_dir / "previews" / f"{path.stem}.png" for path in images]
    check_not_overwriting_inputs(outputs + previews, images)
    crop = _crop(args.crop)

    from ..editor.parser import LANDMARKS, FaceParser, colorize, load_parser
    from ..io import save_image, save_labels

    parser = load_parser(args.checkpoint or LANDMARKS, device=args.device)
    if parser is None:
        raise InputError("--checkpoint none: parse needs a parser (a checkpoint, landmarks or bisenet:PATH)")
    if isinstance(parser, FaceParser):
        parser.batch_size = args.batch_size
    else:
        parser.face = args.face
    found: list[str] = []  # the landmark parser's faces in each photo, printed at the end
    with progress(len(images), "parse") as bar:
        for chunk in batched(list(zip(images, outputs, previews)), args.batch_size):
            if isinstance(parser, FaceParser) or not isinstance(crop, str):
                maps = parser.parse([str(path) for path, _, _ in chunk], crop=crop)
            else:
                maps = [_parse_listing_faces(parser, path, args.face, found) for path, _, _ in chunk]
            for labels, (_, out, preview) in zip(maps, chunk):
                save_labels(labels, out)
                if not args.no_preview:
                    save_image(colorize(labels, parser.label_set), preview)
            bar.update(len(chunk))
    for line in found:
        print(line)
    extra = "" if args.no_preview else f" (colour previews in {out_dir / 'previews'})"
    print(f"wrote {len(images)} label map(s) to {out_dir}{extra}")
    return 0


def _parse_listing_faces(parser, path: Path, face: int, found: list[str]):
    """The landmark parser's label map of face ``face`` of one photo, its faces listed in ``found``."""
    from ..editor.align import face_boxes
    from ..editor.inputs import photo_tensor
    from ..editor.landmarks import rgb_uint8

    labels, faces = parser.parse_face(rgb_uint8(photo_tensor(str(path), str(path))), face, str(path))
    found.append(f"{path}: {len(faces)} face(s)" + "".join(
        f"\n  {box}{' (labelled)' if box.index == face else ''}" for box in face_boxes(faces)))
    return labels


def _crop(text: str):
    if text in ("center", "none"):
        return text
    parts = text.split(",")
    try:
        box = tuple(int(p) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 3:
        raise InputError(f"--crop must be center, none or LEFT,TOP,SIZE in pixels, got {text!r}")
    return box


# ----------------------------------------------------------------------------------- edit-shape, edit-color


def _maybe_file(path: str | None, what: str) -> Path | None:
    return None if path is None else check_input_file(path, what)


def _write_edit(args: argparse.Namespace, command: str, inputs: list[Path | None],
                edit: Callable[[Editor], tuple[Image.Image, dict]], *logged: type[Warning]) -> tuple[Path, dict]:
    """Check --out against the edit's (checked) inputs, load the editor, run ``edit`` on it and write the
    result to --out; returns --out and the edit's details."""
    from ..io import save_image

    out = check_output_file(args.out)
    check_not_overwriting_inputs([out], [p for p in inputs if p])
    editor = load_editor(args, parser=args.parser)
    with cli_warnings(command, *logged):
        result, details = edit(editor)
    save_image(result, out)
    return out, details


def run_edit_shape(args: argparse.Namespace) -> int:
    from ..editor.edits import NewClassWarning

    image, labels = check_input_file(args.image, "an image"), _maybe_file(args.labels, "a label map")
    new_labels = check_input_file(args.new_labels, "a label map")
    reference = _maybe_file(args.reference, "an image")
    reference_labels = _maybe_file(args.reference_labels, "a label map")
    if reference_labels is not None and reference is None:
        raise InputError("--reference-labels needs --reference (the reference photo)")
    out, details = _write_edit(
        args, "edit-shape", [image, labels, new_labels, reference, reference_labels],
        lambda editor: editor.edit_shape(face_of(editor, args, image, labels), labels, new_labels,
                                         reference=reference if reference is None else
                                         face_of(editor, args, reference, reference_labels, reference=True),
                                         reference_labels=reference_labels, seed=args.seed,
                                         harmonize=not args.no_harmonize, return_details=True),
        NewClassWarning)
    sources = details["sources"]
    new = "; new classes: " + ", ".join(f"{k} from {v}" for k, v in sources.items()) if sources else ""
    print(f"wrote {out}{new}")
    return 0


def run_edit_color(args: argparse.Namespace) -> int:
    image, labels = check_input_file(args.image, "an image"), _maybe_file(args.labels, "a label map")
    strokes = check_input_file(args.strokes, "an image")
    mask = _maybe_file(args.stroke_mask, "a mask image")

    def edit(editor: Editor) -> tuple[Image.Image, dict]:
        if args.regions is not None:
            editor.resolve_regions(args.regions)  # an unknown name fails before any work
        return editor.edit_color(face_of(editor, args, image, labels), labels,
                                 (strokes, mask) if mask is not None else strokes,
                                 regions=args.regions, pool=args.pool, harmonize=not args.no_harmonize,
                                 return_details=True)

    out, details = _write_edit(args, "edit-color", [image, labels, strokes, mask], edit)
    print(f"wrote {out}; recoloured: {', '.join(details['classes'])}")
    return 0


# ------------------------------------------------------------------------------------------- style-mean


def run_style_mean(args: argparse.Namespace) -> int:
    from ..checkpoint import check_writable
    from ..styles.mean import compute_style_mean, save_style_mean, style_mean_path

    if (args.data is None) == (args.bank is None):
        raise InputError("give either --data SPEC (encode a dataset) or --bank BANK.safetensors (a style bank)")

    checkpoint = check_writable(args.checkpoint, "a style mean")
    if style_mean_path(checkpoint).exists() and not args.overwrite:
        raise InputError(f"{style_mean_path(checkpoint)} exists; pass --overwrite to replace it")
    if args.bank is not None:
        from ..styles.bank import StyleBank

        bank = StyleBank.load(args.bank, checkpoint=checkpoint)
    else:
        from ..styles.bank import encode_bank

        with progress(None, "style-mean") as bar:
            bank = encode_bank(checkpoint, args.data, split=args.split, seed=args.seed, batch_size=args.batch_size,
                               device=args.device, limit=args.limit, progress=bar.update)
    mean, count = compute_style_mean(bank.codes, bank.presence)
    path = save_style_mean(checkpoint, mean, count)
    missing = [bank.labels.classes[c] for c in range(len(count)) if int(count[c]) == 0]
    note = f"; no sample has {', '.join(missing)}" if missing else ""
    print(f"wrote {path}: mean codes of {len(bank)} sample(s){note}")
    return 0


# ------------------------------------------------------------------------------------------------ serve


def run_serve(args: argparse.Namespace) -> int:
    try:
        from ..app.server import ServerLimits, serve
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("gradio", "gradio_client", "fastapi", "uvicorn"):
            raise InputError(f"the web editor needs {exc.name.split('.')[0]}: pip install 'facestyle[web]'") from None
        raise

    limits = ServerLimits(max_upload_mb=args.max_upload_mb, max_side=args.max_side,
                          concurrency=args.concurrency, queue_size=args.queue_size,
                          session_ttl_s=args.session_ttl, max_sessions=args.max_sessions)
    serve(args.checkpoint, parser=args.parser, host=args.host, port=args.port, device=args.device, limits=limits)
    return 0


# ----------------------------------------------------------------------------------------- registration


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "parse", help="label face photos (the landmark parser, a trained face parser, or BiSeNet)",
        description="Parse photos into label maps: OUT_DIR/{stem}.png (single-channel class indices) and "
                    "OUT_DIR/previews/{stem}.png (palette colours). Without --checkpoint the landmark parser "
                    "(MediaPipe's face mesh and selfie segmentation, no training; pip install "
                    "'facestyle[photo]') finds the face itself (--face). With a trained parser or BiSeNet "
                    "(--parser bisenet:PATH, face-parsing.PyTorch's 79999_iter.pth), a photo that is not square "
                    "is centre-cropped to a square (or to --crop), parsed, and mapped back to its own size "
                    "(background outside the crop).")
    p.add_argument("--checkpoint", "--parser", dest="checkpoint", default=None,
                   metavar="DIR|landmarks|bisenet:PATH",
                   help="a parser checkpoint (facestyle train-parser), a generator checkpoint with parser/, "
                        "bisenet:PATH (face-parsing.PyTorch's 79999_iter.pth; bisenet alone: the one in the "
                        "weights folder) or landmarks (the default)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos to parse")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="folder for the label maps")
    p.add_argument("--crop", default="center", metavar="center|none|L,T,S",
                   help="the square the parser sees: the centred one (default), none (squash the whole photo), "
                        "or LEFT,TOP,SIZE in pixels around the face")
    p.add_argument("--face", type=nonnegative_int, default=0, metavar="N",
                   help="the landmark parser's face when a photo has several: 0 the largest (default), then by size")
    p.add_argument("--no-preview", action="store_true", help="do not write colour previews")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N", help="photos per pass (default: 8)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=run_parse)

    from ..train.parser import register as register_train_parser

    register_train_parser(subparsers)

    p = subparsers.add_parser(
        "edit-shape", help="redraw a face on an edited label map (shape editing)",
        description="Redraw a face on an edited label map with its own styles (paper Fig. 10a). A class that "
                    "only the edited map has takes its style from --reference (when the reference has it), "
                    "else from the region's mapping network (CHECKPOINT/mapping/REGION), else from the "
                    "dataset mean (CHECKPOINT/style_mean.safetensors, see facestyle style-mean). Label maps "
                    "are class-index PNGs or images drawn in the label set's palette colours. --labels may be "
                    "left out: the photo is then parsed (see --parser). With a full-size photo, --new-labels is "
                    "drawn at the photo's size: edit the map facestyle parse wrote and give it as --labels too, "
                    "with --face N. "
                    + FACE_HELP.replace("\n", " "))
    _add_editing_options(p)
    p.add_argument("--new-labels", required=True, metavar="PNG", help="the edited label map")
    p.add_argument("--reference", metavar="IMG", help="a photo to take the styles of new classes from")
    p.add_argument("--reference-labels", metavar="PNG", help="its label map (parsed when left out)")
    p.add_argument("--seed", type=int, default=0, help="the mapping networks' random seed (default: 0)")
    p.set_defaults(func=run_edit_shape)

    p = subparsers.add_parser(
        "edit-color", help="recolour the regions that colour strokes cover (colour editing)",
        description="Paint colour strokes on a face photo and have the regions under them take that colour, "
                    "harmonized with the rest of the face (paper Fig. 10b). --strokes is an RGBA PNG, "
                    "transparent where nothing is painted (or give --stroke-mask for an RGB stroke image). "
                    "The regions holding at least 10% of the painted area are recoloured, or those of "
                    "--regions. The strokes are painted at the photo's size." + " " + FACE_HELP.replace("\n", " "))
    _add_editing_options(p)
    p.add_argument("--strokes", required=True, metavar="RGBA.png", help="the painted strokes")
    p.add_argument("--stroke-mask", metavar="PNG", help="where --strokes is painted (white), for strokes "
                                                        "without an alpha channel")
    p.add_argument("--regions", default=None, metavar="R1,R2", help="recolour these regions only (e.g. hair)")
    p.add_argument("--pool", choices=("strokes", "region"), default="strokes",
                   help="take the new style from the painted pixels (default) or from the whole painted region")
    p.set_defaults(func=run_edit_color)

    p = subparsers.add_parser(
        "style-mean", help="store the dataset's mean style code per class with a checkpoint",
        description="Compute each class's mean style code over a dataset (or a style bank from facestyle "
                    "encode-styles) and store it as CHECKPOINT/style_mean.safetensors, where shape editing "
                    "finds a style for classes a photo lacks.")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="the generator checkpoint")
    p.add_argument("--data", metavar="KIND:ARG", help="dataset to encode (celebamask-hq:ROOT, folder:ROOT, ...)")
    p.add_argument("--bank", metavar="BANK.safetensors", help="a style bank of this checkpoint instead")
    p.add_argument("--split", default="train", choices=("train", "val", "test", "all"),
                   help="split of --data (default: train)")
    p.add_argument("--seed", type=int, default=0, help="synthetic face stream (default: 0)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="encode only the first N images")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="N", help="images per pass (default: 16)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace the checkpoint's existing style mean")
    p.set_defaults(func=run_style_mean)

    p = subparsers.add_parser(
        "serve", help="start the web editor (Gradio) on this machine",
        description="Start the web editor: upload a target (and a reference) photo, parse or upload label maps, "
                    "transfer regions, draw random styles, fine-tune, repaint the label map, paint colour "
                    "strokes, download the result. Binds to 127.0.0.1 (this machine only) unless --host says "
                    "otherwise. Needs the web extra: pip install 'facestyle[web]'.")
    p.add_argument("--checkpoint", required=True, metavar="DIR|demo", help="generator checkpoint, or demo")
    add_parser_option(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1; 0.0.0.0 exposes the editor to your network)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--max-upload-mb", type=positive_float, default=10.0, metavar="MB",
                   help="largest upload accepted, in megabytes (default: 10)")
    p.add_argument("--max-side", type=positive_int, default=4096, metavar="PX",
                   help="largest image side accepted, in pixels (default: 4096)")
    p.add_argument("--concurrency", type=positive_int, default=2, metavar="N",
                   help="requests handled at once, the others wait in the queue; the networks themselves "
                        "run one request at a time (default: 2)")
    p.add_argument("--queue-size", type=positive_int, default=32, metavar="N",
                   help="requests that may wait in the queue before new ones are turned away (default: 32)")
    p.add_argument("--session-ttl", type=positive_float, default=1800.0, metavar="SECONDS",
                   help="an editing session (one browser tab's photos and results) unused this long ends: its "
                        "photos leave memory and its files are deleted (default: 1800, half an hour)")
    p.add_argument("--max-sessions", type=positive_int, default=50, metavar="N",
                   help="editing sessions kept at once; a new one ends the least recently used (default: 50; "
                        "each holds its label maps in memory, about 17 MB for a 4096 px photo)")
    p.set_defaults(func=run_serve)


def _add_editing_options(p: argparse.ArgumentParser) -> None:
    add_model_options(p, batch=False)  # --checkpoint, --label-set, --device
    add_parser_option(p)
    add_face_options(p)
    p.add_argument("--image", required=True, metavar="IMG", help="the photo to edit")
    p.add_argument("--labels", metavar="PNG", help="its label map (parsed when left out)")
    p.add_argument("--out", required=True, metavar="OUT.png", help="where to write the result")
    p.add_argument("--no-harmonize", action="store_true", help="skip MRSA")
