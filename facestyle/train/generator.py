"""Training the generator (paper sections 3.4 and 4.2): supervised reconstruction with SEAN's losses.

The reference is the target, so the network learns to rebuild an image from its label map and its own
region style codes: ``fake = G(x, m)``. Losses, as SEAN's (``facestyle.losses``):

- generator: hinge GAN + feature matching (weight 10) + VGG19 perceptual (weight 10), or, with
  ``train.use_vgg = false`` / ``--no-vgg``, a pixel L1 of the same weight instead of the perceptual
  loss (the tiny and demo presets do this: a documented deviation from the paper);
- discriminator: hinge, on the real pair and the detached reconstruction, one D step per G step.

Harmony supervision (``train.harmony``, beyond the paper; ``off`` in the ``paper`` preset): with the
reference equal to the target, MRSA never sees regions that disagree, so the paper's objective does not
teach it to harmonize. When it is on, each step also draws ``train.harmony_share * batch_size`` composites
(:mod:`facestyle.data.composites`): ``synthetic`` pairs from the renderer at the model's image size whatever
``--data`` is, ``relit`` pairs from the step's own photos, or ``both`` (half each; an odd one alternates by
step). Each composite's target is drawn with some regions' codes from its reference, through MRSA
(:meth:`~facestyle.model.FaceStyleNet.transfer`), and the same generator losses against its ground truth
are added with weight ``train.harmony_weight`` (logged as ``loss/harmony_*``); the discriminator takes the
ground truths as real and these outputs as fake. With ``train.harmony_code_weight`` above 0, MRSA alone
also learns, for the moved classes, the codes the generator draws the ground truth from (logged as
``loss/harmony_code``). The composites are a function of (seed, step, rank, the
step's photos), so resume stays exact.

Optimisation: Adam with TTUR (lr 1e-4 for the encoder + MRSA + generator, 4e-4 for the discriminator)
and the paper's betas (0.5, 0.999); the learning rates stay constant until ``train.decay_start``, then
decay linearly to 0 at ``train.steps``. Data: resize to ``train.load_size``, random crop to the image
size, horizontal flip that swaps left/right classes.

One process per device: under ``torchrun`` (``WORLD_SIZE > 1``) each process joins the process group,
wraps both networks in DistributedDataParallel and reads its own shard of every epoch; only rank 0
logs and saves. The run folder layout is described in :mod:`facestyle.train.common`; besides it, the
newest generator is mirrored at ``RUN_DIR/config.json`` + ``RUN_DIR/model.safetensors`` (so
``FaceStyleNet.from_pretrained(RUN_DIR)`` and ``--checkpoint RUN_DIR`` work) and a finished run's is in
``RUN_DIR/final``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..accel import compile_module
from ..arch import ARCHS, DEFAULT_ARCH, check_model_config, describe_tasks, get_arch, is_facestyle_net, load_arch_config
from ..config import PRESETS, Config, TrainConfig
from ..data.composites import CompositeBatch, relit_pairs, synthetic_pairs
from ..data.spec import parse_data_spec
from ..data.transforms import eval_transform, train_transform
from ..errors import InputError
from ..io import save_image
from ..labels import CELEBAMASK_HQ, LabelSet, get_label_set
from ..losses import GeneratorLosses, hinge_d_loss_terms
from ..model import FaceStyleNet
from ..nn.discriminator import MultiscaleDiscriminator
from ..nn.synthesis import TRANSFER
from .common import (
    RUN_CONFIG,
    CheckpointedRun,
    DataStream,
    Distributed,
    SeededTransform,
    add_run_arguments,
    as_floats,
    check_train_values,
    frozen,
    image_grid,
    learning_rate_factor,
    log,
    resolve_resume,
    resume_state,
    resumed_data,
    run_folder,
    run_trainer,
    seed_everything,
    step_dir_name,
    to_uint8,
)
from .stargan import generator_param_groups, generator_rates, stargan_terms

SAMPLES_DIR = "samples"
SAMPLE_COUNT = 4  # columns of a sample grid
TRANSFER_REGIONS = ("skin", "hair")  # what the sample grid's last row moves between neighbours


def discriminate(discriminator: nn.Module, fake: Tensor, real: Tensor, labels: Tensor):
    """D on fake and real in one batch (as SPADE does; instance norm keeps samples apart), split back into
    (fake outputs, real outputs): per scale, the list of features with the logits last."""
    outputs = discriminator(torch.cat([fake, real]), torch.cat([labels, labels]))
    n = fake.shape[0]
    fake_out = [[f[:n] for f in scale] for scale in outputs]
    real_out = [[f[n:] for f in scale] for scale in outputs]
    return fake_out, real_out


def composite_count(cfg: TrainConfig) -> int:
    """Composites per step and process with harmony supervision on: ``harmony_share`` of the batch, at
    least one."""
    return max(1, round(cfg.harmony_share * cfg.batch_size))


def harmony_split(cfg: TrainConfig, step: int) -> tuple[int, int]:
    """(synthetic, relit) composites of the step after ``step``: all of one kind, or for ``both`` half
    each, an odd one going to synthetic on even steps and to relit on odd ones."""
    if cfg.harmony == "off":
        return 0, 0
    count = composite_count(cfg)
    if cfg.harmony == "synthetic":
        return count, 0
    if cfg.harmony == "relit":
        return 0, count
    synthetic = count // 2 + (count % 2 if step % 2 == 0 else 0)
    return synthetic, count - synthetic


def concat_composites(parts: list[CompositeBatch]) -> CompositeBatch:
    """One batch of several, item after item."""
    if len(parts) == 1:
        return parts[0]
    return CompositeBatch(**{name: torch.cat([vars(p)[name] for p in parts]) for name in vars(parts[0])})


class ReconstructionPass(nn.Module):
    """A compared system's training pass (:meth:`~facestyle.nn.synthesis` ``reconstruct``) as a module's
    forward, so DistributedDataParallel and ``torch.compile`` wrap it: (image, KL term)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        image, kl = self.network.reconstruct(image, labels)  # type: ignore[operator]
        return image, kl


