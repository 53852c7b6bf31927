"""Harmony score (HS): the probability of "real" of a binary real-vs-composite classifier.

The paper (section 4.1) measures how harmonious a transferred region is with the rest of the face with
a convolutional classifier trained, like the realism score of Zhu et al. ("Learning a Discriminative
Model for the Perception of Realism in Composite Images", ICCV 2015), to tell real photos (positives)
from composites (negatives). Its input is the image concatenated with the foreground mask, 4 channels;
it is trained on HAdobe5k, the Adobe-5k part of iHarmony4 (Cong et al., "DoveNet", CVPR 2020). The
score of a transfer is the classifier's probability of real on the result with the transferred
region's mask (Table 3, Fig. 7).

This module holds:

- :class:`HarmonyClassifier`, a small CNN (4 -> 1 logit), saved as a facestyle checkpoint folder of kind
  ``harmony`` (``config.json`` + ``model.safetensors``);
- :func:`harmony_score`, the per-image probability of real;
- :func:`find_harmony_samples` / :class:`HarmonyDataset`, a reader of the iHarmony4 layout
  (``composite_images/{name}_{k}_{j}.jpg``, ``masks/{name}_{k}.png``, ``real_images/{name}.jpg``,
  ``HAdobe5k_train.txt`` / ``HAdobe5k_test.txt`` listing composites). Each composite gives one negative
  (the composite with its mask) and one positive (the real image with the same mask), so the classes
  are balanced and the mask alone tells nothing;
- :func:`train_harmony`, the trainer behind ``facestyle train-harmony``.

Images are in [0, 1] like every metric of :mod:`facestyle.metrics`; masks are (B, H, W) or
(B, 1, H, W), bool or float in [0, 1]. Both are resized (bilinear, antialiased) to the classifier's
square input size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_state,
    read_config,
    resolve,
    save_pretrained,
)
from ..errors import CheckpointError, InputError
from ..io import atomic_write_bytes
from .pixel import check_unit_range

KIND = "harmony"

# ---------------------------------------------------------------------------------------------------------
# The classifier


@dataclass(frozen=True)
class HarmonyConfig:
    """Everything that rebuilds a :class:`HarmonyClassifier`.

    ``image_size``: the square input the classifier sees (images and masks are resized to it);
    ``width``: channels of the first stage, doubled per stage up to ``8 * width``; ``depth``: number of
    stride-2 stages (256 px and depth 5 leave an 8x8 grid before the global pooling).
    """

    image_size: int = 256
    width: int = 32
    depth: int = 5

    def __post_init__(self) -> None:
        for name in ("image_size", "width", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"harmony classifier: {name} must be a positive integer, got {value!r}")
        if self.image_size < 2 ** self.depth:
            raise InputError(f"harmony classifier: image_size {self.image_size} is too small for {self.depth} "
                             f"stride-2 stages (at least {2 ** self.depth})")


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class HarmonyClassifier(nn.Module):
    """Real-vs-composite CNN: (image, foreground mask) -> logit of "real".

    A 3x3 stem, ``depth`` stages of (4x4 stride-2 conv, GroupNorm, LeakyReLU 0.2, 3x3 conv, GroupNorm,
    LeakyReLU 0.2), then global average and max pooling, concatenated, and a linear layer. GroupNorm
    keeps a sample's score independent of the rest of its batch.
    """

    def __init__(self, config: HarmonyConfig | None = None) -> None:
        super().__init__()
        self.config = config or HarmonyConfig()
        cfg = self.config
        layers: list[nn.Module] = [nn.Conv2d(4, cfg.width, 3, padding=1), nn.LeakyReLU(0.2)]
        channels = cfg.width
        for i in range(cfg.depth):
            out = cfg.width * 2 ** min(i + 1, 3)
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), _norm(out), nn.LeakyReLU(0.2),
                       nn.Conv2d(out, out, 3, padding=1), _norm(out), nn.LeakyReLU(0.2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, 1)

    def prepare(self, images: Tensor, masks: Tensor) -> Tensor:
        """Images in [0, 1] (B, 3, H, W) and masks -> the (B, 4, S, S) input in [-1, 1] at the input size."""
        check_unit_range(images, "images")
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"harmony classifier: expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
        m = masks[:, None] if masks.dim() == 3 else masks
        if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] != images.shape[0]:
            raise InputError(f"harmony classifier: expected (B, H, W) or (B, 1, H, W) masks for {images.shape[0]} "
                             f"image(s), got shape {tuple(masks.shape)}")
        param = self.head.weight
        size = self.config.image_size
        image = resize_square(images.to(param), size)
        mask = resize_square(m.to(param), size).clamp(0, 1)
        x = torch.cat([image, mask], 1)
        return 2 * x - 1

    def forward(self, images: Tensor, masks: Tensor) -> Tensor:
        """(B,) logits of "real" for images in [0, 1] and their foreground masks."""
        h = self.features(self.prepare(images, masks))
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return self.head(pooled)[:, 0]

    def save_pretrained(self, directory: str | os.PathLike[str], **meta: Any) -> Path:
        """``directory/config.json`` (kind ``harmony``) + ``model.safetensors``, each written atomically."""
        return save_pretrained(self, directory, kind=KIND, config=dataclasses.asdict(self.config), **meta)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str],
                        device: str | torch.device = "cpu") -> HarmonyClassifier:
        """Load a harmony checkpoint folder (what :func:`train_harmony` writes), in eval mode."""
        path = resolve(directory)
        data = read_config(path, kind=KIND)
        try:
            config = HarmonyConfig(**data["model"])
        except (KeyError, TypeError, InputError) as exc:
            raise CheckpointError(f"{path / CONFIG_NAME}: invalid harmony classifier config ({exc})") from None
        model = cls(config)
        try:
            load_state(model, path)
        except RuntimeError as exc:  # shape mismatch
            raise CheckpointError(f"{path / WEIGHTS_NAME} does not match its config.json: "
                                  f"{str(exc).splitlines()[-1].strip()}") from None
        return model.to(device).eval()


def resize_square(x: Tensor, size: int) -> Tensor:
    """(B, C, H, W) -> (B, C, size, size), bilinear with antialiasing when shrinking (identity if equal)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def harmony_score(classifier: HarmonyClassifier, images: Tensor, masks: Tensor, batch_size: int = 64) -> Tensor:
    """The harmony score: per-image probability of "real", in [0, 1].

    Args:
        classifier: a trained :class:`HarmonyClassifier` (see :func:`train_harmony`).
        images: (B, 3, H, W) results in [0, 1].
        masks: (B, H, W) or (B, 1, H, W) masks of the transferred region (bool or [0, 1]).

    Returns:
        (B,) float tensor on the images' device.
    """
    was_training = classifier.training
    classifier.eval()
    try:
        out = [torch.sigmoid(classifier(images[i:i + batch_size], masks[i:i + batch_size]).float())
               for i in range(0, images.shape[0], batch_size)]
    finally:
        classifier.train(was_training)
    return torch.cat(out).to(images.device)


