"""Face alignment as FFHQ and CelebA-HQ crop their faces, and the way back into the full photo.

>>> from facestyle import Editor
>>> editor = Editor.from_pretrained("demo")
>>> face = editor.align("photo.jpg", face=0)      # found, aligned and cropped at the model's size
>>> out = editor.transfer(face, None, "ref.png", None, regions="hair")   # the whole photo, at its own size

The crop is the oriented square of FFHQ's ``recreate_aligned_images`` (NVlabs/ffhq-dataset), from the eye
centres and the mouth corners: with ``eye_to_eye`` (the person's right eye to their left eye, left to right
in the image), ``eye_to_mouth`` (the eyes' midpoint to the mouth corners' midpoint), the square's x axis
``eye_to_eye - rot90(eye_to_mouth)`` normalised and scaled to half a side of
``max(|eye_to_eye| * 2.0, |eye_to_mouth| * 1.8)``, its y axis x turned 90 degrees clockwise, and its centre
``eye_avg + eye_to_mouth * 0.1``. The map from the crop to the photo is a similarity transform
(:class:`Alignment`); the crop is resampled with ``grid_sample`` (the photo is first shrunk with an
antialiasing filter when the face is larger than the crop; outside the photo, the photo is reflected, as
FFHQ pads).

After an edit at the model's size, :meth:`Alignment.paste` puts the result back into the original photo at
its full resolution with the inverse transform, blended by a feathered mask of the regions that changed
(:func:`feather`: the edited regions' label mask dilated by ``size / 64`` pixels and blurred by a Gaussian
of ``size / 128``, both at the crop's size): photo pixels where the mask is 0 keep their exact values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError


class Landmarks(Protocol):
    """A face's points (``facestyle.editor.landmarks.FaceLandmarks``): (N, 2) in photo pixels."""

    points: np.ndarray

    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]: ...  # the person's right eye, left eye

    def mouth_corners(self) -> tuple[np.ndarray, np.ndarray]: ...  # the person's right corner, left corner

__all__ = ["Alignment", "AlignedFace", "FaceBox", "feather", "face_boxes", "choose_face"]

EYE_TO_EYE_SCALE, EYE_TO_MOUTH_SCALE, CENTRE_SHIFT = 2.0, 1.8, 0.1  # FFHQ's constants
_SHRINK_ABOVE = 1.5  # photo pixels per crop pixel above which the photo is low-pass filtered first


