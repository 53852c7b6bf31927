"""Face parsing: label maps for photos that come without one.

>>> from facestyle.editor.parser import FaceParser
>>> parser = FaceParser.from_pretrained("runs/parser")          # a parser checkpoint (kind "parser")
>>> labels = parser.parse("me.jpg")                              # (H, W) int64 class indices, the photo's size

The parser works on a square view of the face at its own image size. A photo that is not 1:1 (or whose
face is not centred in it) is cropped to a square first: the centred square by default, or a box you
give (``crop=(left, top, size)`` in pixels); the crop is resized to the parser's size, parsed, and the
result is mapped back to the photo's own size, background outside the crop. ``crop="none"`` squashes
the whole photo to a square instead.

Photos may be paths, PIL images, (H, W, 3) arrays (uint8, or float in [0, 1]) or (3, H, W) tensors in
[-1, 1], alone or in a list, as the :class:`~facestyle.editor.editor.Editor` takes them.

A parser sits beside a generator checkpoint as ``CHECKPOINT/parser/`` (where the Editor looks for it), or
anywhere as its own checkpoint directory (``facestyle train-parser`` writes one). Without one, the
default is the :class:`~facestyle.editor.landmarks.LandmarkParser` (MediaPipe's face mesh, no training;
the photo extra). :class:`BiSeNetParser` runs face-parsing.PyTorch's published BiSeNet (``79999_iter.pth``)
with the same pre- and post-processing as a trained parser. :func:`load_parser` resolves the names
``landmarks``, ``bisenet:PATH`` (``bisenet`` alone: the file in the weights folder) and ``none``, and
directories.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..checkpoint import CONFIG_NAME, read_config, resolve
from ..data.transforms import resize_image, resize_labels_centered
from ..errors import CheckpointError, InputError
from ..labels import LabelSet, get_label_set
from ..nn.bisenet import WEIGHT_FILE as BISENET_FILE
from ..nn.bisenet import BiSeNetParserNet
from ..nn.parser import FaceParserNet
from ..weights import find_weight
from .inputs import Crop, ImageInput, crop_box, item_name, photo_tensor, resolve_device, split_batch
from .landmarks import LandmarkParser

__all__ = ["FaceParser", "Crop", "find_parser", "parser_dir", "crop_box", "colorize", "overlay", "PARSER_DIR",
           "load_parser", "AnyParser", "LANDMARKS", "NO_PARSER", "BiSeNetParser", "BISENET"]

PARSER_DIR = "parser"  # the parser's folder inside a generator checkpoint
_MAX_UPSAMPLE = 1024  # logits are upsampled to at most this size before the argmax, then nearest-resized
LANDMARKS, NO_PARSER = "landmarks", "none"  # parser names: the landmark parser; no parsing
BISENET = "bisenet"  # "bisenet:PATH": face-parsing.PyTorch's BiSeNet file; "bisenet" alone: the weights folder's


def parser_dir(path: str | os.PathLike) -> Path:
    """The parser checkpoint that ``path`` names: a parser checkpoint directory itself, or a generator
    checkpoint directory holding one in ``parser/``."""
    directory = resolve(path)
    if (directory / PARSER_DIR / CONFIG_NAME).is_file():
        try:
            read_config(directory, kind=FaceParserNet.kind)
        except CheckpointError:
            return directory / PARSER_DIR
    return directory


def _refuse_a_bare_generator(directory: Path) -> None:
    """A clear error for a generator checkpoint given where a parser is expected."""
    if not (directory / CONFIG_NAME).is_file():
        return
    try:
        read_config(directory, kind="generator")
    except CheckpointError:
        return
    raise CheckpointError(f"{directory} is a generator checkpoint without a face parser (no {PARSER_DIR}/ "
                          f"folder); train one with facestyle train-parser and copy it to {directory / PARSER_DIR}")


def find_parser(checkpoint: str | os.PathLike | None) -> Path | None:
    """``CHECKPOINT/parser`` when it holds a parser checkpoint, else None."""
    if checkpoint is None:
        return None
    candidate = resolve(checkpoint) / PARSER_DIR
    return candidate if (candidate / CONFIG_NAME).is_file() else None


class FaceParser:
    """A trained :class:`~facestyle.nn.parser.FaceParserNet` with the pre- and post-processing around it.

    Build one with :meth:`from_pretrained`, or wrap a network you have: ``FaceParser(net)``.
    """

    def __init__(self, model: FaceParserNet, batch_size: int = 8) -> None:
        self.model = model.eval()
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.label_set: LabelSet = get_label_set(model.config.label_set)
        self.image_size: int = model.config.image_size
        self.batch_size = batch_size
        self.path: Path | None = None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> FaceParser:
        """Load a parser checkpoint directory (or the ``parser/`` of a generator checkpoint)."""
        directory = parser_dir(path)
        _refuse_a_bare_generator(directory)
        parser = cls(FaceParserNet.from_pretrained(directory, device=resolve_device(device), dtype=dtype))
        parser.path = directory
        return parser

    def __repr__(self) -> str:
        return (f"FaceParser(label_set={self.label_set.name!r}, image_size={self.image_size}, "
                f"device={str(self.device)!r})")

    def __call__(self, images: ImageInput, crop: Crop = "center") -> Tensor | list[Tensor]:
        return self.parse(images, crop=crop)

    @torch.inference_mode()
    def parse(self, images: ImageInput, crop: Crop | Sequence[Crop] = "center") -> Tensor | list[Tensor]:
        """Label maps, (H, W) int64 tensors on the CPU at each photo's own size: one for one photo, a list
        for a list. ``crop``: ``"center"`` (default), ``"none"``, a (left, top, size) box, or one of these
        per photo."""
        items, form = split_batch(images, image=True)
        if not items:
            raise InputError("no photo given (an empty list)")
        crops = list(crop) if isinstance(crop, list) else [crop] * len(items)
        if len(crops) != len(items):
            raise InputError(f"{len(crops)} crops for {len(items)} photos")
        photos = [photo_tensor(item, item_name(item, "image", i, len(items))).cpu() for i, item in enumerate(items)]
        results = [self.parse_tensor_batch(photos[i:i + self.batch_size], crops[i:i + self.batch_size])
                   for i in range(0, len(photos), self.batch_size)]
        maps = [m for chunk in results for m in chunk]
        return maps[0] if form == "single" else maps

    def parse_tensor_batch(self, photos: Sequence[Tensor], crops: Sequence[Crop]) -> list[Tensor]:
        """Photos (3, H, W) in [-1, 1] -> label maps (H, W) at their own size (see :meth:`parse`)."""
        boxes, views = [], []
        for photo, crop in zip(photos, crops):
            h, w = photo.shape[-2:]
            top, left, bh, bw = crop_box(h, w, crop)
            boxes.append((top, left, bh, bw))
            view = photo[:, top:top + bh, left:left + bw].to(self.device, torch.float32)
            views.append(resize_image(view, self.image_size))
        logits = self.model(torch.stack(views).to(self.dtype)).float()
        maps = []
        for photo, box, logit in zip(photos, boxes, logits):
            h, w = photo.shape[-2:]
            top, left, bh, bw = box
            maps.append(_paste(_labels_at(logit, bh, bw), h, w, top, left))
        return maps

    def logits(self, images: Tensor) -> Tensor:
        """Raw class logits (B, R, S, S) for a batch already at the parser's size (B, 3, S, S) in [-1, 1]."""
        return self.model(images.to(self.device, self.dtype))