def check_config(cfg: Config) -> None:
    """Values a run cannot start with, caught before anything is built or written."""
    t = cfg.train
    arch = get_arch(cfg.arch)
    check_model_config(cfg)
    check_train_values(
        t,
        (t.harmony == "off" or arch.harmony,
         f"train.harmony={t.harmony} trains regional transfers, which --arch {arch.name} cannot do (it supports "
         f"{describe_tasks(arch.name)}); use train.harmony=off"),
        (t.kl_weight >= 0, f"train.kl_weight must be >= 0, got {t.kl_weight}"),
        (min(t.baseline_ndf, t.baseline_d_layers, t.baseline_num_d) >= 1,
         "train.baseline_ndf, train.baseline_d_layers and train.baseline_num_d must be at least 1"),
        (t.decay_start >= 0, f"train.decay_start must be >= 0, got {t.decay_start}"),
        (0 < t.harmony_share <= 1, f"train.harmony_share must be in (0, 1], got {t.harmony_share}"),
        (t.harmony_weight >= 0, f"train.harmony_weight must be >= 0, got {t.harmony_weight}"),
        (t.harmony_code_weight >= 0, f"train.harmony_code_weight must be >= 0, got {t.harmony_code_weight}"),
        (t.harmony_code_weight == 0 or getattr(cfg.model, "attention", "off") == "on",
         f"train.harmony_code_weight trains MRSA, which this model does not have (--arch {arch.name}, "
         f"model.attention={getattr(cfg.model, 'attention', 'none')}); use train.harmony_code_weight=0"),
        (t.harmony in ("off", "relit") or cfg.model.label_set == CELEBAMASK_HQ.name,
         f"train.harmony={t.harmony} draws synthetic faces, which have {CELEBAMASK_HQ.name} labels, but the "
         f"model is configured for {cfg.model.label_set} (use train.harmony=relit)"),
        (t.lr_g >= 0 and t.lr_d >= 0, "train.lr_g and train.lr_d must be >= 0"),
        (min(t.stargan_mapping_lr, t.stargan_sty_weight, t.stargan_ds_weight) >= 0,
         "train.stargan_mapping_lr, train.stargan_sty_weight and train.stargan_ds_weight must be >= 0"),
        (t.sample_every >= 0, f"train.sample_every must be >= 0 (0: no samples), got {t.sample_every}"),
        (t.num_workers >= 0, f"train.num_workers must be >= 0, got {t.num_workers}"),
        (t.load_size >= cfg.model.image_size,
         f"train.load_size ({t.load_size}) must be at least model.image_size ({cfg.model.image_size}); "
         f"SEAN resizes to image_size * 286 / 256 before cropping"),
    )


