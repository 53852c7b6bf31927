"""Procedural synthetic faces with CelebAMask-HQ labels and a known appearance per region.

A face is :class:`FaceParams`: a :class:`Geometry` (shapes, in resolution-free normalised coordinates),
an :class:`Appearance` (per class: albedo, accent colour, texture) and an :class:`Illumination`. Rendering
paints the label map from the geometry, then colours every pixel from its class's appearance, a
geometry-given shading, and the global illumination::

    image = clip(lerp(albedo, accent, accent_mix * a) * (1 + contrast * texture) * shading * light, 0, 1)

A pixel's colour depends only on its own class's appearance, so ``render(A, albedo_from=B,
regions=...)`` is the exact ground truth of transferring those regions' style from B onto A.

Coordinates: x to the right, y down, the image spans [-1, 1] both ways and pixels are sampled at their
centres, so one face renders alike at every resolution. Left/right follow CelebAMask-HQ: ``l_eye``,
``l_brow`` and ``l_ear`` are the person's left, which is on the image's right (x > 0).
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..labels import CELEBAMASK_HQ
from .transforms import PairTransform

NUM_CLASSES = CELEBAMASK_HQ.num_classes
(BACKGROUND, SKIN, NOSE, EYE_G, L_EYE, R_EYE, L_BROW, R_BROW, L_EAR, R_EAR, MOUTH, U_LIP, L_LIP, HAIR, HAT,
 EAR_R, NECK_L, NECK, CLOTH) = range(NUM_CLASSES)
SKIN_CLASSES = (SKIN, NOSE)
NOISE_GRID = 8  # value-noise lattice per class (tiles every NOISE_GRID cells)

# Classes whose accent colour is placed by the geometry (blush, lens, iris, teeth), not by the texture.
_GEOMETRIC_ACCENT = np.zeros(NUM_CLASSES, dtype=bool)
_GEOMETRIC_ACCENT[[SKIN, NOSE, EYE_G, L_EYE, R_EYE, MOUTH]] = True
# Classes textured in the head's own frame (they turn with the head); hair uses polar coordinates.
_HEAD_FRAME = np.zeros(NUM_CLASSES, dtype=bool)
_HEAD_FRAME[[SKIN, NOSE, EYE_G, L_EYE, R_EYE, L_BROW, R_BROW, L_EAR, R_EAR, MOUTH, U_LIP, L_LIP, HAT, EAR_R]] = True


@dataclass(frozen=True)
class Geometry:
    """Shapes of one face. Head parts live in the head frame: origin at the face-oval centre, u to the
    image's right, v down, turned by ``tilt``; lengths are in units of half the image width."""

    center: tuple[float, float]  # face-oval centre in the image (x, y)
    face: tuple[float, float]  # face-oval half-width a, half-height b
    jaw: float  # narrowing of the lower face towards the chin, 0..1
    tilt: float  # head roll, radians (positive turns the head clockwise on screen)
    eye_y: float
    eye_dx: float  # half the distance between the eye centres
    eye_size: tuple[float, float]  # half-width, upper-lid height
    eye_slant: float  # lift of the outer corners
    gaze: float  # iris offset along u, in eye half-widths
    brow_gap: float  # eye centre to brow centre line
    brow_length: float  # half-length
    brow_thickness: float
    brow_arch: float
    nose_y: float  # bottom of the nose
    nose_width: float  # half-width at the nostrils
    mouth_y: float  # the line between the lips
    mouth_width: float  # half-width
    lips: tuple[float, float]  # upper, lower lip thickness
    mouth_open: float  # height of the opening (0: closed, no mouth class)
    smile: float  # lift of the mouth corners
    ear_y: float
    ear_size: tuple[float, float]
    ears_visible: bool
    hair_volume: float  # how far the hair stands beyond the skull
    hair_length: float  # v where the hair ends (beyond the chin: long hair)
    hairline: float  # v of the forehead's hairline at its centre
    fringe: float  # v of the fringe's lower edge; 0: no fringe
    parting: float  # u of the crown
    neck_width: float  # half-width
    shoulder_y: float  # image y of the top of the shoulders
    shoulder_width: float  # half-width
    neckline: tuple[float, float]  # half-width, depth of the collar opening
    neckline_v: bool  # V-neck, else round
    glasses: bool
    sunglasses: bool  # opaque tinted lenses (labelled eye_g, eyes hidden)
    lens_size: tuple[float, float]
    lens_squareness: float  # superellipse exponent of the lenses (2: ellipse)
    frame_width: float
    earrings: bool
    earring_size: float
    earring_hoop: bool
    hat: bool
    hat_bottom: float  # v of the hat's lower edge
    hat_brim: float  # 0: no brim, else brim half-width
    necklace: bool
    necklace_y: float  # image y of the necklace's ends
    necklace_droop: float


