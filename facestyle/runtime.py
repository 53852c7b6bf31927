"""Process-level settings that make CPU inference faster.

glibc's malloc serves every block above 32 MB (its ``M_MMAP_THRESHOLD`` ceiling) with a fresh ``mmap``
and returns it to the system when freed. A forward pass of the paper-size network at 256x256 allocates
and frees dozens of such blocks (a 128-channel map of a batch of 4 is 134 MB), so each one is
page-faulted in and zeroed by the kernel, page by page, before PyTorch writes to it (the README's Speed
section and ``benchmarks/generator_speed.py --system-allocator`` give the cost).

:func:`keep_freed_memory` tells glibc to serve large blocks from its heap and to keep freed memory
mapped, so that a block freed by one layer is reused by the next: PyTorch's own CPU tuning guide gets
the same effect by preloading jemalloc or tcmalloc. The cost is that the process keeps its peak heap
(the resident size does not shrink after a large forward pass), which is what a command or a server
that runs the network again wants. The ``facestyle`` command calls it at start-up and the
:class:`~facestyle.editor.editor.Editor` when its model is on the CPU; a user of :class:`~facestyle.model.FaceStyleNet`
can call it, or set ``FACESTYLE_SYSTEM_ALLOCATOR=1`` to keep glibc's defaults everywhere.

It helps the threads that allocate from glibc's main arena: the main thread, where the commands run
the network. Other threads get arenas of their own once the process has started (importing torch is
enough), and those still map and unmap large blocks; so a server whose requests run on worker threads
(``facestyle serve``) should be started with ``GLIBC_TUNABLES=glibc.malloc.arena_max=1`` (every thread
on the main arena) or with jemalloc or tcmalloc preloaded. Under a preloaded allocator this function
does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory", "worker_thread_hint", "SYSTEM_ALLOCATOR_ENV"]

SYSTEM_ALLOCATOR_ENV = "FACESTYLE_SYSTEM_ALLOCATOR"
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (no per-allocation ``mmap``, no trimming); returns whether
    it applied (False on other C libraries, or with ``FACESTYLE_SYSTEM_ALLOCATOR=1``). Idempotent."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(SYSTEM_ALLOCATOR_ENV, "") not in ("", "0") or not _glibc():
        return False
    if any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return False  # malloc is not glibc's: its mallopt would change nothing
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the trim threshold is an int, so 2 GiB - 1 is its largest value
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


def worker_thread_hint() -> str | None:
    """For a server whose requests run on worker threads: how to make them reuse freed memory too, or
    None when they already do (or the setting is off)."""
    if not _applied or "arena_max=1" in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    return ("requests run on worker threads, which reuse freed memory only on glibc's main arena: start with "
            "GLIBC_TUNABLES=glibc.malloc.arena_max=1 for about 1.7x faster edits on the CPU")


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):  # the name is unknown to this C library (musl)
        return False
