"""The paper's metrics (section 4.1): PSNR, SSIM, LPIPS, FID, mCSD / mOCD and the harmony score.

One convention for all of them: **images are float tensors (B, 3, H, W) in [0, 1]**, and every metric
refuses values outside that range. The project's images (generator outputs, :func:`facestyle.io.
load_image`) are in [-1, 1]: convert them with :func:`to_unit_range`. Per-image metrics return one value
per image (a (B,) tensor); tables average them.

============================  ==========================================================================
:func:`psnr`, :func:`ssim`    data range 1, via torchmetrics (:mod:`.pixel`)
:func:`fmse`, :func:`fpsnr`   image harmonization's fMSE / fPSNR (the moved region only) and
                              :func:`mse_255` / :func:`psnr_255`, on the 0-255 scale as iHarmony4
                              reports them (:mod:`.pixel`)
:class:`LPIPS`                v0.1, AlexNet or VGG16 backbone, optionally masked (:mod:`.lpips`)
:func:`region_diversity`      mCSD / mOCD of N styles of one region (:mod:`.diversity`)
:func:`fid_from_features`     FID from InceptionV3 pool3 features, cached per image set (:mod:`.fid`)
:func:`harmony_score`         probability of "real" of the harmony classifier (:mod:`.harmony`)
============================  ==========================================================================

Networks with pretrained weights (LPIPS's backbones, InceptionV3) load them from the weights folder
(:mod:`facestyle.weights`); a missing file raises :class:`~facestyle.errors.WeightsError`, never a silent
fallback to random weights. The harmony classifier (:mod:`facestyle.nn.harmony`) is trained by
``facestyle train-harmony`` (:mod:`facestyle.train.harmony`).
"""

from __future__ import annotations

from .diversity import RegionDiversity, class_mask, pairwise_lpips, region_diversity
from .fid import (
    FeatureCache,
    GaussianStats,
    fid_between,
    fid_folders,
    fid_from_features,
    fid_from_stats,
    frechet_distance,
    image_set_features,
    inception_features,
)
from .harmony import HarmonyEvaluation, evaluate_harmony, harmony_score
from .lpips import LPIPS
from .pixel import check_unit_range, fmse, fpsnr, mse_255, psnr, psnr_255, ssim, to_unit_range

__all__ = [
    "LPIPS",
    "FeatureCache",
    "GaussianStats",
    "HarmonyEvaluation",
    "RegionDiversity",
    "check_unit_range",
    "class_mask",
    "evaluate_harmony",
    "fid_between",
    "fid_folders",
    "fid_from_features",
    "fid_from_stats",
    "fmse",
    "fpsnr",
    "frechet_distance",
    "harmony_score",
    "image_set_features",
    "inception_features",
    "mse_255",
    "pairwise_lpips",
    "psnr",
    "psnr_255",
    "region_diversity",
    "ssim",
    "to_unit_range",
]
