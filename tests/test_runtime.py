"""facestyle.runtime.keep_freed_memory: large blocks freed by one layer are reused by the next, not
page-faulted in again (the CPU forward's main cost before it), and FACESTYLE_SYSTEM_ALLOCATOR=1 opts out.
Worker threads have arenas of their own, which do not keep them; ``facestyle serve`` suggests
``GLIBC_TUNABLES=glibc.malloc.arena_max=1``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, resource, threading, torch
from facestyle.runtime import keep_freed_memory, worker_thread_hint
applied = keep_freed_memory()
def faults_of_one_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**20 // 4)  # a 64 MB tensor, written once, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
def fewest_faults(out):
    faults_of_one_block()
    out.append(min(faults_of_one_block() for _ in range(8)))  # the fewest: a page the kernel reclaimed is not malloc
main, worker = [], []
fewest_faults(main)
thread = threading.Thread(target=fewest_faults, args=(worker,))
thread.start()
thread.join()
print(json.dumps({"applied": applied, "faults": main[0], "worker_faults": worker[0],
                  "hint": worker_thread_hint() is not None}))
"""
PAGES = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")


def probe(system_allocator: bool, tunables: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    env.update(FACESTYLE_SYSTEM_ALLOCATOR="1" if system_allocator else "0", OMP_NUM_THREADS="1")
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def huge_pages_always() -> bool:  # then a fresh mapping faults once per 2 MB page, not per 4 KB page
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


needs_glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
needs_small_pages = pytest.mark.skipif(huge_pages_always(), reason="transparent huge pages set to always")


@needs_glibc
@needs_small_pages
def test_freed_blocks_are_reused_without_page_faults():
    kept, system = probe(system_allocator=False), probe(system_allocator=True)
    assert kept["applied"] and not system["applied"]
    assert system["faults"] > PAGES // 2  # glibc's default: a fresh mapping, faulted in page by page
    assert kept["faults"] < PAGES // 100  # kept: the freed block is reused as it is
    assert kept["worker_faults"] > PAGES // 2 and kept["hint"]  # a worker thread's own arena: not reused
    assert not system["hint"]


@needs_glibc
def test_serve_hint_is_dropped_when_every_thread_is_on_the_main_arena():
    # (whether a worker thread then reuses a block depends on the heap's layout at the time: measured on
    # whole forward passes instead, 2.0 -> 1.2 s per image in a worker thread; see facestyle.runtime)
    kept = probe(system_allocator=False, tunables="glibc.malloc.arena_max=1")
    assert kept["applied"] and not kept["hint"]
