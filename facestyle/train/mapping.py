"""Training a regional style mapping network on a style bank (paper sections 3.1 and 3.4, eq. 6).

For one region group g (``skin`` = skin + nose, ``hair``, or any named region), the mapping network M_g
(:class:`~facestyle.nn.mapping.MappingNetwork`) and a discriminator D_g on the group's code space play the
game of eq. 6,

    min_M max_D  E_s[log D_g(s)] + E_z[log(1 - D_g(M_g(z)))],

with s the encoder's codes of the group (from the bank: samples where every class of the group is
present) and z ~ N(0, I). As usual (and as StarGAN-v2 does), the generator step minimises the
non-saturating form -log D_g(M_g(z)), and D_g gets an R1 penalty on real codes (``train.r1_weight``,
10; 0 turns it off). Both networks see codes standardised by the bank's mean and std (stored in the
mapping network). Adam, lr 2e-4 for both (the paper's; ``train.lr`` and ``train.lr_d``), with
StarGAN-v2's betas (0, 0.99): with momentum (0.5) this small game oscillates for thousands of steps.

The run folder and its behaviour are the generator trainer's (:mod:`facestyle.train.common`): progress
bar, TensorBoard and ``metrics.jsonl``; atomic checkpoints every ``train.save_every`` steps, on
SIGINT/SIGTERM and at the end, keeping the last ``train.keep_last``; exact resume (weights, optimizers,
data position, RNG states); a non-finite loss stops the run without saving. ``RUN_DIR/config.json`` +
``model.safetensors`` mirror the newest network, ``RUN_DIR/final`` holds a finished run's, and with
``install_to=CHECKPOINT`` it is also copied to ``CHECKPOINT/mapping/REGION`` where the Editor finds it
(never over a network already there unless ``overwrite``, never inside the installed package: checked
before training starts).

This module also holds :class:`BankTrainer`, what it shares with :mod:`facestyle.train.flow`: a style
bank as the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..checkpoint import read_config
from ..config import apply_overrides, config_to_dict
from ..errors import CheckpointError, InputError
from ..nn.flow import ContinuousNormalizingFlow
from ..nn.mapping import MAPPING_PRESETS, CodeDiscriminator, MappingConfig, MappingNetwork
from ..styles.bank import StyleBank, file_sha256
from ..styles.networks import check_install_target, install_style_network, style_network_class
from .common import (
    FINAL_DIR,
    CheckpointedRun,
    DataStream,
    Distributed,
    as_floats,
    check_train_values,
    load_run_config,
    read_run_info,
    resolve_resume,
    resume_point,
    resume_state,
    run_trainer,
    seed_everything,
)

__all__ = ["MappingTrainConfig", "MAPPING_TRAIN_PRESETS", "BankTrainer", "MappingTrainer", "train_mapping"]


@dataclass(frozen=True)
class MappingTrainConfig:
    """Adversarial training of one mapping network and its discriminator (eq. 6)."""

    batch_size: int = 64
    steps: int = 20_000
    lr: float = 2e-4  # the mapping network's (the paper's, for both networks)
    lr_d: float = 2e-4  # the discriminator's
    beta1: float = 0.0  # StarGAN-v2's Adam betas: momentum makes this small game oscillate
    beta2: float = 0.99
    r1_weight: float = 10.0  # zero-centred gradient penalty on real codes (0: off)
    log_every: int = 100
    save_every: int = 2_000
    keep_last: int = 3
    seed: int = 0
    deterministic: bool = False


MAPPING_TRAIN_PRESETS: dict[str, MappingTrainConfig] = {
    "paper": MappingTrainConfig(),
    # Two-time-scale rates (discriminator 4x faster) converge in fewer steps on a 2-core CPU.
    "demo": MappingTrainConfig(batch_size=64, steps=4_000, lr=5e-4, lr_d=2e-3, log_every=50, save_every=1_000,
                               keep_last=2),
    "tiny": MappingTrainConfig(batch_size=64, steps=400, lr=1e-3, lr_d=4e-3, log_every=50, save_every=100,
                               keep_last=2),
}


class _Rows(Dataset):
    """The bank's group codes (N, K, D) as a dataset keyed by :class:`~.common.EpochSampler`'s
    (index, seed) pairs."""

    def __init__(self, codes: Tensor) -> None:
        self.codes = codes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key: tuple[int, int]) -> Tensor:
        return self.codes[key[0]]


class BankTrainer(CheckpointedRun):
    """The training loop every style network shares: data from a style bank, one process, the run folder
    of :mod:`facestyle.train.common`. Subclasses define :meth:`build`, :meth:`train_step` and the
    auxiliary state; ``self.network`` (with a ``normalizer`` and a ``config``) is what gets saved."""

    kind = ""  # "mapping" or "flow": the checkpoint kind and the folder beside the generator
    nonfinite_advice = "lower train.lr, or check the bank"
    speed_unit = "codes"

    def __init__(self, model_config: Any, train_config: Any, bank: str | os.PathLike, out_dir: str | os.PathLike,
                 *, resume_from: Path | None = None, device: str = "cpu", stop_at: int | None = None,
                 install_to: str | os.PathLike | None = None, install_overwrite: bool = False) -> None:
        check_train_values(train_config, (train_config.lr >= 0 and getattr(train_config, "lr_d", 0) >= 0,
                                          "train.lr and train.lr_d must be >= 0"))
        self.model_config, self.train_config = model_config, train_config
        self.run_dir, self.stop_at = Path(out_dir), stop_at
        self.install_to, self.install_overwrite = install_to, install_overwrite
        self.dist = Distributed()  # the networks are small: one process
        self.device = self.dist.device(device)
        self.bank_path = Path(bank)
        self.bank = StyleBank.load(bank, label_set=model_config.label_set, checkpoint=install_to)
        if self.bank.style_dim != model_config.style_dim:
            raise InputError(f"{bank}: codes of length {self.bank.style_dim}, the config says {model_config.style_dim}")
        self.codes = self.bank.group(model_config.classes, min_samples=train_config.batch_size)
        self.bank_info = {"path": str(bank), "sha256": file_sha256(bank), "samples": len(self.codes),
                          "checkpoint_sha256": self.bank.checkpoint_sha256, "label_set": self.bank.label_set,
                          "checkpoint": self.bank.info.get("checkpoint"), "data": self.bank.info.get("data")}
        state = resume_state(style_network_class(self.kind), model_config, resume_from)
        if state is not None and (state.get("bank") or {}).get("sha256") != self.bank_info["sha256"]:
            raise CheckpointError(f"{resume_from} was trained on another bank than {bank}; resume it with its "
                                  f"own ({(state.get('bank') or {}).get('path')})")
        self.data = DataStream(_Rows(self.codes), train_config.batch_size, train_config.seed, self.dist)
        seed_everything(train_config.seed)
        self.step = 0
        self.last_saved: Path | None = None
        self.last_losses: dict[str, float] = {}
        self.build()
        if resume_from is not None:
            self.load(resume_from, state)
        else:
            self.network.normalizer.fit(self.codes.to(self.device))

    # ---------------------------------------------------------------------------------- subclass API

    network: MappingNetwork | ContinuousNormalizingFlow

    def build(self) -> None:
        raise NotImplementedError

    def train_step(self, codes: Tensor) -> dict[str, float]:
        """One optimisation step on a batch of group codes (B, K, D); returns the losses (logged as
        ``loss/NAME``) and other scalars (names with a ``/``, logged as they are)."""
        raise NotImplementedError

    def step_batch(self, batch: Tensor) -> tuple[dict[str, float], int]:
        return self.train_step(batch.to(self.device, non_blocking=True)), batch.shape[0]

    def postfix(self, scalars: dict[str, float], speed: float) -> dict[str, float]:
        return {k: scalars[k] for k in list(scalars)[:2]}

    @property
    def network_name(self) -> str:
        return f"{self.kind} network for {self.model_config.region}"

    def aux_state(self) -> dict[str, Any]:
        """Auxiliary networks and optimizers for the trainer state."""
        raise NotImplementedError

    def describe(self) -> str:
        n = sum(p.numel() for p in self.network.parameters())
        c = self.model_config
        names = "+".join(self.bank.labels.classes[k] for k in c.classes)
        return (f"the {self.kind} network for {c.region} ({names}, {len(c.classes)} x {c.style_dim} codes, "
                f"{n:,} parameters) on {len(self.codes)} codes, batch {self.train_config.batch_size}")

    # ------------------------------------------------------------------------------------- training

    def train(self) -> Path:
        if self.step >= self.train_config.steps and not self.final_is_current():  # e.g. stopped while writing it
            self.finish(None)
            return self.run_dir
        return super().train()

    def start_training(self) -> None:
        self.network.train()

    # --------------------------------------------------------------------------------------- saving

    def run_info(self) -> dict[str, Any]:
        return {"kind": self.kind, "region": self.model_config.region, "bank": str(self.bank_path),
                "install_to": None if self.install_to is None else str(self.install_to),
                "install_overwrite": self.install_overwrite}

    def prepare_run_dir(self) -> None:
        self.write_run_files({"model": config_to_dict(self.model_config), "train": config_to_dict(self.train_config)},
                             self.run_info())

    def trainer_state(self) -> dict[str, Any]:
        return {**self.progress_state(), "bank": self.bank_info, "config": config_to_dict(self.train_config),
                **self.aux_state()}

    def checkpointed_networks(self) -> tuple[nn.Module, ...]:
        return (self.network,)

    def save_network(self, directory: Path) -> None:
        self.network.save_pretrained(directory, bank=self.bank_info, step=self.step)

    def write_final(self) -> Path | None:
        """``RUN_DIR/final``, and the copy beside the generator: returns where the network is now."""
        final = super().write_final()
        if final is None or self.install_to is None:
            return final
        try:
            return install_style_network(final, self.install_to, self.kind, self.model_config.region,
                                         overwrite=self.install_overwrite)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (the trained network is in {final})") from None

    def final_is_current(self) -> bool:
        """Whether ``RUN_DIR/final`` holds the network at this step."""
        try:
            return read_config(self.run_dir / FINAL_DIR, kind=self.kind).get("step") == self.step
        except CheckpointError:
            return False



# ------------------------------------------------------------------------------------ mapping trainer


class MappingTrainer(BankTrainer):
    """M_g and D_g of one region group, trained with eq. 6 on a style bank."""

    kind = "mapping"
    command = "train-mapping"

    def build(self) -> None:
        cfg = self.train_config
        self.network = MappingNetwork(self.model_config).to(self.device)
        self.discriminator = CodeDiscriminator(self.model_config).to(self.device)
        betas = (float(cfg.beta1), float(cfg.beta2))
        self.opt_m = torch.optim.Adam(self.network.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=betas)

    def train_step(self, codes: Tensor) -> dict[str, float]:
        """One discriminator step, then one mapping step (eq. 6, non-saturating for M_g, R1 for D_g)."""
        cfg = self.train_config
        real = self.network.normalizer.normalize(codes)
        z = torch.randn(codes.shape[0], self.model_config.latent_dim, device=self.device, dtype=codes.dtype)
        fake = self.network.forward_normalized(z)

        # D_g: log D(s) + log(1 - D(M(z))), as softplus of the logits; R1 on the real codes.
        real.requires_grad_(cfg.r1_weight > 0)
        d_real = self.discriminator(real)
        d_fake = self.discriminator(fake.detach())
        loss_real, loss_fake = F.softplus(-d_real).mean(), F.softplus(d_fake).mean()
        r1 = real.new_zeros(())
        if cfg.r1_weight > 0:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            r1 = 0.5 * grad.square().flatten(1).sum(1).mean()
        d_losses = {"d_real": loss_real, "d_fake": loss_fake, "r1": r1}
        self.check_finite(d_losses)
        self.opt_d.zero_grad(set_to_none=True)
        (loss_real + loss_fake + cfg.r1_weight * r1).backward()
        self.opt_d.step()

        # M_g: the non-saturating form, -log D(M(z)); D's parameters get no gradient here.
        self.discriminator.requires_grad_(False)
        try:
            loss_m = F.softplus(-self.discriminator(fake)).mean()
        finally:
            self.discriminator.requires_grad_(True)
        self.check_finite({"mapping": loss_m})
        self.opt_m.zero_grad(set_to_none=True)
        loss_m.backward()
        self.opt_m.step()
        return as_floats({"mapping": loss_m, "D": loss_real + loss_fake, **d_losses})

    @torch.no_grad()
    def extra_scalars(self) -> dict[str, float]:
        """How far the mapped codes' mean and covariance are from the bank's (standardised space)."""
        n = min(len(self.codes), 2048)
        real = self.network.normalizer.normalize(self.codes[:n].to(self.device)).flatten(1)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the training stream stays as it was
            torch.manual_seed(self.train_config.seed + 1)
            z = torch.randn(n, self.model_config.latent_dim, device=self.device)
        fake = self.network.forward_normalized(z).flatten(1)
        errors = moment_errors(fake, real)
        return {"codes/mean_error": errors[0], "codes/covariance_error": errors[1]}

    def aux_state(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "optimizer_mapping": self.opt_m.state_dict(),
                "optimizer_discriminator": self.opt_d.state_dict()}

    def load_aux_state(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_m.load_state_dict(state["optimizer_mapping"])
        self.opt_d.load_state_dict(state["optimizer_discriminator"])


def moment_errors(x: Tensor, y: Tensor) -> tuple[float, float]:
    """(||mean_x - mean_y|| / sqrt(dim), ||cov_x - cov_y||_F / ||cov_y||_F) for samples (N, dim)."""
    mx, my = x.mean(0), y.mean(0)
    cx, cy = torch.cov(x.T), torch.cov(y.T)
    return (float((mx - my).norm() / x.shape[1] ** 0.5),
            float(torch.linalg.matrix_norm(cx - cy) / torch.linalg.matrix_norm(cy).clamp_min(1e-12)))


# --------------------------------------------------------------------------------------------- Python API


def resolve_region(bank: StyleBank, region: str) -> tuple[int, ...]:
    """The class indices of a named region (or class name) in the bank's label set."""
    return bank.labels.region_classes(region)