@dataclass(frozen=True, eq=False)
class Appearance:
    """Per-class appearance; every array has the classes (R) first."""

    albedo: np.ndarray  # (R, 3) base colour in [0, 1]
    accent: np.ndarray  # (R, 3) second colour: blush, lens tint, iris, teeth, highlights, patterns
    accent_mix: np.ndarray  # (R,) how far the accent replaces the albedo where the accent weight is 1
    contrast: np.ndarray  # (R,) brightness modulation by the texture
    noise: np.ndarray  # (R, G, G) value-noise lattice (smooth noise, tiled)
    noise_scale: np.ndarray  # (R,) lattice cells per unit
    stripes: np.ndarray  # (R,) weight of stripes against plain noise, 0..1
    stripe_freq: np.ndarray  # (R,) stripes per unit
    stripe_angle: np.ndarray  # (R,) direction of the stripes' wave vector, radians

    def replace(self, other: Appearance, classes: list[int] | tuple[int, ...] | np.ndarray | None) -> Appearance:
        """This appearance with ``classes`` (all when None) taken from ``other``."""
        take = np.ones(NUM_CLASSES, dtype=bool)
        if classes is not None:
            take = np.zeros(NUM_CLASSES, dtype=bool)
            take[np.asarray(classes, dtype=np.int64)] = True
        fields = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            fields[f.name] = np.where(take.reshape(-1, *([1] * (mine.ndim - 1))), theirs, mine)
        return Appearance(**fields)


@dataclass(frozen=True)
class Illumination:
    """Light on the whole image: ``intensity * gains[c] * (1 + strength * (x cos(angle) + y sin(angle)))``."""

    intensity: float
    gains: tuple[float, float, float]  # colour cast (RGB)
    gradient_angle: float  # radians; the light comes from this direction (0: from the right)
    gradient_strength: float


@dataclass(frozen=True, eq=False)
class FaceParams:
    """Everything that defines one synthetic face."""

    seed: int
    index: int
    geometry: Geometry
    appearance: Appearance
    illumination: Illumination


# ---------------------------------------------------------------------------------------------- sampling