class BiSeNetParser(FaceParser):
    """face-parsing.PyTorch's BiSeNet (``79999_iter.pth``) as a face parser: the photo's square view at 512 x
    512 (as its ``test.py``), the classes renamed into ``label_set``'s order
    (:class:`~facestyle.nn.bisenet.BiSeNetParserNet`); cropping and mapping back as :class:`FaceParser`.

    >>> parser = BiSeNetParser.from_file("79999_iter.pth")
    >>> labels = parser.parse("me.jpg")                     # (H, W) int64 CelebAMask-HQ class indices
    """

    default_image_size = 512  # what face-parsing.PyTorch's test.py parses at

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None, label_set: LabelSet | str = "celebamask-hq",
                  device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                  image_size: int | None = None) -> BiSeNetParser:
        """Load the published file (read without unpickling code); ``path=None`` finds ``79999_iter.pth`` in
        the weights folder (``$FACESTYLE_WEIGHTS``, else torch's hub cache; see :mod:`facestyle.weights`).
        ``image_size``: the square the network sees (default :attr:`default_image_size`, 512)."""
        label_set = get_label_set(label_set) if isinstance(label_set, str) else label_set
        image_size = cls.default_image_size if image_size is None else image_size
        file = find_weight(BISENET_FILE) if path is None else Path(path).expanduser()
        net = BiSeNetParserNet.from_file(file, label_set.classes, label_set=label_set.name, image_size=image_size)
        parser = cls(net.to(resolve_device(device), dtype))  # type: ignore[arg-type]
        parser.path = file
        return parser

    def __repr__(self) -> str:
        return (f"BiSeNetParser({str(self.path)!r}, label_set={self.label_set.name!r}, "
                f"image_size={self.image_size}, device={str(self.device)!r})")


