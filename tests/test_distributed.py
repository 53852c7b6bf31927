"""Multi-process training under torchrun on the CPU (gloo), two processes, the tiny preset at 64 px and
a few steps (issue 13 item 5, issue 15 item 2): the ranks hold equal weights after every step, only rank
0 writes the run folder, a run stopped and resumed with two processes ends bit-identical to an
uninterrupted one (every rank's random state is saved), and a refused --out stops every rank with one
line. Each torchrun start costs a few seconds of imports per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from facestyle.train.common import LOCK_FILE, latest_checkpoint, list_checkpoints, load_trainer_state

REPO = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "dist_probe.py"
TRAIN = ["train", "--preset", "tiny", "--data", "synthetic:8", "--batch-size", "2", "--deterministic",
         "--set", "train.save_every=2", "--set", "train.log_every=1", "--set", "train.sample_every=1000"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def torchrun(tmp_path: Path, *args: object, probe: bool = True, name: str = "run") -> tuple[subprocess.CompletedProcess,
                                                                                          Path]:
    """``python -m torch.distributed.run --standalone --nproc_per_node 2`` of the probe (or, with
    ``probe=False``, of ``-m facestyle.cli`` as the README writes it), one thread per process."""
    log = tmp_path / "probe" / f"{name}.jsonl"
    log.parent.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PROBE_WATCH": str(tmp_path / "runs"), "PROBE_LOG": str(log)}
    target = [str(PROBE)] if probe else ["-m", "facestyle.cli"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               *target, *[str(a) for a in args]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    return done, log


def tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The network's weights and the whole trainer state (optimizers, discriminator, every rank's RNG)."""
    return {**load_file(checkpoint / "model.safetensors"),
            **{f"trainer/{k}": v for k, v in load_file(checkpoint / "trainer" / "state.safetensors").items()}}


def test_two_processes_train_in_step_and_resume_exactly(tmp_path):
    runs = tmp_path / "runs"
    whole, log = torchrun(tmp_path, *TRAIN, "--steps", "4", "--out", runs / "whole", name="whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert all(len(s["digests"]) == 2 and s["digests"][0] == s["digests"][1] for s in steps), steps
    assert len({s["digests"][0] for s in steps}) == 4  # the weights change at every step
    assert Path(f"{log}.rank1").read_text() == ""  # rank 1 wrote nothing in the run folder
    final = latest_checkpoint(runs / "whole")
    state = load_trainer_state(final / "trainer")
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 1
    assert not torch.equal(state["rng"]["tensors"]["torch"], state["rng_ranks"][0]["tensors"]["torch"])
    assert not (runs / "whole" / LOCK_FILE).exists()

    # stopped after step 2 (the README's form), then resumed with two processes
    stopped, _ = torchrun(tmp_path, *TRAIN, "--steps", "4", "--stop-at", "2", "--out", runs / "split", probe=False)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert [s for s, _ in list_checkpoints(runs / "split")] == [2]
    resumed, log = torchrun(tmp_path, "train", "--resume", runs / "split", "--steps", "4", name="resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [3, 4]
    assert Path(f"{log}.rank1").read_text() == ""
    a, b = tensors(final), tensors(latest_checkpoint(runs / "split"))
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


@pytest.mark.parametrize("arch", ["spade", "sean-stargan"])
def test_compared_systems_train_in_step_on_two_processes(tmp_path, arch):
    """A VAE (its sampled code and KL through DDP) and sean-stargan (mapping networks that only StarGAN-v2's
    terms, outside DDP's forward, train): the ranks hold equal weights after every step, and they change."""
    done, log = torchrun(tmp_path, *TRAIN, "--arch", arch, "--steps", "2", "--set", "train.stargan_mapping_lr=1e-3",
                         "--out", tmp_path / "runs" / arch)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    assert all(s["digests"][0] == s["digests"][1] for s in steps) and steps[0]["digests"] != steps[1]["digests"]


def test_a_refused_out_stops_every_rank_with_one_line(tmp_path):
    """Rank 0 validates --out (the other ranks follow it): a folder holding the user's files is refused with
    one line before any write, and torchrun stops the other rank instead of leaving it waiting."""
    mine = tmp_path / "runs" / "thesis"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("mine")
    done, _ = torchrun(tmp_path, *TRAIN, "--steps", "2", "--out", mine, probe=False)
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if line.startswith("facestyle train: error:")]
    assert len(said) == 1 and str(mine) in said[0], done.stderr[-3000:]
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"] and (mine / "thesis.tex").read_text() == "mine"
