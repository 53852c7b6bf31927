"""Input normalisation for the Editor and the face parser: photos and label maps of any accepted kind
(paths, PIL images, numpy arrays, tensors, alone or batched) to model-sized tensors, and results back to
each photo's own size (see :mod:`facestyle.editor.editor` for the accepted kinds)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..accel import auto_device
from ..data.transforms import resize_image, resize_labels_centered
from ..errors import InputError
from ..io import LABEL_MODES, load_image, load_labels, pil_tensor, to_pil
from ..labels import LabelSet
from .align import AlignedFace

__all__ = ["ImageLike", "ImageInput", "Output", "Prepared", "resolve_device", "split_batch", "item_name",
           "photo_tensor", "label_tensor", "prepare_images", "prepare_labels", "postprocess"]

ImageLike = str | os.PathLike | Image.Image | np.ndarray | Tensor | AlignedFace  # one photo or one label map
ImageInput = ImageLike | Sequence[ImageLike]  # one, or a batch
Output = Image.Image | Tensor | list

logger = logging.getLogger(__name__)
_RANGE_TOLERANCE = 1e-3  # float images may overshoot their range by rounding


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device from its name (``cpu``, ``cuda``, ``cuda:1``, ``mps``, or ``auto``: CUDA when torch
    sees it, else the CPU), checked to be available."""
    if str(device) == "auto":
        dev = torch.device(auto_device())
        logger.info("device auto: %s", dev)
        return dev
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {str(device)!r}; use auto, cpu, cuda, cuda:N or mps") from None
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
class Prepared:
    """A batch of photos at the model's size, and what is needed to return results at their own size."""

    images: Tensor  # (B, 3, S, S) on the editor's device and dtype
    sizes: list[tuple[int, int]]  # each photo's own (H, W)
    names: list[str]  # for messages: the file, or "target", "target[2]"...
    form: str  # "single", "list" (a list or tuple of inputs) or "stacked" (one batched array/tensor)
    faces: list[AlignedFace | None] | None = None  # per photo: the aligned face it was cropped to, if any

    def __len__(self) -> int:
        return len(self.sizes)

    def face(self, i: int) -> AlignedFace | None:
        return None if self.faces is None else self.faces[i]

    def expand(self, n: int) -> Prepared:
        """The single photo repeated ``n`` times (to pair one target with several references)."""
        faces = None if self.faces is None else self.faces * n
        return Prepared(self.images.expand(n, -1, -1, -1), self.sizes * n, self.names * n, self.form, faces)


def prepare_images(images: ImageInput, size: int, device: torch.device, dtype: torch.dtype,
                   role: str = "image") -> Prepared:
    """Photos of any accepted kind -> a (B, 3, size, size) batch on ``device``, with their own sizes."""
    items, form = split_batch(images, image=True)
    if not items:
        raise InputError(f"no {role} given (an empty list)")
    resized, sizes, names, faces = [], [], [], []
    for i, item in enumerate(items):
        name = item_name(item, role, i, len(items))
        if isinstance(item, AlignedFace):  # an aligned face: edited at the crop, pasted back into its photo
            photo = item.crop
            sizes.append(item.photo_size)
            faces.append(item)
        else:
            photo = photo_tensor(item, name)
            sizes.append((int(photo.shape[-2]), int(photo.shape[-1])))
            faces.append(None)
        names.append(name)
        resized.append(resize_image(photo.to(device, torch.float32), size))
    return Prepared(torch.stack(resized).to(dtype), sizes, names, form,
                    faces if any(f is not None for f in faces) else None)


def prepare_labels(labels: ImageInput, photos: Prepared, label_set: LabelSet, size: int, device: torch.device,
                   role: str = "labels") -> Tensor:
    """Label maps of any accepted kind -> (B, size, size) int64, each fitted to its photo, then to the model."""
    items, _ = split_batch(labels, image=False)
    if len(items) != len(photos):
        raise InputError(f"{len(items)} {role} map(s) for {len(photos)} photo(s): "
                         "give one label map per photo")
    maps = []
    for i, (item, photo_size) in enumerate(zip(items, photos.sizes)):
        name = item_name(item, role, i, len(items))
        label_map = label_tensor(item, label_set, name).to(device)
        face = photos.face(i)
        if face is not None:  # at the crop's size, or at the photo's: aligned as the photo was
            maps.append(resize_labels_centered(face.crop_labels(label_map, name).to(device), size))
            continue
        if tuple(label_map.shape) != photo_size:
            _check_aspect(label_map.shape, photo_size, name, photos.names[i])
            label_map = resize_labels_centered(label_map, photo_size)
        maps.append(resize_labels_centered(label_map, size))
    return torch.stack(maps)