# ---------------------------------------------------------------------------------------------------------
# iHarmony4 / HAdobe5k


# (composites, masks, real images): iHarmony4's names, then the short names of some copies (and RainNet's).
LAYOUTS = (("composite_images", "masks", "real_images"), ("composite", "mask", "real"))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class HarmonySample:
    """One composite with its foreground mask and the real photo it was made from."""

    composite: Path
    mask: Path
    real: Path


def _layout(root: Path) -> tuple[Path, Path, Path]:
    for names in LAYOUTS:
        folders = tuple(root / n for n in names)
        if all(f.is_dir() for f in folders):
            return folders  # type: ignore[return-value]
    expected = " or ".join("/".join(n) for n in LAYOUTS)
    raise InputError(f"{root}: not an iHarmony4-style folder (expected subfolders {expected})")


def _index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES}


def _split_lists(root: Path) -> dict[str, Path] | None:
    """``{name}_train.txt`` and ``{name}_test.txt`` (e.g. HAdobe5k_train.txt), when both are there."""
    found = {}
    for split in ("train", "test"):
        files = sorted(root.glob(f"*_{split}.txt"))
        if len(files) > 1:
            raise InputError(f"{root}: several {split} lists ({', '.join(f.name for f in files)}); keep one")
        if files:
            found[split] = files[0]
    if len(found) == 1:
        missing = "test" if "train" in found else "train"
        raise InputError(f"{root}: {found[next(iter(found))].name} has no matching *_{missing}.txt")
    return found or None


