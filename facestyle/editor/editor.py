"""The Editor: the user-facing Python API for reconstructing faces and transferring regional styles.

>>> from facestyle.editor.editor import Editor
>>> editor = Editor.from_pretrained("demo")                      # or a checkpoint directory
>>> out = editor.transfer("me.png", "me_labels.png", "ref.png", "ref_labels.png", regions=["hair", "lips"])
>>> out.save("me_with_ref_hair_and_lips.png")

Inputs may be file paths, PIL images, numpy arrays or torch tensors, alone or batched:

- images: a path; a PIL image; an (H, W, 3) numpy array, ``uint8`` or float in [0, 1] ((H, W) gray and
  (H, W, 4) RGBA also work; an (B, H, W, 3) array is a batch); a (3, H, W) tensor in [-1, 1] (a
  ``uint8`` tensor in 0..255 also works; a (B, 3, H, W) tensor is a batch); or a list of any of these;
- label maps: a path to a class-index PNG; a single-channel PIL image; an (H, W) integer array or
  tensor of class indices ((B, H, W) is a batch); or a list of any of these. Every value must be a
  class of the checkpoint's label set.

Images are resized to the model's image size (bicubic), label maps with nearest neighbour (a label map
at a different size from its photo is first resized to the photo's size), and every result is resized
back to its photo's own size. Results are PIL images, or (3, H, W) tensors in [-1, 1] on the editor's
device with ``return_tensors=True``; batched input gives a list (or a (B, 3, H, W) tensor when the
input was one stacked array or tensor).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..checkpoint import demo_dir, resolve
from ..data.transforms import resize_image, resize_labels
from ..errors import CheckpointError, InputError
from ..io import LABEL_MODES, load_image, load_labels, to_pil
from ..labels import LabelSet, get_label_set
from ..model import FaceStyleNet
from ..runtime import keep_freed_memory
from .edits import FaceEditingMixin
from .parser import find_parser
from .styles import StyleEditingMixin

__all__ = ["Editor", "RegionAbsentWarning", "resolve_device"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())  # a library does not print; configure logging to see these

ImageLike = str | os.PathLike | Image.Image | np.ndarray | Tensor
ImageInput = ImageLike | Sequence[ImageLike]
Output = Image.Image | Tensor | list

DEFAULT_REGIONS = ("skin", "hair")
_RANGE_TOLERANCE = 1e-3  # float images may overshoot their range by rounding


class RegionAbsentWarning(UserWarning):
    """A region asked for is missing from the reference: the target keeps its own style there."""


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device from its name (``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked to be available."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(device)!r} asked for, but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {str(device)!r} asked for, but only {torch.cuda.device_count()} "
                             "CUDA device(s) are visible")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {str(device)!r} asked for, but MPS is not available")
    return dev


@dataclass
class _Prepared:
    """A batch of photos at the model's size, and what is needed to return results at their own size."""

    images: Tensor  # (B, 3, S, S) on the editor's device and dtype
    sizes: list[tuple[int, int]]  # each photo's own (H, W)
    names: list[str]  # for messages: the file, or "target", "target[2]"...
    form: str  # "single", "list" (a list or tuple of inputs) or "stacked" (one batched array/tensor)

    def __len__(self) -> int:
        return len(self.sizes)

    def expand(self, n: int) -> _Prepared:
        """The single photo repeated ``n`` times (to pair one target with several references)."""
        return _Prepared(self.images.expand(n, -1, -1, -1), self.sizes * n, self.names * n, self.form)