@dataclass(frozen=True)
class Alignment:
    """The similarity transform from a ``size`` x ``size`` crop to the photo it was cut from.

    A crop point (u, v) (continuous pixel coordinates: pixel (i, j) covers [j, j+1) x [i, i+1)) lies at
    photo point ``origin + u * axes[0] + v * axes[1]``; ``photo_size`` is the photo's (height, width)."""

    origin: tuple[float, float]
    axes: tuple[tuple[float, float], tuple[float, float]]  # photo displacement of one crop pixel along u, v
    size: int
    photo_size: tuple[int, int]

    @classmethod
    def from_points(cls, right_eye: Sequence[float], left_eye: Sequence[float], mouth_right: Sequence[float],
                    mouth_left: Sequence[float], size: int, photo_size: tuple[int, int]) -> Alignment:
        """FFHQ's crop from the person's right and left eye centres and mouth corners, (x, y) in photo
        pixels (the person's right is the image's left in an unmirrored photo)."""
        eye_l, eye_r = np.asarray(right_eye, np.float64), np.asarray(left_eye, np.float64)  # FFHQ: image left/right
        mouth_l, mouth_r = np.asarray(mouth_right, np.float64), np.asarray(mouth_left, np.float64)
        eye_avg = (eye_l + eye_r) / 2
        eye_to_eye = eye_r - eye_l
        eye_to_mouth = (mouth_l + mouth_r) / 2 - eye_avg
        x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
        norm = np.hypot(*x)
        if not np.isfinite(norm) or norm < 1e-6:
            raise InputError("the face's eyes and mouth coincide: it cannot be aligned")
        x = x / norm * max(np.hypot(*eye_to_eye) * EYE_TO_EYE_SCALE, np.hypot(*eye_to_mouth) * EYE_TO_MOUTH_SCALE)
        y = np.flipud(x) * [-1, 1]
        centre = eye_avg + eye_to_mouth * CENTRE_SHIFT
        origin = centre - x - y
        u, v = 2 * x / size, 2 * y / size
        return cls((float(origin[0]), float(origin[1])), ((float(u[0]), float(u[1])), (float(v[0]), float(v[1]))),
                   int(size), (int(photo_size[0]), int(photo_size[1])))

    @classmethod
    def from_landmarks(cls, face: Landmarks, size: int, photo_size: tuple[int, int]) -> Alignment:
        """FFHQ's crop of a face found by the landmark parser (iris centres, mouth corners)."""
        return cls.from_points(*face.eye_centres(), *face.mouth_corners(), size, photo_size)

    def resized(self, size: int) -> Alignment:
        """The same square of the photo, cropped at another size."""
        k = self.size / size
        (ux, uy), (vx, vy) = self.axes
        return Alignment(self.origin, ((ux * k, uy * k), (vx * k, vy * k)), int(size), self.photo_size)

    @property
    def matrix(self) -> np.ndarray:
        """(2, 2): columns are the photo displacements of one crop pixel along u and v."""
        return np.array(self.axes, np.float64).T

    @property
    def scale(self) -> float:
        """Photo pixels per crop pixel."""
        return float(np.hypot(*self.axes[0]))

    def to_photo(self, uv: np.ndarray) -> np.ndarray:
        """(..., 2) crop points (u, v) -> photo points (x, y)."""
        return np.asarray(self.origin) + np.asarray(uv, np.float64) @ self.matrix.T

    def to_crop(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) photo points (x, y) -> crop points (u, v)."""
        return (np.asarray(xy, np.float64) - np.asarray(self.origin)) @ np.linalg.inv(self.matrix).T

    def quad(self) -> np.ndarray:
        """(4, 2) the crop's corners in the photo: top-left, bottom-left, bottom-right, top-right."""
        s = self.size
        return self.to_photo(np.array([[0, 0], [0, s], [s, s], [s, 0]], np.float64))

    def box(self, margin: int = 0) -> tuple[int, int, int, int]:
        """(left, top, right, bottom): the photo pixels the crop's square touches (plus ``margin``), clamped
        to the photo (right and bottom exclusive; empty when the square lies outside the photo)."""
        q = self.quad()
        h, w = self.photo_size
        left, top = (int(math.floor(v)) - margin for v in q.min(0))
        right, bottom = (int(math.ceil(v)) + margin for v in q.max(0))
        left, top = min(max(left, 0), w), min(max(top, 0), h)
        return left, top, max(min(right, w), left), max(min(bottom, h), top)

    # ------------------------------------------------------------------------------------ resampling

    def _grid(self, uv: Tensor, offset: tuple[float, float], extent: tuple[float, float],
              ratio: tuple[float, float] = (1.0, 1.0)) -> Tensor:
        """grid_sample coordinates in a photo region (left, top = ``offset``, shrunk by ``ratio``, of
        ``extent`` (width, height) pixels) of crop points ``uv`` (..., 2)."""
        m = torch.as_tensor(self.matrix, dtype=torch.float64, device=uv.device)
        xy = torch.einsum("...k,jk->...j", uv.double(), m) + torch.as_tensor(self.origin, dtype=torch.float64,
                                                                               device=uv.device)
        q = (xy - torch.as_tensor(offset, dtype=torch.float64, device=uv.device)) * torch.as_tensor(
            ratio, dtype=torch.float64, device=uv.device)
        return (2 * q / torch.as_tensor(extent, dtype=torch.float64, device=uv.device) - 1).float()

    def crop(self, image: Tensor, mode: str = "bilinear") -> Tensor:
        """(C, H, W) at the photo's size -> (C, size, size): the aligned crop (``mode="nearest"`` for label
        maps: no filtering). Points outside the photo take the photo reflected at its border."""
        if tuple(image.shape[-2:]) != self.photo_size:
            raise InputError(f"an image of {image.shape[-1]}x{image.shape[-2]} given for a photo of "
                             f"{self.photo_size[1]}x{self.photo_size[0]}")
        left, top, right, bottom = self.box(margin=2)
        if right <= left or bottom <= top:
            raise InputError("the face's square lies outside the photo")
        region = image[:, top:bottom, left:right].float()
        h, w = region.shape[-2:]
        h2, w2 = h, w
        if mode != "nearest" and self.scale > _SHRINK_ABOVE:  # low-pass before sampling, as FFHQ shrinks first
            h2, w2 = max(1, round(h / self.scale)), max(1, round(w / self.scale))
            region = F.interpolate(region[None], size=(h2, w2), mode="bilinear", align_corners=False,
                                   antialias=True)[0]
        centres = torch.arange(self.size, dtype=torch.float64, device=image.device) + 0.5
        vv, uu = torch.meshgrid(centres, centres, indexing="ij")
        grid = self._grid(torch.stack([uu, vv], -1), (left, top), (w2, h2), (w2 / w, h2 / h))
        return F.grid_sample(region[None], grid[None], mode=mode, padding_mode="reflection", align_corners=False)[0]

    def crop_labels(self, labels: Tensor) -> Tensor:
        """(H, W) class indices at the photo's size -> (size, size) int64 (nearest)."""
        return self.crop(labels[None].float(), mode="nearest")[0].round().to(torch.int64)

    def to_photo_frame(self, image: Tensor, mode: str = "bilinear", padding: str = "zeros"
                       ) -> tuple[Tensor, tuple[int, int, int, int]]:
        """(C, s, s) in the crop's frame (any s) -> ((C, bottom - top, right - left), box): its pixels over
        the photo's :meth:`box`, by the inverse transform."""
        left, top, right, bottom = box = self.box()
        ys = torch.arange(top, bottom, dtype=torch.float64, device=image.device) + 0.5
        xs = torch.arange(left, right, dtype=torch.float64, device=image.device) + 0.5
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        inv = torch.as_tensor(np.linalg.inv(self.matrix), dtype=torch.float64, device=image.device)
        rel = torch.stack([xx, yy], -1) - torch.as_tensor(self.origin, dtype=torch.float64, device=image.device)
        uv = torch.einsum("...k,jk->...j", rel, inv)
        grid = (2 * uv / self.size - 1).float()
        if grid.numel() == 0:
            return image.new_zeros(image.shape[0], bottom - top, right - left), box
        return F.grid_sample(image[None].float(), grid[None], mode=mode, padding_mode=padding,
                             align_corners=False)[0], box

    def mask_in_photo(self, mask: Tensor) -> Tensor:
        """A (s, s) blend mask in the crop's frame -> (H, W) float32 over the whole photo (0 outside the crop)."""
        out = torch.zeros(self.photo_size, dtype=torch.float32, device=mask.device)
        warped, (left, top, right, bottom) = self.to_photo_frame(mask[None].float())
        out[top:bottom, left:right] = warped[0].clamp(0, 1)
        return out

    def paste(self, edited: Tensor, photo: Tensor, mask: Tensor) -> Tensor:
        """Put ``edited`` (C, s, s), the crop after an edit, back into ``photo`` (C, H, W) with the inverse
        transform, blended by ``mask`` (s, s) in [0, 1] (:func:`feather`). Photo pixels where the warped
        mask is 0 keep their exact values."""
        out = photo.clone()
        alpha, (left, top, right, bottom) = self.to_photo_frame(mask[None].to(edited.device).float())
        if alpha.numel() == 0:
            return out
        warped, _ = self.to_photo_frame(edited, mode="bicubic", padding="border")
        alpha = alpha.clamp(0, 1).to(photo.device)
        region = out[:, top:bottom, left:right]
        blend = region.float() * (1 - alpha) + warped.to(photo.device).clamp(-1, 1) * alpha
        out[:, top:bottom, left:right] = torch.where(alpha > 0, blend.to(photo.dtype), region)
        return out


