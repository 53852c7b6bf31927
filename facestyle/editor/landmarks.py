"""The landmark parser: CelebAMask-HQ label maps from MediaPipe's face mesh, with no training and no download.

>>> from facestyle.editor.landmarks import LandmarkParser
>>> parser = LandmarkParser()                 # needs the photo extra: pip install 'facestyle[photo]'
>>> labels = parser.parse("me.jpg")           # (H, W) int64 class indices at the photo's size

It is not a trained network of this project: it runs two models that ship inside the ``mediapipe`` wheel
(version 0.10.21, the last whose legacy ``solutions`` carry their models), MediaPipe's face mesh
(``refine_landmarks=True``: 478 points with the irises) and its selfie segmentation (person against
background), and draws the classes from them by geometry and colour:

- **eyes, brows, lips, mouth, nose**: polygons of the mesh (the standard contours of
  ``FACEMESH_LEFT_EYE``, ``FACEMESH_LEFT_EYEBROW``, ``FACEMESH_LIPS`` ... as ordered index lists; the nose
  is the convex hull of the bridge, tip and wing points); the mouth is the inner lip contour, the upper
  and lower lips the bands between the inner and outer contours.
- **skin**: the face oval (``FACEMESH_FACE_OVAL``), less what the parts above cover and less hair over
  the forehead (below).
- **background**: what the selfie segmentation does not call a person (the face oval always counts as
  person).
- **hair, ears, neck, cloth**: the person pixels outside the face oval, told apart in the face's own frame
  (origin between the eyes, u along them, v down, unit the face width, so that a tilted head works) and
  by colour. Skin colour is a Gaussian fitted in YCrCb to the cheeks (the oval between the eyes and the
  mouth, parts left out); hair colour one fitted to the non-skin person pixels just above the forehead.
  Above the mouth, a person pixel is **hair** within an ellipse around the head or when hair-coloured,
  and an **ear** when it is skin-coloured (loosely: ears are shadowed) beside the cheek edges between
  the brows and the nose tip. Below the mouth, it is **neck** within the neck's width (a third of the
  face width either side) down to a fifth of the face width below the chin, and farther down when
  skin-coloured (CelebAMask-HQ marks bare chest and shoulders as neck); **hair** at the sides when
  hair-coloured (hair falling on the shoulders); **cloth** otherwise. Inside the oval, non-skin pixels
  of hair colour above the brows are hair (a fringe).

Eyeglasses, hats, earrings and necklaces are not drawn. The per-class accuracy on the hand-annotated
shared faces is in ``benchmarks/parsers.py`` and the README.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ..errors import InputError
from ..labels import CELEBAMASK_HQ, LabelSet, class_index_map, get_label_set
from .align import choose_face
from .inputs import Crop, ImageInput, crop_box, item_name, photo_tensor, split_batch

__all__ = ["LandmarkParser", "mediapipe_available", "INSTALL_HINT", "FaceLandmarks"]

INSTALL_HINT = "pip install 'facestyle[photo]'"

# Ordered contours of MediaPipe's 468-point mesh (the FACEMESH_* connection sets walked in order). "Left"
# and "right" are the person's: the mesh's left eye is on the image's right in an unmirrored photo.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191, 78)
LOWER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220,  # the points of FACEMESH_NOSE
        275, 278, 294, 326, 327, 344, 440)
RIGHT_IRIS, LEFT_IRIS = (468, 469, 470, 471, 472), (473, 474, 475, 476, 477)
CHIN, FOREHEAD, RIGHT_CHEEK_EDGE, LEFT_CHEEK_EDGE = 152, 10, 234, 454
NOSE_TIP, MOUTH_RIGHT, MOUTH_LEFT = 1, 61, 291

_lock = threading.Lock()  # MediaPipe graphs are not re-entrant


def mediapipe_available() -> bool:
    """Whether the ``mediapipe`` package (the photo extra) can be imported."""
    return importlib.util.find_spec("mediapipe") is not None


def _solutions():
    try:
        import mediapipe as mp  # slow (a second or more): imported on first use only
    except ImportError:
        raise InputError(f"the landmark face parser needs mediapipe: {INSTALL_HINT} (Python 3.12 or older), "
                         "or give label maps") from None
    solutions = getattr(mp, "solutions", None)
    if solutions is None or not hasattr(solutions, "face_mesh"):
        raise InputError(f"mediapipe {getattr(mp, '__version__', '?')} has no legacy solutions.face_mesh; "
                         f"install the pinned version: {INSTALL_HINT}")
    return solutions


# What MediaPipe's native code prints on stderr when its graphs start and run (TensorFlow Lite's delegate
# notice, absl's pre-initialisation warning, glog-format info and warning lines): not the user's business.
_NATIVE_NOISE = re.compile(r"^(INFO: |WARNING: All log messages before absl::InitializeLog|[IW]\d{4} )")


@contextlib.contextmanager
def _native_stderr_filtered():
    """Run MediaPipe with file descriptor 2 in a temporary file, then write back what is not its routine
    chatter (errors stay visible). Callers hold ``_lock``."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to speak of
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(keepends=True)
                    if line.strip() and not _NATIVE_NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))


