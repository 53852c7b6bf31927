"""Training the harmony classifier (:mod:`facestyle.nn.harmony`) behind ``facestyle train-harmony``.

Binary cross-entropy on balanced batches of real photos (target 1) and composites (target 0) of an
iHarmony4-style folder (:mod:`facestyle.data.harmony`), each with the composite's foreground mask; Adam
(betas 0.9, 0.999); random horizontal flips. The run folder is the other trainers'
(:class:`~facestyle.train.common.CheckpointedRun`): it loads as the classifier itself::

    OUT/config.json, OUT/model.safetensors     the newest classifier (kind "harmony")
    OUT/checkpoints/step_X/                    a checkpoint + trainer/ (optimizer, data position, RNG)
    OUT/latest, OUT/metrics.jsonl, OUT/run.json
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..accel import compile_module
from ..config import config_to_dict
from ..data.harmony import HarmonyDataset, find_harmony_samples, random_flip
from ..errors import CheckpointError, InputError
from ..metrics.harmony import HarmonyEvaluation, evaluate_harmony
from ..nn.harmony import HarmonyClassifier, HarmonyConfig
from .common import (
    CHECKPOINTS_DIR,
    TRAINER_DIR,
    CheckpointedRun,
    DataStream,
    Distributed,
    RunLock,
    RunStopped,
    SeededTransform,
    check_run_folder,
    latest_checkpoint,
    load_trainer_state,
    seed_everything,
    stopped_message,
    writing,
)

NAME = "train-harmony"  # the prefix of the trainer's messages


@dataclass(frozen=True)
class HarmonyTrainConfig:
    """The settings of a harmony run (see :func:`train_harmony`)."""

    steps: int = 20_000
    batch_size: int = 32
    lr: float = 2e-4
    seed: int = 0
    save_every: int = 1000
    keep_last: int = 2
    held_out_fraction: float = 0.1
    num_workers: int = 0
    eval_samples: int = 2000
    probe_samples: int = 64
    log_every: int = 50


@dataclass(frozen=True)
class HarmonyTrainResult:
    """What :func:`train_harmony` did.

    ``probe_before`` / ``probe_after``: loss and accuracy on a fixed subset of the training samples (no
    augmentation) before this call's first step (``None`` on a resume) and after its last;
    ``held_out``: the same on the held-out split (``None`` when it is empty); ``stopped``: the signal
    that ended the run early, if any.
    """

    out_dir: Path
    step: int
    train_loss: float
    probe_before: HarmonyEvaluation | None
    probe_after: HarmonyEvaluation
    held_out: HarmonyEvaluation | None
    stopped: str | None = None


def _evaluation_dict(e: HarmonyEvaluation | None) -> dict[str, Any] | None:
    if e is None or e.count == 0:
        return None
    return {"loss": round(e.loss, 6), "accuracy": round(e.accuracy, 6), "count": e.count}


def _write(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"{NAME}: {message}")


class HarmonyTrainer(CheckpointedRun):
    """The classifier, its optimizer, the data and the run folder of one (single-process) harmony run."""

    mismatch_name = "classifier"
    command = NAME

    def __init__(self, model: HarmonyClassifier, train_config: HarmonyTrainConfig, data_root: str | os.PathLike[str],
                 out_dir: Path, device: torch.device, dist_env: Distributed, resume_from: Path | None = None,
                 state: dict[str, Any] | None = None, precision: str | None = None, compile: bool = False) -> None:
        cfg = self.train_config = train_config
        self.dist, self.device, self.run_dir, self.data_root = dist_env, device, out_dir, data_root
        self.init_precision(precision, state)
        self.nonfinite_advice = f"lower --lr (now {cfg.lr})"
        # Data: everything that can fail on the user's input fails before a step runs or a file is written.
        size = model.config.image_size
        train_samples = find_harmony_samples(data_root, "train", cfg.held_out_fraction)
        held_samples = find_harmony_samples(data_root, "test", cfg.held_out_fraction)
        if not train_samples:
            raise InputError(f"{data_root}: no training composites")
        self.train_set = HarmonyDataset(train_samples, size)
        self.held_set = HarmonyDataset(held_samples, size) if held_samples else None
        self.data = DataStream(SeededTransform(self.train_set, random_flip), cfg.batch_size, cfg.seed, dist_env,
                               num_workers=cfg.num_workers, pin_memory=device.type == "cuda")

        self.model = model.to(device).train()
        self.forward = compile_module(self.model, compile)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        self.step, self.last_saved, self.last_losses = 0, None, {}
        self.held: HarmonyEvaluation | None = None
        self.settings = {"data": str(Path(data_root).resolve()), "batch_size": cfg.batch_size, "lr": cfg.lr,
                         "seed": cfg.seed, "held_out_fraction": cfg.held_out_fraction}
        self.counts = {"train_composites": len(train_samples), "held_out_composites": len(held_samples)}
        self.resumed = resume_from is not None
        if resume_from is not None:
            self.load(resume_from, state)

    def load_aux_state(self, state: dict[str, Any]) -> None:
        """The optimizer, at this run's learning rate."""
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.train_config.lr
        started_on = state["settings"].get("data")
        if self.settings["data"] != started_on:
            _write(f"note: resuming on {self.data_root}, the run started on {started_on}")

    def announce_stop(self, signal_name: str) -> None:
        _write(f"{signal_name}: saving and stopping")

    # ---------------------------------------------------------------------------------------- saving

    def trainer_state(self) -> dict[str, Any]:
        return {**self.progress_state(), "optimizer": self.optimizer.state_dict(), "settings": self.settings}

    def checkpointed_networks(self) -> tuple[nn.Module, ...]:
        return (self.model,)

    def save_network(self, directory: Path) -> None:
        """The classifier, with the held-out loss and accuracy measured at this step."""
        self.model.save_pretrained(directory, step=self.step, data=self.settings["data"],
                                   held_out=_evaluation_dict(self.held))

    def log_metrics(self, values: dict[str, Any]) -> None:
        with writing(self.run_dir), open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **values}) + "\n")

    def evaluate_held_out(self) -> HarmonyEvaluation | None:
        if self.held_set is None:
            return None
        cfg = self.train_config
        return evaluate_harmony(self.model, self.held_set, batch_size=cfg.batch_size, max_samples=cfg.eval_samples,
                                num_workers=cfg.num_workers)

    def evaluate_and_save(self) -> None:
        """Measure the held-out accuracy, save a checkpoint with it and say so."""
        self.held = held = self.evaluate_held_out()
        path = self.save_checkpoint()
        text = "no held-out split" if held is None else \
            f"held-out accuracy {held.accuracy:.4f} (loss {held.loss:.4f}, {held.count} images)"
        _write(f"step {self.step}: {text}; saved {path}")
        self.log_metrics({"held_out": _evaluation_dict(held)})

    # -------------------------------------------------------------------------------------- training

    def train(self) -> HarmonyTrainResult:
        """Train up to ``steps`` (or a SIGINT / SIGTERM), saving every ``save_every`` steps and at the end."""
        from tqdm import tqdm

        cfg = self.train_config
        self.write_run_files(None, {**self.settings, **self.counts, "model": config_to_dict(self.model.config)})
        probe_before = None if self.resumed else evaluate_harmony(self.model, self.train_set, cfg.batch_size,
                                                                  cfg.probe_samples)
        losses: list[float] = []
        batches = iter(self.data)
        if self.step >= cfg.steps:
            _write(f"already at step {self.step} of {cfg.steps}: nothing to train (raise --steps to go on)")
        with tqdm(total=cfg.steps, initial=min(self.step, cfg.steps), desc=NAME, unit="step", dynamic_ncols=True,
                  disable=None) as bar:

            def step() -> None:
                image, mask, target = next(batches)
                with self.autocast():
                    logits = self.forward(image.to(self.device, non_blocking=True),
                                          mask.to(self.device, non_blocking=True)).float()
                loss = F.binary_cross_entropy_with_logits(logits, target.to(self.device, logits.dtype))
                self.check_finite({"loss": loss})
                self.optimize(loss, self.optimizer)
                self.step += 1
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
                if self.step % cfg.log_every == 0:
                    recent = losses[-cfg.log_every:]
                    self.log_metrics({"loss": round(sum(recent) / len(recent), 6)})

            stopped = self.run_steps(cfg.steps, step, self.evaluate_and_save)
        if stopped and self.step < cfg.steps:  # saved: exit non-zero so that a script does not take it for finished
            _write(f"{stopped_message(stopped, self.step)}: saved {self.last_saved}; continue with: "
                   f"facestyle {NAME} --resume --out {self.run_dir} --data {self.data_root}")
            raise RunStopped(self.last_saved, stopped)
        if self.held is None:  # nothing was trained in this call
            self.held = self.evaluate_held_out()
        probe_after = evaluate_harmony(self.model, self.train_set, cfg.batch_size, cfg.probe_samples)
        recent = losses[-cfg.log_every:]
        return HarmonyTrainResult(out_dir=self.run_dir, step=self.step,
                                  train_loss=sum(recent) / len(recent) if recent else math.nan,
                                  probe_before=probe_before, probe_after=probe_after, held_out=self.held,
                                  stopped=stopped)