def feather(mask: Tensor, dilate: int | None = None, sigma: float | None = None) -> Tensor:
    """A blend mask from the changed pixels (..., S, S) (bool): dilated by ``dilate`` pixels (default
    ``S / 64``, at least 1), then blurred by a Gaussian of ``sigma`` (default ``S / 128``, at least 0.5),
    truncated at 2 sigma. Float32 in [0, 1]; exactly 0 farther than ``dilate`` + 2 sigma from a changed pixel."""
    size = mask.shape[-1]
    dilate = max(1, round(size / 64)) if dilate is None else int(dilate)
    sigma = max(0.5, size / 128) if sigma is None else float(sigma)
    lead = mask.shape[:-2]
    m = mask.reshape(-1, 1, *mask.shape[-2:]).float()
    if dilate > 0:
        m = F.max_pool2d(m, 2 * dilate + 1, stride=1, padding=dilate)
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=mask.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    m = F.conv2d(m, k.view(1, 1, 1, -1), padding=(0, radius))
    m = F.conv2d(m, k.view(1, 1, -1, 1), padding=(radius, 0))
    return m.clamp(0, 1).reshape(*lead, *mask.shape[-2:])


@dataclass(frozen=True)
class FaceBox:
    """A face found in a photo: ``index`` (0 the largest), its box in photo pixels, its width in pixels."""

    index: int
    left: int
    top: int
    right: int
    bottom: int

    @property
    def size(self) -> int:
        return max(self.right - self.left, self.bottom - self.top)

    def __str__(self) -> str:
        return (f"face {self.index}: box {self.left},{self.top} to {self.right},{self.bottom} "
                f"({self.right - self.left}x{self.bottom - self.top} px)")


