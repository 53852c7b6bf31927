"""Frechet Inception Distance (Heusel et al., NeurIPS 2017), as pytorch-fid computes it.

FID fits a Gaussian to the pool3 features of each image set (:class:`~facestyle.nn.features.inception.FIDInceptionV3`,
the FID variant of InceptionV3 with the ``pt_inception-2015-12-05`` weights) and takes the Frechet
(2-Wasserstein) distance between the two Gaussians:

    FID = ||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))

Everything after the network runs in float64. The trace of the matrix square root is computed from
eigenvalues instead of a general ``sqrtm``: with S_1^(1/2) the symmetric square root of S_1,
S_1 S_2 is similar to the symmetric positive semi-definite S_1^(1/2) S_2 S_1^(1/2), so
tr((S_1 S_2)^(1/2)) is the sum of the square roots of that matrix's eigenvalues (clipped at 0 against
rounding). This is exact for covariance matrices and has none of ``scipy.linalg.sqrtm``'s trouble with
singular products (pytorch-fid's ``eps`` retry).

Features of a set of image *files* are cached (:class:`FeatureCache`): one safetensors file per set,
keyed by a hash of the ordered file list with each file's size and modification time and of the
weights file, so a changed image or different weights never reuse stale features.

Images are in [0, 1] like every metric of :mod:`facestyle.metrics`. The paper's protocol (Tables 1-5):
FID between the generated test images and the real test images, at 256x256.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import save_tensors
from ..errors import InputError
from ..nn.features.inception import FEATURE_DIM, FIDInceptionV3
from .pixel import check_unit_range, to_unit_range

CACHE_ENV_VAR = "FACESTYLE_CACHE"
CACHE_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


# ---------------------------------------------------------------------------------------------------------
# The distance


@dataclass(frozen=True)
class GaussianStats:
    """Mean (D,) and covariance (D, D), float64, of ``count`` feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int

    @classmethod
    def from_features(cls, features: Tensor | np.ndarray) -> GaussianStats:
        """Sample mean and unbiased covariance (``np.cov``, as pytorch-fid) of (N, D) features, N >= 2."""
        f = _as_float64(features)
        return cls(mu=f.mean(0), sigma=np.atleast_2d(np.cov(f, rowvar=False)), count=f.shape[0])


def _sym_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``, the trace term from the
    eigenvalues of ``sigma1^(1/2) sigma2 sigma1^(1/2)`` (see the module docstring).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise InputError(f"Frechet distance: mismatched shapes mu {mu1.shape}/{mu2.shape}, "
                         f"sigma {sigma1.shape}/{sigma2.shape}")
    root1 = _sym_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_from_stats(a: GaussianStats, b: GaussianStats) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def _as_float64(features: Tensor | np.ndarray) -> np.ndarray:
    f = features.detach().cpu().double().numpy() if torch.is_tensor(features) else np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise InputError(f"FID needs at least 2 feature vectors of shape (N, D), got shape {f.shape}")
    return f


def fid_from_features(features_a: Tensor | np.ndarray, features_b: Tensor | np.ndarray) -> float:
    """FID between two sets of (N, D) pool3 features (any N >= 2 each), in float64.

    When neither set has more vectors than dimensions, the trace term is computed without forming the
    D x D covariances: with centred features A_1 (n_1 x D), A_2 (n_2 x D) and S_i = A_i^T A_i / (n_i - 1),
    the non-zero eigenvalues of S_1 S_2 are those of (A_1 A_2^T)(A_1 A_2^T)^T / ((n_1 - 1)(n_2 - 1)), so
    tr((S_1 S_2)^(1/2)) = ||A_1 A_2^T||_* / sqrt((n_1 - 1)(n_2 - 1)) (nuclear norm): exact, and cheaper
    than two D x D eigendecompositions. Otherwise :func:`frechet_distance` on the statistics.
    """
    fa, fb = _as_float64(features_a), _as_float64(features_b)
    if fa.shape[1] != fb.shape[1]:
        raise InputError(f"FID: features of different lengths ({fa.shape[1]} and {fb.shape[1]})")
    (na, d), nb = fa.shape, fb.shape[0]
    if max(na, nb) > d:
        return fid_from_stats(GaussianStats.from_features(fa), GaussianStats.from_features(fb))
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    ca, cb = fa - mu_a, fb - mu_b
    tr_a, tr_b = float((ca * ca).sum()) / (na - 1), float((cb * cb).sum()) / (nb - 1)
    tr_covmean = float(np.linalg.svd(ca @ cb.T, compute_uv=False).sum()) / math.sqrt((na - 1) * (nb - 1))
    diff = mu_a - mu_b
    return float(diff @ diff + tr_a + tr_b - 2 * tr_covmean)


# ---------------------------------------------------------------------------------------------------------
# Features of tensors


