"""Reading and writing images and label maps.

Images are float tensors (3, H, W) in [-1, 1]; label maps are int64 tensors (H, W) of class indices.
Every problem with a user's file raises :class:`~facestyle.errors.InputError` naming the file. Writes are
atomic: a temporary file in the destination folder is renamed over the destination.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError
from .labels import LabelSet

_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """The mode a new file gets from ``open()``: 0o666 minus the process's umask."""
    try:  # Linux says it without changing it (other threads may be creating files)
        with open("/proc/self/status") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        with _UMASK_LOCK:  # elsewhere reading the umask means setting it
            umask = os.umask(0o022)
            os.umask(umask)
    return 0o666 & ~umask


def fsync_path(path: str | os.PathLike, directory: bool = False) -> None:
    """Flush a file's (or a folder's entries') bytes to the disk; a filesystem that cannot is skipped."""
    try:
        fd = os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if directory else os.O_RDONLY)
    except OSError:
        if not directory:
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    The caller creates the temporary file. Before the rename it gets the usual permissions (0666 minus
    the umask, whatever the writer chose) and is flushed to the disk (fsync), and the folder's entry
    after it, so that a crash or power cut leaves the old file or the new one, never an empty one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent, directory=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


#: The longest image side a read accepts (None: no limit but PIL's decompression-bomb guard). The command
#: line sets it from ``--max-side`` (default :data:`DEFAULT_MAX_SIDE`); the Python API has no limit unless set.
MAX_SIDE: ContextVar[int | None] = ContextVar("facestyle_max_side", default=None)
DEFAULT_MAX_SIDE = 4096

LABEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N")
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")


def shared_root() -> Path | None:
    """The shared test-data folder: ``$FACESTYLE_SHARED``, else ``<repo>/../shared``; None if missing."""
    env = os.environ.get("FACESTYLE_SHARED")
    root = Path(env).expanduser() if env else Path(__file__).resolve().parent.parent.parent / "shared"
    return root if root.is_dir() else None


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and decode an image file; a missing, unreadable or non-image file is an InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    try:
        limit = MAX_SIDE.get()
        with warnings.catch_warnings():  # a large image is refused below in one line, not warned about
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)  # reads the header only
            if limit is None or max(im.size) <= limit:
                im.load()
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image (PIL cannot identify its format)") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image too large ({first_line(exc)})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable image ({first_line(exc)})") from None
    if limit is not None and max(im.size) > limit:
        raise InputError(f"{path}: image of {im.width}x{im.height} is larger than {limit} pixels a side "
                         "(--max-side to change the limit)")
    return im


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image as RGB float32 (3, H, W) in [-1, 1]; alpha is dropped, grayscale expanded.

    The EXIF orientation is applied, so the pixels are those a viewer shows.
    """
    im = open_image(path)
    with contextlib.suppress(OSError, ValueError, SyntaxError):  # corrupt EXIF: keep the stored orientation
        im = ImageOps.exif_transpose(im)
    return pil_tensor(im)


def pil_tensor(im: Image.Image) -> torch.Tensor:
    """A PIL image as RGB float32 (3, H, W) in [-1, 1]: 16-bit and float grayscale expanded, alpha dropped."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grayscale
        gray = np.asarray(im, dtype=np.float32) / 65535.0
        arr = np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=-1)
    elif im.mode == "F":
        arr = np.repeat(np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)[..., None], 3, axis=-1)
    else:
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)) * 2.0 - 1.0)


def load_labels(path: str | os.PathLike, label_set: LabelSet) -> torch.Tensor:
    """Read a class-index label map as int64 (H, W), checking every value against ``label_set``.

    Accepts single-channel files ('L', 'P' (the palette index is the class), 'I', '1'), and RGB(A)
    files whose three channels are equal. A colour-coded map is refused.
    """
    im = open_image(path)
    arr = np.asarray(im)
    gray = im.mode == "LA" or (
        im.mode in ("RGB", "RGBA") and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all())
    if gray:
        arr = arr[..., 0]
    elif im.mode not in LABEL_MODES:
        raise InputError(f"{path} is not single-channel (mode {im.mode}); expected a class-index PNG")
    return torch.from_numpy(label_set.validate(arr, source=str(path)))


def to_pil(image: torch.Tensor | np.ndarray) -> Image.Image:
    """An RGB image from a (3, H, W) or (1, 3, H, W) tensor in [-1, 1], or an (H, W, 3) uint8 array."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        arr = image
    else:
        t = torch.as_tensor(image).detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"expected an image of shape (3, H, W), got {tuple(t.shape)}")
        t = ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        arr = t.permute(1, 2, 0).numpy()
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got shape {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def save_image(image: torch.Tensor | np.ndarray | Image.Image, path: str | os.PathLike) -> Path:
    """Write an image atomically; the format follows the suffix (JPEG at quality 95)."""
    im = image if isinstance(image, Image.Image) else to_pil(image)
    path = Path(path)
    fmt = _format_for(path)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "JPEG" and im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    _atomic_write(path, lambda f: im.save(f, format=fmt, **options))
    return path


def save_labels(labels: torch.Tensor | np.ndarray, path: str | os.PathLike) -> Path:
    """Write an (H, W) class-index map atomically as a single-channel 8-bit image (PNG)."""
    path = Path(path)
    if path.suffix.lower() in LOSSY_SUFFIXES:
        raise InputError(f"{path}: label maps must be saved losslessly (use .png)")
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"expected a label map of shape (H, W), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"label values must lie in 0..255, got {arr.min()}..{arr.max()}")
    im = Image.fromarray(arr.astype(np.uint8), "L")
    fmt = _format_for(path)
    _atomic_write(path, lambda f: im.save(f, format=fmt))
    return path


def copy_file_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a file's bytes to ``dst`` atomically."""
    src, dst = Path(src), Path(dst)
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise InputError(f"{src}: cannot read ({exc.strerror or first_line(exc)})") from None
    _atomic_write(dst, lambda f: f.write(data))
    return dst


def _format_for(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image format {path.suffix!r}; use .png or .jpg")
    return fmt


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "xb") as f:
            write(f)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
