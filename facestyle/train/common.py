"""Pieces every trainer shares: the training loop and run folder (:class:`CheckpointedRun`), processes
and ranks, a resumable data stream, trainer state without pickle, checkpoint folders (atomic, rotated),
graceful stop on SIGINT/SIGTERM, progress and TensorBoard, the trainers' common CLI options.

A run folder looks like::

    RUN_DIR/config.yaml                  the resolved config (loadable with --config)
    RUN_DIR/run.json                     the data the run reads (spec, split, resolution, seed)
    RUN_DIR/checkpoints/step_0001000/    a checkpoint: what save_pretrained writes (config.json +
                                         model.safetensors, loadable by from_pretrained) ...
        trainer/state.json               ... plus the trainer state: step, data position, structure
        trainer/state.safetensors        optimizer moments, RNG states, auxiliary networks (the
                                         discriminator)
    RUN_DIR/latest                       names the last complete checkpoint ("checkpoints/step_0001000")
    RUN_DIR/config.json, model.safetensors   a copy of the latest checkpoint's network: RUN_DIR loads
    RUN_DIR/final/                       the network of a run that reached train.steps (a copy)
    RUN_DIR/.facestyle-lock              held by the trainer writing the folder (pid, host, start time)
    RUN_DIR/tb/  RUN_DIR/samples/        TensorBoard events, sample grids (samples/step_0001000.png)
    RUN_DIR/metrics.jsonl                the logged scalars, one JSON object per line

Everything is written under a temporary name, flushed to the disk and renamed, so a crash never leaves a
half-written checkpoint that a resume would pick up; temporary and old folders are named
``.facestyle-tmp-*`` / ``.facestyle-old-*`` and only those (and step folders a crash left without a
trainer state) are cleaned up at the next start. The trainer state records the SHA-256 of the weights
it belongs to, and a resume refuses weights changed since. Nothing is pickled: tensors go to
safetensors, the rest to JSON.

Outputs never replace what the user did not ask to replace: ``--out`` must be a new or empty folder, or
a run folder of the same trainer with ``--resume`` (continue it) or ``--overwrite`` (start it afresh);
a file, a checkpoint folder or any other non-empty folder is refused before anything is written
(:func:`check_run_folder`). One trainer writes a run folder at a time (:class:`RunLock`). A run stopped
by Ctrl-C or SIGTERM saves and then exits with status 130 or 143 (:class:`RunStopped`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..accel import DEVICE_HELP, PRECISIONS, Precision, auto_device
from ..checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    Pretrained,
    load_state,
    load_tensors,
    read_tagged_json,
    save_tensors,
)
from ..config import load_sections
from ..data.spec import add_data_arguments
from ..errors import CheckpointError, FacestyleError, InputError
from ..io import atomic_path, atomic_write_bytes, fsync_path
from ..weights import sha256_file

TRAINER_DIR = "trainer"
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
STATE_FORMAT = "facestyle-trainer"
STATE_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
RUN_CONFIG = "config.yaml"  # the resolved config of a run folder
RUN_INFO = "run.json"  # what the run trains on
FINAL_DIR = "final"  # the finished network
LOCK_FILE = ".facestyle-lock"  # held by the one trainer writing a run folder
TEMP_PREFIX, OLD_PREFIX = ".facestyle-tmp-", ".facestyle-old-"  # folders only facestyle makes (and removes)
_OWN_NAME = re.compile(r"^\.facestyle-(tmp|old)-.+-\d+-[0-9a-f]{8}$")
_STEP_NAME = re.compile(r"^step_\d{7,}$")
# What a run folder's trainer writes there; --overwrite removes these names and nothing else.
RUN_ENTRIES = (CHECKPOINTS_DIR, LATEST_FILE, CONFIG_NAME, WEIGHTS_NAME, FINAL_DIR, RUN_CONFIG, RUN_INFO,
               "metrics.jsonl", "metrics.json", "tb", "samples")
TRAINER_KINDS = {"train": "generator", "train-parser": "parser", "train-mapping": "mapping",
                 "train-flow": "flow", "train-harmony": "harmony",
                 "train-harmonizer": "harmonizer"}  # command -> checkpoint kind


class TrainingError(FacestyleError):
    """A run that cannot go on (a non-finite loss, a run folder in the way); the message says what to do."""


class RunFolderError(TrainingError, InputError):
    """An ``--out`` that holds a run or is in use: a TrainingError (a run folder in the way) and an
    InputError (the user's argument), whichever a caller catches."""


class RunStopped(SystemExit):
    """Raised after a run stopped by a signal saved its checkpoint: the process exits with the shell's
    status of that signal, 130 for SIGINT (Ctrl-C) and 143 for SIGTERM (:func:`stop_status`), not 0, so
    that a script or a scheduler does not take the run for finished. ``checkpoint``: what was saved."""

    def __init__(self, checkpoint: Path | None, signal_name: str = "SIGTERM") -> None:
        super().__init__(stop_status(signal_name))
        self.checkpoint, self.signal_name = checkpoint, signal_name


def stop_status(signal_name: str) -> int:
    """The exit status of a run stopped by ``signal_name`` after saving: 128 + the signal's number (130 for
    SIGINT, 143 for SIGTERM), as the shell reports a process that signal ended."""
    return 128 + int(signal.Signals[signal_name])


def stopped_message(signal_name: str, step: int) -> str:
    """``stopped by Ctrl-C (SIGINT) at step N (exit status 130)``: the first half of a stopped run's line."""
    what = "Ctrl-C (SIGINT)" if signal_name == "SIGINT" else signal_name
    return f"stopped by {what} at step {step} (exit status {stop_status(signal_name)})"


# ---------------------------------------------------------------------------------------------------------
# Processes: one per device; rank and world size come from torchrun's environment variables.


@dataclass(frozen=True)
class Distributed:
    """This process's place in a (possibly single-process) run. Only rank 0 logs and saves."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> Distributed:
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by torchrun); 0, 1, 0 when absent."""
        try:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                       int(os.environ.get("LOCAL_RANK", 0)))
        except ValueError:
            raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None

    def device(self, requested: str) -> torch.device:
        """The device this process trains on: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a multi-process run."""
        if requested == "auto":
            requested = auto_device()
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise InputError(f"unknown device {requested!r} (use auto, cpu, cuda or cuda:N)") from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise InputError("--device cuda was asked for but torch sees no CUDA device")
            if device.index is None:
                device = torch.device("cuda", self.local_rank if self.enabled else torch.cuda.current_device())
            torch.cuda.set_device(device)
        return device

    def init_process_group(self, device: torch.device) -> None:
        """Join the process group (NCCL on CUDA, gloo otherwise) when there is more than one process."""
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    rank=self.rank, world_size=self.world_size)

    def any(self, *flags: bool, device: torch.device | None = None) -> list[bool]:
        """Each flag OR-ed over all processes (so that every rank stops, or none does)."""
        if not self.enabled:
            return list(flags)
        t = torch.tensor([float(f) for f in flags], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def mean(self, values: Mapping[str, float], device: torch.device | None = None) -> dict[str, float]:
        """Each value averaged over all processes (for logging)."""
        if not self.enabled or not values:
            return dict(values)
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist(), strict=True))

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def log(dist_env: Distributed, message: str) -> None:
    """Print a line on rank 0 without breaking the progress bar."""
    if dist_env.is_main:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------