def train_harmony(data_root: str | os.PathLike[str], out_dir: str | os.PathLike[str], steps: int = 20_000,
                  batch_size: int | None = None, image_size: int | None = None, lr: float | None = None,
                  device: str = "cpu", resume: bool = False, *, seed: int = 0, save_every: int = 1000,
                  keep_last: int = 2, held_out_fraction: float = 0.1, width: int = 32, depth: int = 5,
                  num_workers: int = 0, eval_samples: int = 2000, probe_samples: int = 64,
                  log_every: int = 50, overwrite: bool = False, precision: str | None = None,
                  compile: bool = False) -> HarmonyTrainResult:
    """Train the harmony classifier on an iHarmony4-style folder (HAdobe5k for the paper).

    The folder's ``*_train.txt`` / ``*_test.txt`` give the training and held-out composites, or a fixed
    ``held_out_fraction`` of the real photos is held out (see :func:`~facestyle.data.harmony.find_harmony_samples`).
    ``out_dir`` becomes a run folder that loads as the classifier (``HarmonyClassifier.from_pretrained(out_dir)``).

    Every ``save_every`` steps and at the end, a checkpoint folder is written atomically (a temporary folder
    renamed), the held-out accuracy measured and logged, and all but the last ``keep_last`` checkpoints
    deleted. ``resume=True`` continues the run in ``out_dir`` from its latest checkpoint up to ``steps`` in
    all; ``batch_size`` (default 32), ``image_size`` (default 256) and ``lr`` (default 2e-4) then default to
    the run's own. SIGINT / SIGTERM save a checkpoint and stop, then raise
    :class:`~facestyle.train.common.RunStopped` (exit status 130 / 143). ``out_dir`` must be a new or empty
    folder, or a harmony run folder with ``resume`` (or ``overwrite``: start it afresh). ``precision``
    (``fp32``, ``bf16``, ``fp16``; None: the resumed run's, else fp32) and ``compile`` as for
    :func:`facestyle.train.generator.train_generator`.
    """
    out = Path(out_dir)
    for name, value in (("steps", steps), ("save_every", save_every), ("log_every", log_every)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    check_run_folder(out, resume, kind="harmony", overwrite=overwrite, dist_env=Distributed())
    dist = Distributed()
    torch_device = dist.device(device)
    previous = latest_checkpoint(out) if out.is_dir() else None

    state: dict[str, Any] | None = None
    if resume:
        if previous is None:
            raise CheckpointError(f"cannot resume: {out} holds no harmony checkpoint "
                                  f"(expected {CHECKPOINTS_DIR}/step_*/{TRAINER_DIR}/)")
        model = HarmonyClassifier.from_pretrained(previous)
        state = load_trainer_state(previous / TRAINER_DIR)
        settings = dict(state["settings"])
        if image_size is not None and image_size != model.config.image_size:
            raise InputError(f"{out} was trained at image size {model.config.image_size}, not {image_size}; "
                             "start a new run in another --out to change it")
        if batch_size is not None and batch_size != settings["batch_size"]:
            raise InputError(f"{out} was trained with batch size {settings['batch_size']}, not {batch_size}")
        batch_size = int(settings["batch_size"])
        lr = float(settings["lr"]) if lr is None else lr
        seed = int(settings["seed"])
    else:
        batch_size = 32 if batch_size is None else batch_size
        lr = 2e-4 if lr is None else lr
        config = HarmonyConfig(image_size=256 if image_size is None else image_size, width=width, depth=depth)
        seed_everything(seed)
        model = HarmonyClassifier(config)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise InputError(f"lr must be positive, got {lr!r}")
    train_config = HarmonyTrainConfig(steps, batch_size, lr, seed, save_every, keep_last, held_out_fraction,
                                      num_workers, eval_samples, probe_samples, log_every)
    trainer = HarmonyTrainer(model, train_config, data_root, out, torch_device, dist,
                             previous if resume else None, state, precision=precision, compile=compile)
    try:
        return trainer.train()
    finally:
        RunLock.release(out)