def sample_face(seed: int, index: int) -> FaceParams:
    """The face number ``index`` of stream ``seed``; the same pair always gives the same face."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed}, {index}")
    geo_seq, app_seq, light_seq = np.random.SeedSequence([seed, index]).spawn(3)
    return FaceParams(seed=seed, index=index,
                      geometry=sample_geometry(np.random.default_rng(geo_seq)),
                      appearance=sample_appearance(np.random.default_rng(app_seq)),
                      illumination=sample_illumination(np.random.default_rng(light_seq)))


def sample_geometry(rng: np.random.Generator) -> Geometry:
    """Random face shapes, in ranges measured on aligned CelebA-HQ label maps."""
    u = rng.uniform
    a = u(0.47, 0.58)
    b = a * u(1.45, 1.65)
    eye_y = -b * u(0.08, 0.17)
    eye_w = a * u(0.15, 0.19)
    nose_y = b * u(0.3, 0.4)
    mouth_y = nose_y + u(0.12, 0.18)
    style = rng.choice(3, p=[0.3, 0.3, 0.4])  # short, medium, long
    hair_length = (u(-0.1, 0.15), u(0.4, 0.75), u(0.95, 2.0))[style] * b
    ears_visible = bool(style == 0 or rng.random() < (0.6, 0.3)[style - 1])
    brow_gap = u(0.1, 0.15)
    fringe = eye_y - brow_gap - u(0.05, 0.12) if rng.random() < 0.3 else 0.0
    neck_width = a * u(0.5, 0.62)
    glasses = bool(rng.random() < 0.15)
    hat = bool(rng.random() < 0.07)
    return Geometry(
        center=(u(-0.05, 0.05), u(-0.02, 0.1)), face=(a, b), jaw=u(0.15, 0.4),
        tilt=float(np.clip(rng.normal(0.0, 0.06), -0.15, 0.15)),
        eye_y=eye_y, eye_dx=a * u(0.42, 0.5), eye_size=(eye_w, u(0.026, 0.04)), eye_slant=u(-0.1, 0.3),
        gaze=u(-0.25, 0.25),
        brow_gap=brow_gap, brow_length=eye_w * u(1.5, 1.9), brow_thickness=u(0.03, 0.05),
        brow_arch=u(0.01, 0.035),
        nose_y=nose_y, nose_width=a * u(0.22, 0.3),
        mouth_y=mouth_y, mouth_width=a * u(0.36, 0.46), lips=(u(0.03, 0.05), u(0.05, 0.085)),
        mouth_open=u(0.02, 0.07) if rng.random() < 0.4 else 0.0, smile=u(-0.005, 0.035),
        ear_y=(eye_y + nose_y) / 2 + u(-0.03, 0.03), ear_size=(u(0.065, 0.09), u(0.14, 0.19)),
        ears_visible=ears_visible,
        hair_volume=(u(0.03, 0.1), u(0.06, 0.18), u(0.08, 0.25))[style], hair_length=hair_length,
        hairline=-b * u(0.78, 0.92), fringe=fringe, parting=a * u(-0.4, 0.4),
        neck_width=neck_width, shoulder_y=u(0.62, 0.88), shoulder_width=u(0.9, 1.3),
        neckline=(neck_width * u(0.9, 1.7), u(0.04, 0.25)), neckline_v=bool(rng.random() < 0.35),
        glasses=glasses, sunglasses=glasses and bool(rng.random() < 0.25),
        lens_size=(eye_w * u(1.45, 1.7), u(0.07, 0.1)), lens_squareness=u(2.0, 5.0), frame_width=u(0.014, 0.026),
        earrings=ears_visible and bool(rng.random() < 0.2), earring_size=u(0.02, 0.04),
        earring_hoop=bool(rng.random() < 0.5),
        hat=hat, hat_bottom=-b * u(0.55, 0.75), hat_brim=a * u(1.2, 1.5) if rng.random() < 0.5 else 0.0,
        necklace=bool(rng.random() < 0.12), necklace_y=u(0.72, 0.9), necklace_droop=u(0.04, 0.12),
    )


_SKIN_TONES = np.array([[0.97, 0.86, 0.78], [0.93, 0.76, 0.64], [0.84, 0.63, 0.49], [0.70, 0.49, 0.34],
                        [0.52, 0.35, 0.24], [0.36, 0.24, 0.17]])
_HAIR = {  # colour, probability
    "black": ((0.07, 0.06, 0.06), 0.22), "dark brown": ((0.2, 0.13, 0.08), 0.22),
    "brown": ((0.38, 0.25, 0.15), 0.15), "light brown": ((0.55, 0.4, 0.26), 0.1),
    "blond": ((0.86, 0.73, 0.48), 0.12), "red": ((0.6, 0.26, 0.12), 0.06), "grey": ((0.6, 0.6, 0.6), 0.05),
    "white": ((0.88, 0.87, 0.84), 0.02), "dyed": (None, 0.06),
}
_IRIS = np.array([[0.33, 0.2, 0.1], [0.14, 0.09, 0.06], [0.3, 0.46, 0.66], [0.3, 0.45, 0.3], [0.45, 0.36, 0.2],
                  [0.5, 0.52, 0.55]])
_LIPSTICK = np.array([[0.72, 0.08, 0.12], [0.86, 0.42, 0.56], [0.5, 0.1, 0.26], [0.76, 0.5, 0.42],
                      [0.34, 0.07, 0.1], [0.9, 0.42, 0.3]])
_METALS = np.array([[0.83, 0.67, 0.3], [0.78, 0.78, 0.8], [0.93, 0.91, 0.86], [0.75, 0.15, 0.2],
                    [0.2, 0.4, 0.75]])
_FRAMES = np.array([[0.05, 0.05, 0.05], [0.3, 0.18, 0.1], [0.8, 0.65, 0.3], [0.75, 0.75, 0.78], [0.6, 0.1, 0.1],
                    [0.15, 0.25, 0.5]])
_LENSES = np.array([[0.07, 0.07, 0.09], [0.25, 0.15, 0.08], [0.12, 0.2, 0.3]])


def _hsv(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val)))


def _pick(rng: np.random.Generator, table: np.ndarray) -> np.ndarray:
    return table[rng.integers(len(table))]


def _vary(rgb: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Jitter brightness and each channel a little."""
    return np.clip(rgb * rng.uniform(1 - amount, 1 + amount) * rng.uniform(1 - amount / 2, 1 + amount / 2, 3),
                   0.0, 1.0)


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Random per-class colours and textures in plausible ranges."""
    R, u = NUM_CLASSES, rng.uniform
    albedo = np.zeros((R, 3))
    accent = np.zeros((R, 3))
    mix = np.zeros(R)
    contrast = u(0.03, 0.08, R)
    noise_scale = u(3.0, 6.0, R)
    stripes = np.zeros(R)
    stripe_freq = u(20.0, 40.0, R)
    stripe_angle = u(0.0, math.pi, R)

    # skin family: skin, nose, ears, neck share a tone
    t = u(0, len(_SKIN_TONES) - 1)
    i = min(int(t), len(_SKIN_TONES) - 2)
    tone = _vary(_SKIN_TONES[i] + (t - i) * (_SKIN_TONES[i + 1] - _SKIN_TONES[i]), rng, 0.05)
    albedo[SKIN] = tone
    albedo[NOSE] = _vary(tone * (1.0, 0.97, 0.96), rng, 0.02)
    albedo[[L_EAR, R_EAR]] = _vary(tone * (1.01, 0.95, 0.94), rng, 0.03)
    albedo[NECK] = _vary(tone * u(0.86, 0.97), rng, 0.03)
    blush = np.clip(tone * (1.08, 0.72, 0.72), 0, 1)
    accent[[SKIN, NOSE, L_EAR, R_EAR, NECK]] = blush
    mix[[SKIN, NOSE]] = u(0.0, 0.45)
    contrast[[SKIN, NOSE, L_EAR, R_EAR, NECK]] = u(0.02, 0.06)

    # hair and brows
    names = list(_HAIR)
    kind = names[rng.choice(len(names), p=[_HAIR[n][1] for n in names])]
    hair = _hsv(rng, (0.5, 0.9), (0.35, 0.8)) if kind == "dyed" else _vary(np.array(_HAIR[kind][0]), rng, 0.12)
    albedo[HAIR] = hair
    accent[HAIR] = (_hsv(rng, (0.4, 0.9), (0.4, 0.9)) if kind == "dyed" and rng.random() < 0.5
                    else np.clip(hair * u(1.3, 1.9) + 0.04, 0, 1))
    mix[HAIR] = u(0.15, 0.5)
    contrast[HAIR] = u(0.1, 0.25)
    stripes[HAIR] = u(0.6, 0.9)
    stripe_freq[HAIR] = u(12.0, 30.0)
    stripe_angle[HAIR] = u(-0.15, 0.15)  # across the strands of the polar frame
    brow = _vary(np.array(_HAIR["dark brown"][0]), rng, 0.2) if kind == "dyed" else hair * u(0.5, 0.85)
    albedo[[L_BROW, R_BROW]] = brow
    accent[[L_BROW, R_BROW]] = np.clip(brow * 1.5, 0, 1)
    mix[[L_BROW, R_BROW]] = 0.3
    contrast[[L_BROW, R_BROW]] = u(0.1, 0.2)
    stripes[[L_BROW, R_BROW]] = 0.6
    stripe_freq[[L_BROW, R_BROW]] = u(40.0, 70.0)
    stripe_angle[[L_BROW, R_BROW]] = u(-0.3, 0.3)

    # eyes: sclera albedo, iris accent
    albedo[[L_EYE, R_EYE]] = np.array([0.93, 0.9, 0.88]) * u(0.8, 1.0)
    accent[[L_EYE, R_EYE]] = _vary(_pick(rng, _IRIS), rng, 0.1)
    mix[[L_EYE, R_EYE]] = 1.0

    # lips and mouth (teeth are the mouth's accent)
    lip = _vary(_pick(rng, _LIPSTICK), rng, 0.08) if rng.random() < 0.25 else np.clip(
        tone * u(0.7, 0.85) * (1.25, 0.72, 0.76), 0, 1)
    albedo[U_LIP] = lip * u(0.88, 1.0)
    albedo[L_LIP] = np.clip(lip * u(0.98, 1.08), 0, 1)
    accent[[U_LIP, L_LIP]] = np.clip(lip * 1.25, 0, 1)
    mix[[U_LIP, L_LIP]] = u(0.1, 0.3)
    stripes[[U_LIP, L_LIP]] = 0.4
    stripe_freq[[U_LIP, L_LIP]] = u(50.0, 80.0)
    stripe_angle[[U_LIP, L_LIP]] = 0.0
    albedo[MOUTH] = _vary(np.array([0.32, 0.08, 0.08]), rng, 0.2)
    accent[MOUTH] = np.array([0.93, 0.9, 0.82]) * u(0.8, 1.0)
    mix[MOUTH] = 1.0

    # accessories
    albedo[EYE_G] = _vary(_pick(rng, _FRAMES), rng, 0.1)
    accent[EYE_G] = _pick(rng, _LENSES)
    mix[EYE_G] = 1.0
    for cls in (EAR_R, NECK_L):
        albedo[cls] = _vary(_pick(rng, _METALS), rng, 0.05)
        accent[cls] = np.clip(albedo[cls] * 1.4, 0, 1)
        mix[cls] = 0.5
        contrast[cls] = 0.2
    albedo[HAT] = _hsv(rng, (0.0, 0.9), (0.15, 0.9))
    accent[HAT] = _hsv(rng, (0.0, 0.9), (0.15, 0.9))
    mix[HAT] = u(0.0, 0.8) if rng.random() < 0.4 else 0.0
    stripes[HAT] = u(0.5, 1.0)
    stripe_freq[HAT] = u(6.0, 20.0)

    # clothes and background
    albedo[CLOTH] = _hsv(rng, (0.0, 0.8), (0.08, 0.95))
    accent[CLOTH] = _hsv(rng, (0.0, 0.8), (0.08, 0.95))
    patterned = rng.random() < 0.35
    mix[CLOTH] = u(0.5, 1.0) if patterned else 0.0
    stripes[CLOTH] = u(0.7, 1.0) if patterned else 0.0
    stripe_freq[CLOTH] = u(4.0, 14.0)
    contrast[CLOTH] = u(0.05, 0.2)
    noise_scale[CLOTH] = u(1.5, 4.0)
    albedo[BACKGROUND] = _hsv(rng, (0.0, 0.5), (0.12, 0.97))
    accent[BACKGROUND] = _hsv(rng, (0.0, 0.5), (0.12, 0.97))
    mix[BACKGROUND] = u(0.0, 0.5)
    contrast[BACKGROUND] = u(0.03, 0.15)
    noise_scale[BACKGROUND] = u(0.8, 2.0)

    return Appearance(albedo=albedo, accent=accent, accent_mix=mix, contrast=contrast,
                      noise=rng.standard_normal((R, NOISE_GRID, NOISE_GRID)), noise_scale=noise_scale,
                      stripes=stripes, stripe_freq=stripe_freq, stripe_angle=stripe_angle)


def sample_illumination(rng: np.random.Generator) -> Illumination:
    """Random light: intensity 0.6..1.25, a warm/cool and green/magenta cast, a linear gradient."""
    temperature = rng.uniform(-1.0, 1.0)
    tint = rng.uniform(-0.04, 0.04)
    return Illumination(intensity=rng.uniform(0.6, 1.25),
                        gains=(1.0 + 0.12 * temperature, 1.0 + tint, 1.0 - 0.12 * temperature),
                        gradient_angle=rng.uniform(0.0, 2 * math.pi), gradient_strength=rng.uniform(0.0, 0.35))


# ---------------------------------------------------------------------------------------------- painting

@lru_cache(maxsize=8)
def _axis(resolution: int) -> np.ndarray:
    """Pixel-centre coordinates along one axis."""
    return ((np.arange(resolution) + 0.5) / resolution * 2.0 - 1.0).astype(np.float32)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


Window = tuple[slice, slice]


class _Canvas:
    """Label map, shading and geometric accent weight, painted shape by shape (later shapes on top).

    Shapes are evaluated only inside their bounding window, in image (x, y) or head (u, v) coordinates.
    """

    def __init__(self, g: Geometry, resolution: int):
        self.resolution = resolution
        c = _axis(resolution)
        self.x, self.y = np.broadcast_to(c[None, :], (resolution,) * 2), np.broadcast_to(c[:, None], (resolution,) * 2)
        self.cx, self.cy = g.center
        self.cos, self.sin = math.cos(g.tilt), math.sin(g.tilt)
        dx, dy = self.x - self.cx, self.y - self.cy
        self.u = dx * self.cos + dy * self.sin
        self.v = dy * self.cos - dx * self.sin
        self.labels = np.zeros((resolution,) * 2, dtype=np.int64)
        self.shade = np.ones((resolution,) * 2, dtype=np.float32)
        self.accent = np.zeros((resolution,) * 2, dtype=np.float32)

    def _span(self, lo: float, hi: float) -> slice:
        r = self.resolution
        i0 = math.floor((lo + 1) / 2 * r - 0.5) - 1
        i1 = math.ceil((hi + 1) / 2 * r - 0.5) + 2
        return slice(min(max(i0, 0), r), min(max(i1, 0), r))

    def window(self, x0: float, x1: float, y0: float, y1: float) -> Window:
        """Pixels of the image box [x0, x1] x [y0, y1] (with a pixel of margin)."""
        return self._span(y0, y1), self._span(x0, x1)

    def head_window(self, u0: float, u1: float, v0: float, v1: float) -> Window:
        """Pixels of the head-frame box [u0, u1] x [v0, v1], turned into the image."""
        us, vs = np.array([u0, u1, u0, u1]), np.array([v0, v0, v1, v1])
        xs = self.cx + us * self.cos - vs * self.sin
        ys = self.cy + us * self.sin + vs * self.cos
        return self.window(xs.min(), xs.max(), ys.min(), ys.max())

    def paint(self, w: Window, mask: np.ndarray, cls: int, shade: float | np.ndarray = 1.0,
              accent: float | np.ndarray = 0.0) -> None:
        np.copyto(self.labels[w], cls, where=mask)
        np.copyto(self.shade[w], shade, where=mask)
        np.copyto(self.accent[w], accent, where=mask)


FULL: Window = (slice(None), slice(None))


def _paint(g: Geometry, resolution: int) -> _Canvas:
    """Paint the label map, shading and accent weights of a face's geometry."""
    cv = _Canvas(g, resolution)
    x, y, u, v = cv.x, cv.y, cv.u, cv.v
    a, b = g.face
    sin_t = cv.sin

    # hair behind the head: skull cap and a curtain down to hair_length
    vol = g.hair_volume
    top = -0.18 * b
    skull = (u / (a + vol)) ** 2 + ((v - top) / (b * 0.92 + vol)) ** 2 <= 1
    span = max(g.hair_length - top, 1e-3)
    curtain_w = (a + vol) * (1 + 0.12 * np.clip(v / b, 0, None))
    cu2, cv2 = (u / curtain_w) ** 2, ((v - top) / span) ** 2
    curtain = (cu2 * cu2 + cv2 * cv2 <= 1) & (v >= top)
    cv.paint(FULL, skull | curtain, HAIR, shade=0.8)

    # neck (with the chest inside the collar), clothes, long hair in front of the shoulders
    neck_cx = cv.cx - sin_t * b * 0.7
    dx = x - neck_cx
    adx = np.abs(dx)
    neck_w = g.neck_width * (1 + 0.3 * np.clip((y - (cv.cy + b)) / 0.4, 0, 1))
    column = (adx < neck_w) & (y > cv.cy)
    sh_ry = 0.35
    body = ((dx / g.shoulder_width) ** 2 + ((y - g.shoulder_y - sh_ry) / sh_ry) ** 2 <= 1) | (
        (y > g.shoulder_y + sh_ry) & (adx < g.shoulder_width))
    cw, depth = g.neckline
    q = np.clip(adx / cw, 0, 1)
    opening = (adx < cw) & (y < g.shoulder_y + depth * ((1 - q) if g.neckline_v else (1 - q * q)))
    chin_shadow = (u / a) ** 2 + ((v - 0.08) / b) ** 2 <= 1
    neck_shade = (0.8 + 0.2 * np.sqrt(np.clip(1 - (dx / neck_w) ** 2, 0, 1))) * np.where(chin_shadow, 0.72, 1.0)
    cv.paint(FULL, column | (body & opening), NECK, shade=neck_shade)
    cv.paint(FULL, body & ~opening, CLOTH, shade=0.85 + 0.15 * np.clip((y - g.shoulder_y) / 0.3, 0, 1))
    if g.hair_length > 0.9 * b:
        cv.paint(FULL, curtain & ~column & (v > 0.3 * b), HAIR, shade=0.95)
    if g.necklace:
        w = cv.window(-1, 1, g.necklace_y - 0.02, g.necklace_y + g.necklace_droop + 0.02)
        ndx = np.clip(dx[w] / (neck_w[w] * 1.3), -1, 1)
        chain = np.abs(y[w] - (g.necklace_y + g.necklace_droop * (1 - ndx ** 2))) < 0.014
        cv.paint(w, chain & (cv.labels[w] == NECK), NECK_L, shade=0.9 + 0.2 * (ndx * 0.5 + 0.5))

    # face oval (its width at ear height places the ears)
    def taper(vv: np.ndarray | float) -> np.ndarray | float:
        return 1 - g.jaw * np.clip(vv / b, 0, 1)

    # ears and earrings
    if g.ears_visible:
        erx, ery = g.ear_size
        ear_u = a * math.sqrt(max(1 - (g.ear_y / b) ** 2, 0.0)) * taper(g.ear_y) + erx * 0.5
        for side, cls in ((1, L_EAR), (-1, R_EAR)):
            w = cv.head_window(side * ear_u - erx, side * ear_u + erx, g.ear_y - ery, g.ear_y + ery)
            eu, ev = u[w] - side * ear_u, v[w] - g.ear_y
            ear = (eu / erx) ** 2 + (ev / ery) ** 2 <= 1
            inner = ((eu - side * erx * 0.15) / (erx * 0.45)) ** 2 + (ev / (ery * 0.6)) ** 2 <= 1
            cv.paint(w, ear, cls, shade=np.where(inner, 0.75, 0.92))
            if g.earrings:
                r = g.earring_size
                eu0, ev0 = side * (ear_u - erx * 0.2), g.ear_y + ery * 0.85 + r
                w = cv.head_window(eu0 - r, eu0 + r, ev0 - r, ev0 + r)
                d = np.hypot(u[w] - eu0, v[w] - ev0)
                ring = (d <= r) & (d >= 0.55 * r) if g.earring_hoop else d <= r * 0.7
                cv.paint(w, ring, EAR_R, shade=1.1 - 0.3 * d / r)

    # face oval, shaded like a sphere, with blush (the skin's accent) on the cheeks
    fw = cv.head_window(-a, a, -b, b)
    fu, fv = u[fw], v[fw]
    rho2 = (fu / (a * taper(fv))) ** 2 + (fv / b) ** 2
    face = rho2 <= 1
    cheek_v = (g.eye_y + g.mouth_y) / 2

    def cheeks(uu: np.ndarray, vv: np.ndarray) -> np.ndarray:
        return np.exp(-((np.abs(uu) - g.eye_dx) ** 2 + (vv - cheek_v) ** 2) / 0.1 ** 2)

    cv.paint(fw, face, SKIN, shade=0.8 + 0.2 * np.sqrt(np.clip(1 - rho2, 0, 1)), accent=cheeks(fu, fv))

    # nose: a bridge widening towards a rounded tip, darker nostrils
    nw, hb = g.nose_width, 0.05
    n_top, n_mid = g.eye_y + 0.01, g.nose_y - hb
    w = cv.head_window(-nw, nw, n_top, g.nose_y)
    nu, nv = u[w], v[w]
    anu = np.abs(nu)
    t = np.clip((nv - n_top) / (n_mid - n_top), 0, 1)
    bridge = (nv >= n_top) & (nv <= n_mid) & (anu < 0.025 + (nw * 0.65 - 0.025) * t * t)
    tip = (nu / nw) ** 2 + ((nv - n_mid) / hb) ** 2 <= 1
    nostrils = ((anu - nw * 0.45) / (nw * 0.25)) ** 2 + ((nv - (g.nose_y - 0.017)) / 0.014) ** 2 <= 1
    nose_shade = np.where(nostrils, 0.45, 1.0 - 0.18 * np.clip(anu / nw, 0, 1) ** 2)
    cv.paint(w, bridge | tip, NOSE, shade=nose_shade, accent=cheeks(nu, nv))

    # brows: arched bands, thinner at the outer end
    bl, bt, arch = g.brow_length, g.brow_thickness, g.brow_arch
    for side, cls in ((1, L_BROW), (-1, R_BROW)):
        bu = side * (g.eye_dx + 0.01)
        bv = g.eye_y - g.brow_gap
        w = cv.head_window(bu - bl, bu + bl, bv - arch - bt, bv + arch + bt)
        q = (u[w] - bu) * side / bl  # -1 inner end .. 1 outer end
        centre = bv - arch * (1 - q * q) + 0.25 * arch * q
        half = bt * (0.5 - 0.22 * np.clip(q, 0, 1))
        cv.paint(w, (np.abs(q) <= 1) & (np.abs(v[w] - centre) <= half), cls)

    # eyes: almond shapes with iris (the eyes' accent), pupil and lash line
    if not (g.glasses and g.sunglasses):
        rx, ry = g.eye_size
        for side, cls in ((1, L_EYE), (-1, R_EYE)):
            ex = side * g.eye_dx
            w = cv.head_window(ex - rx, ex + rx, g.eye_y - ry * (1 + abs(g.eye_slant)),
                               g.eye_y + ry * (1 + abs(g.eye_slant)))
            du, ev = u[w] - ex, v[w]
            s = np.clip(1 - (du / rx) ** 2, 0, 1)
            centre = g.eye_y - g.eye_slant * ry * du * side / rx
            upper, lower = centre - ry * s ** 0.8, centre + 0.6 * ry * s
            eye = (np.abs(du) < rx) & (ev > upper) & (ev < lower)
            d = np.hypot(du - g.gaze * rx * 0.45, ev - g.eye_y)
            iris = _smoothstep(ry * 1.15, ry * 0.95, d)
            shade = np.where(d < ry * 0.45, 0.2, 1.0) * np.where(ev - upper < 0.25 * ry, 0.45, 1.0)
            cv.paint(w, eye, cls, shade=shade, accent=iris)

    # lips and the open mouth (teeth are the mouth's accent, at the top of the opening)
    mw, (ul, ll) = g.mouth_width, g.lips
    w = cv.head_window(-mw, mw, g.mouth_y - abs(g.smile) - g.mouth_open / 2 - ul,
                       g.mouth_y + abs(g.smile) + g.mouth_open / 2 + ll)
    mu, mv = u[w], v[w]
    q = mu / mw
    s = np.clip(1 - q * q, 0, 1)
    inside = np.abs(q) < 1
    slit = g.mouth_y - g.smile * q * q
    h_open = 0.5 * g.mouth_open * np.clip(1 - (q / 0.85) ** 2, 0, 1)
    upper_top = slit - h_open - ul * s ** 0.6 * (1 - 0.3 * np.exp(-((q / 0.15) ** 2)))
    lower_bottom = slit + h_open + ll * np.sqrt(s)
    cv.paint(w, inside & (mv > upper_top) & (mv <= slit - h_open), U_LIP,
             shade=0.8 + 0.2 * _smoothstep(0.0, ul, slit - h_open - mv))
    cv.paint(w, inside & (mv >= slit + h_open) & (mv < lower_bottom), L_LIP,
             shade=0.85 + 0.25 * _smoothstep(0.0, ll, mv - slit - h_open) * s)
    if g.mouth_open > 0:
        teeth = (mv < slit - h_open + 0.45 * g.mouth_open).astype(float)
        cv.paint(w, inside & (np.abs(mv - slit) < h_open), MOUTH, shade=0.7 + 0.3 * teeth, accent=teeth)

    # glasses: frames (and opaque lenses for sunglasses) with a bridge and temples
    if g.glasses:
        lw, lh = g.lens_size
        fr, p = g.frame_width, g.lens_squareness
        lv0 = g.eye_y + 0.012
        w = cv.head_window(-a * 1.05, a * 1.05, lv0 - lh, lv0 + lh)
        gu, lv = u[w], v[w] - lv0
        agu = np.abs(gu)
        du = np.abs(agu - g.eye_dx)
        outer = (du / lw) ** p + np.abs(lv / lh) ** p <= 1
        lens = (du / (lw - fr)) ** p + np.abs(lv / (lh - fr)) ** p <= 1
        bridge_bar = (agu < g.eye_dx - lw + fr) & (np.abs(lv + lh * 0.35) < fr * 0.6)
        temples = ((agu > g.eye_dx + lw - fr) & (np.abs(lv + lh * 0.45) < fr * 0.5)
                   & np.isin(cv.labels[w], (SKIN, HAIR, L_EAR, R_EAR)))
        if g.sunglasses:
            cv.paint(w, lens, EYE_G, shade=1.15 - 0.35 * (lv / lh * 0.5 + 0.5), accent=1.0)
        cv.paint(w, (outer & ~lens) | bridge_bar | temples, EYE_G)

    # hair in front: above the hairline (down to the ears at the sides) and the fringe
    ear_top = g.ear_y - g.ear_size[1] * 0.6
    hairline = g.hairline + (ear_top - g.hairline) * np.clip(np.abs(fu - 0.3 * g.parting) / a, 0, 1) ** 3
    front = face & (fv < hairline)
    if g.fringe:
        sweep = 0.15 * (fu - g.parting) * np.sign(g.parting)
        edge = g.fringe - np.abs(sweep) + 0.012 * np.sin(fu * 55.0)
        front |= face & (fv < edge) & (np.abs(fu) < a * 0.97)
    cv.paint(fw, front, HAIR)

    # hat: a dome over the skull, sometimes with a brim
    if g.hat:
        hat_top = top - b * 0.92 - vol - 0.04
        dome_rx, dome_ry = a + vol + 0.04, g.hat_bottom - hat_top
        hw = max(dome_rx, g.hat_brim)
        w = cv.head_window(-hw, hw, hat_top, g.hat_bottom + 0.045)
        hu, hv = u[w], v[w]
        hat = ((hu / dome_rx) ** 2 + ((hv - g.hat_bottom) / dome_ry) ** 2 <= 1) & (hv <= g.hat_bottom)
        if g.hat_brim:
            hat |= (hu / g.hat_brim) ** 2 + ((hv - g.hat_bottom) / 0.045) ** 2 <= 1
        cv.paint(w, hat, HAT, shade=0.85 + 0.15 * np.clip((g.hat_bottom - hv) / dome_ry, 0, 1))

    return cv


