"""Core subcommands: ``reconstruct``, ``import-sean`` and ``prepare``, and helpers other commands share.

``facestyle reconstruct`` runs a checkpoint on one photo (``--image/--labels/--out``) or on a folder
(``--image-dir/--label-dir/--out-dir``, pairing photos and label maps by file stem). Every output is
written atomically, and every input is checked before the model runs, so bad input costs nothing and
leaves nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from tqdm import tqdm

from ..accel import DEVICE_HELP
from ..data.folder import files_by_stem
from ..errors import InputError
from ..labels import LABEL_SETS

if TYPE_CHECKING:
    from ..editor.editor import Editor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_BATCH_SIZE = 8


# ---------------------------------------------------------------------- shared helpers


def _whole_number(name: str, least: int, expected: str, bound: str) -> Callable[[str], int]:
    """An argparse type named ``name``: a whole number of at least ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected {bound}, got {value}")
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


positive_int = _whole_number("positive_int", 1, "a positive integer", "a positive integer")
nonnegative_int = _whole_number("nonnegative_int", 0, "a whole number", "0 or more")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_model_options(parser: argparse.ArgumentParser, batch: bool = True) -> None:
    """--checkpoint, --label-set, --device (and --batch-size) for commands that run a generator."""
    parser.add_argument("--checkpoint", required=True, metavar="DIR|demo",
                        help="checkpoint directory (config.json + model.safetensors), "
                             "or 'demo' for the bundled model")
    parser.add_argument("--label-set", choices=sorted(LABEL_SETS), default=None,
                        help="label set of your label maps; refuses a checkpoint made for another one "
                             "(default: the checkpoint's own, which validates every label map)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the generator (the first batch of each size compiles: tens of seconds; "
                             "worth it for folders of photos, on GPUs)")
    if batch:
        parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
                            help="photos per forward pass in the folder form "
                                 f"(default: {DEFAULT_BATCH_SIZE})")


def add_parser_option(parser: argparse.ArgumentParser) -> None:
    """--parser: what labels a photo given without its label map."""
    parser.add_argument("--parser", metavar="DIR|landmarks|bisenet:PATH|none", default=None,
                        help="face parser for photos given without a label map: a parser checkpoint, landmarks "
                             "(MediaPipe's face mesh; pip install 'facestyle[photo]'), bisenet:PATH "
                             "(face-parsing.PyTorch's 79999_iter.pth; bisenet alone: the one in the weights "
                             "folder, see facestyle weights) or none (default: CHECKPOINT/parser/ when there is "
                             "one, else landmarks)")


FACE_HELP = """Full-size photos: a photo whose label map is left out is labelled by the landmark parser, which
also finds the face: it is aligned and cropped as FFHQ does, edited at the model's size, and pasted back
into the photo at its own size, blended over the edited regions (the rest of the photo is untouched).
--face N picks the face when there are several (0 the largest, then by size; facestyle parse lists them)
and asks for this also with a label map given (at the photo's size); --no-align edits the whole photo
squeezed to the model's size instead."""


def add_face_options(parser: argparse.ArgumentParser) -> None:
    """--face N and --no-align: which face of a full-size photo is edited, and whether it is aligned."""
    parser.add_argument("--face", type=nonnegative_int, default=None, metavar="N",
                        help="the face to edit when the photo has several: 0 the largest (default), then by size; "
                             "aligns the face also when its label map is given")
    parser.add_argument("--no-align", action="store_true",
                        help="do not find and align the face: edit the whole photo resized to the model's size")


def face_of(editor: Editor, args: argparse.Namespace, image: Path | str, labels: Path | str | None,
            reference: bool = False):
    """What to give the editor for a photo: its aligned face (:meth:`Editor.align`, pasted back into the
    photo by the edit) when --face asks for it, or when its label map is left out and the landmark parser
    labels it; else the photo itself. A reference is aligned on its largest face, never for --face alone."""
    if getattr(args, "no_align", False):
        if getattr(args, "face", None) is not None:
            raise InputError("--face and --no-align contradict each other: give one")
        return image
    face = None if reference else getattr(args, "face", None)
    if face is None and not (labels is None and editor.finds_faces):
        return image
    return editor.align(str(image), face=face or 0)


