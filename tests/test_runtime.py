"""facestyle.runtime.keep_freed_memory: large blocks freed by one layer are reused by the next, not
page-faulted in again (the CPU forward's main cost before it), and FACESTYLE_SYSTEM_ALLOCATOR=1 opts out."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, resource, torch
from facestyle.runtime import keep_freed_memory
applied = keep_freed_memory()
def faults_of_one_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**20 // 4)  # a 64 MB tensor, written once, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_block()
print(json.dumps({"applied": applied, "faults": min(faults_of_one_block() for _ in range(3))}))
"""


def probe(system_allocator: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    env.update(FACESTYLE_SYSTEM_ALLOCATOR="1" if system_allocator else "0", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def huge_pages_always() -> bool:  # then a fresh mapping faults once per 2 MB page, not per 4 KB page
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
@pytest.mark.skipif(huge_pages_always(), reason="transparent huge pages set to always")
def test_freed_blocks_are_reused_without_page_faults():
    kept, system = probe(system_allocator=False), probe(system_allocator=True)
    assert kept["applied"] and not system["applied"]
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert system["faults"] > pages // 2  # glibc's default: a fresh mapping, faulted in page by page
    assert kept["faults"] < pages // 100  # kept: the freed block is reused as it is
