"""``facestyle`` under torchrun, watched (for tests/test_distributed.py; not a test module itself).

Run as ``python -m torch.distributed.run --nproc_per_node 2 tests/dist_probe.py COMMAND ARGS...``. After
every training step the ranks gather a SHA-256 of their networks' parameters and rank 0 appends
``{"step": N, "digests": [rank 0's, rank 1's, ...]}`` to ``$PROBE_LOG``. A rank other than 0 appends every
path under ``$PROBE_WATCH`` that it opens for writing, creates, renames, changes or removes to
``$PROBE_LOG.rankN`` (a Python audit hook), so that the test can check only rank 0 writes the run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import torch.distributed as dist

from facestyle.cli import main
from facestyle.train.common import CheckpointedRun

WATCH, LOG, RANK = os.path.realpath(os.environ["PROBE_WATCH"]), os.environ["PROBE_LOG"], int(os.environ["RANK"])
CHANGES = {"os.rename": 0, "os.remove": 0, "os.rmdir": 0, "os.mkdir": 0, "shutil.rmtree": 0, "os.truncate": 0,
           "os.chmod": 0, "os.link": 1, "os.symlink": 1, "os.utime": 0}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
written: list[str] = []


def watched(path: object) -> str | None:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        return None
    full = os.path.realpath(os.fspath(path))
    return full if full == WATCH or full.startswith(WATCH + os.sep) else None


def audit(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        if (mode is not None and any(c in mode for c in "wax+")) or (mode is None and flags & WRITE_FLAGS):
            found = watched(path)
            if found:
                written.append(f"open {found}")
    elif event in CHANGES:
        found = watched(args[CHANGES[event]])
        if found:
            written.append(f"{event} {found}")


step_batch = CheckpointedRun.step_batch


def checked_step_batch(self, batch):
    """One step, then every rank's parameter digest, gathered."""
    result = step_batch(self, batch)
    digest = hashlib.sha256()
    for network in self.checkpointed_networks():
        for parameter in network.parameters():
            digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    digests: list = [None] * self.dist.world_size
    dist.all_gather_object(digests, digest.hexdigest())
    if RANK == 0:
        with open(LOG, "a") as f:
            f.write(json.dumps({"step": self.step + 1, "digests": digests}) + "\n")
    return result


if __name__ == "__main__":
    CheckpointedRun.step_batch = checked_step_batch
    if RANK != 0:
        sys.addaudithook(audit)
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    finally:
        if RANK != 0:
            with open(f"{LOG}.rank{RANK}", "w") as f:
                f.write("".join(line + "\n" for line in written))
    sys.exit(code)