def build_dataset(spec: str, split: str, resolution: int, seed: int, label_set: LabelSet):
    """The training images at ``resolution``, not yet cropped or flipped (the trainer seeds those per
    sample)."""
    dataset = parse_data_spec(spec, split=split, resolution=resolution, seed=seed, label_set=label_set)
    data_labels = getattr(dataset, "label_set", label_set)
    if isinstance(data_labels, str):
        data_labels = get_label_set(data_labels)
    if data_labels.name != label_set.name:
        raise InputError(f"{spec} has {data_labels.name} labels but the model is configured for "
                         f"{label_set.name} (set model.label_set={data_labels.name})")
    if len(dataset) == 0:
        raise InputError(f"{spec}: no training images in split {split!r}")
    return dataset


class GeneratorTrainer(CheckpointedRun):
    """Everything one training process holds: networks, optimizers, data, and the run folder.

    Build it with the run's config, then call :meth:`train`. Rank 0 writes the run folder.
    """

    nonfinite_advice = "lower train.lr_g / train.lr_d, or check the data"
    command, network_name, mismatch_name = "train", "generator", "model"

    @property
    def train_config(self) -> TrainConfig:
        return self.config.train

    def __init__(self, config: Config, data_spec: str, out_dir: Path, *, resume_from: Path | None = None,
                 device: str = "cpu", split: str = "train", resolution: int | None = None, data_seed: int = 0,
                 weights_dir: str | os.PathLike | None = None, stop_at: int | None = None,
                 dist_env: Distributed | None = None, init: str | None = None, precision: str | None = None,
                 compile: bool = False) -> None:
        if init is not None and resume_from is not None:
            raise InputError("--init starts a new run; a resumed run continues from its own checkpoint "
                             "(drop --init or --resume)")
        check_config(config)
        self.arch = arch = get_arch(config.arch)
        if init is not None and arch.network is not FaceStyleNet:
            raise InputError(f"--init sean:PATH warm-starts the facestyle and sean architectures, "
                             f"not --arch {arch.name}")
        self.config, self.run_dir, self.stop_at = config, Path(out_dir), stop_at
        self.dist = dist_env or Distributed.from_env()
        self.device = self.dist.device(device)
        self.label_set = get_label_set(config.model.label_set)
        cfg = config.train
        state = resume_state(arch.network, config.model, resume_from)
        self.init_precision(precision, state)

        # Everything that can fail on the user's input fails here, before a step runs or a file is written.
        self.data_info = {"spec": data_spec, "split": split, "resolution": resolution, "seed": data_seed}
        dataset = build_dataset(data_spec, split, resolution or cfg.load_size, data_seed, self.label_set)
        transform = train_transform(config.model.image_size, cfg.load_size, self.label_set, flip=cfg.flip)
        self.data = DataStream(SeededTransform(dataset, transform), cfg.batch_size, cfg.seed, self.dist,
                               num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda")
        self.criterion = GeneratorLosses.from_config(cfg, weights_dir).to(self.device)  # VGG19 or an error
        self.sample_batch = fixed_batch(dataset, eval_transform(config.model.image_size), SAMPLE_COUNT)

        # Networks and optimizers (TTUR); the seed makes the initial weights reproducible.
        seed_everything(cfg.seed + self.dist.rank)
        self.model = arch.build(config.model)
        if init is not None:  # a warm start, before the model is distributed
            from ..convert.warm_start import warm_start

            for line in warm_start(self.model, init):
                log(self.dist, line)
        if self.dist.enabled and self.device.type == "cuda":  # SEAN synchronizes batch norm across GPUs
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        if is_facestyle_net(self.model):
            self.discriminator = MultiscaleDiscriminator.from_config(config.model).to(self.device)
        else:  # SPADE's multi-scale PatchGAN for every compared system
            self.discriminator = MultiscaleDiscriminator(
                config.model.num_classes, ndf=cfg.baseline_ndf, num_discriminators=cfg.baseline_num_d,
                n_layers=cfg.baseline_d_layers).to(self.device)
        self.opt_g = torch.optim.Adam(generator_param_groups(self.model, arch.stargan), lr=cfg.lr_g,
                                      betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        self.step = 0
        self.last_saved: Path | None = None
        self.last_losses: dict[str, float] = {}
        if resume_from is not None:
            self.load(resume_from, state)
        # FaceStyleNet's forward is its reconstruction; a compared system's pass also returns its KL term
        trained = self.model if is_facestyle_net(self.model) else ReconstructionPass(self.model)
        self.model_ddp, self.discriminator_ddp = self.distribute(trained, self.discriminator)
        self.model_ddp = compile_module(self.model_ddp, compile)
        self.discriminator_ddp = compile_module(self.discriminator_ddp, compile)

    # ----------------------------------------------------------------------------------------- training

    def start_training(self) -> None:
        cfg, size = self.config.train, self.config.model.image_size
        if cfg.decay_start >= cfg.steps:
            log(self.dist, f"note: train.decay_start ({cfg.decay_start}) >= train.steps ({cfg.steps}): "
                           "the learning rates stay constant")
        if cfg.load_size > 1.5 * size:
            log(self.dist, f"note: train.load_size ({cfg.load_size}) is over 1.5 x model.image_size ({size}): "
                           f"random crops cover little of each face (SEAN: train.load_size={size * 286 // 256})")
        self.model.train()
        self.discriminator.train()

    def postfix(self, scalars: dict[str, float], speed: float) -> dict[str, float]:
        return {"G": scalars["G"], "D": scalars["D"], "img/s": speed}

    def extra_scalars(self) -> dict[str, float]:
        return {"lr/generator": self.opt_g.param_groups[0]["lr"], "lr/discriminator": self.opt_d.param_groups[0]["lr"]}

    def after_step(self) -> None:
        if self.config.train.sample_every and self.step % self.config.train.sample_every == 0:
            self.save_samples()

    def train_step(self, image: Tensor, labels: Tensor) -> dict[str, float]:
        """One generator step, then one discriminator step; returns the losses as floats."""
        self.set_learning_rates()
        composites = self.composite_batch(image, labels)
        with self.autocast():
            g_losses, fakes, reals, maps = self.generator_losses(image, labels, composites)
        self.check_finite(g_losses, "generator")
        g_total = sum(g_losses.values())
        self.optimize(g_total, self.opt_g)

        # Discriminator: hinge loss, real pairs (and composites' ground truths) up, outputs down.
        with self.autocast():
            fake_out, real_out = discriminate(self.discriminator_ddp, fakes, reals, maps)
            d_real, d_fake = hinge_d_loss_terms(real_out, fake_out)
        d_losses = {"d_real": d_real, "d_fake": d_fake}
        self.check_finite(d_losses, "discriminator")
        self.optimize(d_real + d_fake, self.opt_d)

        return as_floats({**g_losses, "G": g_total, **d_losses, "D": d_real + d_fake})

    def generator_losses(self, image: Tensor, labels: Tensor, composites: CompositeBatch | None):
        """The generator's losses, and the discriminator's inputs: (losses, fakes, reals, label maps)."""
        kl = None
        if is_facestyle_net(self.model):
            fake = self.model_ddp(image, labels)  # reconstruction: the reference is the target
        else:
            fake, kl = self.model_ddp(image, labels)

        # Generator: fool D, match D's features of the real image, reconstruct (VGG19 or pixel L1).
        with frozen(self.discriminator):
            fake_out, real_out = discriminate(self.discriminator, fake, image, labels)
        g_losses = self.criterion(fake, image, fake_out, real_out)
        if self.arch.vae:  # SPADE's KLD loss: summed over the batch and the code, times lambda_kld
            g_losses["kl"] = self.config.train.kl_weight * kl
        fakes, reals, maps = fake.detach(), image, labels
        if self.arch.stargan:  # latent-guided images through the plain module, as the composites below
            stargan = stargan_terms(self.model, self.discriminator, image, labels, self.config.train, self.step)
            g_losses.update(stargan.losses)
            fakes, reals, maps = torch.cat([fakes, stargan.fake]), torch.cat([reals, image]), torch.cat([maps, labels])
        if composites is not None:
            # The same losses on the harmonized transfers against their ground truth. The plain module runs
            # them: the reconstruction above went through DDP in this step and the one backward below sums
            # both graphs' gradients before DDP's per-parameter hooks fire (once each), so the all-reduce
            # averages the total.
            harmonized, code_loss = self.harmonize(composites)
            with frozen(self.discriminator):
                fake_out, real_out = discriminate(self.discriminator, harmonized, composites.truth,
                                                  composites.target_labels)
            weight = self.config.train.harmony_weight
            terms = self.criterion(harmonized, composites.truth, fake_out, real_out)
            g_losses.update({f"harmony_{name}": weight * value for name, value in terms.items()})
            if code_loss is not None:
                g_losses["harmony_code"] = self.config.train.harmony_code_weight * code_loss
            fakes, reals = torch.cat([fakes, harmonized.detach().to(fakes.dtype)]), torch.cat([reals, composites.truth])
            maps = torch.cat([maps, composites.target_labels])
        return g_losses, fakes, reals, maps

    def composite_batch(self, image: Tensor, labels: Tensor) -> CompositeBatch | None:
        """This step's harmony composites on the trainer's device (None when ``train.harmony`` is off):
        synthetic pairs of the renderer's stream ``train.seed`` and relit pairs of the first photos of the
        step's batch, changed by the same seed; their indices number the composite slots of every step and
        process, so a resumed run draws the same ones."""
        cfg, size = self.config.train, self.config.model.image_size
        synthetic, relit = harmony_split(cfg, self.step)
        if not synthetic and not relit:
            return None
        first = (self.step * self.dist.world_size + self.dist.rank) * composite_count(cfg)
        parts = []
        if synthetic:
            parts.append(synthetic_pairs(cfg.seed, range(first, first + synthetic), size).to(self.device))
        relit = min(relit, image.shape[0])
        if relit:
            parts.append(relit_pairs(image[:relit], labels[:relit], self.label_set, cfg.seed,
                                     range(first + synthetic, first + synthetic + relit)))
        return concat_composites(parts)

    def harmonize(self, composites: CompositeBatch) -> tuple[Tensor, Tensor | None]:
        """The model's harmonized transfer of each composite (the target drawn on its own label map with the
        moved classes' codes from the reference, through MRSA), and with ``train.harmony_code_weight`` the
        code loss: MRSA's output for the moved classes against the codes the generator draws the ground truth
        from (MRSA of its own codes, as in reconstruction), held fixed; MRSA's inputs are detached, so this
        loss trains MRSA alone."""
        b, model = composites, self.model
        if not self.config.train.harmony_code_weight:  # every regional arch's transfer, MRSA or not
            return model.transfer(b.target, b.target_labels, b.reference, b.reference_labels, b.classes), None
        composite, s_t, p_t, moved = model.transfer_codes(b.target, b.target_labels, b.reference, b.reference_labels,
                                                          b.classes)
        image = model.restyle(b.target_labels, composite, s_t, p_t)
        with torch.no_grad():
            s_g, _ = model.encode(b.truth, b.target_labels)
            goal = model.harmonize(s_g, s_g, p_t)
        out = model.harmonize(composite.detach(), s_t.detach(), p_t)
        weight = moved.to(out.dtype)[..., None]
        loss = (((out - goal) ** 2) * weight).sum() / (weight.sum() * out.shape[-1]).clamp(min=1)
        return image, loss

    def set_learning_rates(self) -> None:
        cfg = self.config.train
        factor = learning_rate_factor(self.step, cfg)
        for optimizer, rates in ((self.opt_g, generator_rates(cfg, self.arch.stargan)), (self.opt_d, [cfg.lr_d])):
            for group, base in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = base * factor

    def describe(self) -> str:
        n = sum(p.numel() for p in self.model.parameters()) / 1e6
        m = self.config.model
        t = self.config.train
        loss = "VGG19 perceptual" if t.use_vgg else "pixel L1 (no VGG)"
        if self.arch.vae:
            loss += f", KL weight {t.kl_weight:g}"
        harmony = (f", harmony {t.harmony}: {composite_count(t)} composite(s) a step, weight {t.harmony_weight:g}"
                   if t.harmony != "off" else "")
        name = "generator" if self.arch.name == DEFAULT_ARCH else f"{self.arch.name} generator"
        return (f"{m.image_size}x{m.image_size} {m.label_set} {name} ({n:.1f} M parameters, "
                f"{loss}, batch {t.batch_size} x {self.dist.world_size} process(es){harmony}, {self.precision.name})")

    # ------------------------------------------------------------------------------------------ saving

    def prepare_run_dir(self) -> None:
        self.write_run_files(self.config.to_dict(), self.data_info)

    def trainer_state(self) -> dict[str, Any]:
        return {**self.progress_state(), "config": self.config.to_dict(),
                "discriminator": self.discriminator.state_dict(), "optimizer_g": self.opt_g.state_dict(),
                "optimizer_d": self.opt_d.state_dict()}

    def checkpointed_networks(self) -> tuple[nn.Module, ...]:
        return self.model, self.discriminator

    def save_network(self, directory: Path) -> None:
        self.model.save_pretrained(directory, step=self.step, arch=self.arch.name)

    def load_aux_state(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["optimizer_g"])
        self.opt_d.load_state_dict(state["optimizer_d"])

    # ----------------------------------------------------------------------------------------- samples

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """``samples/step_X.png``: rows input, label colours, reconstruction, and a transfer of skin and
        hair from each column's right-hand neighbour (an architecture without regional transfer: a random
        style of the whole image). Leaves every RNG and the networks' state as it was."""
        if not self.dist.is_main:
            return None
        image, labels = (t.to(self.device) for t in self.sample_batch)
        regions = [r for r in TRANSFER_REGIONS if r in self.label_set.regions and self.label_set.regions[r]]
        classes = torch.as_tensor(self.label_set.regions_mask(regions), device=self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices), self.autocast():
                reconstruction = self.model(image, labels)
                if TRANSFER in self.arch.tasks:
                    reference = image.roll(-1, 0), labels.roll(-1, 0)
                    transfer = self.model.transfer(image, labels, *reference, classes)
                else:  # a random style of the whole image (global codes), the same seed at every step
                    torch.manual_seed(0)
                    transfer = self.model.decode(labels, self.model.sample_codes(image.shape[0]))
        finally:
            self.model.train()
        colours = torch.from_numpy(self.label_set.colorize(labels.cpu().numpy())).permute(0, 3, 1, 2)
        rows = [to_uint8(image), colours, to_uint8(reconstruction), to_uint8(transfer)]
        path = self.run_dir / SAMPLES_DIR / f"{step_dir_name(self.step)}.png"
        save_image(image_grid(rows), path)
        return path


def fixed_batch(dataset, transform, count: int) -> tuple[Tensor, Tensor]:
    """The first ``count`` items of the data, resized to the image size: the sample grid's columns."""
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    pairs = [transform(image, labels) for image, labels, _ in items]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])