# Reproducibility


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for the duration of a run, restored afterwards."""
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Every RNG the training step may draw from: torch (CPU and each CUDA device), numpy, Python.
    Returned as tensors (uint8 / int64) and the JSON-able remainder."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    version, mt, gauss_next = random.getstate()
    tensors["python"] = torch.tensor(mt, dtype=torch.int64)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    meta = {"python": {"version": version, "gauss_next": gauss_next},
            "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    return tensors, meta


def all_rng_states(dist_env: Distributed) -> list[tuple[dict[str, Tensor], dict[str, Any]]]:
    """Every process's :func:`rng_state`, in rank order, on every process: a collective when the process
    group is up (each process draws its own noise, so a resume restores each one's)."""
    mine = rng_state()
    if not dist_env.enabled or not dist.is_initialized():
        return [mine]
    gathered: list[Any] = [None] * dist_env.world_size
    dist.all_gather_object(gathered, mine)  # between the run's own processes; nothing is read from a file
    return gathered


def set_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> list[str]:
    """Restore what :func:`rng_state` captured; returns warnings (e.g. a different number of GPUs)."""
    warnings = []
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.append(f"the checkpoint has CUDA RNG states for {len(cuda)} device(s), this machine has "
                            f"{torch.cuda.device_count()}: CUDA random numbers will differ")
    py = meta["python"]
    random.setstate((py["version"], tuple(int(v) for v in tensors["python"].tolist()), py["gauss_next"]))
    npm = meta["numpy"]
    np.random.set_state((npm["kind"], tensors["numpy"].numpy().astype(np.uint32), npm["pos"],
                         npm["has_gauss"], npm["cached_gaussian"]))
    return warnings


# ---------------------------------------------------------------------------------------------------------
# Data: a permutation per epoch from (seed, epoch), sharded per rank, resumable at any batch.


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    entropy = np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(entropy[0]) << 31 | int(entropy[1]) >> 1)


class EpochSampler(Sampler):
    """Yields ``(index, sample_seed)`` for this rank's share of the epoch's permutation, from ``start``.

    The permutation and the per-sample seeds (which drive the random crop and flip) depend only on
    ``(seed, epoch)``, so a data position is two integers, ``epoch`` and the index ``start`` into this
    rank's share, and a resumed run reads exactly the samples the uninterrupted one would. Each rank
    takes every ``world_size``-th element of the permutation, truncated to a multiple of ``world_size``
    (DistributedSampler with ``drop_last``).
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.size // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = _epoch_generator(self.seed, self.epoch)
        order = torch.randperm(self.size, generator=g)
        seeds = torch.randint(0, 2**62, (self.size,), generator=g)
        usable = len(self) * self.world_size
        mine = torch.arange(self.rank, usable, self.world_size)[self.start:]
        yield from zip(order[mine].tolist(), seeds[mine].tolist(), strict=True)


class SeededTransform(Dataset):
    """A dataset whose random transform is seeded per sample: item ``(index, seed)`` is reproducible in
    any worker process, and the training process's own RNG is never touched."""

    def __init__(self, dataset: Dataset, transform) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        image, labels, name = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            image, labels = self.transform(image, labels)
        return image, labels, name


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker init: leave SIGINT/SIGTERM to the training process, which finishes the step and
    saves (a Ctrl-C reaches the whole process group, workers included)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class DataStream:
    """Endless batches over epochs; ``epoch`` and ``position`` always name the next batch to read.

    ``position`` counts samples into this rank's share of the epoch. Batches are full (``drop_last``).
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, dist_env: Distributed,
                 num_workers: int = 0, pin_memory: bool = False) -> None:
        self.sampler = EpochSampler(len(dataset), seed, dist_env.rank, dist_env.world_size)
        self.batch_size = batch_size
        if len(self.sampler) < batch_size:
            raise InputError(f"the data has {len(dataset)} sample(s), fewer than a batch of {batch_size} "
                             f"per process (x{dist_env.world_size}); lower --batch-size")
        self.loader = DataLoader(
            dataset, batch_size=batch_size, sampler=self.sampler, drop_last=True, num_workers=num_workers,
            pin_memory=pin_memory, persistent_workers=num_workers > 0,
            worker_init_fn=ignore_stop_signals if num_workers > 0 else None,
            generator=torch.Generator().manual_seed(seed),  # keeps the DataLoader off the global RNG
        )
        self.epoch, self.position = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler) // self.batch_size

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if self.position + self.batch_size > len(self.sampler):  # the epoch's last full batch was read
            self.epoch, self.position = self.epoch + 1, 0

    def __iter__(self) -> Iterator:
        while True:
            self.sampler.set_epoch(self.epoch, self.position)
            for batch in self.loader:
                self.position += self.batch_size
                if self.position + self.batch_size > len(self.sampler):
                    self.epoch, self.position = self.epoch + 1, 0
                yield batch
                if self.position == 0:  # the epoch ended under this batch: restart the loader
                    break


# ---------------------------------------------------------------------------------------------------------
# Trainer state: nested dicts of tensors and plain values, as safetensors + JSON (no pickle).


def flatten_state(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """Move every tensor of a nested structure into ``tensors`` (keys from ``prefix``) and return a JSON-able
    skeleton that :func:`unflatten_state` fills back in. Handles optimizer state dicts (integer keys,
    tuples such as ``betas``)."""
    if isinstance(obj, Tensor):
        tensors[prefix] = obj.detach()
        return {"__tensor__": prefix}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten_state(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in the trainer state ({prefix})")


def unflatten_state(skeleton: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__tensor__"}:
            return tensors[skeleton["__tensor__"]]
        if set(skeleton) == {"__items__"}:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__items__"]}
        if set(skeleton) == {"__tuple__"}:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


def save_trainer_state(directory: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of tensors and plain values) as ``state.safetensors`` +
    ``state.json`` in ``directory``."""
    tensors: dict[str, Tensor] = {}
    skeleton = flatten_state(dict(state), "state", tensors)
    save_tensors(tensors, directory / STATE_TENSORS)
    payload = {"format": STATE_FORMAT, "version": STATE_VERSION, "state": skeleton}
    atomic_write_bytes(directory / STATE_JSON, (json.dumps(payload, indent=1, allow_nan=True) + "\n").encode())