def _read_list(path: Path) -> list[str]:
    """Composite names from a split list; lines may be ``composite_images/a0001_1_1.jpg`` or bare names."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable split list ({exc})") from None
    return [Path(line.strip()).stem for line in lines if line.strip()]


def _match(stem: str, masks: dict[str, Path], reals: dict[str, Path]) -> tuple[Path | None, Path | None]:
    """iHarmony4 names: composite ``{name}_{k}_{j}`` -> mask ``{name}_{k}``, real ``{name}``; copies that
    give all three one name (RainNet's samples) are matched by that name."""
    parts = stem.split("_")
    mask = masks.get("_".join(parts[:-1])) if len(parts) >= 2 else None
    real = reals.get("_".join(parts[:-2])) if len(parts) >= 3 else None
    return mask or masks.get(stem), real or reals.get(stem)


def _held_out_reals(reals: Sequence[str], fraction: float) -> set[str]:
    """A fixed share of the real photos (by a hash of their names), so that no photo is on both sides."""
    unique = sorted(set(reals))
    if len(unique) < 2 or fraction <= 0:
        return set()
    count = min(len(unique) - 1, math.ceil(fraction * len(unique)))
    return set(sorted(unique, key=lambda n: hashlib.sha1(n.encode()).hexdigest())[:count])


def find_harmony_samples(root: str | os.PathLike[str], split: str = "train",
                         held_out_fraction: float = 0.1) -> list[HarmonySample]:
    """The (composite, mask, real) triplets of an iHarmony4-style folder.

    ``split``: ``train`` / ``test`` follow ``*_train.txt`` / ``*_test.txt`` when the folder has them
    (HAdobe5k does); otherwise a fixed ``held_out_fraction`` of the real photos (chosen by a hash of their
    names, with all their composites) is the test split and the rest the train split. ``all``: every
    composite. A composite without its mask or real image is an error naming it.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    composite_dir, mask_dir, real_dir = _layout(root)
    composites, masks, reals = _index(composite_dir), _index(mask_dir), _index(real_dir)
    lists = _split_lists(root) if split != "all" else None
    if lists is not None:
        names = _read_list(lists[split])
        absent = [n for n in names if n not in composites]
        if absent:
            raise InputError(f"{lists[split]}: {len(absent)} listed composite(s) not in {composite_dir} "
                             f"(first: {absent[0]})")
    else:
        names = list(composites)
    samples, unmatched = [], []
    for name in names:
        mask, real = _match(name, masks, reals)
        if mask is None or real is None:
            unmatched.append((name, "mask" if mask is None else "real image"))
        else:
            samples.append(HarmonySample(composites[name], mask, real))
    if unmatched:
        name, what = unmatched[0]
        raise InputError(f"{root}: {len(unmatched)} composite(s) without their mask or real image (first: "
                         f"{name} has no {what}; expected masks/{{name}}_{{k}}.png and real_images/{{name}}.jpg)")
    if lists is None and not samples:
        raise InputError(f"{root}: no composites in {composite_dir}")
    if lists is None and split != "all":
        held = _held_out_reals([s.real.stem for s in samples], held_out_fraction)
        samples = [s for s in samples if (s.real.stem in held) == (split == "test")]
    return samples


def read_image_unit(path: Path, size: int, mode: str = "RGB") -> Tensor:
    """An image file as a (C, size, size) float tensor in [0, 1] (C = 3 for RGB, 1 for L).

    Large JPEGs are decoded at a reduced scale (``draft``) and large images box-reduced before the
    antialiased bilinear resize, so HAdobe5k's multi-megapixel photos load quickly. No EXIF rotation:
    iHarmony4's masks are aligned with the stored pixels.
    """
    try:
        im = Image.open(path)
        if im.format == "JPEG":
            im.draft(mode, (size, size))
        im = im.convert(mode)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: unreadable image ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    factor = min(im.size) // (2 * size)
    if factor >= 2:
        im = im.reduce(factor)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return resize_square(t[None], size)[0].clamp(0, 1)


class HarmonyDataset(Dataset):
    """Item ``2 i``: real image i with composite i's mask (target 1); item ``2 i + 1``: composite i with
    its mask (target 0). Each item is ``(image (3, S, S) in [0, 1], mask (1, S, S), target)``."""

    def __init__(self, samples: Sequence[HarmonySample], image_size: int) -> None:
        self.samples = list(samples)
        self.image_size = image_size

    def __len__(self) -> int:
        return 2 * len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        sample = self.samples[index // 2]
        real = index % 2 == 0
        image = read_image_unit(sample.real if real else sample.composite, self.image_size)
        mask = read_image_unit(sample.mask, self.image_size, mode="L")
        return image, mask, torch.tensor(1.0 if real else 0.0)


def random_flip(image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Horizontal flip of image and mask together, with probability 1/2 (torch's global RNG)."""
    if torch.rand(()) < 0.5:
        return image.flip(-1), mask.flip(-1)
    return image, mask


@dataclass(frozen=True)
class HarmonyEvaluation:
    """Mean binary cross-entropy and accuracy (threshold 1/2) over ``count`` samples."""

    loss: float
    accuracy: float
    count: int


@torch.no_grad()
def evaluate_harmony(classifier: HarmonyClassifier, dataset: Dataset, batch_size: int = 32,
                     max_samples: int | None = None, num_workers: int = 0) -> HarmonyEvaluation:
    """Loss and accuracy of ``classifier`` on a :class:`HarmonyDataset` (no augmentation).

    ``max_samples`` evaluates an evenly spaced subset of real/composite pairs (both items of each).
    """
    from torch.utils.data import Subset

    n = len(dataset)
    if max_samples is not None and n > max_samples:
        pairs = n // 2
        keep = np.linspace(0, pairs - 1, max(1, max_samples // 2)).round().astype(int)
        dataset = Subset(dataset, [int(i) for p in np.unique(keep) for i in (2 * p, 2 * p + 1)])
    was_training = classifier.training
    classifier.eval()
    device = classifier.head.weight.device
    loss_sum, correct, count = 0.0, 0, 0
    try:
        for image, mask, target in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
            target = target.to(device)
            logits = classifier(image.to(device), mask.to(device))
            loss_sum += float(F.binary_cross_entropy_with_logits(logits, target, reduction="sum"))
            correct += int(((logits > 0).float() == target).sum())
            count += target.numel()
    finally:
        classifier.train(was_training)
    if count == 0:
        return HarmonyEvaluation(math.nan, math.nan, 0)
    return HarmonyEvaluation(loss_sum / count, correct / count, count)


# ---------------------------------------------------------------------------------------------------------
# Training


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


def train_harmony(data_root: str | os.PathLike[str], out_dir: str | os.PathLike[str], steps: int = 20_000,
                  batch_size: int | None = None, image_size: int | None = None, lr: float | None = None,
                  device: str = "cpu", resume: bool = False, *, seed: int = 0, save_every: int = 1000,
                  keep_last: int = 2, held_out_fraction: float = 0.1, width: int = 32, depth: int = 5,
                  num_workers: int = 0, eval_samples: int = 2000, probe_samples: int = 64,
                  log_every: int = 50) -> HarmonyTrainResult:
    """Train the harmony classifier on an iHarmony4-style folder (HAdobe5k for the paper).

    Binary cross-entropy on balanced batches of real photos (target 1) and composites (target 0), each
    with the composite's foreground mask; Adam (betas 0.9, 0.999); random horizontal flips. The folder's
    ``*_train.txt`` / ``*_test.txt`` give the training and held-out composites, or a fixed
    ``held_out_fraction`` of the real photos is held out (see :func:`find_harmony_samples`).

    ``out_dir`` becomes a run folder that loads as the classifier itself
    (``HarmonyClassifier.from_pretrained(out_dir)``)::

        OUT/config.json, OUT/model.safetensors     the newest classifier (kind "harmony")
        OUT/checkpoints/step_X/                    a checkpoint + trainer/ (optimizer, data position, RNG)
        OUT/latest, OUT/metrics.jsonl, OUT/run.json

    Every ``save_every`` steps and at the end, a checkpoint folder is written atomically (a temporary folder
    renamed), the held-out accuracy measured and logged, and all but the last ``keep_last`` checkpoints
    deleted. ``resume=True`` continues the run in ``out_dir`` from its latest checkpoint up to ``steps`` in
    all; ``batch_size`` (default 32), ``image_size`` (default 256) and ``lr`` (default 2e-4) then default to
    the run's own. SIGINT / SIGTERM save a checkpoint and stop.
    """
    from tqdm import tqdm

    from ..train.common import (
        CHECKPOINTS_DIR,
        TRAINER_DIR,
        DataStream,
        Distributed,
        GracefulStop,
        SeededTransform,
        TrainingError,
        atomic_directory,
        latest_checkpoint,
        link_or_copy,
        load_trainer_state,
        remove_stale_temporaries,
        rng_state,
        rotate_checkpoints,
        save_trainer_state,
        seed_everything,
        set_rng_state,
        step_dir_name,
        write_latest,
    )

    out = Path(out_dir)
    for name, value in (("steps", steps), ("save_every", save_every), ("log_every", log_every)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
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
        if previous is not None or (out / CONFIG_NAME).exists():
            raise InputError(f"{out} already holds a harmony run or checkpoint; pass --resume to continue it "
                             "or choose another --out")
        batch_size = 32 if batch_size is None else batch_size
        lr = 2e-4 if lr is None else lr
        config = HarmonyConfig(image_size=256 if image_size is None else image_size, width=width, depth=depth)
        seed_everything(seed)
        model = HarmonyClassifier(config)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not lr > 0:
        raise InputError(f"lr must be positive, got {lr!r}")
    size = model.config.image_size

    # Data: everything that can fail on the user's input fails before a step runs or a file is written.
    train_samples = find_harmony_samples(data_root, "train", held_out_fraction)
    held_samples = find_harmony_samples(data_root, "test", held_out_fraction)
    if not train_samples:
        raise InputError(f"{data_root}: no training composites")
    train_set = HarmonyDataset(train_samples, size)
    held_set = HarmonyDataset(held_samples, size) if held_samples else None
    stream = DataStream(SeededTransform(train_set, random_flip), batch_size, seed, dist, num_workers=num_workers,
                        pin_memory=torch_device.type == "cuda")

    model.to(torch_device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
    step = 0
    if state is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{previous / TRAINER_DIR}: does not match this classifier ({exc})") from None
        for group in optimizer.param_groups:
            group["lr"] = lr
        step = int(state["step"])
        stream.load_state_dict(state["data"])
        set_rng_state(state["rng"]["tensors"], state["rng"]["meta"])
        if str(Path(data_root).resolve()) != settings.get("data"):
            tqdm.write(f"train-harmony: note: resuming on {data_root}, the run started on {settings.get('data')}")

    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    settings = {"data": str(Path(data_root).resolve()), "batch_size": batch_size, "lr": lr, "seed": seed,
                "held_out_fraction": held_out_fraction}
    atomic_write_bytes(out / "run.json", (json.dumps({
        **settings, "train_composites": len(train_samples), "held_out_composites": len(held_samples),
        "model": dataclasses.asdict(model.config)}, indent=2) + "\n").encode())

    def log_metrics(values: dict[str, Any]) -> None:
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def evaluate_held_out() -> HarmonyEvaluation | None:
        if held_set is None:
            return None
        return evaluate_harmony(model, held_set, batch_size=batch_size, max_samples=eval_samples,
                                num_workers=num_workers)

    def save(held: HarmonyEvaluation | None) -> Path:
        bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingError(f"non-finite weights at step {step} ({bad[0]}); not saving them")
        rng_tensors, rng_meta = rng_state()
        trainer = {"step": step, "data": stream.state_dict(), "optimizer": optimizer.state_dict(),
                   "settings": settings, "rng": {"tensors": rng_tensors, "meta": rng_meta}}
        path = out / CHECKPOINTS_DIR / step_dir_name(step)
        with atomic_directory(path) as tmp:
            model.save_pretrained(tmp, step=step, data=settings["data"], held_out=_evaluation_dict(held))
            save_trainer_state(tmp / TRAINER_DIR, trainer)
        write_latest(out, path)
        link_or_copy(path / WEIGHTS_NAME, out / WEIGHTS_NAME)
        link_or_copy(path / CONFIG_NAME, out / CONFIG_NAME)
        rotate_checkpoints(out, keep_last)
        return path

    def report(held: HarmonyEvaluation | None, path: Path) -> None:
        text = "no held-out split" if held is None else \
            f"held-out accuracy {held.accuracy:.4f} (loss {held.loss:.4f}, {held.count} images)"
        tqdm.write(f"train-harmony: step {step}: {text}; saved {path}")
        log_metrics({"held_out": _evaluation_dict(held)})

    probe_before = None if state is not None else evaluate_harmony(model, train_set, batch_size, probe_samples)
    held = None
    losses: list[float] = []
    stop = GracefulStop(on_request=lambda name: tqdm.write(f"train-harmony: {name}: saving and stopping"))
    batches = iter(stream)
    saved_at = step
    if step >= steps:
        tqdm.write(f"train-harmony: already at step {step} of {steps}: nothing to train (raise --steps to go on)")
    with stop, tqdm(total=steps, initial=min(step, steps), desc="train-harmony", unit="step", dynamic_ncols=True,
                    disable=None) as bar:
        while step < steps and stop.requested is None:
            image, mask, target = next(batches)
            logits = model(image.to(torch_device, non_blocking=True), mask.to(torch_device, non_blocking=True))
            loss = F.binary_cross_entropy_with_logits(logits, target.to(torch_device, logits.dtype))
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss at step {step + 1}; lower --lr (now {lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            if step % log_every == 0:
                log_metrics({"loss": round(sum(losses[-log_every:]) / len(losses[-log_every:]), 6)})
            if step % save_every == 0 or step == steps:  # also evaluates, so `held` is the final one
                held = evaluate_held_out()
                report(held, save(held))
                saved_at = step
    if saved_at != step:  # stopped by a signal between two saves
        held = evaluate_held_out()
        report(held, save(held))
    elif held is None:  # nothing was trained in this call
        held = evaluate_held_out()
    probe_after = evaluate_harmony(model, train_set, batch_size, probe_samples)
    recent = losses[-log_every:]
    return HarmonyTrainResult(out_dir=out, step=step, train_loss=sum(recent) / len(recent) if recent else math.nan,
                              probe_before=probe_before, probe_after=probe_after, held_out=held,
                              stopped=stop.requested)