# --------------------------------------------------------------------------------------------- Python API


def train_generator(config: Config, data_spec: str | None, out_dir: str | os.PathLike, *,
                    resume: bool | str | os.PathLike = False, device: str = "cpu", split: str = "train",
                    resolution: int | None = None, data_seed: int = 0,
                    weights_dir: str | os.PathLike | None = None, stop_at: int | None = None,
                    init: str | None = None, precision: str | None = None, compile: bool = False) -> Path:
    """Train the generator by reconstruction and return the run folder.

    Args:
        config: the resolved config (``load_config(preset=..., overrides=[...])``, or for any architecture
            ``facestyle.arch.load_arch_config(preset=..., arch=...)``).
        data_spec: a dataset spec (``folder:PATH``, ``celebamask-hq:PATH``, ``synthetic:N``, ...); on
            resume, None reads the one the run was started with.
        out_dir: the run folder. It must not hold a run already unless ``resume`` is given.
        resume: True to continue the run in ``out_dir``; a run folder or a ``checkpoints/step_X`` folder
            to continue from there (writing into ``out_dir``).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun, ``cuda`` means this rank's GPU).
        split, resolution, data_seed: which part of the data, the size it is read at (default:
            ``train.load_size``), the synthetic faces' stream.
        weights_dir: where ``vgg19-dcbbf910.pth`` is (else ``$FACESTYLE_WEIGHTS`` / torch's hub cache).
        stop_at: stop after this step (saving a checkpoint) without changing the schedule, which still
            runs to ``train.steps``; for time-limited jobs and tests.
        init: a new run's starting weights: ``sean:PATH`` (SEAN's ``latest_net_G.pth`` or an imported SEAN
            checkpoint folder; see :mod:`facestyle.convert.warm_start`). Not with ``resume``.
        precision: ``fp32``, ``bf16`` or ``fp16`` (mixed precision, :mod:`facestyle.accel`); None: the
            resumed run's own, else fp32. Recorded in ``run.json`` and every checkpoint's trainer state.
        compile: ``torch.compile`` the generator's and discriminator's forward passes.
    """
    given = {"spec": data_spec, "split": split, "resolution": resolution, "seed": data_seed}
    resume_from, data = resumed_data(Path(out_dir), resume, given, *given)
    return run_trainer(config.train.deterministic, lambda: GeneratorTrainer(
        config, data["spec"], out_dir, resume_from=resume_from, device=device, split=data["split"],
        resolution=data["resolution"], data_seed=data["seed"], weights_dir=weights_dir, stop_at=stop_at,
        init=init, precision=precision, compile=compile))