class FaceLandmarks:
    """One face's 478 mesh points in pixels (x, y) of the photo it was found in."""

    def __init__(self, points: np.ndarray) -> None:
        self.points = np.asarray(points, dtype=np.float64)

    def polygon(self, indices: Sequence[int]) -> list[tuple[float, float]]:
        return [(float(x), float(y)) for x, y in self.points[list(indices)]]

    @property
    def area(self) -> float:
        """The face oval's area in pixels (faces are ranked by it)."""
        x, y = self.points[list(FACE_OVAL)].T
        return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)

    @property
    def width(self) -> float:
        """The face's width in pixels (cheek edge to cheek edge)."""
        return max(float(np.linalg.norm(self.points[LEFT_CHEEK_EDGE] - self.points[RIGHT_CHEEK_EDGE])), 1.0)

    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(the person's right eye, left eye) centres: the irises when refined, else the eye contours."""
        if len(self.points) >= 478:
            return self.points[list(RIGHT_IRIS)].mean(0), self.points[list(LEFT_IRIS)].mean(0)
        return self.points[list(RIGHT_EYE)].mean(0), self.points[list(LEFT_EYE)].mean(0)

    def mouth_corners(self) -> tuple[np.ndarray, np.ndarray]:
        """(the person's right, left) mouth corners."""
        return self.points[MOUTH_RIGHT], self.points[MOUTH_LEFT]

    def mouth_centre(self) -> np.ndarray:
        return self.points[[MOUTH_RIGHT, MOUTH_LEFT]].mean(0)


class LandmarkParser:
    """Face parsing by MediaPipe's face mesh and selfie segmentation (see the module's description).

    ``label_set``: the classes to write (CelebAMask-HQ by default; another set gets the classes it
    shares by name, the rest background). ``face``: which face when a photo has several, 0 the largest,
    then by size. Nothing is loaded until the first photo: MediaPipe is imported then.
    """

    kind = "landmarks"

    def __init__(self, label_set: str | LabelSet = "celebamask-hq", face: int = 0, max_faces: int = 5) -> None:
        self.label_set: LabelSet = get_label_set(label_set) if isinstance(label_set, str) else label_set
        self.face = int(face)
        self.max_faces = max(int(max_faces), self.face + 1)
        self.path = None  # no checkpoint (the FaceParser interface)
        self._mesh = self._segmenter = None
        self._to_set = torch.from_numpy(class_index_map(CELEBAMASK_HQ, self.label_set))

    def __repr__(self) -> str:
        return f"LandmarkParser(label_set={self.label_set.name!r}, face={self.face})"

    @staticmethod
    def available() -> bool:
        return mediapipe_available()

    def __call__(self, images: ImageInput, crop: Crop = "center") -> Tensor | list[Tensor]:
        return self.parse(images, crop=crop)

    def parse(self, images: ImageInput, crop: Crop = "center") -> Tensor | list[Tensor]:
        """Label maps, (H, W) int64 tensors at each photo's size: one for one photo, a list for a list.
        The face is found in the whole photo (``crop`` is accepted for the :class:`FaceParser` interface;
        a (left, top, size) box restricts the search to that square)."""
        items, form = split_batch(images, image=True)
        if not items:
            raise InputError("no photo given (an empty list)")
        crops = list(crop) if isinstance(crop, list) else [crop] * len(items)
        maps = []
        for i, (item, box) in enumerate(zip(items, crops)):
            name = item_name(item, "image", i, len(items))
            rgb = rgb_uint8(photo_tensor(item, name))
            maps.append(self.parse_array(rgb, name, box))
        return maps[0] if form == "single" else maps

    def parse_array(self, rgb: np.ndarray, name: str = "image", crop: Crop = "center") -> Tensor:
        """One (H, W, 3) uint8 RGB photo -> its (H, W) label map in this parser's label set."""
        h, w = rgb.shape[:2]
        if isinstance(crop, (tuple, list)):
            top, left, bh, bw = crop_box(h, w, crop)
            out = torch.zeros(h, w, dtype=torch.int64)
            out[top:top + bh, left:left + bw] = self.parse_array(np.ascontiguousarray(
                rgb[top:top + bh, left:left + bw]), name)
            return out
        return self.parse_face(rgb, self.face, name)[0]

    def parse_face(self, rgb: np.ndarray, face: int, name: str = "image") -> tuple[Tensor, list[FaceLandmarks]]:
        """Face ``face`` (0 the largest) of an (H, W, 3) uint8 photo: its (H, W) label map, and every face
        found, largest first. No face, or fewer than asked for, is one clear line naming the photo."""
        faces, person = self.detect(rgb)
        return self.labels_of(rgb, faces[choose_face(faces, face, name)], person), faces

    def labels_of(self, rgb: np.ndarray, face: FaceLandmarks, person: np.ndarray) -> Tensor:
        """The (H, W) label map in this parser's label set of a face already found (:meth:`detect`): its mesh
        points and the person probability in the frame of ``rgb`` (an aligned crop, for instance)."""
        return self._to_set[torch.from_numpy(draw_labels(rgb, face, person).astype(np.int64))]

    def detect(self, rgb: np.ndarray) -> tuple[list[FaceLandmarks], np.ndarray]:
        """The faces of an (H, W, 3) uint8 photo, largest first, and its person probability (H, W)."""
        with _lock, _native_stderr_filtered():
            if self._mesh is None:
                solutions = _solutions()
                self._mesh = solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=self.max_faces,
                                                          refine_landmarks=True, min_detection_confidence=0.5)
                self._segmenter = solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
            rgb = np.ascontiguousarray(rgb)
            found = self._mesh.process(rgb).multi_face_landmarks or []
            mask = self._segmenter.process(rgb).segmentation_mask
        h, w = rgb.shape[:2]
        faces = [FaceLandmarks(np.array([(p.x * w, p.y * h) for p in face.landmark])) for face in found]
        faces.sort(key=lambda f: -f.area)
        person = np.ones((h, w), np.float32) if mask is None else np.asarray(mask, np.float32)
        return faces, person

    def close(self) -> None:
        with _lock:
            for graph in (self._mesh, self._segmenter):
                if graph is not None:
                    graph.close()
            self._mesh = self._segmenter = None