# --------------------------------------------------------------------------------------------- rendering

def render_labels(params: FaceParams, resolution: int) -> np.ndarray:
    """The face's (H, W) int64 label map (CelebAMask-HQ classes) at ``resolution``."""
    return _paint(params.geometry, resolution).labels


def render(params: FaceParams, resolution: int, albedo_from: FaceParams | None = None,
           regions: Sequence[int | str] | None = None,
           illumination: Illumination | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render (image float32 (3, H, W) in [-1, 1], labels int64 (H, W)).

    ``albedo_from`` re-renders with the appearance (albedo, accent, texture) of ``regions`` (class
    indices or CelebAMask-HQ region names such as ``"skin"``; all classes when None) taken from another
    face; ``illumination`` replaces the face's own light. The ground truth of "skin from B onto A" is
    ``render(A, r, albedo_from=B, regions=SKIN_CLASSES, illumination=A.illumination)``.
    """
    if resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    app = params.appearance
    if albedo_from is not None:
        classes = None if regions is None else sorted(
            {c for r in regions for c in (CELEBAMASK_HQ.region_classes(r) if isinstance(r, str) else (int(r),))})
        app = app.replace(albedo_from.appearance, classes)
    light = params.illumination if illumination is None else illumination
    g = params.geometry
    canvas = _paint(g, resolution)
    x, y, u, v, lab = canvas.x, canvas.y, canvas.u, canvas.v, canvas.labels

    f32 = np.float32

    # texture coordinates: head frame, polar around the crown for hair (strands radiate), else image
    crown = 1.15 * g.face[1] + g.hair_volume + 0.1  # above the hair, so that strands never meet
    hu, hv = (u - g.parting).astype(f32), (v + crown).astype(f32)
    is_hair, head = lab == HAIR, _HEAD_FRAME[lab]
    p0 = np.where(is_hair, np.arctan2(hu, hv) * f32(0.6), np.where(head, u, x)).astype(f32)
    p1 = np.where(is_hair, np.sqrt(hu * hu + hv * hv), np.where(head, v, y)).astype(f32)

    # smooth value noise on each class's lattice (smoothstep-interpolated, tiled), plus warped stripes
    scale = app.noise_scale.astype(f32)[lab]
    gx, gy = p0 * scale + f32(64), p1 * scale + f32(64)
    fx, fy = np.floor(gx), np.floor(gy)
    ix, iy = fx.astype(np.int32), fy.astype(np.int32)
    fx, fy = gx - fx, gy - fy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    lattice = app.noise.astype(f32).reshape(-1)
    m = NOISE_GRID - 1  # NOISE_GRID is a power of two: "& m" wraps
    base = lab.astype(np.int32) * NOISE_GRID * NOISE_GRID
    row0, row1 = base + (iy & m) * NOISE_GRID, base + ((iy + 1) & m) * NOISE_GRID
    col0, col1 = ix & m, (ix + 1) & m
    noise = ((lattice[row0 + col0] * (1 - fx) + lattice[row0 + col1] * fx) * (1 - fy)
             + (lattice[row1 + col0] * (1 - fx) + lattice[row1 + col1] * fx) * fy)
    kx = (2 * np.pi * app.stripe_freq * np.cos(app.stripe_angle)).astype(f32)
    ky = (2 * np.pi * app.stripe_freq * np.sin(app.stripe_angle)).astype(f32)
    w = app.stripes.astype(f32)[lab]
    texture = (1 - w) * f32(0.6) * np.clip(noise, -2, 2) + w * np.sin(kx[lab] * p0 + ky[lab] * p1 + f32(1.5) * noise)

    # colour = lerp(albedo, accent, mix * weight) * (1 + contrast * texture) * shading * light
    weight = np.where(_GEOMETRIC_ACCENT[lab], canvas.accent.astype(f32), _smoothstep(0.0, 1.0, texture))
    k = app.accent_mix.astype(f32)[lab] * weight
    ca, sa = math.cos(light.gradient_angle), math.sin(light.gradient_angle)
    ramp = np.clip(1 + light.gradient_strength * (x * ca + y * sa), 0, None) * light.intensity
    lum = ((1 + app.contrast.astype(f32)[lab] * texture) * canvas.shade * ramp).astype(f32)
    albedo, accent = app.albedo.astype(f32), app.accent.astype(f32)
    image = np.empty((3, *lab.shape), dtype=f32)
    for c in range(3):
        base_c, accent_c = albedo[:, c][lab], accent[:, c][lab]
        image[c] = np.clip((base_c + (accent_c - base_c) * k) * lum * f32(light.gains[c]), 0, 1) * 2 - 1
    return image, lab


# --------------------------------------------------------------------------------------------- dataset

class SyntheticFaces(Dataset):
    """``count`` procedural faces of stream ``seed``; items are (image, labels, name) like the real sets.

    Split by index: test is the last tenth (rounded up), train the rest, all everything.
    """

    label_set = CELEBAMASK_HQ

    def __init__(self, count: int, resolution: int = 128, seed: int = 0, split: str = "all",
                 transform: PairTransform | None = None):
        if count <= 0:
            raise InputError(f"synthetic face count must be positive, got {count}")
        if resolution <= 0:
            raise InputError(f"resolution must be positive, got {resolution}")
        if seed < 0:
            raise InputError(f"synthetic face seed must be non-negative, got {seed}")
        n_test = math.ceil(count / 10)
        ranges = {"train": range(0, count - n_test), "test": range(count - n_test, count), "all": range(count)}
        if split not in ranges:
            raise InputError(f"unknown split {split!r} for synthetic faces; choose one of: {', '.join(ranges)}")
        self.indices = list(ranges[split])
        if not self.indices:
            raise InputError(f"synthetic:{count} has no {split} faces (the test split is the last tenth)")
        self.count, self.resolution, self.seed, self.split = count, resolution, seed, split
        self.transform = transform
        self.names = [f"synthetic-{seed}-{i:06d}" for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def params(self, item: int) -> FaceParams:
        """The :class:`FaceParams` of item ``item``."""
        return sample_face(self.seed, self.indices[item])

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image, labels = render(self.params(item), self.resolution)
        image_t, labels_t = torch.from_numpy(image), torch.from_numpy(labels)
        if self.transform is not None:
            image_t, labels_t = self.transform(image_t, labels_t)
        return image_t, labels_t, self.names[item]
