"""Training the face parser (:mod:`facestyle.nn.parser`): per-pixel cross-entropy on labelled faces.

The paper parses FFHQ with a DeepLab-v3 trained on CelebAMask-HQ; this trains the project's own
DeepLab-v3-style network from scratch on any ``--data`` spec::

    facestyle train-parser --data celebamask-hq:ROOT --out runs/parser --preset base --device cuda

Optimisation: AdamW (lr ``train.lr``, weight decay ``train.weight_decay``) with DeepLab's "poly" schedule,
``lr * (1 - step / steps) ** 0.9``, after a short linear warm-up. Data: resize to ``image_size * 9 / 8``,
random scale (``train.scale_min`` .. ``train.scale_max``, padding with background where the view leaves
the photo), random crop of ``image_size``, horizontal flip that swaps left/right classes, and a little
brightness / contrast / saturation jitter, so that the parser copes with faces that are not centred or
not at the training scale.

Evaluation: mean intersection-over-union per class on the held-out split (``--eval-split``, default the
data's ``test`` split), at step 0, at every save and at the end; printed as a table and written to
``RUN_DIR/metrics.json`` (the latest evaluation with its per-class IoUs, and the history of mean IoUs).
When the held-out split holds the same images as the training split (a flat ``folder:`` dataset has no
splits), a deterministic ``train.holdout`` fraction of the images (by a hash of their names) is held out
of training and evaluated on instead.

The run folder and its behaviour are the generator trainer's (:mod:`facestyle.train.common`): progress
bar, TensorBoard and ``metrics.jsonl``; atomic checkpoints every ``train.save_every`` steps, on
SIGINT/SIGTERM and at the end, keeping the last ``train.keep_last``; exact resume (weights, optimizer,
data position, RNG states); a non-finite loss stops the run without saving; one process per device under
``torchrun``. ``RUN_DIR`` itself loads as a parser checkpoint (the newest network), ``RUN_DIR/final`` holds
a finished run's; copy either to ``CHECKPOINT/parser/`` to have the Editor parse photos automatically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..accel import compile_module
from ..config import apply_overrides, config_to_dict
from ..data.spec import parse_data_spec
from ..data.transforms import Compose, RandomCrop, RandomHorizontalFlip, Resize
from ..errors import InputError
from ..io import atomic_write_bytes
from ..labels import LabelSet, get_label_set
from ..nn.parser import PARSER_PRESETS, FaceParserNet, ParserConfig
from .common import (
    CheckpointedRun,
    DataStream,
    Distributed,
    SeededTransform,
    add_run_arguments,
    as_floats,
    check_train_values,
    load_run_config,
    log,
    resume_state,
    resumed_data,
    run_folder,
    run_trainer,
    seed_everything,
    writing,
)

__all__ = ["ParserTrainConfig", "PARSER_TRAIN_PRESETS", "ParserTrainer", "train_parser", "evaluate_parser",
           "confusion_matrix", "iou_from_confusion", "format_iou_table", "RandomScale", "ColorJitter"]

METRICS_FILE = "metrics.json"
LOAD_SCALE = 9 / 8  # SEAN's 286 / 256, rounded: read size = image_size * 9 / 8


@dataclass(frozen=True)
class ParserTrainConfig:
    """How the parser trains (see the module docstring)."""

    batch_size: int = 16
    steps: int = 40_000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 500  # linear warm-up steps, then the poly schedule
    poly_power: float = 0.9
    scale_min: float = 0.75
    scale_max: float = 1.25
    flip: bool = True
    jitter: float = 0.2  # brightness / contrast / saturation, each scaled by 1 +- jitter
    holdout: float = 0.2  # fraction held out when the eval split is the training split
    eval_limit: int = 2000  # at most this many held-out images per evaluation (0: all)
    eval_batch_size: int = 16
    num_workers: int = 2
    log_every: int = 50
    save_every: int = 2000
    keep_last: int = 3
    seed: int = 0
    deterministic: bool = False

    def check(self) -> None:
        check_train_values(
            self,
            (self.lr >= 0 and self.weight_decay >= 0, "train.lr and train.weight_decay must be >= 0"),
            (self.warmup >= 0, f"train.warmup must be >= 0, got {self.warmup}"),
            (0 < self.scale_min <= self.scale_max, "train.scale_min must be positive and <= train.scale_max"),
            (0 <= self.jitter < 1, f"train.jitter must lie in [0, 1), got {self.jitter}"),
            (0 <= self.holdout < 1, f"train.holdout must lie in [0, 1), got {self.holdout}"),
            (self.eval_limit >= 0, f"train.eval_limit must be >= 0 (0: all), got {self.eval_limit}"),
            (self.eval_batch_size >= 1, f"train.eval_batch_size must be at least 1, got {self.eval_batch_size}"),
            (self.num_workers >= 0, f"train.num_workers must be >= 0, got {self.num_workers}"),
        )


PARSER_TRAIN_PRESETS: dict[str, ParserTrainConfig] = {
    "base": ParserTrainConfig(),
    "small": ParserTrainConfig(batch_size=8, steps=4000, lr=2e-3, warmup=100, num_workers=0, log_every=25,
                               save_every=500, keep_last=2),
    "tiny": ParserTrainConfig(batch_size=4, steps=40, lr=3e-3, warmup=0, num_workers=0, eval_batch_size=8,
                              log_every=5, save_every=20, keep_last=2),
}


# ---------------------------------------------------------------------------------------- transforms


class RandomScale:
    """Zoom a pair by a random factor in [lo, hi] about its centre, keeping its size: zooming out pads the
    image with black and the labels with background (class 0), zooming in crops the centre."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi

    def __call__(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        if self.lo == self.hi == 1.0:
            return image, labels
        factor = self.lo + (self.hi - self.lo) * float(torch.rand(()))
        h, w = image.shape[-2:]
        sh, sw = max(1, round(h * factor)), max(1, round(w * factor))
        image, labels = Resize((sh, sw))(image, labels)
        if sh >= h and sw >= w:
            top, left = (sh - h) // 2, (sw - w) // 2
            return image[..., top:top + h, left:left + w], labels[..., top:top + h, left:left + w]
        out_image = image.new_full((*image.shape[:-2], h, w), -1.0)
        out_labels = labels.new_zeros((*labels.shape[:-2], h, w))
        top, left = (h - sh) // 2, (w - sw) // 2
        ys, xs = slice(max(top, 0), max(top, 0) + min(sh, h)), slice(max(left, 0), max(left, 0) + min(sw, w))
        iy, ix = slice(max(-top, 0), max(-top, 0) + min(sh, h)), slice(max(-left, 0), max(-left, 0) + min(sw, w))
        out_image[..., ys, xs] = image[..., iy, ix]
        out_labels[..., ys, xs] = labels[..., iy, ix]
        return out_image, out_labels

    def __repr__(self) -> str:
        return f"RandomScale({self.lo}, {self.hi})"


class ColorJitter:
    """Random brightness, contrast and saturation, each a factor in [1 - s, 1 + s] (labels untouched)."""

    def __init__(self, strength: float) -> None:
        self.strength = strength

    def __call__(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        if self.strength <= 0:
            return image, labels
        b, c, s = (1 + self.strength * (2 * torch.rand(3) - 1)).tolist()
        x = (image + 1) / 2 * b
        mean = x.mean()
        x = (x - mean) * c + mean
        gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
        x = (x - gray) * s + gray
        return (x.clamp(0, 1) * 2 - 1), labels

    def __repr__(self) -> str:
        return f"ColorJitter({self.strength})"


def parser_train_transform(image_size: int, label_set: LabelSet, cfg: ParserTrainConfig) -> Compose:
    """Random scale, random crop of ``image_size`` from the read size, flip, colour jitter."""
    load = read_size(image_size)
    steps: list = [Resize(load), RandomScale(cfg.scale_min, cfg.scale_max), RandomCrop(image_size)]
    if cfg.flip:
        steps.append(RandomHorizontalFlip(label_set))
    steps.append(ColorJitter(cfg.jitter))
    return Compose(steps)


def read_size(image_size: int) -> int:
    return int(round(image_size * LOAD_SCALE / 2)) * 2


# ------------------------------------------------------------------------------------------- metrics


def confusion_matrix(prediction: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(R, R) int64 counts, rows the true class, columns the predicted one."""
    index = target.reshape(-1).long() * num_classes + prediction.reshape(-1).long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def iou_from_confusion(confusion: Tensor) -> tuple[list[float | None], float, float]:
    """Per-class IoU (None for a class neither present nor predicted), their mean, and pixel accuracy."""
    c = confusion.double()
    tp = c.diag()
    union = c.sum(0) + c.sum(1) - tp
    per_class = [None if float(u) == 0 else float(t / u) for t, u in zip(tp, union)]
    valid = [v for v in per_class if v is not None]
    mean = sum(valid) / len(valid) if valid else math.nan
    total = float(c.sum())
    return per_class, mean, float(tp.sum()) / total if total else math.nan


@torch.no_grad()
def evaluate_parser(model: nn.Module, dataset: Dataset, batch_size: int = 16,
                    device: torch.device | str | None = None) -> dict[str, Any]:
    """Mean IoU, per-class IoU and pixel accuracy of ``model`` on ``dataset`` (items: image (3, S, S) at the
    parser's size, labels (S, S), name). The model's train/eval mode is restored afterwards."""
    param = next(model.parameters())
    device = param.device if device is None else torch.device(device)
    num_classes = model.num_classes
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    was_training = model.training
    model.eval()
    try:
        for image, labels, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
            logits = model(image.to(device, param.dtype))
            confusion += confusion_matrix(logits.argmax(1), labels.to(device), num_classes)
    finally:
        model.train(was_training)
    per_class, mean, accuracy = iou_from_confusion(confusion)
    return {"mean_iou": mean, "pixel_accuracy": accuracy, "per_class": per_class, "images": len(dataset)}


def face_iou(prediction: Tensor, target: Tensor, num_classes: int) -> float:
    """One face's IoU averaged over the classes of its ground truth ``target`` (a class never predicted
    counts 0; a class only predicted does not count)."""
    per_class, _, _ = iou_from_confusion(confusion_matrix(prediction, target, num_classes))
    present = torch.bincount(target.reshape(-1).long(), minlength=num_classes) > 0
    values = [per_class[c] or 0.0 for c in present.nonzero().flatten().tolist()]
    return sum(values) / len(values) if values else math.nan


def format_iou_table(result: dict[str, Any], label_set: LabelSet, title: str = "") -> str:
    """The per-class IoUs as a table (classes absent from the held-out images shown as "-")."""
    lines = [title] if title else []
    width = max(len(c) for c in label_set.classes)
    lines.append(f"  {'class':<{width}}  IoU")
    for name, value in zip(label_set.classes, result["per_class"]):
        lines.append(f"  {name:<{width}}  {'-' if value is None else f'{value:.3f}'}")
    lines.append(f"  {'mean':<{width}}  {result['mean_iou']:.3f}   (pixel accuracy {result['pixel_accuracy']:.3f}, "
                 f"{result['images']} image(s))")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- data


def _holdout_key(name: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()


def split_datasets(spec: str, split: str, eval_split: str, image_size: int, data_seed: int, label_set: LabelSet,
                   cfg: ParserTrainConfig) -> tuple[Dataset, Dataset, str]:
    """(training images at the read size, held-out images at the parser's size, a description of the
    held-out set). Images of the eval split that are also training images are held out of training."""
    train = parse_data_spec(spec, split=split, resolution=read_size(image_size), seed=data_seed, label_set=label_set)
    data_labels = getattr(train, "label_set", label_set)
    data_labels = get_label_set(data_labels) if isinstance(data_labels, str) else data_labels
    if data_labels.name != label_set.name:
        raise InputError(f"{spec} has {data_labels.name} labels but the parser is configured for {label_set.name} "
                         f"(set model.label_set={data_labels.name})")
    try:
        held = parse_data_spec(spec, split=eval_split, resolution=image_size, seed=data_seed, label_set=label_set)
    except InputError as exc:
        raise InputError(f"{spec}: no held-out {eval_split!r} split to evaluate on ({exc})") from None
    train_names = list(getattr(train, "names", []))
    held_names = list(getattr(held, "names", []))
    overlap = set(train_names) & set(held_names)
    description = f"{eval_split} split"
    if overlap:
        ranked = sorted(overlap, key=lambda n: _holdout_key(n, cfg.seed))
        count = max(1, round(cfg.holdout * len(overlap))) if cfg.holdout > 0 else 0
        if count == 0 or count >= len(train_names):
            raise InputError(f"{spec}: the {eval_split} split is the training data and train.holdout={cfg.holdout} "
                             f"leaves nothing to hold out of {len(train_names)} image(s); raise train.holdout or "
                             "give a dataset with a test split")
        out = set(ranked[:count])
        train = Subset(train, [i for i, n in enumerate(train_names) if n not in out])
        held = Subset(held, [i for i, n in enumerate(held_names) if n in out])
        description = (f"{len(out)} image(s) held out of the {len(train_names)} of the {split} split "
                       f"(train.holdout={cfg.holdout}; the data has no separate {eval_split} split)")
    if cfg.eval_limit and len(held) > cfg.eval_limit:
        held = Subset(held, range(cfg.eval_limit))
        description += f", first {cfg.eval_limit}"
    if len(train) == 0:
        raise InputError(f"{spec}: no training images in split {split!r}")
    return train, held, description


# ------------------------------------------------------------------------------------------- trainer


class ParserTrainer(CheckpointedRun):
    """Everything one training process holds: the parser, its optimizer, the data and the run folder."""

    command = "train-parser"
    network_name = mismatch_name = "parser"

    def __init__(self, model_config: ParserConfig, train_config: ParserTrainConfig, data_spec: str,
                 out_dir: str | os.PathLike, *, resume_from: Path | None = None, device: str = "cpu",
                 split: str = "train", eval_split: str = "test", data_seed: int = 0, stop_at: int | None = None,
                 dist_env: Distributed | None = None, precision: str | None = None, compile: bool = False) -> None:
        train_config.check()
        self.model_config, self.train_config = model_config, train_config
        self.run_dir, self.stop_at = Path(out_dir), stop_at
        self.dist = dist_env or Distributed.from_env()
        self.device = self.dist.device(device)
        self.label_set = get_label_set(model_config.label_set)
        cfg = train_config
        state = resume_state(FaceParserNet, model_config, resume_from)
        self.init_precision(precision, state)

        # Everything that can fail on the user's input fails here, before a step runs or a file is written.
        self.data_info = {"spec": data_spec, "split": split, "eval_split": eval_split, "seed": data_seed}
        train_set, self.held_out, self.held_out_description = split_datasets(
            data_spec, split, eval_split, model_config.image_size, data_seed, self.label_set, cfg)
        transform = parser_train_transform(model_config.image_size, self.label_set, cfg)
        self.data = DataStream(SeededTransform(train_set, transform), cfg.batch_size, cfg.seed, self.dist,
                               num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda")
        self.train_images = len(train_set)

        seed_everything(cfg.seed + self.dist.rank)
        self.model = FaceParserNet(model_config)
        if self.dist.enabled and self.device.type == "cuda" and model_config.norm == "batch":
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = 0
        self.last_saved: Path | None = None
        self.last_losses: dict[str, float] = {}
        self.evaluations: list[dict[str, Any]] = []
        if resume_from is not None:
            self.load(resume_from, state)
        (self.model_ddp,) = self.distribute(self.model)
        self.model_ddp = compile_module(self.model_ddp, compile)

    # ------------------------------------------------------------------------------------- training

    def start_training(self) -> None:
        log(self.dist, f"held-out evaluation: {self.held_out_description}")
        if self.step == 0:
            self.evaluate(report=True)
        self.model.train()

    def postfix(self, scalars: dict[str, float], speed: float) -> dict[str, float]:
        return {"loss": scalars["cross_entropy"], "img/s": speed}

    def extra_scalars(self) -> dict[str, float]:
        return {"lr": self.optimizer.param_groups[0]["lr"]}

    def checkpoint_scalars(self) -> dict[str, float]:
        result = self.evaluate(report=True)
        return {} if result is None else {"eval/mean_iou": result["mean_iou"],
                                          "eval/pixel_accuracy": result["pixel_accuracy"]}

    def train_step(self, image: Tensor, labels: Tensor) -> dict[str, float]:
        """One optimisation step of the per-pixel cross-entropy; returns the losses as floats."""
        self.set_learning_rate()
        with self.autocast():
            logits = self.model_ddp(image)
            loss = F.cross_entropy(logits, labels)
        self.check_finite({"cross_entropy": loss})
        self.optimize(loss, self.optimizer)
        with torch.no_grad():
            accuracy = (logits.argmax(1) == labels).float().mean()
        return as_floats({"cross_entropy": loss, "pixel_accuracy": accuracy})

    def learning_rate(self, step: int) -> float:
        """Linear warm-up, then DeepLab's poly decay (``step`` is the 0-based step about to run)."""
        cfg = self.train_config
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        return cfg.lr * max(0.0, 1 - step / cfg.steps) ** cfg.poly_power

    def set_learning_rate(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)

    def describe(self) -> str:
        n = sum(p.numel() for p in self.model.parameters()) / 1e6
        m = self.model_config
        return (f"a {m.image_size}x{m.image_size} {m.label_set} parser (width {m.width}, output stride "
                f"{m.output_stride}, {n:.2f} M parameters) on {self.train_images} image(s), batch "
                f"{self.train_config.batch_size} x {self.dist.world_size} process(es)")

    # ----------------------------------------------------------------------------------- evaluation

    def evaluate(self, report: bool = True) -> dict[str, Any] | None:
        """Mean IoU on the held-out images (rank 0), recorded in ``metrics.json`` and printed as a table."""
        if not self.dist.is_main:
            return None
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the training stream stays as it was
            result = evaluate_parser(self.model, self.held_out, self.train_config.eval_batch_size, self.device)
        result = {"step": self.step, **result}
        self.evaluations = [e for e in self.evaluations if e["step"] < self.step] + [result]
        self.write_metrics(result)
        if report:
            log(self.dist, format_iou_table(result, self.label_set, f"step {self.step}: IoU on the held-out images"))
        return result

    def write_metrics(self, result: dict[str, Any]) -> None:
        classes = self.label_set.classes
        payload = {
            "step": result["step"], "mean_iou": _finite(result["mean_iou"]),
            "pixel_accuracy": _finite(result["pixel_accuracy"]), "images": result["images"],
            "held_out": self.held_out_description,
            "per_class": {name: value for name, value in zip(classes, result["per_class"])},
            "history": [{"step": e["step"], "mean_iou": _finite(e["mean_iou"]),
                         "pixel_accuracy": _finite(e["pixel_accuracy"])} for e in self.evaluations],
        }
        self.hold_run_folder()
        with writing(self.run_dir):
            atomic_write_bytes(self.run_dir / METRICS_FILE, (json.dumps(payload, indent=2) + "\n").encode())

    # ---------------------------------------------------------------------------------------- saving

    def prepare_run_dir(self) -> None:
        config = {"model": config_to_dict(self.model_config), "train": config_to_dict(self.train_config)}
        self.write_run_files(config, self.data_info)

    def trainer_state(self) -> dict[str, Any]:
        return {**self.progress_state(), "config": config_to_dict(self.train_config),
                "evaluations": self.evaluations, "optimizer": self.optimizer.state_dict()}

    def checkpointed_networks(self) -> tuple[nn.Module, ...]:
        return (self.model,)

    def save_network(self, directory: Path) -> None:
        """The parser, with the held-out mean IoU when it was measured at this step."""
        last = self.evaluations[-1] if self.evaluations and self.evaluations[-1]["step"] == self.step else None
        meta = {"step": self.step, "data": self.data_info}
        if last is not None:
            meta["held_out_mean_iou"] = _finite(last["mean_iou"])
        _plain(self.model).save_pretrained(directory, **meta)

    def load_aux_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.evaluations = [dict(e) for e in state.get("evaluations") or [] if int(e["step"]) <= int(state["step"])]


def _plain(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


# ------------------------------------------------------------------------------------------- Python API


def resolve_configs(preset: str | None = None, overrides: list[str] | None = None, image_size: int | None = None,
                    steps: int | None = None, batch_size: int | None = None,
                    resume_dir: Path | None = None) -> tuple[ParserConfig, ParserTrainConfig]:
    """The run's configs: the preset (default ``base``; on resume, the run's own config.yaml unless a preset
    is given, which replaces the train section), then ``model.KEY=VALUE`` / ``train.KEY=VALUE`` overrides,
    then the flags."""
    if resume_dir is not None:
        model, train = load_run_config(resume_dir, ParserConfig(), ParserTrainConfig())
        if preset is not None:
            train = _preset(preset)[1]
    else:
        model, train = _preset(preset or "base")
    flags = {"train.steps": steps, "train.batch_size": batch_size, "model.image_size": image_size}
    items = [*(overrides or []), *(f"{key}={value}" for key, value in flags.items() if value is not None)]
    sections = apply_overrides({"model": model, "train": train}, items)
    return sections["model"], sections["train"]


def _preset(name: str) -> tuple[ParserConfig, ParserTrainConfig]:
    if name not in PARSER_PRESETS:
        raise InputError(f"unknown parser preset {name!r}; choose one of: {', '.join(PARSER_PRESETS)}")
    return PARSER_PRESETS[name], PARSER_TRAIN_PRESETS[name]


def train_parser(data_spec: str | None, out_dir: str | os.PathLike, *, preset: str | None = None,
                 overrides: list[str] | None = None, image_size: int | None = None, steps: int | None = None,
                 batch_size: int | None = None, resume: bool | str | os.PathLike = False, device: str = "cpu",
                 split: str = "train", eval_split: str = "test", data_seed: int = 0,
                 stop_at: int | None = None, overwrite: bool = False, precision: str | None = None,
                 compile: bool = False) -> Path:
    """Train a face parser and return the run folder.

    Args:
        data_spec: a dataset spec (``celebamask-hq:ROOT``, ``folder:ROOT``, ``lapa:ROOT``, ``synthetic:N``);
            on resume, None reads the run's own.
        out_dir: the run folder (it must not hold a run unless ``resume``).
        preset: ``base`` (a GPU; the default), ``small`` (a CPU) or ``tiny`` (tests).
        overrides: ``model.KEY=VALUE`` / ``train.KEY=VALUE`` items on top of the preset.
        image_size, steps, batch_size: shortcuts for ``model.image_size``, ``train.steps``, ``train.batch_size``.
        resume: True to continue the run in ``out_dir``, or a run / ``checkpoints/step_X`` folder.
        split, eval_split: the training and held-out splits (see the module docstring for flat folders).
        stop_at: stop after this step (saving), keeping the schedule.
        overwrite: start afresh in an ``out_dir`` that holds a parser run (else refused).
        precision, compile: mixed precision (None: the resumed run's, else fp32) and ``torch.compile``, as
            :func:`facestyle.train.generator.train_generator` takes them.
    """
    resume_from, data = resumed_data(Path(out_dir), resume, {"spec": data_spec, "split": split,
                                                             "eval_split": eval_split, "seed": data_seed},
                                     kind="parser", overwrite=overwrite)
    model, train = resolve_configs(preset, overrides, image_size, steps, batch_size,
                                   resume_from.parent.parent if resume_from is not None else None)
    return run_trainer(train.deterministic, lambda: ParserTrainer(
        model, train, data["spec"], out_dir, resume_from=resume_from, device=device, split=data["split"],
        eval_split=data["eval_split"], data_seed=data["seed"], stop_at=stop_at, precision=precision,
        compile=compile))


# ------------------------------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-parser", help="train the face parser (DeepLab-v3-style) that labels photos",
        description="Train the face parser on labelled faces, reporting mean IoU per class on the held-out "
                    "split (the data's test split; a held-out fraction of a flat folder) at step 0, at every "
                    "save and at the end: printed as a table and written to RUN_DIR/metrics.json. Writes "
                    "RUN_DIR/config.yaml, checkpoints/step_X/, latest, tb/ and metrics.jsonl; RUN_DIR loads as "
                    "a parser checkpoint (facestyle parse --checkpoint RUN_DIR), RUN_DIR/final holds a "
                    "finished run's. Copy one to CHECKPOINT/parser/ to have the Editor parse photos itself.")
    add_run_arguments(p, "train.lr=5e-4 or --set model.width=32")
    p.add_argument("--eval-split", default="test", choices=("train", "val", "test", "all"),
                   help="the held-out split evaluated at each save (default: test)")
    p.add_argument("--preset", choices=sorted(PARSER_PRESETS), default=None,
                   help="network and schedule: base (a GPU), small (a CPU), tiny (tests); default base, or "
                        "the run's own on --resume")
    p.add_argument("--image-size", type=int, default=None, help="model.image_size: the size photos are parsed at")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    out = run_folder(args)
    if args.resolution is not None:
        raise InputError("--resolution does not apply to train-parser; use --image-size")
    overrides = list(args.overrides) + (["train.deterministic=true"] if args.deterministic else [])
    run_dir = train_parser(args.data, out, preset=args.preset, overrides=overrides, image_size=args.image_size,
                           steps=args.steps, batch_size=args.batch_size, resume=args.resume or False,
                           device=args.device, split=args.split, eval_split=args.eval_split, data_seed=args.seed,
                           stop_at=args.stop_at, overwrite=args.overwrite, precision=args.precision,
                           compile=args.compile)
    metrics = run_dir / METRICS_FILE
    if metrics.is_file():
        data = json.loads(metrics.read_text())
        history = data.get("history") or []
        if len(history) >= 2:
            first, last = history[0], history[-1]
            print(f"held-out mean IoU: {_fmt(first['mean_iou'])} at step {first['step']} -> "
                  f"{_fmt(last['mean_iou'])} at step {last['step']} ({metrics})")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["train-parser", *sys.argv[1:]]))