def _labels_at(logits: Tensor, height: int, width: int) -> Tensor:
    """Class indices (height, width) from logits (R, S, S): bilinear logits (up to 1024 px), argmax, nearest."""
    scale = min(1.0, _MAX_UPSAMPLE / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    up = F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return resize_labels_centered(up.argmax(0).cpu(), (height, width))


def _paste(labels: Tensor, height: int, width: int, top: int, left: int) -> Tensor:
    """``labels`` placed at (top, left) in an all-background (height, width) map."""
    if labels.shape == (height, width):
        return labels
    out = torch.zeros(height, width, dtype=torch.int64)
    out[top:top + labels.shape[0], left:left + labels.shape[1]] = labels
    return out


AnyParser = FaceParser | LandmarkParser


def load_parser(parser: AnyParser | str | os.PathLike | None, label_set: LabelSet | str = "celebamask-hq",
                device: str | torch.device = "cpu") -> AnyParser | None:
    """A parser from what a user names: a parser object (returned as it is), ``"landmarks"`` (the
    :class:`~facestyle.editor.landmarks.LandmarkParser` writing ``label_set``'s classes), ``"bisenet:PATH"``
    (:class:`BiSeNetParser`, ``label_set``'s classes; ``"bisenet"`` alone finds ``79999_iter.pth`` in the
    weights folder), ``"none"`` or None (no parser), or a parser checkpoint directory (or a generator
    checkpoint with ``parser/``)."""
    if parser is None or isinstance(parser, (FaceParser, LandmarkParser)):
        return parser
    text = str(parser)
    if text == NO_PARSER:
        return None
    if text == LANDMARKS:
        return LandmarkParser(label_set)
    if text == BISENET or text.startswith(BISENET + ":"):
        path = text[len(BISENET) + 1:]
        if text != BISENET and not path:
            raise InputError("bisenet:PATH needs a path: face-parsing.PyTorch's 79999_iter.pth")
        return BiSeNetParser.from_file(path or None, label_set, device=device)
    return FaceParser.from_pretrained(parser, device=device)


# ------------------------------------------------------------------------------------------- previews


def colorize(labels: Tensor | np.ndarray, label_set: LabelSet) -> Image.Image:
    """A label map drawn in its palette colours (RGB)."""
    arr = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    return Image.fromarray(label_set.colorize(arr.astype(np.int64)))


def overlay(photo: Image.Image | np.ndarray, labels: Tensor | np.ndarray, label_set: LabelSet,
            alpha: float = 0.5) -> Image.Image:
    """The photo with its label colours blended over it (background left as it is)."""
    arr = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    base = np.asarray(photo.convert("RGB") if isinstance(photo, Image.Image) else photo, dtype=np.float32)
    if base.shape[:2] != arr.shape:
        arr = resize_labels_centered(torch.from_numpy(arr.astype(np.int64)), base.shape[:2]).numpy()
    colours = label_set.colorize(arr.astype(np.int64)).astype(np.float32)
    weight = np.where(arr > 0, alpha, 0.0)[..., None]
    return Image.fromarray(np.clip(base * (1 - weight) + colours * weight, 0, 255).round().astype(np.uint8))
