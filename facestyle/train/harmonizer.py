"""Training DoveNet (:mod:`facestyle.nn.dovenet`), the post-hoc harmonizer, behind ``facestyle train-harmonizer``.

The pairs are the harmony composites of :mod:`facestyle.data.composites`, each (composite, mask, ground
truth):

- ``synthetic``: the renderer's faces, target A under its light with regions of reference B pasted in
  under B's light; the ground truth is A re-rendered with B's albedo there under A's light
  (``train.synthetic_pairs`` pairs of stream ``--seed``, whatever ``--data`` is);
- ``relit``: each photo of ``--data`` with regions of itself after a seeded photometric change pasted in;
  the ground truth is the photo (the change differs every epoch);
- ``both`` (the default): the two pools shuffled together.

Losses (DoveNet's ``--gan_mode wgangp``, ``../shared/docs/baselines.md`` 10.4): the discriminator's
hinge loss on both heads, relu(1 - s_real) + relu(1 + s_fake) for the global and the verification score,
plus a gradient penalty (lambda 10) on real/fake interpolates; the generator's -mean(global) -
mean(verification) + 100 L1(output, ground truth); the discriminator steps first on each batch, as in
DoveNet. Adam 2e-4, betas (0.5, 0.999), constant then linear decay to 0 (DoveNet's 100 + 100 epochs).

The run folder is the other trainers' (:class:`~facestyle.train.common.CheckpointedRun`): config.yaml,
run.json, checkpoints/step_X/ (+ trainer/ with the discriminator, optimizers, data position and RNG),
latest, metrics.jsonl, samples/ (rows: composite, DoveNet, ground truth); RUN_DIR and RUN_DIR/final load
as a harmonizer (``DoveNet.from_pretrained``, ``Editor.transfer(..., harmonizer=DIR)``). At every save
the L1 to the ground truth on a fixed probe batch (synthetic pairs outside the training pool, else the
first photos) is logged beside the composite's own (``probe/l1``, ``probe/l1_composite``).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..accel import compile_module
from ..checkpoint import check_writable, read_config, resolve
from ..config import apply_overrides, config_to_dict
from ..data.composites import DEFAULT_MIN_LIGHT_DIFFERENCE, relit_pairs, synthetic_pairs
from ..data.spec import parse_data_spec
from ..errors import InputError
from ..io import save_image
from ..labels import LabelSet, get_label_set
from ..nn.dovenet import DOVENET_PRESETS, DomainVerificationDiscriminator, DoveNet, DoveNetConfig, dovenet_input
from ..styles.networks import HARMONIZER_DIR, install_harmonizer
from .common import (
    FINAL_DIR,
    CheckpointedRun,
    DataStream,
    Distributed,
    add_run_arguments,
    as_floats,
    check_train_values,
    frozen,
    image_grid,
    learning_rate_factor,
    load_run_config,
    log,
    read_run_info,
    resume_point,
    resume_state,
    run_folder,
    run_trainer,
    seed_everything,
    step_dir_name,
    to_uint8,
)

Pairs = Literal["synthetic", "relit", "both"]
SAMPLES_DIR = "samples"


@dataclass(frozen=True)
class HarmonizerTrainConfig:
    """The settings of a DoveNet run (see the module docstring)."""

    pairs: Pairs = "both"
    synthetic_pairs: int = 100_000  # the synthetic pool: pairs 0..N-1 of stream --seed
    min_light_difference: float = DEFAULT_MIN_LIGHT_DIFFERENCE
    batch_size: int = 1  # DoveNet's
    steps: int = 200_000
    decay_start: int = 100_000  # constant lr until here, then linear decay to 0 at `steps`
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_l1: float = 100.0
    lambda_global: float = 1.0  # DoveNet's lambda_a
    lambda_verification: float = 1.0  # DoveNet's lambda_v
    lambda_gp: float = 10.0
    probe_pairs: int = 8
    num_workers: int = 0
    log_every: int = 50
    sample_every: int = 1000
    save_every: int = 5000
    keep_last: int = 2
    seed: int = 0
    deterministic: bool = False

    def check(self) -> None:
        check_train_values(
            self,
            (self.pairs in ("synthetic", "relit", "both"), f"train.pairs must be synthetic, relit or both, got "
                                                           f"{self.pairs!r}"),
            (self.synthetic_pairs >= 1 or self.pairs == "relit",
             f"train.synthetic_pairs must be at least 1, got {self.synthetic_pairs}"),
            (self.decay_start >= 0, f"train.decay_start must be >= 0, got {self.decay_start}"),
            (self.lr > 0, f"train.lr must be positive, got {self.lr}"),
            (min(self.lambda_l1, self.lambda_global, self.lambda_verification, self.lambda_gp) >= 0,
             "train.lambda_* must be >= 0"),
            (self.probe_pairs >= 1, f"train.probe_pairs must be at least 1, got {self.probe_pairs}"),
            (self.sample_every >= 0, f"train.sample_every must be >= 0 (0: no samples), got {self.sample_every}"),
            (self.num_workers >= 0, f"train.num_workers must be >= 0, got {self.num_workers}"),
        )


HARMONIZER_TRAIN_PRESETS: dict[str, HarmonizerTrainConfig] = {
    "paper": HarmonizerTrainConfig(),
    "tiny": HarmonizerTrainConfig(batch_size=2, steps=6, decay_start=3, synthetic_pairs=64, probe_pairs=2,
                                  log_every=2, sample_every=0, save_every=3),
    # beside the demo generator, on synthetic faces only: about 10 minutes on a 2-core CPU (~0.7 s a step)
    "demo": HarmonizerTrainConfig(pairs="synthetic", batch_size=4, steps=800, decay_start=500, synthetic_pairs=20_000,
                                  log_every=25, sample_every=250, save_every=250),
}


def get_presets(name: str) -> tuple[DoveNetConfig, HarmonizerTrainConfig]:
    if name not in HARMONIZER_TRAIN_PRESETS:
        raise InputError(f"unknown harmonizer preset {name!r}; choose one of: {', '.join(HARMONIZER_TRAIN_PRESETS)}")
    return DOVENET_PRESETS[name], HARMONIZER_TRAIN_PRESETS[name]


# ------------------------------------------------------------------------------------------------ data


class CompositePool(Dataset):
    """Harmony pairs for the data stream: item ``(index, sample_seed)`` is (composite, mask, ground truth).

    Indices below ``len(photos)`` are relit pairs of that photo (the change drawn from ``sample_seed``, so
    it differs each epoch); the next ``synthetic`` indices are the synthetic pairs of stream ``seed``.
    """

    def __init__(self, photos: Dataset | None, label_set: LabelSet, synthetic: int, resolution: int, seed: int,
                 min_light_difference: float = DEFAULT_MIN_LIGHT_DIFFERENCE) -> None:
        self.photos, self.label_set, self.synthetic = photos, label_set, synthetic
        self.resolution, self.seed, self.min_light_difference = resolution, seed, min_light_difference
        self.relit = 0 if photos is None else len(photos)

    def __len__(self) -> int:
        return self.relit + self.synthetic

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        index, sample_seed = key
        if index < self.relit:
            image, labels, _ = self.photos[index]
            batch = relit_pairs(image[None], labels[None].long(), self.label_set, self.seed, [sample_seed])
        else:
            batch = synthetic_pairs(self.seed, [index - self.relit], self.resolution, self.min_light_difference)
        return batch.composite[0], batch.mask[0], batch.truth[0]

    def probe(self, count: int) -> tuple[Tensor, Tensor, Tensor]:
        """A fixed batch outside the training pool where there are synthetic pairs (the ``count`` pairs after
        it), else the first photos with a fixed change."""
        if self.synthetic:
            batch = synthetic_pairs(self.seed, range(self.synthetic, self.synthetic + count), self.resolution,
                                    self.min_light_difference)
            return batch.composite, batch.mask, batch.truth
        items = [self[(i, i)] for i in range(min(count, self.relit))]
        return tuple(torch.stack(column) for column in zip(*items))  # type: ignore[return-value]


def build_pool(data_spec: str | None, split: str, data_seed: int, model: DoveNetConfig,
               cfg: HarmonizerTrainConfig) -> tuple[CompositePool, str]:
    """The training pairs, and a description of them; bad input fails here."""
    photos, label_set, parts = None, get_label_set("celebamask-hq"), []
    if cfg.pairs in ("relit", "both"):
        if data_spec is None:
            raise InputError(f"train.pairs={cfg.pairs} needs photos: give --data SPEC (or --set train.pairs=synthetic)")
        photos = parse_data_spec(data_spec, split=split, resolution=model.image_size, seed=data_seed)
        if len(photos) == 0:
            raise InputError(f"{data_spec}: no images in split {split!r}")
        found = getattr(photos, "label_set", label_set)
        label_set = get_label_set(found) if isinstance(found, str) else found
        parts.append(f"{len(photos)} relit photo(s) of {data_spec}")
    elif data_spec is not None:
        raise InputError("--data is not used with train.pairs=synthetic; leave it out or set train.pairs=both")
    synthetic = cfg.synthetic_pairs if cfg.pairs in ("synthetic", "both") else 0
    if synthetic:
        parts.append(f"{synthetic} synthetic pair(s) of stream {data_seed}")
    pool = CompositePool(photos, label_set, synthetic, model.image_size, data_seed, cfg.min_light_difference)
    return pool, " + ".join(parts)


# --------------------------------------------------------------------------------------------- losses


def gradient_penalty(discriminator: DomainVerificationDiscriminator, real: Tensor, fake: Tensor,
                     masks: Tensor) -> Tensor:
    """WGAN-GP's penalty ((|grad|_2 - 1)^2, mean over the batch) on per-sample interpolates of real and fake,
    of the mean of the two heads (DoveNet's ``cal_gradient_penalty``, type mixed); without the weight."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = discriminator.penalty_score(mixed, masks)
    (grad,) = torch.autograd.grad(score, mixed, torch.ones_like(score), create_graph=True)
    return (((grad.flatten(1) + 1e-16).norm(2, dim=1) - 1) ** 2).mean()


# -------------------------------------------------------------------------------------------- trainer


class HarmonizerTrainer(CheckpointedRun):
    """DoveNet's generator and discriminator, their optimizers, the pairs and the run folder of one run."""

    command, network_name, mismatch_name = "train-harmonizer", "harmonizer", "harmonizer"
    speed_unit = "pairs"
    nonfinite_advice = "lower train.lr"

    def __init__(self, model_config: DoveNetConfig, train_config: HarmonizerTrainConfig, data_spec: str | None,
                 out_dir: str | os.PathLike, *, resume_from: Path | None = None, device: str = "cpu",
                 split: str = "train", data_seed: int = 0, stop_at: int | None = None,
                 dist_env: Distributed | None = None, precision: str | None = None, compile: bool = False) -> None:
        train_config.check()
        self.model_config, self.train_config = model_config, train_config
        self.run_dir, self.stop_at = Path(out_dir), stop_at
        self.dist = dist_env or Distributed.from_env()
        self.device = self.dist.device(device)
        cfg = train_config
        state = resume_state(DoveNet, model_config, resume_from)
        self.init_precision(precision, state)

        # Everything that can fail on the user's input fails here, before a step runs or a file is written.
        self.data_info = {"spec": data_spec, "split": split, "seed": data_seed}
        self.pool, self.pool_description = build_pool(data_spec, split, data_seed, model_config, cfg)
        self.data = DataStream(self.pool, cfg.batch_size, cfg.seed, self.dist, num_workers=cfg.num_workers,
                               pin_memory=self.device.type == "cuda")
        self.probe_batch = self.pool.probe(cfg.probe_pairs)

        seed_everything(cfg.seed + self.dist.rank)
        self.model = DoveNet(model_config)
        self.discriminator = DomainVerificationDiscriminator.from_config(model_config)
        for net in (self.model, self.discriminator):
            init_normal(net)
        if self.dist.enabled and self.device.type == "cuda" and model_config.norm == "batch":
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(self.discriminator)
        self.model.to(self.device)
        self.discriminator.to(self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=betas)
        self.step, self.last_saved, self.last_losses = 0, None, {}
        if resume_from is not None:
            self.load(resume_from, state)
        self.model_ddp, self.discriminator_ddp = self.distribute(self.model, self.discriminator)
        self.model_ddp = compile_module(self.model_ddp, compile)
        self.discriminator_ddp = compile_module(self.discriminator_ddp, compile)

    # ------------------------------------------------------------------------------------- training

    def start_training(self) -> None:
        self.model.train()
        self.discriminator.train()

    def step_batch(self, batch: Any) -> tuple[dict[str, float], int]:
        composite, mask, truth = (t.to(self.device, non_blocking=True) for t in batch)
        return self.train_step(composite, mask, truth), composite.shape[0]

    def train_step(self, composite: Tensor, mask: Tensor, truth: Tensor) -> dict[str, float]:
        """One discriminator step, then one generator step on the same output (DoveNet's order)."""
        cfg = self.train_config
        self.set_learning_rates()
        with self.autocast():
            output = self.model_ddp(dovenet_input(composite, mask))

            # Discriminator: hinge on the global and the verification head, plus the gradient penalty.
            s_fake, v_fake = self.discriminator_ddp(output.detach(), mask)
            s_real, v_real = self.discriminator_ddp(truth, mask)
        d_losses = {"d_global": F.relu(1 + s_fake).mean() + F.relu(1 - s_real).mean(),
                    "d_verification": F.relu(1 + v_fake).mean() + F.relu(1 - v_real).mean(),
                    # in float32: a second-order gradient, which the fp16 scaler does not see
                    "d_gp": cfg.lambda_gp * gradient_penalty(self.discriminator, truth, output.detach().float(), mask)}
        self.check_finite(d_losses, "discriminator")
        d_total = sum(d_losses.values())
        self.optimize(d_total, self.opt_d)

        # Generator: raise both scores, and L1 to the ground truth.
        with self.autocast(), frozen(self.discriminator):
            s_fake, v_fake = self.discriminator_ddp(output, mask)
        g_losses = {"g_global": -cfg.lambda_global * s_fake.mean(), "g_verification": -cfg.lambda_verification *
                    v_fake.mean(), "l1": cfg.lambda_l1 * F.l1_loss(output.float(), truth)}
        self.check_finite(g_losses, "generator")
        g_total = sum(g_losses.values())
        self.optimize(g_total, self.opt_g)
        return as_floats({**g_losses, "G": g_total, **d_losses, "D": d_total})

    def set_learning_rates(self) -> None:
        lr = self.train_config.lr * learning_rate_factor(self.step, self.train_config)
        for optimizer in (self.opt_g, self.opt_d):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def postfix(self, scalars: dict[str, float], speed: float) -> dict[str, float]:
        return {"G": scalars["G"], "D": scalars["D"], "pairs/s": speed}

    def extra_scalars(self) -> dict[str, float]:
        return {"lr": self.opt_g.param_groups[0]["lr"]}

    def checkpoint_scalars(self) -> dict[str, float]:
        l1, l1_composite = self.probe()
        return {"probe/l1": l1, "probe/l1_composite": l1_composite}

    def after_step(self) -> None:
        every = self.train_config.sample_every
        if every and self.step % every == 0:
            self.save_samples()

    def describe(self) -> str:
        g = sum(p.numel() for p in self.model.parameters()) / 1e6
        d = sum(p.numel() for p in self.discriminator.parameters()) / 1e6
        m = self.model_config
        return (f"a {m.image_size}x{m.image_size} DoveNet (ngf {m.ngf}, {m.norm} norm; G {g:.2f} M, D {d:.2f} M "
                f"parameters) on {self.pool_description}, batch {self.train_config.batch_size} x "
                f"{self.dist.world_size} process(es)")

    @torch.no_grad()
    def probe(self) -> tuple[float, float]:
        """Mean L1 to the ground truth on the probe batch: DoveNet's output (eval mode) and the composite's."""
        composite, mask, truth = (t.to(self.device) for t in self.probe_batch)
        devices = [self.device] if self.device.type == "cuda" else []
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices):
                output = self.model(dovenet_input(composite, mask))
        finally:
            self.model.train()
        return float(F.l1_loss(output, truth)), float(F.l1_loss(composite, truth))

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """``samples/step_X.png``: the probe batch's composites, DoveNet's outputs and the ground truths."""
        if not self.dist.is_main:
            return None
        composite, mask, truth = (t[:4].to(self.device) for t in self.probe_batch)
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                output = self.model(dovenet_input(composite, mask))
        finally:
            self.model.train()
        path = self.run_dir / SAMPLES_DIR / f"{step_dir_name(self.step)}.png"
        save_image(image_grid([to_uint8(composite), to_uint8(output), to_uint8(truth)]), path)
        return path

    # ---------------------------------------------------------------------------------------- saving

    def prepare_run_dir(self) -> None:
        config = {"model": config_to_dict(self.model_config), "train": config_to_dict(self.train_config)}
        self.write_run_files(config, self.data_info)

    def trainer_state(self) -> dict[str, Any]:
        return {**self.progress_state(), "config": config_to_dict(self.train_config),
                "discriminator": _plain(self.discriminator).state_dict(), "optimizer_g": self.opt_g.state_dict(),
                "optimizer_d": self.opt_d.state_dict()}

    def checkpointed_networks(self) -> tuple[nn.Module, ...]:
        return self.model, self.discriminator

    def save_network(self, directory: Path) -> None:
        _plain(self.model).save_pretrained(directory, step=self.step, data=self.data_info,
                                           pairs=self.train_config.pairs)

    def load_aux_state(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["optimizer_g"])
        self.opt_d.load_state_dict(state["optimizer_d"])


