"""Where and how the networks run: the device (``auto``: CUDA when present, else the CPU), the numeric
precision (``fp32``, or ``bf16`` / ``fp16`` mixed precision through autocast) and ``torch.compile``.

Mixed precision keeps the weights (and, in training, the optimizers' state: the master weights) in
float32; :func:`torch.autocast` runs convolutions and matrix products in the lower type and keeps
reductions and normalisations in float32. ``fp16`` training scales the loss with a
:class:`torch.amp.GradScaler` so that small gradients do not underflow; ``bf16`` has float32's range and
needs none.

On the CPU, reduced precision pays only where the processor multiplies in it: bf16 with AVX512-BF16 or AMX,
fp16 with AMX-FP16 (:func:`cpu_has_native`). Elsewhere oneDNN has no bf16 kernel at all for a convolution in
torch's default (contiguous) layout or for a matrix product, and torch falls back to reference loops; in
channels-last layout oneDNN converts to float32 and back around float32 arithmetic. This project's CPU (AMD
EPYC, AVX2 only) measured, in one run on a busy machine: a 3x3 convolution of 128 channels, 64x64, batch 4,
630 ms fp32, 504 ms fp32 channels-last, 915 ms bf16 channels-last, 16.6 s bf16 contiguous; a (2048 x 1152)
by (1152 x 128) product 46 ms fp32, 1.28 s bf16; the paper-size network at 128x128, batch 1, under bf16
autocast 4.1x slower than fp32 with the whole model channels-last and about 30x slower as it is. So the CPU
default stays ``fp32``, and asking for bf16 or fp16 on a CPU without native support logs a warning, once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .errors import InputError

__all__ = ["PRECISIONS", "DEFAULT_PRECISION", "DEVICE_HELP", "PRECISION_HELP", "Precision", "auto_device",
           "autocast_everywhere", "compile_module", "cpu_has_native"]

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_PRECISION = "fp32"
DEVICE_HELP = "torch device: auto (CUDA when present, else the CPU), cpu, cuda, cuda:N, mps (default: auto)"
PRECISION_HELP = ("fp32, or bf16/fp16 mixed precision (autocast; weights stay float32): for GPUs, and CPUs with "
                  "AVX512-BF16 or AMX; elsewhere 4-30x slower than fp32 (default: fp32)")
_warned: set[str] = set()  # precisions already warned about on this CPU


def cpu_has_native(name: str) -> bool:
    """Whether this CPU multiplies in precision ``name`` (``fp32``; ``bf16``: AVX512-BF16 or AMX tiles;
    ``fp16``: AMX-FP16), as torch detects it; False where this torch cannot tell."""
    if name == "fp32":
        return True
    checks = {"bf16": ("_is_avx512_bf16_supported", "_is_amx_tile_supported"),
              "fp16": ("_is_amx_fp16_supported",)}[name]
    return any(bool(getattr(torch.cpu, check, lambda: False)()) for check in checks)


def auto_device() -> str:
    """What ``--device auto`` means: ``cuda`` when torch sees a CUDA device, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Precision:
    """A precision by name (``fp32``, ``bf16``, ``fp16``) and what it takes to run in it."""

    name: str = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise InputError(f"unknown precision {self.name!r}; use one of {', '.join(PRECISIONS)}")

    @property
    def dtype(self) -> torch.dtype:
        """The type autocast computes in (float32 for ``fp32``)."""
        return PRECISIONS[self.name]

    @property
    def mixed(self) -> bool:
        return self.name != "fp32"

    def autocast(self, device: torch.device | str, warn: bool = True) -> contextlib.AbstractContextManager:
        """Autocast to :attr:`dtype` on ``device``'s type; a no-op context for ``fp32``. On a CPU that lacks
        the precision's arithmetic, logs a warning the first time (unless ``warn`` is False)."""
        device_type = torch.device(device).type
        if not self.mixed:
            return contextlib.nullcontext()
        if warn and device_type == "cpu" and self.name not in _warned and not cpu_has_native(self.name):
            _warned.add(self.name)
            logger.warning("this CPU has no %s arithmetic (%s): %s runs 4-30x slower than fp32 here; "
                           "use fp32 (the default)", self.name,
                           "AVX512-BF16 or AMX" if self.name == "bf16" else "AMX-FP16", self.name)
        return torch.autocast(device_type, dtype=self.dtype)

    def grad_scaler(self, device: torch.device | str) -> torch.amp.GradScaler:
        """A gradient scaler: active for ``fp16``, a pass-through otherwise (``scale`` returns the loss,
        ``step`` steps the optimizer)."""
        return torch.amp.GradScaler(torch.device(device).type, enabled=self.name == "fp16")


@contextlib.contextmanager
def autocast_everywhere(precision: Precision) -> Iterator[None]:
    """Autocast on the CPU and, when present, on CUDA (for a command whose networks may be on either)."""
    with contextlib.ExitStack() as stack:
        if precision.mixed:
            # (on a CUDA machine the networks are on the GPU: its CPU's bf16 arithmetic does not matter)
            stack.enter_context(precision.autocast("cpu", warn=not torch.cuda.is_available()))
            if torch.cuda.is_available():
                stack.enter_context(precision.autocast("cuda"))
        yield


def compile_module(module: torch.nn.Module, enabled: bool = True) -> torch.nn.Module:
    """``torch.compile(module)`` when ``enabled`` (the module's own forward, compiled on first call and
    recompiled for new shapes); the module itself otherwise. Parameters are shared with the original."""
    if not enabled:
        return module
    return torch.compile(module, dynamic=False)