@torch.no_grad()
def inception_features(model: FIDInceptionV3, images: Tensor, batch_size: int = 50) -> Tensor:
    """(N, 3, H, W) images in [0, 1] -> (N, 2048) float32 pool3 features on the CPU, in batches."""
    check_unit_range(images, "images")
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"FID expects (N, 3, H, W) images, got shape {tuple(images.shape)}")
    param = next(model.parameters())
    out = [model(images[i:i + batch_size].to(device=param.device, dtype=param.dtype)).float().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, FEATURE_DIM)


def fid_between(model: FIDInceptionV3, images_a: Tensor, images_b: Tensor, batch_size: int = 50) -> float:
    """FID between two batches of images in [0, 1] (each at least 2 images; thousands for a real FID)."""
    return fid_from_features(inception_features(model, images_a, batch_size),
                             inception_features(model, images_b, batch_size))


# ---------------------------------------------------------------------------------------------------------
# Features of image files, cached


def default_cache_dir() -> Path:
    """``$FACESTYLE_CACHE/fid``, else ``$XDG_CACHE_HOME/facestyle/fid``, else ``~/.cache/facestyle/fid``."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser() / "fid"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "facestyle" / "fid"


class FeatureCache:
    """Pool3 features of image sets, one ``<key>.safetensors`` file per set in ``directory``.

    The key (:meth:`key`) hashes the ordered list of (absolute path, size, mtime) of the images and the
    model's ``weights_id`` (the weights file's path, size and mtime). ``hits`` and ``misses`` count
    lookups. Files are written atomically; an unreadable cache file counts as a miss and is rewritten.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(paths: Sequence[str | os.PathLike[str]], weights_id: str) -> str:
        files = []
        for p in paths:
            path = Path(p).resolve()
            try:
                stat = path.stat()
            except OSError:
                raise InputError(f"{p}: no such file") from None
            files.append([str(path), stat.st_size, stat.st_mtime_ns])
        payload = json.dumps({"version": CACHE_VERSION, "weights": weights_id, "files": files})
        return hashlib.sha256(payload.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def load(self, key: str, count: int) -> Tensor | None:
        """The cached (count, 2048) features of ``key``, or None (a miss)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path(key)
        if path.is_file():
            try:
                features = load_file(str(path))["features"]
            except (SafetensorError, OSError, KeyError, ValueError):
                features = None
            if features is not None and tuple(features.shape) == (count, FEATURE_DIM):
                self.hits += 1
                return features
        self.misses += 1
        return None

    def save(self, key: str, features: Tensor, count: int, weights_id: str) -> Path:
        path = self.path(key)
        save_tensors({"features": features.float()}, path,
                     metadata={"count": str(count), "weights": weights_id, "version": str(CACHE_VERSION)})
        return path


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of a folder (not recursive, hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _load_unit(path: Path) -> Tensor:
    from ..io import load_image

    return to_unit_range(load_image(path))


@torch.no_grad()
def image_set_features(paths: Sequence[str | os.PathLike[str]], model: FIDInceptionV3, *, batch_size: int = 50,
                       cache: FeatureCache | None = None, progress: bool = False) -> Tensor:
    """(N, 2048) pool3 features of image files (read as RGB, values / 255, full resolution; the network
    resizes to 299x299), from ``cache`` when it holds this set.

    Without a cache, or for a model with random weights (``weights_id`` None), nothing is cached.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no images given for FID")
    key = None
    if cache is not None and model.weights_id is not None:
        key = cache.key(paths, model.weights_id)
        cached = cache.load(key, len(paths))
        if cached is not None:
            return cached
    from tqdm import tqdm

    out = []
    with tqdm(total=len(paths), desc="FID features", unit="img", disable=None if progress else True) as bar:
        for start in range(0, len(paths), batch_size):
            images = [_load_unit(p) for p in paths[start:start + batch_size]]
            if all(im.shape == images[0].shape for im in images):
                out.append(inception_features(model, torch.stack(images), batch_size))
            else:  # mixed sizes: one at a time (the network resizes each to 299x299)
                out.extend(inception_features(model, im[None], 1) for im in images)
            bar.update(len(images))
    features = torch.cat(out)
    if key is not None:
        cache.save(key, features, len(paths), model.weights_id)
    return features


def fid_folders(folder_a: str | os.PathLike[str], folder_b: str | os.PathLike[str], *,
                model: FIDInceptionV3 | None = None, weights_dir: str | os.PathLike[str] | None = None,
                device: str | torch.device = "cpu", batch_size: int = 50,
                cache: FeatureCache | None | bool = True, progress: bool = False) -> float:
    """FID between the images of two folders.

    ``model`` defaults to :meth:`FIDInceptionV3.load_weights` (``weights_dir``; a missing weights file
    raises :class:`~facestyle.errors.WeightsError`). ``cache=True`` uses :func:`default_cache_dir`,
    ``False``/``None`` disables caching, or pass a :class:`FeatureCache`.
    """
    if model is None:
        model = FIDInceptionV3.load_weights(weights_dir).to(device)
    if cache is True:
        cache = FeatureCache()
    elif cache is False:
        cache = None
    features = [image_set_features(list_images(folder), model, batch_size=batch_size, cache=cache,
                                   progress=progress) for folder in (folder_a, folder_b)]
    return fid_from_features(*features)