def run_bank_training(trainer_cls: type[BankTrainer], model_config: Any, train_config: Any,
                      bank: str | os.PathLike | None, out_dir: str | os.PathLike, *,
                      resume: bool | str | os.PathLike = False, device: str = "cpu", stop_at: int | None = None,
                      install_to: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Start or resume a bank trainer's run; returns the run folder. ``out_dir`` and the place the network
    will be installed are checked before anything is built or written; ``overwrite`` allows replacing a
    run of this trainer in ``out_dir`` and a network installed in ``install_to``."""
    out_dir = Path(out_dir)
    resume_from = resume_point(out_dir, resume, kind=trainer_cls.kind, overwrite=overwrite)
    install_overwrite = overwrite
    if resume_from is not None:
        info = read_run_info(resume_from.parent.parent)
        bank = bank if bank is not None else info.get("bank")
        if install_to is None:
            install_to = info.get("install_to")
            install_overwrite = overwrite or bool(info.get("install_overwrite"))
    if bank is None:
        raise InputError("no style bank given (--bank BANK.safetensors)")
    if install_to is not None:
        check_install_target(install_to, trainer_cls.kind, model_config.region, install_overwrite)
    return run_trainer(train_config.deterministic, lambda: trainer_cls(
        model_config, train_config, bank, out_dir, resume_from=resume_from, device=device, stop_at=stop_at,
        install_to=install_to, install_overwrite=install_overwrite))


def train_mapping(bank: str | os.PathLike | None, out_dir: str | os.PathLike, region: str = "skin", *,
                  preset: str | None = None, overrides: list[str] | None = None,
                  resume: bool | str | os.PathLike = False, device: str = "cpu", stop_at: int | None = None,
                  install_to: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Train the mapping network of ``region`` on a style bank and return the run folder.

    Args:
        bank: a style bank (``facestyle encode-styles``); on resume, None reads the run's own.
        out_dir: the run folder (it must not hold a run unless ``resume``).
        region: a named region of the bank's label set (``skin`` = skin + nose, ``hair``...) or a class.
        preset: ``paper`` (default), ``demo`` or ``tiny`` (architecture and schedule); on resume the
            run's own config.yaml (a preset given on resume replaces its train section).
        overrides: ``model.KEY=VALUE`` / ``train.KEY=VALUE`` items on top of the preset.
        resume: True to continue the run in ``out_dir``, or a run / ``checkpoints/step_X`` folder.
        stop_at: stop after this step (saving), keeping the schedule.
        install_to: a generator checkpoint: the bank must have been encoded by it, and the finished
            network is copied to ``install_to/mapping/REGION`` (not inside the installed package).
        overwrite: replace a network already installed there, and start afresh in an ``out_dir`` that
            holds a run of this trainer (else both are refused before training).
    """
    model, train = resolve_configs(MappingConfig, MappingTrainConfig, MAPPING_PRESETS, MAPPING_TRAIN_PRESETS,
                                   bank, out_dir, region, preset, overrides, resume)
    return run_bank_training(MappingTrainer, model, train, bank, out_dir, resume=resume, device=device,
                             stop_at=stop_at, install_to=install_to, overwrite=overwrite)


def resolve_configs(model_cls: type, train_cls: type, model_presets: dict, train_presets: dict,
                    bank: str | os.PathLike | None, out_dir: str | os.PathLike, region: str, preset: str | None,
                    overrides: list[str] | None, resume: bool | str | os.PathLike,
                    **model_changes: Any) -> tuple[Any, Any]:
    """The run's (model, train) configs: on resume its config.yaml, else the preset filled in from the
    bank (label set, region's classes, code length); then ``model_changes`` and the overrides."""
    if resume:
        run_dir = resolve_resume(Path(out_dir) if resume is True else Path(resume)).parent.parent
        model, train = load_run_config(run_dir, model_cls(), train_cls())
        if preset is not None:
            train = train_presets[preset]
    else:
        if bank is None:
            raise InputError("no style bank given (--bank BANK.safetensors)")
        preset = preset or "paper"
        if preset not in model_presets:
            raise InputError(f"unknown preset {preset!r}; choose one of: {', '.join(model_presets)}")
        loaded = StyleBank.load(bank)
        model = replace(model_presets[preset], label_set=loaded.label_set, region=region,
                        classes=resolve_region(loaded, region), style_dim=loaded.style_dim, **model_changes)
        train = train_presets[preset]
    sections = apply_overrides({"model": model, "train": train}, overrides)
    return sections["model"], sections["train"]