class Editor(StyleEditingMixin, FaceEditingMixin):
    """Reconstruct faces and transfer regional styles between them with a :class:`FaceStyleNet`.

    Build one with :meth:`from_pretrained`, or wrap a model you already have: ``Editor(model)`` (the
    editor puts it in eval mode and runs on the model's device and dtype).

    With a model on the CPU, the editor calls :func:`facestyle.runtime.keep_freed_memory`: glibc then
    keeps the process's freed memory for reuse (a forward pass is about 1.7x faster; the process no
    longer returns its peak memory to the system). ``FACESTYLE_SYSTEM_ALLOCATOR=1`` opts out.
    """

    def __init__(self, model: FaceStyleNet, checkpoint_dir: str | os.PathLike | None = None,
                 parser: Any = None) -> None:
        self.model = model.eval()
        # where the networks stored beside the generator (mapping networks, flows, style mean) are found
        self.checkpoint_dir: Path | None = None if checkpoint_dir is None else Path(checkpoint_dir)
        param = next(model.parameters())
        if param.device.type == "cpu":
            keep_freed_memory()  # large activations reused rather than re-mapped: see facestyle.runtime
        self.device = param.device
        self.dtype = param.dtype
        self.label_set: LabelSet = get_label_set(model.config.label_set)
        self.image_size: int = model.config.image_size
        if parser is not None:
            self.set_parser(parser)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike = "demo", device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, label_set: str | None = None,
                        parser: str | os.PathLike | None = None) -> Editor:
        """Load a checkpoint directory (``"demo"`` is the bundled model) onto ``device``.

        ``label_set`` (optional) is the label set your label maps use; a checkpoint made for another
        one is a :class:`~facestyle.errors.CheckpointError`. ``parser`` is a face-parser checkpoint
        (default: ``CHECKPOINT/parser`` when there is one); with a parser, label maps may be omitted.
        """
        dev = resolve_device(device)
        if str(path) == "demo" and not (demo_dir() / "config.json").is_file():
            raise CheckpointError(f"the bundled demo model is not installed ({demo_dir()} is missing); "
                                  "pass a checkpoint directory instead")
        if label_set is not None:
            get_label_set(label_set)  # an unknown name is an InputError listing the valid ones
        editor = cls(FaceStyleNet.from_pretrained(path, device=dev, dtype=dtype, label_set=label_set), resolve(path))
        parser = parser if parser is not None else find_parser(editor.checkpoint_dir)
        if parser is not None:
            editor.set_parser(parser)
        return editor

    def __repr__(self) -> str:
        return (f"Editor(label_set={self.label_set.name!r}, image_size={self.image_size}, "
                f"device={str(self.device)!r}, dtype={self.dtype})")

    # ------------------------------------------------------------------ public API

    def reconstruct(self, image: ImageInput, labels: ImageInput | None = None, return_tensors: bool = False) -> Output:
        """Encode a face and decode it again with its own style (the training task)."""
        with torch.inference_mode():
            photos = self._prepare_images(image, "image")
            label_maps = self._prepare_labels(self._labels_or_parse(image, labels, "labels"), photos, "labels")
            codes, presence = self._encode(photos.images, label_maps)
            out = self._decode(label_maps, self.model.harmonize(codes, codes, presence))
            return self._postprocess(out, photos, return_tensors)

    def transfer(self, target: ImageInput, target_labels: ImageInput | None, reference: ImageInput,
                 reference_labels: ImageInput | None, regions: str | Iterable[str] = DEFAULT_REGIONS,
                 harmonize: bool = True, return_tensors: bool = False) -> Output:
        """Give the target the reference's style in ``regions``, harmonized by MRSA (paper eq. 4-5).

        ``regions`` are names of the label set's regions (``skin`` (skin + nose), ``hair``, ``eyes``,
        ``brows``, ``lips``, ``mouth``, ``nose``, ``ears``, ``neck``, ``cloth``, ``background``...) or
        class names, as a list or a comma-separated string. A region missing from the reference keeps
        the target's style and gives a :class:`RegionAbsentWarning`. ``harmonize=False`` skips MRSA.

        Batches pair target i with reference i; a single target or reference is paired with every
        member of the other batch. The result has the target photo's size.
        """
        classes = self.resolve_regions(regions)
        with torch.inference_mode():
            targets = self._prepare_images(target, "target")
            target_labels = self._labels_or_parse(target, target_labels, "target labels")
            target_maps = self._prepare_labels(target_labels, targets, "target labels")
            references = self._prepare_images(reference, "reference")
            reference_labels = self._labels_or_parse(reference, reference_labels, "reference labels")
            reference_maps = self._prepare_labels(reference_labels, references, "reference labels")
            n_t, n_r = len(targets), len(references)
            if n_t != n_r and 1 not in (n_t, n_r):
                raise InputError(f"{n_t} targets and {n_r} references: give as many of each, "
                                 "or one of either")
            n = max(n_t, n_r)
            s_t, p_t = self._encode(targets.images, target_maps)
            s_r, p_r = self._encode(references.images, reference_maps)
            self._warn_absent(regions=classes, target_presence=p_t, reference_presence=p_r,
                              reference_names=references.names)
            s_t, p_t, s_r, p_r = (x.expand(n, *x.shape[1:]) for x in (s_t, p_t, s_r, p_r))
            target_maps = target_maps.expand(n, -1, -1)
            mask = torch.from_numpy(self.label_set.regions_mask(list(classes))).to(self.device)
            s_c = self.model.compose(s_t, p_t, s_r, p_r, mask)
            out = self._decode(target_maps, self.model.harmonize(s_c, s_t, p_t, enabled=harmonize))
            if n_t == 1 and n_r > 1:
                targets = targets.expand(n)
                targets.form = references.form
            return self._postprocess(out, targets, return_tensors)

    def resolve_regions(self, regions: str | Iterable[str]) -> dict[str, tuple[int, ...]]:
        """Region name -> class indices; an unknown name is an InputError listing the valid ones."""
        if isinstance(regions, str):
            regions = [r for r in (part.strip() for part in regions.split(",")) if r]
        out: dict[str, tuple[int, ...]] = {}
        for region in regions:
            if not isinstance(region, str):
                raise InputError(f"regions must be names (strings), got {region!r}")
            out[region] = self.label_set.region_classes(region)
        return out

    # ------------------------------------------------------------------ model steps (reused by later editors)

    def _encode(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Style codes (B, R, D) and presence (B, R) of prepared photos and label maps."""
        return self.model.encode(images, labels)

    def _decode(self, labels: Tensor, codes: Tensor) -> Tensor:
        """Generator output (B, 3, S, S) in [-1, 1] for label maps (B, S, S) and codes (B, R, D)."""
        return self.model.decode(labels, codes)

    def _warn_absent(self, regions: dict[str, tuple[int, ...]], target_presence: Tensor,
                     reference_presence: Tensor, reference_names: list[str]) -> None:
        """Warn for every region the target has but a reference lacks (the target keeps its style there)."""
        classes = self.label_set.classes
        p_t = target_presence.any(0) if len(target_presence) != len(reference_presence) else target_presence
        messages: list[str] = []
        for i, name in enumerate(reference_names):
            has_t = (p_t if p_t.ndim == 1 else p_t[i]).tolist()
            has_r = reference_presence[i].tolist()
            for region, idx in regions.items():
                missing = [c for c in idx if has_t[c] and not has_r[c]]
                if not missing:
                    continue
                if all(not has_r[c] for c in idx):
                    msg = f"region {region!r} is absent from {name}; the target keeps its own {region} style"
                else:
                    absent = ", ".join(classes[c] for c in missing)
                    msg = (f"region {region!r} is only partly present in {name} (no {absent}); "
                           "those classes keep the target's style")
                if msg not in messages:
                    messages.append(msg)
        for msg in messages:
            logger.warning(msg)
            warnings.warn(msg, RegionAbsentWarning, stacklevel=3)

    # ------------------------------------------------------------------ input normalisation

    def _prepare_images(self, images: ImageInput, role: str = "image") -> _Prepared:
        """Photos of any accepted kind -> a (B, 3, S, S) batch at the model's size, with their own sizes."""
        items, form = _split_batch(images, image=True)
        if not items:
            raise InputError(f"no {role} given (an empty list)")
        resized, sizes, names = [], [], []
        for i, item in enumerate(items):
            name = _name(item, role, i, len(items))
            photo = self._image_tensor(item, name)
            sizes.append((int(photo.shape[-2]), int(photo.shape[-1])))
            names.append(name)
            resized.append(resize_image(photo.to(self.device, torch.float32), self.image_size))
        batch = torch.stack(resized).to(self.dtype)
        return _Prepared(batch, sizes, names, form)

    def _prepare_labels(self, labels: ImageInput, photos: _Prepared, role: str = "labels") -> Tensor:
        """Label maps of any accepted kind -> (B, S, S) int64, each fitted to its photo, then to the model."""
        items, _ = _split_batch(labels, image=False)
        if len(items) != len(photos):
            raise InputError(f"{len(items)} {role} map(s) for {len(photos)} photo(s): "
                             "give one label map per photo")
        maps = []
        for i, (item, size) in enumerate(zip(items, photos.sizes)):
            name = _name(item, role, i, len(items))
            label_map = self._label_tensor(item, name).to(self.device)
            if tuple(label_map.shape) != size:
                _check_aspect(label_map.shape, size, name, photos.names[i])
                label_map = resize_labels(label_map, size)
            maps.append(resize_labels(label_map, self.image_size))
        return torch.stack(maps)

    def _postprocess(self, output: Tensor, photos: _Prepared, return_tensors: bool = False) -> Output:
        """Generator output -> each result at its photo's own size, as PIL images or tensors."""
        results = [resize_image(out, size) for out, size in zip(output, photos.sizes)]
        if return_tensors:
            if photos.form == "single":
                return results[0]
            return torch.stack(results) if photos.form == "stacked" else results
        pil = [to_pil(r.float()) for r in results]
        return pil[0] if photos.form == "single" else pil

    def _image_tensor(self, item: Any, name: str) -> Tensor:
        return photo_tensor(item, name)

    def _label_tensor(self, item: Any, name: str) -> Tensor:
        """One label map as an int64 (H, W) tensor, every value checked against the label set."""
        if isinstance(item, (str, os.PathLike)):
            return load_labels(item, self.label_set)
        if isinstance(item, Image.Image):
            arr = _pil_labels(item, name)
        elif isinstance(item, np.ndarray):
            arr = item
        elif isinstance(item, Tensor):
            arr = item.detach().cpu().numpy()
        else:
            raise InputError(_kind_error(item, name))
        return torch.from_numpy(self.label_set.validate(_integral(arr, name), source=name))


# ---------------------------------------------------------------------- helpers


def _split_batch(x: Any, image: bool) -> tuple[list[Any], str]:
    """(items, form): a list/tuple is a batch; so is a stacked array or tensor ((B, H, W, C) / (B, 3, H, W)
    for photos, (B, H, W) for label maps)."""
    if isinstance(x, (list, tuple)):
        return list(x), "list"
    if isinstance(x, (np.ndarray, Tensor)) and (x.ndim == 4 if image else
                                                 x.ndim == 3 and not _looks_like_colour(x)):
        return list(x), "stacked"
    return [x], "single"


def _looks_like_colour(x: np.ndarray | Tensor) -> bool:
    """An (H, W, 3|4) array handed in as a label map: a colour image, not a batch of maps."""
    return x.ndim == 3 and x.shape[-1] in (3, 4) and x.shape[0] > 4


def _kind_error(item: Any, name: str) -> str:
    return f"{name}: expected a path, PIL image, numpy array or tensor, got {type(item).__name__}"


def _name(item: Any, role: str, index: int, count: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(Path(item))
    return role if count == 1 else f"{role}[{index}]"


def _check_aspect(label_shape: Sequence[int], photo_size: tuple[int, int], name: str, photo: str) -> None:
    (lh, lw), (ph, pw) = label_shape, photo_size
    if abs(lh * pw - lw * ph) > 0.02 * ph * lw:
        raise InputError(f"{name}: label map of {lw}x{lh} does not fit its photo {photo} of {pw}x{ph} "
                         "(different aspect ratio)")


def _pil_image(im: Image.Image) -> Tensor:
    """A PIL image as float32 (3, H, W) in [-1, 1] (as :func:`facestyle.io.load_image` reads files)."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        gray = np.clip(np.asarray(im, dtype=np.float32) / 65535.0, 0.0, 1.0)
        arr = np.repeat(gray[..., None], 3, axis=-1)
    elif im.mode == "F":
        arr = np.repeat(np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)[..., None], 3, axis=-1)
    else:
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))) * 2.0 - 1.0


def _numpy_image(arr: np.ndarray, name: str) -> Tensor:
    """(H, W, 3) / (H, W, 4) / (H, W) array, uint8 or uint16 or float in [0, 1] -> (3, H, W) in [-1, 1]."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise InputError(f"{name}: expected an (H, W, 3) image array, got shape {arr.shape}")
    arr = arr[..., :3] if arr.shape[-1] >= 3 else np.repeat(arr, 3, axis=-1)
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        _check_range(x, 0.0, 1.0, name, "float image arrays must lie in [0, 1] (or pass uint8 in 0..255)")
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InputError(f"{name}: integer image values must lie in 0..255, got {arr.min()}..{arr.max()}")
        x = arr.astype(np.float32) / 255.0
    else:
        raise InputError(f"{name}: unsupported image array dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).clamp(0, 1) * 2.0 - 1.0


def _tensor_image(t: Tensor, name: str) -> Tensor:
    """(3, H, W) tensor in [-1, 1] (or uint8 in 0..255) -> float32 (3, H, W) in [-1, 1], on its device."""
    t = t.detach()
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise InputError(f"{name}: expected an image tensor of shape (3, H, W), got {tuple(t.shape)}")
    t = t.expand(3, -1, -1)
    if t.dtype == torch.uint8:
        return t.float() / 127.5 - 1.0
    if not t.is_floating_point():
        raise InputError(f"{name}: image tensors must be float in [-1, 1] (or uint8), got {t.dtype}")
    t = t.float()
    _check_range(t, -1.0, 1.0, name, "image tensors must lie in [-1, 1]")
    return t.clamp(-1, 1)


def _check_range(x: np.ndarray | Tensor, lo: float, hi: float, name: str, hint: str) -> None:
    empty = x.size == 0 if isinstance(x, np.ndarray) else x.numel() == 0
    if empty:
        raise InputError(f"{name}: empty image")
    mn, mx = float(x.min()), float(x.max())
    if not (np.isfinite(mn) and np.isfinite(mx)):
        raise InputError(f"{name}: image holds NaN or infinite values")
    if mn < lo - _RANGE_TOLERANCE or mx > hi + _RANGE_TOLERANCE:
        raise InputError(f"{name}: {hint}, got values in {mn:.4g}..{mx:.4g}")


def _pil_labels(im: Image.Image, name: str) -> np.ndarray:
    """A single-channel PIL label map (or an RGB one with equal channels) as an array of class indices."""
    if im.mode in LABEL_MODES:
        return np.asarray(im)
    if im.mode == "LA":
        return np.asarray(im)[..., 0]
    if im.mode in ("RGB", "RGBA"):
        rgb = np.asarray(im)
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
            return rgb[..., 0]
    raise InputError(f"{name} is not single-channel (mode {im.mode}); expected class indices")


def _integral(arr: np.ndarray, name: str) -> np.ndarray:
    """Class indices as an integer array (floats must hold whole numbers)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InputError(f"{name}: a label map must be single-channel (H, W) class indices, "
                         f"got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise InputError(f"{name}: label maps hold whole class indices, got non-integer values")
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: unsupported label map dtype {arr.dtype}")
    return arr


def photo_tensor(item: Any, name: str = "image") -> Tensor:
    """One photo of any kind the Editor takes as a float32 (3, H, W) tensor in [-1, 1] (on the CPU, or
    the input tensor's device)."""
    if isinstance(item, (str, os.PathLike)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return _pil_image(item)
    if isinstance(item, np.ndarray):
        return _numpy_image(item, name)
    if isinstance(item, Tensor):
        return _tensor_image(item, name)
    raise InputError(_kind_error(item, name))