def init_normal(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix's ``init_type normal``: conv weights N(0, 0.02), biases 0, batch-norm weights N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def _plain(model: nn.Module) -> Any:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ------------------------------------------------------------------------------------------- Python API


def resolve_configs(preset: str | None = None, overrides: list[str] | None = None, steps: int | None = None,
                    batch_size: int | None = None,
                    resume_dir: Path | None = None) -> tuple[DoveNetConfig, HarmonizerTrainConfig]:
    """The preset (default ``paper``; on resume the run's own config.yaml unless a preset is given, which
    replaces the train section), then ``model.KEY=VALUE`` / ``train.KEY=VALUE`` overrides, then the flags."""
    if resume_dir is not None:
        model, train = load_run_config(resume_dir, DoveNetConfig(), HarmonizerTrainConfig())
        if preset is not None:
            train = get_presets(preset)[1]
    else:
        model, train = get_presets(preset or "paper")
    flags = {"train.steps": steps, "train.batch_size": batch_size}
    items = [*(overrides or []), *(f"{key}={value}" for key, value in flags.items() if value is not None)]
    sections = apply_overrides({"model": model, "train": train}, items)
    return sections["model"], sections["train"]


def train_harmonizer(data_spec: str | None, out_dir: str | os.PathLike, *, preset: str | None = None,
                     overrides: list[str] | None = None, steps: int | None = None, batch_size: int | None = None,
                     resume: bool | str | os.PathLike = False, device: str = "cpu", split: str = "train",
                     data_seed: int = 0, stop_at: int | None = None,
                     install_to: str | os.PathLike | None = None, precision: str | None = None,
                     compile: bool = False) -> Path:
    """Train DoveNet and return the run folder.

    Args:
        data_spec: the photos of the relit pairs (``folder:ROOT``, ``celebamask-hq:ROOT``, ``synthetic:N``...);
            None with ``train.pairs=synthetic``, or on resume to read the run's own.
        out_dir: the run folder (it must not hold a run unless ``resume``).
        preset: ``paper`` (DoveNet's 256 px network; the default), ``demo`` or ``tiny`` (tests).
        overrides: ``model.KEY=VALUE`` / ``train.KEY=VALUE`` items on top of the preset.
        resume: True to continue the run in ``out_dir``, or a run / ``checkpoints/step_X`` folder.
        data_seed: the synthetic pairs' stream and the relit changes' stream.
        stop_at: stop after this step (saving), keeping the schedule.
        install_to: a generator checkpoint: once the run is finished, its ``final/`` is copied to
            ``CHECKPOINT/harmonizer``.
        precision, compile: mixed precision (None: the resumed run's, else fp32) and ``torch.compile``.
    """
    if install_to is not None:  # a writable generator checkpoint without a harmonizer, checked before any training
        read_config(install_to)
        check_writable(install_to, "a harmonizer")
        if (resolve(install_to) / HARMONIZER_DIR).exists() and resume is False:
            raise InputError(f"--install-to {install_to} already holds a harmonizer; remove it or install into a "
                             "copy of the checkpoint")
    out = Path(out_dir)
    data = {"spec": data_spec, "split": split, "seed": data_seed}
    resume_from = resume_point(out, resume, kind="harmonizer")
    if resume_from is not None and data_spec is None:  # the run's own data (none: synthetic pairs only)
        info = read_run_info(resume_from.parent.parent, "seed")
        data = {key: info.get(key, value) for key, value in data.items()}
    model, train = resolve_configs(preset, overrides, steps, batch_size,
                                   resume_from.parent.parent if resume_from is not None else None)
    run_dir = run_trainer(train.deterministic, lambda: HarmonizerTrainer(
        model, train, data["spec"], out, resume_from=resume_from, device=device, split=data["split"],
        data_seed=data["seed"], stop_at=stop_at, precision=precision, compile=compile))
    if install_to is not None:
        final = run_dir / FINAL_DIR
        if not final.is_dir():
            raise InputError(f"--install-to: the run is not finished ({final} is missing); resume it to "
                             f"train.steps, then install it")
        log(Distributed(), f"installed the harmonizer in {install_harmonizer(final, install_to, overwrite=True)}")
    return run_dir


# ------------------------------------------------------------------------------------------------- CLI

DESCRIPTION = """\
Train DoveNet (Cong et al., CVPR 2020), the post-hoc harmonizer of the paper's SEAN+DoveNet row, on
harmony composites with a ground truth: relit pairs of --data's photos (a region of the photo after a
seeded photometric change, pasted back) and/or synthetic pairs of the renderer's faces (regions of
another face under another light), chosen by --set train.pairs=synthetic|relit|both (default both;
synthetic needs no --data). Writes RUN_DIR/config.yaml, checkpoints/step_X/, latest, samples/, tb/ and
metrics.jsonl (with probe/l1, DoveNet's L1 to the ground truth on a fixed probe batch, beside
probe/l1_composite); RUN_DIR and RUN_DIR/final load as a harmonizer (facestyle transfer --harmonizer
RUN_DIR). --install-to CHECKPOINT copies final/ to CHECKPOINT/harmonizer once the run is finished.

  facestyle train-harmonizer --data folder:faces --out runs/dovenet --preset demo
  facestyle train-harmonizer --out runs/dovenet --preset demo --set train.pairs=synthetic
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-harmonizer", help="train DoveNet, the post-hoc harmonizer (SEAN+DoveNet)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, "train.pairs=synthetic or --set model.ngf=32")
    p.add_argument("--preset", choices=sorted(HARMONIZER_TRAIN_PRESETS), default=None,
                   help="network and schedule: paper (DoveNet's, a GPU), demo (a CPU), tiny (tests); default "
                        "paper, or the run's own on --resume")
    p.add_argument("--install-to", metavar="CHECKPOINT",
                   help="a generator checkpoint: copy the finished run's final/ to CHECKPOINT/harmonizer")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    out = run_folder(args)
    if args.resolution is not None:
        raise InputError("--resolution does not apply to train-harmonizer; use --set model.image_size=N")
    overrides = list(args.overrides) + (["train.deterministic=true"] if args.deterministic else [])
    train_harmonizer(args.data, out, preset=args.preset, overrides=overrides, steps=args.steps,
                     batch_size=args.batch_size, resume=args.resume or False, device=args.device, split=args.split,
                     data_seed=args.seed, stop_at=args.stop_at, install_to=args.install_to, precision=args.precision,
                     compile=args.compile)
    return 0


__all__ = ["HarmonizerTrainConfig", "HARMONIZER_TRAIN_PRESETS", "CompositePool", "HarmonizerTrainer",
           "gradient_penalty", "train_harmonizer", "resolve_configs", "register"]

if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["train-harmonizer", *sys.argv[1:]]))