def face_boxes(faces: Sequence[Landmarks]) -> list[FaceBox]:
    """The boxes of faces (largest first, as the landmark parser ranks them) around their mesh points."""
    out = []
    for i, face in enumerate(faces):
        lo, hi = face.points[:, :2].min(0), face.points[:, :2].max(0)
        out.append(FaceBox(i, int(math.floor(lo[0])), int(math.floor(lo[1])), int(math.ceil(hi[0])),
                           int(math.ceil(hi[1]))))
    return out


def choose_face(faces: Sequence, index: int, name: str) -> int:
    """``index`` checked against the faces found in photo ``name``: one clear line when out of range."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InputError(f"face must be a whole number >= 0 (0 is the largest), got {index!r}")
    if not faces:
        raise InputError(f"{name}: no face found by the landmark parser; give a label map")
    if index >= len(faces):
        raise InputError(f"{name}: face {index} asked for, but {len(faces)} face(s) found "
                         f"(0 is the largest{f', up to {len(faces) - 1}' if len(faces) > 1 else ''})")
    return index


@dataclass
class AlignedFace:
    """One face of a photo, aligned and cropped at a model's size (:meth:`facestyle.Editor.align`).

    Give it to the Editor's methods wherever they take a photo: the edit runs on ``crop`` and the result
    is the whole photo at its own size, the edited regions pasted back (:meth:`paste`)."""

    photo: Tensor  # (3, H, W) float32 in [-1, 1]: the original photo
    crop: Tensor  # (3, S, S) float32 in [-1, 1]
    alignment: Alignment
    index: int = 0  # which face of the photo (0 the largest)
    name: str = "image"
    labels: Tensor | None = None  # (S, S) int64 class indices of the crop (parsed), or None
    box: FaceBox | None = None

    @property
    def photo_size(self) -> tuple[int, int]:
        return self.alignment.photo_size

    def crop_labels(self, labels: Tensor, name: str = "labels") -> Tensor:
        """A label map of this face -> (S, S) int64 in the crop's frame: one at the crop's size is taken as
        it is; one at the photo's size is aligned as the photo was."""
        shape = tuple(labels.shape[-2:])
        if shape == tuple(self.crop.shape[-2:]):
            return labels.to(torch.int64)
        if shape == self.photo_size:
            return self.alignment.crop_labels(labels)
        raise InputError(f"{name}: a label map of {shape[1]}x{shape[0]} for the aligned face of {self.name}: give "
                         f"it at the photo's size ({self.photo_size[1]}x{self.photo_size[0]}) or the crop's "
                         f"({self.crop.shape[-1]}x{self.crop.shape[-2]})")

    def crop_image(self, image: Tensor) -> Tensor:
        """(C, H, W) at the photo's size (strokes, masks) -> (C, S, S) in the crop's frame."""
        return self.alignment.crop(image.float())

    def paste(self, edited: Tensor, changed: Tensor) -> Tensor:
        """The photo with ``edited`` (3, s, s) pasted back where ``changed`` (s, s) bool (feathered)."""
        return self.alignment.paste(edited, self.photo.to(edited.device), feather(changed.to(edited.device)))
