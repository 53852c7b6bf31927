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

Threads: glibc gives a thread that allocates while another holds the main arena an arena of its own,
whose heaps are at most 64 MB and which serves larger blocks with a fresh ``mmap`` whatever the settings
above say; a worker thread running the network (``facestyle serve`` runs each request on one of Gradio's
worker threads) then pays the page faults again for each such block (a 128-channel 256x256 map of a batch
of 4 is 134 MB). So the function also sets glibc's arena count to one (``M_ARENA_MAX``, as
``GLIBC_TUNABLES=glibc.malloc.arena_max=1`` does): every thread allocates from the main arena and reuses
its freed blocks. The setting takes effect for threads that
have no arena yet, so it must come before other threads allocate (the ``facestyle`` command calls it first
thing; importing torch or Gradio creates no arena, and torch's OpenMP threads do not allocate):
:func:`worker_thread_hint` says when it came too late. One arena means the threads take turns on the
allocator's lock; the network's allocations are few and large, and ``facestyle serve`` runs one forward
pass at a time. Under a preloaded allocator this function does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory", "worker_thread_hint", "malloc_arenas", "SYSTEM_ALLOCATOR_ENV"]

SYSTEM_ALLOCATOR_ENV = "FACESTYLE_SYSTEM_ALLOCATOR"
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (no per-allocation ``mmap``, no trimming, one arena for every
    thread); returns whether it applied (False on other C libraries, or with ``FACESTYLE_SYSTEM_ALLOCATOR=1``).
    Idempotent."""
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
    _applied = all(mallopt(param, value) for param, value in
                   ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)))
    return _applied


def worker_thread_hint() -> str | None:
    """For a server whose requests run on worker threads: how to make them reuse freed memory too, or None
    when they already do (the setting applied while the main arena was the only one) or the setting is off.
    A thread that allocated before :func:`keep_freed_memory` has an arena of its own, and a new thread may be
    handed that one."""
    if not _applied or "arena_max=1" in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    arenas = malloc_arenas()
    if arenas is None or arenas <= 1:
        return None
    return (f"the memory setting came after other threads allocated ({arenas} malloc arenas), so requests on "
            "worker threads may map and unmap their large blocks again: start with "
            "GLIBC_TUNABLES=glibc.malloc.arena_max=1 for the command line's speed on the CPU")


def malloc_arenas() -> int | None:
    """How many arenas glibc's malloc has (one per thread that allocated while another held one, up to
    ``M_ARENA_MAX``), read from ``malloc_info``; None off glibc."""
    if not _glibc():
        return None
    libc = ctypes.CDLL(None)
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = libc.free.argtypes = [ctypes.c_void_p]
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return None
    try:
        libc.malloc_info(0, stream)
    finally:
        libc.fclose(stream)  # sets buf and size
    try:
        return ctypes.string_at(buf, size.value).count(b"<heap nr=")
    finally:
        libc.free(buf)


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):  # the name is unknown to this C library (musl)
        return False