def postprocess(output: Tensor, photos: Prepared, return_tensors: bool = False, changed: Tensor | None = None
                ) -> Output:
    """Generator output -> each result at its photo's own size, as PIL images or tensors. An aligned face's
    result is its whole photo with the output pasted back where ``changed`` ((B, S, S) bool, the edited
    pixels at the model's size; default all) says, feathered (:func:`facestyle.editor.align.feather`)."""
    output = output.to(photos.images.dtype)  # the editor's own dtype, also after a mixed-precision run
    results = []
    for i, (out, size) in enumerate(zip(output, photos.sizes)):
        face = photos.face(i)
        if face is None:
            results.append(resize_image(out, size))
            continue
        edited = resize_image(out.float(), face.crop.shape[-1])
        mask = torch.ones(out.shape[-2:], dtype=torch.bool, device=out.device) if changed is None else changed[i]
        if tuple(mask.shape) != tuple(face.crop.shape[-2:]):
            mask = resize_labels_centered(mask.to(torch.int64), face.crop.shape[-1]).bool()
        results.append(face.paste(edited, mask).to(out.dtype))
    if return_tensors:
        if photos.form == "single":
            return results[0]
        return torch.stack(results) if photos.form == "stacked" else results
    pil = [to_pil(r.float()) for r in results]
    return pil[0] if photos.form == "single" else pil


def label_tensor(item: ImageLike, label_set: LabelSet, name: str) -> Tensor:
    """One label map as an int64 (H, W) tensor, every value checked against the label set."""
    if isinstance(item, (str, os.PathLike)):
        return load_labels(item, label_set)
    if isinstance(item, Image.Image):
        arr = _pil_labels(item, name)
    elif isinstance(item, np.ndarray):
        arr = item
    elif isinstance(item, Tensor):
        arr = item.detach().cpu().numpy()
    else:
        raise InputError(_kind_error(item, name))
    return torch.from_numpy(label_set.validate(_integral(arr, name), source=name))



def split_batch(x: ImageInput, image: bool) -> tuple[list[ImageLike], str]:
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


def _kind_error(item: object, name: str) -> str:
    return f"{name}: expected a path, PIL image, numpy array or tensor, got {type(item).__name__}"


def item_name(item: ImageLike, role: str, index: int, count: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(Path(item))
    return role if count == 1 else f"{role}[{index}]"


def _check_aspect(label_shape: Sequence[int], photo_size: tuple[int, int], name: str, photo: str) -> None:
    (lh, lw), (ph, pw) = label_shape, photo_size
    if abs(lh * pw - lw * ph) > 0.02 * ph * lw:
        raise InputError(f"{name}: label map of {lw}x{lh} does not fit its photo {photo} of {pw}x{ph} "
                         "(different aspect ratio)")


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


def photo_tensor(item: ImageLike, name: str = "image") -> Tensor:
    """One photo of any kind the Editor takes as a float32 (3, H, W) tensor in [-1, 1] (on the CPU, or
    the input tensor's device)."""
    if isinstance(item, (str, os.PathLike)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return pil_tensor(item)
    if isinstance(item, np.ndarray):
        return _numpy_image(item, name)
    if isinstance(item, Tensor):
        return _tensor_image(item, name)
    raise InputError(_kind_error(item, name))


Crop = str | tuple[int, int, int]


def crop_box(height: int, width: int, crop: Crop = "center") -> tuple[int, int, int, int]:
    """The (top, left, box height, box width) of the view the parser sees of an (height, width) photo."""
    if isinstance(crop, str):
        if crop == "center":
            side = min(height, width)
            return (height - side) // 2, (width - side) // 2, side, side
        if crop == "none":
            return 0, 0, height, width
        raise InputError(f"crop must be 'center', 'none' or a (left, top, size) box, got {crop!r}")
    try:
        left, top, size = (int(v) for v in crop)
    except (TypeError, ValueError):
        raise InputError(f"crop must be 'center', 'none' or a (left, top, size) box, got {crop!r}") from None
    if size < 1 or left < 0 or top < 0 or left + size > width or top + size > height:
        raise InputError(f"crop box (left {left}, top {top}, size {size}) does not lie inside the "
                         f"{width}x{height} photo")
    return top, left, size, size
