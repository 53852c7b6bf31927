"""Where and how the networks run: the device (``auto``: CUDA when present, else the CPU), the numeric
precision (``fp32``, or ``bf16`` / ``fp16`` mixed precision through autocast) and ``torch.compile``.

Mixed precision keeps the weights (and, in training, the optimizers' state: the master weights) in
float32; :func:`torch.autocast` runs convolutions and matrix products in the lower type and keeps
reductions and normalisations in float32. ``fp16`` training scales the loss with a
:class:`torch.amp.GradScaler` so that small gradients do not underflow; ``bf16`` has float32's range and
needs none. On the CPU, ``benchmarks/generator_speed.py --precision fp32,bf16`` measured bf16 far slower than
float32 (the paper-size network at 128x128, batch 1, torch 2.13): use it on GPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .errors import InputError

__all__ = ["PRECISIONS", "DEFAULT_PRECISION", "DEVICE_HELP", "PRECISION_HELP", "Precision", "auto_device",
           "autocast_everywhere", "compile_module"]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_PRECISION = "fp32"
DEVICE_HELP = "torch device: auto (CUDA when present, else the CPU), cpu, cuda, cuda:N, mps (default: auto)"
PRECISION_HELP = ("fp32, or bf16/fp16 mixed precision (autocast; weights stay float32): for GPUs; on this project's "
                  "CPU bf16 measured far slower than fp32 (default: fp32)")


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

    def autocast(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """Autocast to :attr:`dtype` on ``device``'s type; a no-op context for ``fp32``."""
        device_type = torch.device(device).type
        if not self.mixed:
            return contextlib.nullcontext()
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
            stack.enter_context(precision.autocast("cpu"))
            if torch.cuda.is_available():
                stack.enter_context(precision.autocast("cuda"))
        yield


def compile_module(module: torch.nn.Module, enabled: bool = True) -> torch.nn.Module:
    """``torch.compile(module)`` when ``enabled`` (the module's own forward, compiled on first call and
    recompiled for new shapes); the module itself otherwise. Parameters are shared with the original."""
    if not enabled:
        return module
    return torch.compile(module, dynamic=False)