def load_editor(args: argparse.Namespace, parser: str | None = None) -> Editor:
    """The Editor of ``--checkpoint``/``--device``/``--label-set`` (with a face parser from ``parser``, else
    ``--parser`` when the command has it)."""
    from ..editor.editor import Editor

    parser = parser if parser is not None else getattr(args, "parser", None)
    return Editor.from_pretrained(args.checkpoint, device=args.device, label_set=args.label_set, parser=parser,
                                  precision=getattr(args, "precision", None) or "fp32",
                                  compile=getattr(args, "compile", False))


def save_images(images: Sequence, paths: Sequence[Path]) -> None:
    """Write each image to its path (atomically)."""
    from ..io import save_image

    for image, path in zip(images, paths, strict=True):
        save_image(image, path)


def check_input_file(path: str | Path, what: str = "file") -> Path:
    """An existing regular file (checked before a model is loaded)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: is not a file, expected {what}")
    return path


def photo_and_labels(image: str | Path, labels: str | Path | None) -> tuple[str, Path, Path | None]:
    """(stem, photo, label map) of one photo given with its label map (None: parsed), both checked."""
    return (Path(image).stem, check_input_file(image, "an image"),
            None if labels is None else check_input_file(labels, "a label map"))


def given_labels(labels: Sequence[Path | None]) -> list[Path] | None:
    """The label maps of a batch, or None when none was given (the editor parses the photos)."""
    return None if all(p is None for p in labels) else list(labels)


def input_paths(*groups: Sequence) -> list[Path]:
    """The input files among (stem, photo, labels) tuples, for check_not_overwriting_inputs."""
    return [p for group in groups for _, image, labels in group for p in (image, labels) if p is not None]


def check_input_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such folder")
    if not path.is_dir():
        raise InputError(f"{path}: is not a folder")
    return path


def check_output_file(path: str | Path) -> Path:
    """An output image path whose format is known from its suffix and that is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an output image file name")
    if path.suffix.lower() not in Image.registered_extensions():
        raise InputError(f"{path}: unknown image format {path.suffix!r}; use .png or .jpg")
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"{path.parent}: is not a folder")
    return path


def check_output_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder")
    return path


def check_not_overwriting_inputs(outputs: Sequence[Path], inputs: Sequence[Path]) -> None:
    """Refuse to write over an input file (e.g. ``--out-dir`` equal to ``--image-dir``)."""
    resolved = {p.resolve() for p in inputs}
    for out in outputs:
        if out.resolve() in resolved:
            raise InputError(f"{out}: the output would overwrite an input file; choose another output folder")


def distinct_names(names: Sequence[str]) -> tuple[list[str], dict[int, str]]:
    """Output file stems made distinct: the first of several equal stems (compared case-insensitively, as
    some file systems do) keeps its name, the others get ``~2``, ``~3``... (a suffix no other stem has).
    Returns the stems and, for each renamed one (by index), the name it would have had."""
    taken = {name.casefold() for name in names}
    used: set[str] = set()
    result, renamed = [], {}
    for i, name in enumerate(names):
        chosen = name
        if name.casefold() in used:
            k = 2
            while f"{name}~{k}".casefold() in taken | used:
                k += 1
            chosen, renamed[i] = f"{name}~{k}", name
        used.add(chosen.casefold())
        result.append(chosen)
    return result, renamed


def list_images(folder: Path) -> dict[str, Path]:
    """Image files of a folder by stem (hidden files skipped); two files with one stem is an error."""
    return files_by_stem(folder, IMAGE_SUFFIXES, hint="; files are paired by stem")


def pair_by_stem(image_dir: str | Path, label_dir: str | Path | None) -> list[tuple[str, Path, Path | None]]:
    """(stem, image, label map) for every photo of ``image_dir``; each needs a label map of the same stem
    (``label_dir`` None: no label maps, the photos are parsed)."""
    images = list_images(check_input_dir(image_dir))
    if label_dir is None:
        if not images:
            raise InputError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
        return [(stem, path, None) for stem, path in images.items()]
    labels = list_images(check_input_dir(label_dir))
    if not images:
        raise InputError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    missing = [stem for stem in images if stem not in labels]
    if missing:
        example = images[missing[0]].name
        raise InputError(f"{label_dir}: no label map for {len(missing)} of {len(images)} image(s) in "
                         f"{image_dir} (first: {example}); label maps are paired with images by file stem")
    return [(stem, path, labels[stem]) for stem, path in images.items()]


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def progress(total: int | None, desc: str) -> tqdm:
    """A progress bar on stderr (shown on a terminal only); ``total`` None: a count without an end."""
    return tqdm(total=total, desc=desc, unit="img", disable=None, dynamic_ncols=True)