def load_trainer_state(directory: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = directory / STATE_JSON
    payload = read_tagged_json(path, STATE_FORMAT,
                               f"{directory}: no trainer state ({STATE_JSON} is missing); it cannot be resumed",
                               f"{path} is not a facestyle trainer state")
    tensors = load_tensors(directory / STATE_TENSORS)
    if map_location != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    try:
        return unflatten_state(payload["state"], tensors)
    except KeyError as exc:
        raise CheckpointError(f"{directory}: {STATE_TENSORS} lacks the tensor {exc}") from None


# ---------------------------------------------------------------------------------------------------------
# Checkpoint folders: written to a temporary folder and renamed; `latest` names the last one; rotation.


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints of a run (those with a trainer state), by step."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        name = path.name
        if name.startswith("step_") and name[5:].isdigit() and (path / TRAINER_DIR / STATE_JSON).is_file():
            found.append((int(name[5:]), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``RUN_DIR/latest`` names, else the highest complete step folder, else None."""
    run_dir = Path(run_dir)
    latest = run_dir / LATEST_FILE
    if latest.is_file():
        candidate = run_dir / latest.read_text().strip()
        if (candidate / TRAINER_DIR / STATE_JSON).is_file():
            return candidate
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_resume(path: str | os.PathLike) -> Path:
    """A checkpoint folder to resume from: a run folder (its latest checkpoint) or a step folder."""
    path = Path(path)
    if (path / TRAINER_DIR / STATE_JSON).is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"cannot resume: {path} does not exist")
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"cannot resume: {path} holds no checkpoint with a trainer state "
                              f"(expected {CHECKPOINTS_DIR}/step_*/{TRAINER_DIR}/{STATE_JSON})")
    return found


def read_run_info(run_dir: Path, *required: str) -> dict[str, Any]:
    """What a run trains on (``RUN_DIR/run.json``): {} when it is missing or unreadable, unless ``required``
    keys are asked for (then an InputError asking for the data again)."""
    path = run_dir / RUN_INFO
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        info = None
    info = info if isinstance(info, dict) else {}
    if any(key not in info for key in required):
        raise InputError(f"{path} is missing or unreadable: give the data again with --data")
    return info


def load_run_config(run_dir: Path, model: Any, train: Any) -> tuple[Any, Any]:
    """The (model, train) configs of a run folder's ``config.yaml``, laid over ``model`` and ``train``."""
    sections = load_sections(run_dir / RUN_CONFIG, {"model": model, "train": train})
    return sections["model"], sections["train"]


def check_same_network(network_class: type[Pretrained], config: Any, checkpoint: Path) -> None:
    """A resumed run keeps its network: ``config`` must equal the checkpoint's model config."""
    saved, _ = network_class.pretrained_config(checkpoint)
    diff = [f"{f.name}: {getattr(saved, f.name)!r} -> {getattr(config, f.name)!r}"
            for f in fields(config) if getattr(saved, f.name) != getattr(config, f.name)]
    if diff:
        raise CheckpointError(f"cannot resume {checkpoint} with another model config ({'; '.join(diff)}); "
                              "only train.* values may change on resume")


def check_train_values(cfg: Any, *checks: tuple[bool, str]) -> None:
    """Values a run cannot start with, caught before anything is built or written: the schedule every
    trainer has (``batch_size``, ``steps``, ``log_every``, ``save_every``), then ``checks`` ((ok, message)
    pairs). An InputError says the first that fails."""
    schedule = [
        (cfg.batch_size >= 1, f"train.batch_size must be at least 1, got {cfg.batch_size}"),
        (cfg.steps >= 1, f"train.steps must be at least 1, got {cfg.steps}"),
        (cfg.log_every >= 1, f"train.log_every must be at least 1, got {cfg.log_every}"),
        (cfg.save_every >= 1, f"train.save_every must be at least 1, got {cfg.save_every}"),
    ]
    for ok, message in [*schedule, *checks]:
        if not ok:
            raise InputError(message)


def add_run_arguments(p: argparse.ArgumentParser, set_example: str) -> None:
    """The options of every trainer's command: the data, the run folder, ``--set`` (``set_example``: an
    override to show), the schedule, the device and ``--deterministic``."""
    add_data_arguments(p, required=False)  # --data (on --resume: the run's own), --split, --resolution, --seed
    p.add_argument("--out", metavar="RUN_DIR", help="the run folder: a new or empty folder (default with "
                                                    "--resume: that run)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run (its latest checkpoint, or a checkpoints/step_X folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in --out although it holds a run of this trainer (its checkpoints, "
                        "final/ and logs are removed; nothing else in the folder is touched)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help=f"override one value, e.g. --set {set_example} (repeatable)")
    p.add_argument("--steps", type=int, default=None, help="train.steps: where the schedule ends")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after this step (saving), keeping the schedule; resume later")
    p.add_argument("--batch-size", type=int, default=None, help="train.batch_size (per process)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_precision_arguments(p)
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms: a resumed run matches an uninterrupted one bit for bit")


def add_precision_arguments(p: argparse.ArgumentParser) -> None:
    """A trainer's ``--precision`` (recorded in its run folder and checkpoints) and ``--compile``."""
    p.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                   help="fp32, or bf16/fp16 mixed precision (autocast; float32 master weights; fp16 with a "
                        "gradient scaler); recorded in the run folder (default: fp32; on --resume: the run's own)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks' forward passes (a slower start, then faster steps where the "
                        "compiler fuses well: GPUs)")
    p.set_defaults(run_precision=True)  # the command line does not autocast around the whole command


def run_folder(args: argparse.Namespace) -> Path:
    """``--out``, or with ``--resume`` alone the run it continues; checked (:func:`check_run_folder`) for
    the command's trainer before anything is built or written."""
    if args.out is None and args.resume is None:
        raise InputError("--out RUN_DIR is required (or --resume RUN_DIR)")
    out = Path(args.out) if args.out is not None else default_run_dir(args.resume)
    check_run_folder(out, args.resume or False, kind=TRAINER_KINDS.get(getattr(args, "command", None) or ""),
                     overwrite=getattr(args, "overwrite", False))
    return out


def default_run_dir(resume: str | os.PathLike) -> Path:
    """The run folder ``--resume`` alone writes to: the run itself, also when a step folder is named."""
    path = Path(resume)
    if (path / TRAINER_DIR / STATE_JSON).is_file() and path.parent.name == CHECKPOINTS_DIR:
        return path.parent.parent
    return path


# ---------------------------------------------------------------------------------------------------------
# What --out may be, and the lock of a run folder


_OVERWRITE_APPROVED: set[str] = set()  # run folders whose old run --overwrite replaces (at the first write)


def _key(path: Path) -> str:
    return os.path.abspath(path)


def run_kind(run_dir: Path) -> str | None:
    """The checkpoint kind a run folder's trainer writes (``generator`` for every ``train --arch``,
    ``mapping``...): from its newest checkpoint's ``config.json``, else its ``run.json``; None when neither
    says."""
    from ..arch import ARCHS

    generator_kinds = {arch.network.kind for arch in ARCHS.values()}  # `facestyle train --arch`'s networks
    found = list_checkpoints(run_dir)
    for _, path in reversed(found):
        try:
            data = json.loads((path / CONFIG_NAME).read_text())
            kind = str(data.get("kind", "generator"))
            return "generator" if kind in generator_kinds else kind
        except (OSError, ValueError, AttributeError):
            continue
    return TRAINER_KINDS.get(str(read_run_info(run_dir).get("trainer")))


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` holds a facestyle run (``run.json`` or a checkpoint with a trainer state)."""
    return (path / RUN_INFO).is_file() or bool(list_checkpoints(path))


def check_run_folder(out_dir: str | os.PathLike, resume: bool | str | os.PathLike = False, *,
                     kind: str | None = None, overwrite: bool = False, dist_env: Distributed | None = None) -> None:
    """Refuse an ``--out`` that would replace what the user did not ask to replace, before any write.

    Accepted: a folder that does not exist or is empty; a run folder of the same trainer (``kind``, when
    known) with ``resume`` (continue it) or ``overwrite`` (start afresh: its run files are removed at
    the first write). Refused with one line: a file, a run folder in use by another trainer, a run of
    another trainer, a checkpoint folder or any other non-empty folder. Under torchrun only rank 0
    checks; the others follow it (a refusal ends rank 0, and torchrun then stops them all).
    """
    dist_env = dist_env or Distributed.from_env()
    if not dist_env.is_main:
        return
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder; give a new or empty folder for the run")
    if not out.is_dir():
        if resume is True:
            raise CheckpointError(f"cannot resume: {out} does not exist")
        return
    holder = RunLock.holder(out)
    if holder is not None:
        raise RunFolderError(f"{out} is in use by {holder}; wait for it to end, or give another --out")
    try:
        entries = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot read the folder ({exc.strerror or exc})") from None
    if not entries:
        return
    what = {"generator": "facestyle train", "parser": "facestyle train-parser"}.get(kind or "", kind)
    if is_run_folder(out):
        found = run_kind(out)
        if kind is not None and found is not None and found != kind:
            raise InputError(f"--out {out}: holds a run of another trainer (its network is a {found}, not a "
                             f"{kind}); give a new or empty folder")
        overwrite = overwrite or _key(out) in _OVERWRITE_APPROVED  # approved by the command line's check
        if resume or overwrite:
            if overwrite and not resume:
                _OVERWRITE_APPROVED.add(_key(out))
            return
        raise RunFolderError(f"{out} already holds a run; continue it with --resume {out}, start it afresh with "
                            "--overwrite, or choose another --out")
    if (out / CONFIG_NAME).is_file() or (out / WEIGHTS_NAME).is_file():
        raise InputError(f"--out {out}: is a checkpoint folder ({CONFIG_NAME} + {WEIGHTS_NAME}); training "
                         f"into it would replace its network; give a new or empty folder for the run")
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    raise InputError(f"--out {out}: is not empty ({len(entries)} item(s): {shown}) and holds no "
                     f"{what + ' ' if what else ''}run; give a new or empty folder for the run")


def clear_run(run_dir: Path) -> list[str]:
    """Remove the files a trainer writes in a run folder (:data:`RUN_ENTRIES`), nothing else."""
    removed = []
    for name in RUN_ENTRIES:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


class RunLock:
    """The lock of a run folder, ``RUN_DIR/.facestyle-lock``: an exclusive ``flock`` held as long as the
    trainer's process lives (so a lock left by a dead process is free again), and a JSON record of who
    holds it (pid, host, command, start time) for the message a second trainer gets."""

    _held: dict[str, RunLock] = {}

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir, self.fd = run_dir, fd

    @staticmethod
    def _flock(fd: int, exclusive: bool) -> bool:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no lock
            return True
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise

    @staticmethod
    def describe(record: dict[str, Any]) -> str:
        started = record.get("started")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) \
            else "an unknown time"
        return (f"facestyle {record.get('command') or 'training'} (pid {record.get('pid', '?')} on "
                f"{record.get('host', '?')}, started {when})")

    @classmethod
    def holder(cls, run_dir: Path) -> str | None:
        """Who holds the lock of ``run_dir`` (described in words), or None when nobody does (no lock file,
        or one left by a process that is gone). This process's own lock is not reported."""
        if _key(run_dir) in cls._held:
            return None
        path = run_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            if cls._flock(fd, exclusive=False):
                return None
            try:
                record = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                record = {}
            return cls.describe(record if isinstance(record, dict) else {})
        finally:
            os.close(fd)

    @classmethod
    def acquire(cls, run_dir: Path, command: str) -> RunLock:
        """Take the lock of ``run_dir`` (creating the folder), or a TrainingError naming who holds it. A lock
        this process holds already is returned as it is."""
        key = _key(run_dir)
        if key in cls._held:
            return cls._held[key]
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LOCK_FILE
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            if not cls._flock(fd, exclusive=True):
                os.close(fd)
                holder = cls.holder(run_dir) or "another trainer"
                raise RunFolderError(f"{run_dir} is in use by {holder}; wait for it to end, or give another --out")
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:  # the holder released (and removed) it between open and flock
                same = False
            if same:
                break
            os.close(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": time.time()}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode())
        lock = cls._held[key] = cls(run_dir, fd)
        return lock

    @classmethod
    def release(cls, run_dir: Path) -> None:
        """Give the lock of ``run_dir`` back (removing the file) if this process holds it."""
        lock = cls._held.pop(_key(run_dir), None)
        if lock is not None:
            with contextlib.suppress(OSError):
                (run_dir / LOCK_FILE).unlink()
            os.close(lock.fd)


@contextlib.contextmanager
def writing(run_dir: Path, kept: str = "") -> Iterator[None]:
    """Turn a failed write in a run folder (disk full, read-only folder...) into one line naming it."""
    try:
        yield
    except OSError as exc:
        target = exc.filename or run_dir
        why = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise TrainingError(f"cannot write {target}: {why}{'; ' + kept if kept else ''}") from None


def resume_point(out_dir: Path, resume: bool | str | os.PathLike, *, kind: str | None = None,
                 overwrite: bool = False) -> Path | None:
    """The checkpoint a run resumes from (``resume``: True for ``out_dir``'s own run, or a run or step
    folder); None for a new run. ``out_dir`` is checked first (:func:`check_run_folder`)."""
    check_run_folder(out_dir, resume, kind=kind, overwrite=overwrite)
    if resume:
        return resolve_resume(out_dir if resume is True else Path(resume))
    return None


def resumed_data(out_dir: Path, resume: bool | str | os.PathLike, data: dict[str, Any], *required: str,
                 kind: str | None = None, overwrite: bool = False) -> tuple[Path | None, dict[str, Any]]:
    """The checkpoint a run resumes from (see :func:`resume_point`) and the data it trains on: ``data``
    as given, or on a resume without a ``spec`` the run's own from ``run.json`` (``required`` keys must
    be there; missing others keep their given values)."""
    checkpoint = resume_point(out_dir, resume, kind=kind, overwrite=overwrite)
    if checkpoint is not None and data["spec"] is None:
        info = read_run_info(checkpoint.parent.parent, *required)
        data = {key: info.get(key, value) for key, value in data.items()}
    if data["spec"] is None:
        raise InputError("no data given (--data SPEC)")
    return checkpoint, data


def resume_state(network_class: type[Pretrained], config: Any, checkpoint: Path | None) -> dict[str, Any] | None:
    """The trainer state of the checkpoint a run resumes from (None for a new run), once its network is
    known to be the configured one."""
    if checkpoint is None:
        return None
    check_same_network(network_class, config, checkpoint)
    return load_trainer_state(checkpoint / TRAINER_DIR)


def run_trainer(deterministic: bool, build: Callable[[], CheckpointedRun]) -> Path:
    """Build a trainer and train it (in deterministic mode if asked), leaving the process group and giving
    the run folder's lock back after."""
    with deterministic_mode(deterministic):
        trainer = None
        try:
            trainer = build()
            return trainer.train()
        finally:
            if trainer is not None:
                trainer.dist.shutdown()
                RunLock.release(trainer.run_dir)


def _own_name(prefix: str, name: str) -> str:
    """A sibling name only facestyle makes: ``.facestyle-tmp-NAME-PID-RANDOM``."""
    return f"{prefix}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success its files are flushed to the disk and it
    replaces ``final`` in one rename (the old one renamed aside first, then deleted)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(_own_name(TEMP_PREFIX, final.name))
    tmp.mkdir()
    try:
        yield tmp
        for path in tmp.rglob("*"):
            fsync_path(path, directory=path.is_dir())
        fsync_path(tmp, directory=True)
        old = None
        if final.exists():
            old = final.with_name(_own_name(OLD_PREFIX, final.name))
            final.rename(old)
        tmp.rename(final)
        fsync_path(final.parent, directory=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """What a crash in the middle of a save or a rotation left behind, and nothing else: folders named
    ``.facestyle-tmp-*`` / ``.facestyle-old-*`` (only facestyle makes these names) in the run folder and
    its ``checkpoints/``, and step folders in ``checkpoints/`` that have lost their trainer state (a
    rotation killed half-way, by older versions). Returns what was removed."""
    removed = []
    for parent in (run_dir, run_dir / CHECKPOINTS_DIR):
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if not path.is_dir() or path.is_symlink():
                continue
            orphan = parent.name == CHECKPOINTS_DIR and _STEP_NAME.match(path.name) \
                and not (path / TRAINER_DIR / STATE_JSON).is_file()
            if _OWN_NAME.match(path.name) or orphan:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def rotate_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (``keep_last <= 0`` keeps all); returns the
    deleted folders. The checkpoint ``latest`` names is never deleted. Each is first renamed to a
    ``.facestyle-old-*`` name, so that a kill in the middle leaves nothing a resume could mistake for a
    checkpoint, and the next start removes what is left."""
    if keep_last <= 0:
        return []
    found = list_checkpoints(run_dir)
    latest = latest_checkpoint(run_dir)
    removed = []
    for _, path in found[:-keep_last]:
        if latest is not None and path.resolve() == latest.resolve():
            continue
        old = path.with_name(_own_name(OLD_PREFIX, path.name))
        path.rename(old)
        shutil.rmtree(old, ignore_errors=True)
        removed.append(path)
    return removed


def write_latest(run_dir: Path, checkpoint: Path) -> None:
    atomic_write_bytes(run_dir / LATEST_FILE, f"{checkpoint.relative_to(run_dir).as_posix()}\n".encode())


def copy_atomic(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` (its own file, not a link: editing one never changes the other),
    atomically, flushed to the disk, with the umask's permissions."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


# ---------------------------------------------------------------------------------------------------------
# Stopping: SIGINT / SIGTERM finish the current step, save and exit; a second SIGINT aborts at once.


class GracefulStop:
    """Context manager that turns SIGINT and SIGTERM into a ``requested`` flag the training loop polls.

    Handlers are installed only in the main thread (elsewhere Python does not deliver signals) and the
    previous ones are restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, on_request=None) -> None:
        self.requested: str | None = None  # the signal's name once one arrived
        self.on_request = on_request
        self._previous: dict[int, Any] = {}

    def handler(self, signum: int, frame: Any = None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without saving
        self.requested = signal.Signals(signum).name
        if self.on_request is not None:
            self.on_request(self.requested)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


# ---------------------------------------------------------------------------------------------------------
# Non-finite losses


def nonfinite(losses: Mapping[str, Tensor]) -> list[str]:
    """Names of the losses that are NaN or infinite (one device sync for all of them)."""
    names = list(losses)
    finite = torch.isfinite(torch.stack([losses[n].detach().float() for n in names])).tolist()
    return [n for n, ok in zip(names, finite, strict=True) if not ok]


def as_floats(values: Mapping[str, Tensor]) -> dict[str, float]:
    """Scalar tensors as floats (one device sync for all of them)."""
    return dict(zip(values, torch.stack([v.detach().float() for v in values.values()]).tolist(), strict=True))


def nonfinite_parameters(*modules: nn.Module) -> list[str]:
    return [name for m in modules for name, p in m.named_parameters() if not torch.isfinite(p).all()]


# ---------------------------------------------------------------------------------------------------------
# The run folder every trainer keeps


class CheckpointedRun:
    """What the trainers (generator, parser, mapping networks, flows, harmony classifier) share: the
    training loop (:meth:`train`, :meth:`run_steps`: save every ``save_every`` steps, at the end and on
    SIGINT/SIGTERM; :meth:`finish`), the run folder (``config.yaml`` + ``run.json``, ``checkpoints/step_X``
    written atomically with ``latest``, the mirror at the folder's root and rotation, ``final``), the
    non-finite stops, and restoring a checkpoint on resume.

    A trainer has ``dist``, ``device``, ``run_dir``, ``step``, ``last_saved``, ``data`` (a
    :class:`DataStream`), ``last_losses``, ``stop_at`` and ``train_config`` (with ``steps``, ``seed``,
    ``log_every``, ``save_every`` and ``keep_last``), and defines :meth:`checkpointed_networks` (the
    first is the one saved), :meth:`save_network`, :meth:`trainer_state` and :meth:`load_aux_state`; for
    :meth:`train`, also :meth:`prepare_run_dir`, :meth:`describe` and :meth:`train_step`, and the hooks
    it calls as it goes.
    """

    dist: Distributed
    device: torch.device
    run_dir: Path
    step: int
    last_saved: Path | None
    data: DataStream
    last_losses: dict[str, float]
    stop_at: int | None
    train_config: Any
    rng_states: list[tuple[dict[str, Tensor], dict[str, Any]]] | None = None  # every rank's, while saving
    precision: Precision = Precision()  # set by init_precision
    scaler: torch.amp.GradScaler | None = None
    nonfinite_advice = "lower train.lr, or check the data"  # the end of a non-finite loss's message
    command = ""  # the CLI subcommand, for "continue with: facestyle COMMAND --resume RUN_DIR"
    network_name = "network"  # what the "done" line calls the trained network
    mismatch_name = "network"  # "... does not match this NAME" when a trainer state does not load
    speed_unit = "images"  # what the data stream yields, for ``speed/UNIT_per_second``

    def init_precision(self, requested: str | None, state: Mapping[str, Any] | None) -> None:
        """The run's precision: ``requested`` (``--precision``), else the resumed checkpoint's, else fp32;
        and its gradient scaler (active for fp16; its state is restored with the progress)."""
        recorded = None if state is None else str(state.get("precision", "fp32"))
        self.precision = Precision(requested or recorded or "fp32")
        if recorded is not None and self.precision.name != recorded:
            log(self.dist, f"note: the run was trained in {recorded} so far; continuing in {self.precision.name}")
        self.scaler = self.precision.grad_scaler(self.device)

    def autocast(self):
        """The forward passes' context: autocast in the run's precision (nothing for fp32)."""
        return self.precision.autocast(self.device)

    def optimize(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Gradients of ``loss`` into ``optimizer``'s parameters (cleared first) and one step, through the
        fp16 gradient scaler when there is one (a step whose gradients overflowed is skipped)."""
        optimizer.zero_grad(set_to_none=True)
        scaler = self.scaler
        if scaler is None or not scaler.is_enabled():
            loss.backward()
            optimizer.step()
            return
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def checkpointed_networks(self) -> tuple[nn.Module, ...]:
        """The networks whose weights must be finite to be saved; the first is the one saved and restored."""
        raise NotImplementedError

    def save_network(self, directory: Path) -> None:
        """Write the network's checkpoint files (config.json + model.safetensors) into ``directory``."""
        raise NotImplementedError

    def trainer_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_aux_state(self, state: Mapping[str, Any]) -> None:
        """Restore optimizers and auxiliary networks from a checkpoint's trainer state."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------- training

    def prepare_run_dir(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """The network and the data, for the first log line."""
        raise NotImplementedError

    def train_step(self, *batch: Tensor) -> dict[str, float]:
        """One optimisation step; returns the losses (logged as ``loss/NAME``) and other scalars (names
        with a ``/``, logged as they are) as floats."""
        raise NotImplementedError

    def start_training(self) -> None:
        """Before the first step of this call (notes, train mode)."""

    def step_batch(self, batch: Any) -> tuple[dict[str, float], int]:
        """One step on a batch of the data stream: (scalars, samples). Here (image, labels, names)."""
        image, labels, _ = batch
        return self.train_step(image.to(self.device, non_blocking=True),
                               labels.to(self.device, non_blocking=True)), image.shape[0]

    def postfix(self, scalars: Mapping[str, float], speed: float) -> dict[str, float]:
        """What the progress bar shows after a step (``speed``: samples per second)."""
        return {}

    def extra_scalars(self) -> dict[str, float]:
        """Scalars logged with the losses every ``log_every`` steps (learning rates, statistics)."""
        return {}

    def after_step(self) -> None:
        """After each step is logged (sample grids)."""

    def checkpoint_scalars(self) -> dict[str, float]:
        """Measured (and logged) before each checkpoint (a held-out evaluation)."""
        return {}

    def train(self) -> Path:
        """Run until ``train.steps`` (or ``stop_at``, or a SIGINT/SIGTERM), saving as configured."""
        cfg = self.train_config
        end = cfg.steps if self.stop_at is None else min(cfg.steps, self.stop_at)
        if self.step >= end:
            log(self.dist, f"already at step {self.step} of {end}: nothing to train (raise --steps to go on)")
            return self.run_dir
        self.prepare_run_dir()
        log(self.dist, f"training {self.describe()} from step {self.step} to {end} on {self.device}; "
                       f"run folder {self.run_dir}")
        self.start_training()
        batches, meter = iter(self.data), Meter()
        progress = Progress(self.run_dir, self.step, cfg.steps, self.dist)

        def step() -> None:
            scalars, samples = self.step_batch(next(batches))
            self.step += 1
            meter.update(scalars, images=samples * self.dist.world_size)
            progress.step(self.postfix(scalars, meter.images_per_second()))
            if self.step % cfg.log_every == 0 or self.step == end:
                self.last_losses = self.dist.mean(meter.means(), device=self.device)
                progress.log(self.step, {**{k if "/" in k else f"loss/{k}": v for k, v in self.last_losses.items()},
                                         **self.extra_scalars(),
                                         f"speed/{self.speed_unit}_per_second": meter.images_per_second()})
                meter.reset()
            self.after_step()

        def save() -> None:
            scalars = self.checkpoint_scalars()
            if scalars:
                progress.log(self.step, scalars)
            self.save_checkpoint()

        try:
            stopped = self.run_steps(end, step, save)
        finally:
            progress.close()
        self.finish(stopped)
        return self.run_dir

    def run_steps(self, end: int, step: Callable[[], None], save: Callable[[], None]) -> str | None:
        """Call ``step`` (which advances ``self.step``) up to ``end``, and ``save`` every ``save_every``
        steps, at ``end`` and once a SIGINT/SIGTERM reached any process, which then stops every process.
        Returns the name of the signal that stopped the run (the same on every process: SIGTERM when any
        process got one, else SIGINT), or None."""
        stop = GracefulStop(on_request=self.announce_stop)
        stopped = None
        with stop:
            while self.step < end:
                step()
                sigint, sigterm = self.dist.any(stop.requested == "SIGINT", stop.requested == "SIGTERM",
                                                device=self.device)
                stopped = "SIGTERM" if sigterm else "SIGINT" if sigint else None
                if self.step % self.train_config.save_every == 0 or self.step == end or stopped:
                    save()
                if stopped:
                    break
        return stopped

    def finish(self, stopped: str | None) -> None:
        """The ending: at ``train.steps``, ``final`` and where the network is (also when a signal arrived
        during the last step: the run is finished); else how to continue. A run stopped by SIGINT or
        SIGTERM then raises :class:`RunStopped` (exit status 130 or 143)."""
        if self.step >= self.train_config.steps:
            log(self.dist, f"done: step {self.step}; {self.network_name} in {self.write_final()}")
            return
        why = stopped_message(stopped, self.step) if stopped else f"stopped at step {self.step} (stop_at)"
        log(self.dist, f"{why}: saved {self.last_saved}; continue with: "
                       f"facestyle {self.command} --resume {self.run_dir}")
        if stopped:
            raise RunStopped(self.last_saved, stopped)

    def distribute(self, *modules: nn.Module) -> tuple[nn.Module, ...]:
        """Join the process group; the modules wrapped in DistributedDataParallel when there are several
        processes, else themselves."""
        self.dist.init_process_group(self.device)
        if not self.dist.enabled:
            return modules
        ids = [self.device.index] if self.device.type == "cuda" else None
        return tuple(nn.parallel.DistributedDataParallel(m, device_ids=ids) for m in modules)

    def check_finite(self, losses: dict[str, Tensor], network: str = "") -> None:
        """Stop on a NaN or infinite loss before it reaches the weights; the last checkpoint stays good."""
        (any_bad,) = self.dist.any(bool(nonfinite(losses)), device=self.device)
        if not any_bad:
            return
        terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
        kept = f"the last good checkpoint is {self.last_saved}" if self.last_saved else "no checkpoint was saved"
        what = f"non-finite {network} loss" if network else "non-finite loss"
        raise TrainingError(f"{what} at step {self.step + 1} ({terms}); stopped without saving; {kept} "
                            f"({self.nonfinite_advice})")

    def announce_stop(self, signal_name: str) -> None:
        log(self.dist, f"{signal_name} received: finishing step {self.step + 1}, then saving a checkpoint "
                       "(press Ctrl-C again to abort without saving)")

    def hold_run_folder(self) -> None:
        """Before the first write (rank 0): take the run folder's lock (a TrainingError naming the trainer
        that holds it), then remove what an interrupted save left (:func:`remove_stale_temporaries`) and,
        when ``--overwrite`` was approved for the folder, the old run's files (:func:`clear_run`)."""
        if not self.dist.is_main or _key(self.run_dir) in RunLock._held:
            return
        with writing(self.run_dir):
            RunLock.acquire(self.run_dir, self.command or "training")
            if _key(self.run_dir) in _OVERWRITE_APPROVED:
                _OVERWRITE_APPROVED.discard(_key(self.run_dir))
                removed = clear_run(self.run_dir)
                if removed:
                    log(self.dist, f"--overwrite: removed the old run's {', '.join(removed)} from {self.run_dir}")
            remove_stale_temporaries(self.run_dir)

    def kept_note(self) -> str:
        return f"the last good checkpoint is {self.last_saved}" if self.last_saved else "no checkpoint was saved"

    def write_run_files(self, config: Mapping[str, Any] | None, info: Mapping[str, Any]) -> None:
        """Create the run folder with its resolved config (unless None) and ``run.json`` (rank 0)."""
        if self.dist.is_main:
            self.hold_run_folder()
            with writing(self.run_dir):
                if config is not None:
                    atomic_write_bytes(self.run_dir / RUN_CONFIG,
                                       yaml.safe_dump(dict(config), sort_keys=False).encode())
                info = {**info, "trainer": self.command} if self.command else dict(info)
                info["precision"] = self.precision.name
                atomic_write_bytes(self.run_dir / RUN_INFO, (json.dumps(info, indent=2) + "\n").encode())
        self.dist.barrier()

    def save_checkpoint(self) -> Path:
        """``checkpoints/step_X`` (the network + ``trainer/``) written atomically, then ``latest``, the mirror
        at the run folder's root, and rotation to the last ``train_config.keep_last``."""
        bad = nonfinite_parameters(*self.checkpointed_networks())
        if bad:
            kept = f"the last good checkpoint is {self.last_saved}" if self.last_saved else "nothing was saved"
            raise TrainingError(f"non-finite weights at step {self.step} ({bad[0]}); not saving them; {kept}")
        path = self.run_dir / CHECKPOINTS_DIR / step_dir_name(self.step)
        self.rng_states = all_rng_states(self.dist)  # every process's, gathered before rank 0 writes them
        if self.dist.is_main:
            self.hold_run_folder()
            with writing(self.run_dir, self.kept_note()):
                with atomic_directory(path) as tmp:
                    self.save_network(tmp)
                    state = {**self.trainer_state(), "weights_sha256": sha256_file(tmp / WEIGHTS_NAME)}
                    save_trainer_state(tmp / TRAINER_DIR, state)
                write_latest(self.run_dir, path)
                copy_atomic(path / WEIGHTS_NAME, self.run_dir / WEIGHTS_NAME)
                copy_atomic(path / CONFIG_NAME, self.run_dir / CONFIG_NAME)
                rotate_checkpoints(self.run_dir, self.train_config.keep_last)
        self.dist.barrier()
        self.last_saved = path
        return path

    def write_final(self) -> Path | None:
        """``RUN_DIR/final``, the finished network (:meth:`write_final_files`); None before any checkpoint."""
        if self.last_saved is None:
            return None
        final = self.run_dir / FINAL_DIR
        if self.dist.is_main:
            self.hold_run_folder()
            with writing(self.run_dir, self.kept_note()), atomic_directory(final) as tmp:
                self.write_final_files(tmp)
        self.dist.barrier()
        return final

    def write_final_files(self, directory: Path) -> None:
        """The finished network's files: copies of the last checkpoint's."""
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            copy_atomic(self.last_saved / name, directory / name)

    def load(self, checkpoint: Path, state: Mapping[str, Any]) -> None:
        """Check the weights are those the trainer state was saved with, then restore them,
        :meth:`load_aux_state`, step, data position and RNG states."""
        recorded = state.get("weights_sha256")
        if recorded is not None and (checkpoint / WEIGHTS_NAME).is_file() \
                and sha256_file(checkpoint / WEIGHTS_NAME) != recorded:
            raise CheckpointError(f"{checkpoint / WEIGHTS_NAME} has changed since it was saved (its SHA-256 is not the "
                                  f"one {TRAINER_DIR}/{STATE_JSON} records); resume from an unchanged checkpoint "
                                  f"(another {CHECKPOINTS_DIR}/step_X), or start a new run from it")
        load_state(self.checkpointed_networks()[0], checkpoint)
        try:
            self.load_aux_state(state)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{checkpoint / TRAINER_DIR}: does not match this {self.mismatch_name} "
                                  f"({str(exc).splitlines()[0]})") from None
        self.restore_progress(checkpoint, state)

    def progress_state(self) -> dict[str, Any]:
        """The part of the trainer state :meth:`restore_progress` reads back: step, data position, number
        of processes, the last logged losses and the RNG states: rank 0's in ``rng``, the other ranks' in
        ``rng_ranks`` (gathered by :meth:`save_checkpoint`)."""
        states = self.rng_states or [rng_state()]
        self.rng_states = None
        (tensors, meta), others = states[0], states[1:]
        state = {"step": self.step, "data": self.data.state_dict(), "world_size": self.dist.world_size,
                 "losses": self.last_losses, "rng": {"tensors": tensors, "meta": meta},
                 "precision": self.precision.name}
        if others:
            state["rng_ranks"] = [{"tensors": t, "meta": m} for t, m in others]
        if self.scaler is not None and self.scaler.is_enabled():
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def restore_progress(self, checkpoint: Path, state: Mapping[str, Any]) -> None:
        """Step, data position (re-sharded when the number of processes changed), losses and RNG states
        from a checkpoint's trainer state; the network and optimizers are the trainer's to restore."""
        self.step = int(state["step"])
        data = dict(state["data"])
        if int(state.get("world_size", 1)) != self.dist.world_size:  # re-shard: keep the samples seen
            data["position"] = data["position"] * int(state["world_size"]) // self.dist.world_size
            log(self.dist, f"resuming a {state['world_size']}-process run on {self.dist.world_size}: the data "
                           "order differs from an uninterrupted run")
        self.data.load_state_dict(data)
        self.last_losses = dict(state.get("losses") or {})
        self.last_saved = checkpoint
        ranks = list(state.get("rng_ranks") or [])
        same_world = int(state.get("world_size", 1)) == self.dist.world_size == len(ranks) + 1
        if self.scaler is not None and self.scaler.is_enabled() and state.get("grad_scaler"):
            self.scaler.load_state_dict(dict(state["grad_scaler"]))
        if self.dist.rank == 0:
            for warning in set_rng_state(state["rng"]["tensors"], state["rng"]["meta"]):
                log(self.dist, f"warning: {warning}")
            if self.dist.enabled and not same_world:
                log(self.dist, "note: the checkpoint holds no random state for ranks 1 and up of this run; they "
                               "restart theirs from a seed, so the run differs from an uninterrupted one")
        elif same_world:  # each process continues its own random streams
            own = ranks[self.dist.rank - 1]
            set_rng_state(own["tensors"], own["meta"])
        else:  # saved by another number of processes: a seed tied to the rank and the step
            seed_everything(self.train_config.seed + self.dist.rank + 1_000_003 * self.step)
        log(self.dist, f"resuming from {checkpoint} (step {self.step}, epoch {self.data.epoch})")


# ---------------------------------------------------------------------------------------------------------
# Progress and metrics: tqdm bar, TensorBoard (when installed), metrics.jsonl; rank 0 only.


class _NoWriter:
    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def tensorboard_writer(log_dir: Path, purge_step: int | None, enabled: bool):
    """A TensorBoard ``SummaryWriter``, or a writer that does nothing when tensorboard is not installed."""
    if not enabled:
        return _NoWriter()
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("facestyle: tensorboard is not installed; scalars go to metrics.jsonl only "
              "(pip install tensorboard)", file=sys.stderr)
        return _NoWriter()
    return SummaryWriter(str(log_dir), purge_step=purge_step)


class Meter:
    """Running means of scalars between two log lines, and images per second."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.images = 0
        self.start = time.perf_counter()

    def update(self, scalars: Mapping[str, float], images: int) -> None:
        for k, v in scalars.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1
        self.images += images

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def images_per_second(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.images / elapsed if elapsed > 0 else math.nan


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinity for a line a crash cut short."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


class Progress:
    """The tqdm bar, TensorBoard scalars and ``metrics.jsonl``, all on rank 0."""

    def __init__(self, run_dir: Path, start: int, total: int, dist_env: Distributed) -> None:
        from tqdm import tqdm

        self.enabled = dist_env.is_main
        self.bar = tqdm(total=total, initial=start, disable=not self.enabled, dynamic_ncols=True,
                        unit="step", desc="train", file=sys.stderr)
        with writing(run_dir):
            self.writer = tensorboard_writer(run_dir / "tb", purge_step=start or None, enabled=self.enabled)
        self.metrics_path = run_dir / "metrics.jsonl"
        if self.enabled and start and self.metrics_path.is_file():  # drop lines past the resumed checkpoint
            with writing(run_dir):
                lines = self.metrics_path.read_text().splitlines(keepends=True)
                kept = [line for line in lines if _logged_step(line) <= start]
                atomic_write_bytes(self.metrics_path, "".join(kept).encode())

    def step(self, postfix: Mapping[str, float]) -> None:
        self.bar.update(1)
        if postfix:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        with writing(self.metrics_path.parent), open(self.metrics_path, "a") as f:
            f.write(json.dumps({"step": step, **{k: round(v, 6) for k, v in scalars.items()}}) + "\n")

    def close(self) -> None:
        self.bar.close()
        self.writer.close()


# ---------------------------------------------------------------------------------------------------------
# Helpers of the GAN trainers' steps and sample grids


def learning_rate_factor(step: int, cfg: Any) -> float:
    """Constant until ``decay_start``, then linear decay to 0 at ``steps`` (``step`` is 0-based: the
    factor of the step about to run)."""
    if step < cfg.decay_start or cfg.steps <= cfg.decay_start:
        return 1.0
    return max(0.0, (cfg.steps - step) / (cfg.steps - cfg.decay_start))


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """No gradient for ``module``'s parameters inside the block (the generator step needs none for D)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def to_uint8(images: Tensor) -> Tensor:
    """(B, 3, H, W) in [-1, 1] -> uint8 on the CPU."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def image_grid(rows: list[Tensor], pad: int = 2) -> np.ndarray:
    """Rows of (B, 3, H, W) uint8 images -> one (H', W', 3) uint8 array on a white background."""
    b, _, h, w = rows[0].shape
    grid = np.full((len(rows) * (h + pad) + pad, b * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c in range(b):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y:y + h, x:x + w] = row[c].permute(1, 2, 0).numpy()
    return grid