def rgb_uint8(photo: Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8 on the CPU: what MediaPipe takes."""
    return ((photo.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


# -------------------------------------------------------------------------------------------- drawing

C = {name: i for i, name in enumerate(CELEBAMASK_HQ.classes)}


def _fill(shape: tuple[int, int], polygon: Sequence[tuple[float, float]], outline: int = 0) -> np.ndarray:
    """A boolean mask of a polygon, rasterised at pixel centres (with its outline ``outline`` pixels wide)."""
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    xy = [(x - 0.5, y - 0.5) for x, y in polygon]
    draw = ImageDraw.Draw(canvas)
    draw.polygon(xy, fill=1)
    if outline:
        draw.line([*xy, xy[0]], fill=1, width=outline, joint="curve")
    return np.asarray(canvas, dtype=bool)


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    """The convex hull of (N, 2) points (monotone chain), counter-clockwise."""
    pts = sorted(map(tuple, points.tolist()))

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return lower[:-1] + upper[:-1]


def _ycrcb(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([y, (r - y) * 0.713 + 128, (b - y) * 0.564 + 128], -1)


class _Colour:
    """A Gaussian colour model in YCrCb; ``distance`` is the squared Mahalanobis distance."""

    def __init__(self, samples: np.ndarray, floor: Sequence[float]) -> None:
        self.ok = len(samples) >= 20
        if not self.ok:
            return
        self.mean = samples.mean(0)
        cov = np.cov(samples.T) + np.diag(np.square(floor))
        self.inv = np.linalg.inv(cov)

    def distance(self, pixels: np.ndarray) -> np.ndarray:
        if not self.ok:
            return np.full(pixels.shape[:-1], np.inf)
        d = pixels - self.mean
        return np.einsum("...i,ij,...j->...", d, self.inv, d)


SKIN_DISTANCE = 9.0  # squared Mahalanobis distance under which a pixel is skin-coloured (chi2, 3 dof: ~97%)
HAIR_DISTANCE = 9.0
SKIN_LOOSE = 30.0


def draw_labels(rgb: np.ndarray, face: FaceLandmarks, person: np.ndarray) -> np.ndarray:
    """The CelebAMask-HQ label map (H, W) uint8 of one face from its mesh points and the person mask."""
    shape = rgb.shape[:2]
    h, w = shape
    pts = face.points
    oval = _fill(shape, face.polygon(FACE_OVAL))
    parts = {
        "nose": _fill(shape, _hull(pts[list(NOSE)])),
        "r_brow": _fill(shape, face.polygon(RIGHT_BROW)), "l_brow": _fill(shape, face.polygon(LEFT_BROW)),
        "r_eye": _fill(shape, face.polygon(RIGHT_EYE)), "l_eye": _fill(shape, face.polygon(LEFT_EYE)),
        "u_lip": _fill(shape, face.polygon(UPPER_LIP)), "l_lip": _fill(shape, face.polygon(LOWER_LIP)),
        "mouth": _fill(shape, face.polygon(LIPS_INNER)),
    }
    covered = np.logical_or.reduce(list(parts.values()))

    # the face's frame: origin between the eyes, u along them (person's right -> left), v down, unit: face width
    right_eye, left_eye = face.eye_centres()
    origin = (right_eye + left_eye) / 2
    across = left_eye - right_eye  # u > 0 is the person's left
    across = across / max(np.linalg.norm(across), 1e-6)
    down = np.array([-across[1], across[0]])
    width = face.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rel = np.stack([xx - origin[0], yy - origin[1]], -1)
    u, v = rel @ across / width, rel @ down / width

    def frame(i: int) -> tuple[float, float]:
        d = pts[i] - origin
        return float(d @ across / width), float(d @ down / width)

    chin_v = frame(CHIN)[1]
    brow_v = min(frame(i)[1] for i in (*RIGHT_BROW, *LEFT_BROW))
    nose_v = frame(NOSE_TIP)[1]
    mouth_v = frame(MOUTH_RIGHT)[1]
    top_v = frame(FOREHEAD)[1]
    edge_u = sorted((frame(RIGHT_CHEEK_EDGE)[0], frame(LEFT_CHEEK_EDGE)[0]))

    colour = _ycrcb(rgb)
    cheeks = oval & ~covered & (v > 0.12) & (v < mouth_v) & (np.abs(u) < 0.35)
    skin_distance = _Colour(colour[cheeks], floor=(12.0, 3.0, 3.0)).distance(colour)
    skin_like = skin_distance < SKIN_DISTANCE
    skin_ish = skin_distance < SKIN_LOOSE  # shadowed skin: the neck under the jaw, the ears

    fg = (person > 0.5) | oval
    outside = fg & ~oval
    above_head = outside & (v < top_v + 0.05) & (v > top_v - 0.45) & (np.abs(u) < 0.45) & ~skin_like
    hair_like = _Colour(colour[above_head], floor=(8.0, 2.0, 2.0)).distance(colour) < HAIR_DISTANCE

    labels = np.zeros(shape, np.uint8)
    labels[oval] = C["skin"]
    labels[oval & (v < brow_v) & hair_like & ~skin_like] = C["hair"]  # a fringe

    # above the jaw: ears beside the face, hair around the head (farther out only when hair-coloured)
    centre_v, half_v = (top_v + chin_v) / 2, (chin_v - top_v) / 2 + 0.35
    head = np.square(u / 0.8) + np.square((v - centre_v) / half_v) < 1
    upper = outside & (v <= mouth_v)
    labels[upper & (head | hair_like)] = C["hair"]
    beside = ((u < edge_u[0] + 0.05) & (u > edge_u[0] - 0.2)) | ((u > edge_u[1] - 0.05) & (u < edge_u[1] + 0.2))
    ears = outside & beside & (v > brow_v) & (v < nose_v + 0.12) & skin_ish & ~(hair_like & ~skin_like)
    labels[ears & (u < 0)] = C["r_ear"]
    labels[ears & (u >= 0)] = C["l_ear"]

    # below the jaw: the neck within its width (shadowed skin too), cloth below it, hair falling at the sides
    lower = outside & (v > mouth_v)
    band = np.abs(u) < 0.33
    throat = lower & band & (v < chin_v + 0.2)
    labels[throat] = C["neck"]
    labels[throat & hair_like & ~skin_ish] = C["hair"]
    rest = lower & ~throat
    labels[rest] = C["cloth"]
    labels[rest & skin_ish & (band | skin_like)] = C["neck"]  # the neck on down, and bare shoulders and chest
    labels[rest & ~band & hair_like & ~skin_ish & (v < chin_v + 0.8)] = C["hair"]

    for name, mask in parts.items():
        labels[mask] = C[name]
    return labels