class _Once(logging.Filter):
    """Let each distinct message through once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


@contextlib.contextmanager
def cli_warnings(command: str, *logged: type[Warning]) -> Iterator[None]:
    """Show the library's warnings (absent regions...) once each, as ``facestyle COMMAND: warning: ...``;
    Python warnings of the ``logged`` categories (which the log already says) are silenced."""
    from ..editor.editor import RegionAbsentWarning

    log = logging.getLogger("facestyle")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"facestyle {command}: warning: %(message)s"))
    handler.addFilter(_Once())
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.propagate = False
    if log.getEffectiveLevel() > logging.WARNING:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for category in (RegionAbsentWarning, *logged):
                warnings.simplefilter("ignore", category)  # the log line says it already
            yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


def one_or_folder(args: argparse.Namespace, single: Sequence[str], folder: Sequence[str], what: str,
                  optional: Sequence[str] = ()) -> bool:
    """True for the folder form; checks that exactly one form's options are all given (``optional`` ones,
    label maps that a parser may draw, may be left out)."""
    given_single = [o for o in single if getattr(args, o) is not None]
    given_folder = [o for o in folder if getattr(args, o) is not None]

    def flags(names: Sequence[str]) -> str:
        return " ".join("--" + n.replace("_", "-") for n in names)

    if given_single and given_folder:
        raise InputError(f"give either {flags(single)} or {flags(folder)} for {what}, not both")
    if given_folder:
        absent = [o for o in folder if o not in given_folder and o not in optional]
        if absent:
            raise InputError(f"the folder form of {what} also needs {flags(absent)}")
        return True
    absent = [o for o in single if o not in given_single and o not in optional]
    if absent:
        raise InputError(f"{what}: missing {flags(absent)} (or the folder form: {flags(folder)})")
    return False


# ---------------------------------------------------------------------- reconstruct


def run_reconstruct(args: argparse.Namespace) -> int:
    folder = one_or_folder(args, ("image", "labels", "out"), ("image_dir", "label_dir", "out_dir"),
                           "the photos", optional=("labels", "label_dir"))
    if folder:
        pairs = pair_by_stem(args.image_dir, args.label_dir)
        out_dir = check_output_dir(args.out_dir)
        outputs = [out_dir / f"{stem}.png" for stem, _, _ in pairs]
    else:
        pairs = [photo_and_labels(args.image, args.labels)]
        outputs = [check_output_file(args.out)]
    check_not_overwriting_inputs(outputs, input_paths(pairs))

    editor = load_editor(args)
    jobs = list(zip(pairs, outputs))
    with cli_warnings("reconstruct"), progress(len(jobs), "reconstruct") as bar:
        for chunk in batched(jobs, args.batch_size):
            save_images(editor.reconstruct([face_of(editor, args, image, labels) for (_, image, labels), _ in chunk],
                                           given_labels([labels for (_, _, labels), _ in chunk])),
                        [out for _, out in chunk])
            bar.update(len(chunk))
    where = args.out_dir if folder else args.out
    print(f"wrote {len(outputs)} image(s) to {where}" if folder else f"wrote {where}")
    return 0


# ---------------------------------------------------------------------- import-sean


def run_import_sean(args: argparse.Namespace) -> int:
    from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME
    from ..convert.sean import import_sean
    from ..errors import CheckpointError

    check_input_file(args.checkpoint, "SEAN's latest_net_G.pth")
    out_dir = check_output_dir(args.out_dir)
    existing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if (out_dir / n).exists()]
    if existing and not args.overwrite:
        raise InputError(f"{out_dir} already holds a checkpoint ({existing[0]}); "
                         "pass --overwrite to replace it")
    try:
        written = import_sean(args.checkpoint, out_dir)
    except CheckpointError as exc:
        message = str(exc)
        if str(args.checkpoint) not in message:
            message = f"{args.checkpoint}: {message}"
        raise CheckpointError(message) from None
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot write the checkpoint ({exc.strerror or exc})") from None
    print(f"wrote facestyle checkpoint {written} (use it with --checkpoint {written})")
    return 0


# ---------------------------------------------------------------------- prepare


def run_prepare_celebamask_hq(args: argparse.Namespace) -> int:
    from ..data.celebamask import prepare_celebamask_hq

    dst = check_output_dir(args.dst)
    bad: list[str] = []

    def skip(message: str) -> None:  # one line per bad photo, above the progress bar
        bad.append(message)
        tqdm.write(f"facestyle prepare: warning: skipped: {message}", file=sys.stderr)

    try:
        written = prepare_celebamask_hq(args.src, dst, split=args.split, progress=True,
                                        overwrite=args.overwrite, on_bad=skip)
    except OSError as exc:
        raise InputError(f"{dst}: cannot write ({exc.strerror or exc})") from None
    print(f"wrote {written} image(s) and label maps to {dst}/images and {dst}/labels "
          f"(read them with --data folder:{dst})")
    if bad:
        raise InputError(f"{len(bad)} photo(s) could not be read and were skipped (listed above); fix or remove "
                         "them and run prepare again to add them (the files written are kept)")
    return 0


# ---------------------------------------------------------------------- registration


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reconstruct", help="encode and decode faces with a checkpoint (one photo or a folder)",
        description="Reconstruct faces: encode each photo's regional styles and decode them on its label "
                    "map. One photo: --image/--labels/--out. A folder: --image-dir/--label-dir/--out-dir, "
                    "photos and label maps paired by file stem, results written as OUT_DIR/{stem}.png. Label "
                    "maps left out are drawn by the face parser (see --parser). " + FACE_HELP.replace("\n", " "))
    add_model_options(p)
    add_parser_option(p)
    add_face_options(p)
    one = p.add_argument_group("one photo")
    one.add_argument("--image", metavar="IMG", help="the photo")
    one.add_argument("--labels", metavar="PNG", help="its label map (class indices; parsed when left out)")
    one.add_argument("--out", metavar="OUT.png", help="where to write the result")
    many = p.add_argument_group("a folder")
    many.add_argument("--image-dir", metavar="DIR", help="folder of photos")
    many.add_argument("--label-dir", metavar="DIR", help="folder of label maps, same stems as the photos "
                                                         "(parsed when left out)")
    many.add_argument("--out-dir", metavar="DIR", help="folder for the results ({stem}.png)")
    p.set_defaults(func=run_reconstruct)

    p = subparsers.add_parser(
        "import-sean", help="convert SEAN's published generator checkpoint into a facestyle checkpoint",
        description="Convert an official SEAN generator checkpoint (latest_net_G.pth, a plain state dict) "
                    "into a facestyle checkpoint directory whose generator reproduces SEAN's output.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="SEAN's latest_net_G.pth")
    p.add_argument("out_dir", metavar="OUTDIR", help="checkpoint directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in OUTDIR")
    p.set_defaults(func=run_import_sean)

    p = subparsers.add_parser("prepare", help="convert a dataset to the images/ + labels/ folder layout",
                              description="Convert a dataset once into images/ + labels/ "
                                          "(read it with --data folder:DST).")
    datasets = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    c = datasets.add_parser(
        "celebamask-hq", help="merge CelebAMask-HQ's per-part masks into class maps",
        description="Merge CelebAMask-HQ's per-part annotation PNGs into one class-index map per image: "
                    "writes DST/images/{i}.jpg and DST/labels/{i}.png. Files already there are kept (an "
                    "interrupted run resumes) unless --overwrite. Every photo is decoded first (within "
                    "--max-side); a photo or part mask that does not decode is skipped with one line, the "
                    "others are written, and the exit status is then 2.")
    c.add_argument("src", metavar="SRC", help="the unpacked CelebAMask-HQ folder (CelebA-HQ-img/, "
                                              "CelebAMask-HQ-mask-anno/)")
    c.add_argument("dst", metavar="DST", help="output folder")
    c.add_argument("--split", choices=("all", "train", "test"), default="all",
                   help="the paper's split by image index: train 0..27999, test 28000..29999 (default: all)")
    c.add_argument("--overwrite", action="store_true", help="rewrite files already present")
    c.set_defaults(func=run_prepare_celebamask_hq)
