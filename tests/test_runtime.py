"""facestyle.runtime.keep_freed_memory: large blocks freed by one layer are reused by the next, not
page-faulted in again (the CPU forward's main cost before it), and FACESTYLE_SYSTEM_ALLOCATOR=1 opts out.
Worker threads (where ``facestyle serve`` runs requests) reuse them too: every thread is on the main arena;
only when the setting comes after another thread allocated does the server suggest
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
import json, os, resource, threading, anyio, torch
from facestyle.runtime import keep_freed_memory, malloc_arenas, worker_thread_hint
if os.environ.get("EARLY_THREAD") == "1":  # a thread that allocates before the setting: an arena of its own
    early = threading.Thread(target=lambda: torch.ones(2**20))
    early.start()
    early.join()
applied = keep_freed_memory()
if os.environ.get("SERVER") == "1":  # what `facestyle serve` imports after the setting (Gradio among it)
    import facestyle.app.server
def faults_of_one_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**20 // 4)  # a 64 MB tensor, written once, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
def fewest_faults(out):
    faults_of_one_block()
    out.append(min(faults_of_one_block() for _ in range(8)))  # the fewest: a page the kernel reclaimed is not malloc
main, worker, pooled = [], [], []
fewest_faults(main)
thread = threading.Thread(target=fewest_faults, args=(worker,))
thread.start()
thread.join()
# the way Gradio runs a request's (synchronous) handler: on anyio's worker-thread pool
anyio.run(anyio.to_thread.run_sync, fewest_faults, pooled)
print(json.dumps({"applied": applied, "faults": main[0], "worker_faults": worker[0], "pooled_faults": pooled[0],
                  "arenas": malloc_arenas(), "hint": worker_thread_hint() is not None}))
"""
PAGES = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")


def probe(system_allocator: bool, tunables: str | None = None, early_thread: bool = False,
          server: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    env.update(FACESTYLE_SYSTEM_ALLOCATOR="1" if system_allocator else "0", OMP_NUM_THREADS="1",
               EARLY_THREAD="1" if early_thread else "0", SERVER="1" if server else "0")
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
def test_freed_blocks_are_reused_without_page_faults_on_worker_threads_too():
    kept, system = probe(system_allocator=False, server=True), probe(system_allocator=True)
    assert kept["applied"] and not system["applied"]
    assert system["faults"] > PAGES // 2  # glibc's default: a fresh mapping, faulted in page by page
    assert system["worker_faults"] > PAGES // 2 and system["pooled_faults"] > PAGES // 2
    assert kept["faults"] < PAGES // 100  # kept: the freed block is reused as it is
    # a thread started after the setting, and a request's thread in Gradio's pool, reuse it too: one arena
    assert kept["worker_faults"] < PAGES // 100 and kept["pooled_faults"] < PAGES // 100
    assert kept["arenas"] == 1 and system["arenas"] > 1
    assert not kept["hint"] and not system["hint"]  # nothing for a server to suggest


@needs_glibc
@needs_small_pages
def test_a_setting_that_comes_after_another_thread_allocated_is_said():
    late = probe(system_allocator=False, early_thread=True)
    assert late["applied"] and late["arenas"] > 1 and late["hint"]
    assert late["faults"] < PAGES // 100  # the main thread still reuses its blocks


@needs_glibc
def test_serve_hint_is_dropped_when_every_thread_is_on_the_main_arena():
    kept = probe(system_allocator=False, tunables="glibc.malloc.arena_max=1", early_thread=True)
    assert kept["applied"] and not kept["hint"]
