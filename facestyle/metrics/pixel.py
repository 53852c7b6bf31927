"""PSNR and SSIM on [0, 1] images with data range 1, one value per image.

The paper (section 4.1) reports PSNR and SSIM between a reconstruction and its ground truth. Both depend
on the *data range* L of the pixel values: PSNR = 10 log10(L^2 / MSE) and SSIM's stabilising constants
C1 = (0.01 L)^2, C2 = (0.03 L)^2 (Wang et al., "Image Quality Assessment: From Error Visibility to
Structural Similarity", IEEE TIP 2004). SEAN's users got irreproducible SSIM by evaluating [-1, 1]
tensors with the wrong range; here every function takes images in [0, 1] with L = 1, refuses values
outside [0, 1], and the conversion from the project's [-1, 1] tensors is one explicit call,
:func:`to_unit_range`.

The arithmetic is torchmetrics' (``peak_signal_noise_ratio`` and ``structural_similarity_index_measure``
with an 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03), computed per image.

Image harmonization reports its errors differently, and :func:`mse_255`, :func:`psnr_255`, :func:`fmse`
and :func:`fpsnr` follow it: iHarmony4 (Cong et al., CVPR 2020) gives MSE and PSNR over the whole image
and fMSE / fPSNR over the harmonized foreground only, on the 0-255 scale. They take the same [0, 1]
images and scale by 255 themselves (without rounding to 8 bits).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError

DATA_RANGE = 1.0
# Slack for values that left [0, 1] by float rounding only (e.g. after resizing).
RANGE_TOLERANCE = 1e-4


def to_unit_range(images: Tensor) -> Tensor:
    """Map the project's images in [-1, 1] to [0, 1]: ``(x + 1) / 2``, clamped to [0, 1].

    Every metric in :mod:`facestyle.metrics` takes images in [0, 1]; generator outputs and
    :func:`facestyle.io.load_image` give [-1, 1], so convert them with this function first.
    """
    return ((images + 1) / 2).clamp(0, 1)


def check_unit_range(images: Tensor, name: str = "images") -> Tensor:
    """Return ``images`` as a float tensor after checking that its values lie in [0, 1].

    Values below 0 usually mean [-1, 1] images: the error says to call :func:`to_unit_range`.
    """
    if not torch.is_tensor(images):
        raise InputError(f"{name}: expected a tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise InputError(f"{name}: expected float images in [0, 1], got dtype {images.dtype} "
                         "(for uint8 images divide by 255)")
    if images.numel():
        lo, hi = torch.aminmax(images.detach())
        lo, hi = float(lo), float(hi)
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            hint = " (images in [-1, 1]? convert them with to_unit_range)" if lo < 0 else ""
            raise InputError(f"{name}: values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]{hint}")
    return images


def _as_float(x: Tensor) -> Tensor:
    """float64 stays float64 (for exact checks); anything else is computed in float32."""
    return x if x.dtype == torch.float64 else x.float()


def _check_pair(preds: Tensor, target: Tensor) -> None:
    check_unit_range(preds, "preds")
    check_unit_range(target, "target")
    if preds.dim() != 4 or preds.shape[1] not in (1, 3):
        raise InputError(f"expected (B, C, H, W) images with 1 or 3 channels, got shape {tuple(preds.shape)}")
    if preds.shape != target.shape:
        raise InputError(f"preds and target differ in shape: {tuple(preds.shape)} vs {tuple(target.shape)}")


def psnr(preds: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB of each image: ``10 log10(1 / MSE)`` over its C*H*W values.

    Args:
        preds, target: (B, C, H, W) images in [0, 1].

    Returns:
        (B,) float tensor. Identical images give ``inf`` (MSE = 0); no cap is applied, so average with
        care (the paper's tables average finite values of generated images).
    """
    from torchmetrics.functional.image.psnr import peak_signal_noise_ratio

    _check_pair(preds, target)
    return peak_signal_noise_ratio(_as_float(preds), _as_float(target), data_range=DATA_RANGE, reduction="none",
                                   dim=(1, 2, 3))


def ssim(preds: Tensor, target: Tensor) -> Tensor:
    """Structural similarity of each image (Wang et al. 2004), data range 1.

    The local statistics use an 11x11 Gaussian window (sigma 1.5) per channel on the image reflection-
    padded by 5 pixels, so the SSIM map has the image's size; it is averaged over pixels and channels.

    Args:
        preds, target: (B, C, H, W) images in [0, 1], H and W at least 11.

    Returns:
        (B,) float tensor in [-1, 1]; 1 for identical images.
    """
    from torchmetrics.functional.image.ssim import structural_similarity_index_measure

    _check_pair(preds, target)
    if min(preds.shape[-2:]) < 11:
        raise InputError(f"SSIM needs images of at least 11x11 pixels, got {tuple(preds.shape[-2:])}")
    values = structural_similarity_index_measure(_as_float(preds), _as_float(target), data_range=DATA_RANGE,
                                                 reduction="none")
    return values.reshape(preds.shape[0])


# ---------------------------------------------------------------------------------------------------------
# Image harmonization's metrics (iHarmony4, Cong et al., "DoveNet", CVPR 2020)

#: the 8-bit scale on which image-harmonization papers report MSE and fMSE
PIXEL_MAX = 255.0


def _mask_weights(mask: Tensor, preds: Tensor) -> Tensor:
    """``mask`` (B, H, W) or (B, 1, H, W), bool or float in [0, 1], as (B, 1, H, W) weights of ``preds``' dtype."""
    if mask.dim() == 3:
        mask = mask[:, None]
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != preds.shape[0] or mask.shape[-2:] != preds.shape[-2:]:
        raise InputError(f"mask: expected (B, H, W) or (B, 1, H, W) matching images {tuple(preds.shape)}, "
                         f"got {tuple(mask.shape)}")
    return mask.to(preds.dtype)


def mse_255(preds: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error of each image on the 0-255 scale, over all C*H*W values, or with ``mask`` over the
    masked pixels only: ``sum(mask * (255 (preds - target))^2) / (C * sum(mask))`` (iHarmony4's fMSE, which its
    evaluation writes as the whole-image MSE times H*W / foreground area).

    Args:
        preds, target: (B, C, H, W) images in [0, 1] (floats, not rounded to 8 bits).
        mask: optional (B, H, W) or (B, 1, H, W), bool or weights in [0, 1].

    Returns:
        (B,) tensor; NaN for an image whose mask is empty.
    """
    _check_pair(preds, target)
    p, t = _as_float(preds), _as_float(target)
    err = (PIXEL_MAX * (p - t)).pow(2)
    if mask is None:
        return err.mean((1, 2, 3))
    m = _mask_weights(mask, p)
    area = m.sum((1, 2, 3)) * p.shape[1]
    value = (err * m).sum((1, 2, 3)) / area.clamp_min(torch.finfo(p.dtype).tiny)
    return torch.where(area > 0, value, torch.full_like(value, float("nan")))


def psnr_255(preds: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """``10 log10(255^2 / MSE)`` per image with :func:`mse_255` (over ``mask`` when given: fPSNR). Over the whole
    image it equals :func:`psnr` (PSNR does not depend on the scale); ``inf`` when exact, NaN for an empty mask."""
    return 10 * torch.log10(PIXEL_MAX ** 2 / mse_255(preds, target, mask))


def fmse(preds: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Foreground MSE (iHarmony4): :func:`mse_255` over the masked (harmonized) region only."""
    return mse_255(preds, target, mask)


def fpsnr(preds: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Foreground PSNR: :func:`psnr_255` over the masked region only."""
    return psnr_255(preds, target, mask)