# ------------------------------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the generator (encoder + MRSA + SEAN) by reconstruction",
        description="Train the generator by supervised reconstruction with SEAN's losses (paper 3.4). "
                    "Writes RUN_DIR/config.yaml, checkpoints/step_X/ (each loadable with --checkpoint), "
                    "latest, samples/, tb/ and metrics.jsonl; RUN_DIR itself loads as a checkpoint (the "
                    "newest generator) and RUN_DIR/final holds a finished run's. The data is read at "
                    "--resolution (default: train.load_size), then randomly cropped and flipped.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="named settings (default: paper; on --resume: the run's own config.yaml)")
    p.add_argument("--config", metavar="YAML", help="a YAML file with model: and train: sections")
    p.add_argument("--arch", choices=list(ARCHS), default=None,
                   help="the architecture (default facestyle, or on --resume the run's own): facestyle, sean (SEAN's "
                        "encoder and generator), or a compared system: spade, clade, clade-icpe, pix2pixhd, "
                        "groupdnet, sean-groupdnet, sean-stargan; each has the paper and tiny presets")
    add_run_arguments(p, "train.lr_g=2e-4")
    p.add_argument("--no-vgg", action="store_true",
                   help="pixel L1 instead of the VGG19 perceptual loss (no weight file needed)")
    p.add_argument("--weights-dir", metavar="DIR", help="folder with vgg19-dcbbf910.pth "
                                                        "(default: $FACESTYLE_WEIGHTS, then torch's hub cache)")
    p.add_argument("--init", metavar="sean:PATH",
                   help="start a new run from SEAN's generator (its latest_net_G.pth or a folder made by "
                        "facestyle import-sean): at step 0 the model reproduces SEAN (paper-size model only)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    out = run_folder(args)
    train_generator(resolve_cli_config(args), args.data, out, resume=args.resume or False, device=args.device,
                    split=args.split, resolution=args.resolution, data_seed=args.seed, weights_dir=args.weights_dir,
                    stop_at=args.stop_at, init=args.init, precision=args.precision, compile=args.compile)
    return 0


def resolve_cli_config(args: argparse.Namespace) -> Config:
    """The architecture (--arch, default facestyle) with its preset (default paper) and --config, or on
    --resume without either the run's own config.yaml (and its architecture); then --set, then the flags
    (--steps, --batch-size, --no-vgg, --deterministic)."""
    flags = {"steps": args.steps, "batch_size": args.batch_size}
    overrides = list(args.overrides) + [f"train.{k}={v}" for k, v in flags.items() if v is not None]
    if args.no_vgg:
        overrides.append("train.use_vgg=false")
    if args.deterministic:
        overrides.append("train.deterministic=true")
    config_file, preset = args.config, args.preset
    if args.resume and config_file is None and preset is None:
        saved = resolve_resume(args.resume).parent.parent / RUN_CONFIG
        if saved.is_file():
            config_file = saved
    return load_arch_config(config_file, preset=preset, overrides=overrides, arch=getattr(args, "arch", None))


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
