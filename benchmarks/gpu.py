"""The GPU figures: forward and training speed of the paper-size network, fp32 against bf16, in one run.

    PYTHONPATH=. python3 benchmarks/gpu.py            # on a CUDA machine: about 2 minutes
    PYTHONPATH=. python3 benchmarks/gpu.py --quick    # the same measurements at toy sizes (any machine)

Needs torch only (2.3 or newer) and nothing outside the checkout: the networks have random weights in
the paper's layout (ngf 64, D 512, 19 classes, 256x256), the label maps are face-like ellipses drawn with
torch and the images are noise, which costs what a photo costs. Optional packages the model path does
not use (numpy, PIL, safetensors...) are replaced by inert placeholders when absent, and said so.

Measured, each after warm-up, timed with CUDA synchronisation:

- forward milliseconds per image at batch 1 and 16 for the naive (SEAN's own), factorized and sparse
  style paths, in fp32 and in bf16 (autocast), with each one's peak GPU memory;
- training images per second of one generator step (G forward, D on real and fake, hinge + feature
  matching + VGG19 perceptual losses (random VGG weights), both backward passes and Adam steps) for the
  paper preset at batch 8 and 16, fp32 and bf16, with peak memory.

Without CUDA it runs automatically in the quick form (the tiny preset at 64x64, batch 1 and 2), which is
what the test suite runs. Prints a table, then last the headline ``name=value`` pairs, among them
``fastest_path_bf16``: the style path to use on this GPU (``--set model.style_branch=NAME`` when
training, ``model.generator.set_style_branch(NAME)`` for a loaded model).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import time
import types
from dataclasses import dataclass, replace

import torch

OPTIONAL = ("numpy", "PIL", "safetensors", "einops", "yaml", "tqdm", "scipy", "torchdiffeq")


class _Placeholder(types.ModuleType):
    """A module that stands for an absent optional package: every attribute is an inert class."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Placeholder(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def stand_in_for_missing() -> list[str]:
    """Placeholders for the optional packages that are not installed; returns their names."""
    missing = {name for name in OPTIONAL if importlib.util.find_spec(name) is None}
    if missing:
        sys.meta_path.insert(0, _PlaceholderFinder(missing))
    return sorted(missing)


@dataclass(frozen=True)
class Setting:
    size: int
    forward_batches: tuple[int, ...]
    train_batches: tuple[int, ...]
    preset: str  # the model widths: "paper" or "tiny"
    repeats: int
    train_steps: int


FULL = Setting(256, (1, 16), (8, 16), "paper", 10, 5)
QUICK = Setting(64, (1, 2), (1, 2), "tiny", 1, 1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def face_labels(size: int, batch: int) -> torch.Tensor:
    """(B, S, S) face-like CelebAMask-HQ label maps drawn with torch alone (ellipses: cloth, neck, hair,
    skin, ears, brows, eyes, nose, lips, mouth; each sample shifted a little), so that the sparse path
    sees a face's share of region boundary."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    g = torch.Generator().manual_seed(0)
    maps = []
    for _ in range(batch):
        dx, dy = ((torch.rand(2, generator=g) - 0.5) * 0.06).tolist()
        out = torch.zeros(size, size, dtype=torch.long)
        parts = [  # (class, centre y, centre x, radius y, radius x), drawn in order
            (18, 1.05, 0.5, 0.3, 0.45), (17, 0.85, 0.5, 0.2, 0.14), (13, 0.42, 0.5, 0.38, 0.33),
            (8, 0.5, 0.22, 0.07, 0.04), (9, 0.5, 0.78, 0.07, 0.04), (1, 0.52, 0.5, 0.3, 0.24),
            (6, 0.4, 0.38, 0.02, 0.07), (7, 0.4, 0.62, 0.02, 0.07), (4, 0.46, 0.38, 0.025, 0.05),
            (5, 0.46, 0.62, 0.025, 0.05), (2, 0.56, 0.5, 0.07, 0.04), (11, 0.68, 0.5, 0.02, 0.09),
            (10, 0.7, 0.5, 0.012, 0.08), (12, 0.72, 0.5, 0.025, 0.09),
        ]
        for cls, cy, cx, ry, rx in parts:
            out[((y - cy - dy) / ry) ** 2 + ((x - cx - dx) / rx) ** 2 <= 1] = cls
        maps.append(out)
    return torch.stack(maps)


def model_config(setting: Setting, path: str = "sparse"):
    from facestyle.config import get_preset

    cfg = replace(get_preset(setting.preset).model, image_size=setting.size, style_branch=path)
    return cfg


def autocast(device: torch.device, precision: str):
    from facestyle.accel import Precision

    return Precision(precision).autocast(device)


def time_forward(setting: Setting, path: str, precision: str, batch: int, device: torch.device) -> dict:
    """Milliseconds per image of one inference forward (reconstruction: encode, MRSA, decode)."""
    from facestyle.model import FaceStyleNet

    torch.manual_seed(0)
    cfg = replace(model_config(setting, path), generator_spectral_norm=False, encoder_spectral_norm=False,
                  noise="off")
    model = FaceStyleNet(cfg).eval().to(device)
    with torch.no_grad():  # trained blend scalars are away from 0: both branches of every norm count
        for name, p in model.named_parameters():
            if "blending" in name:
                p.normal_()
    image = (torch.rand(batch, 3, setting.size, setting.size, generator=torch.Generator().manual_seed(1)) * 2
             - 1).to(device)
    labels = face_labels(setting.size, batch).to(device)
    with torch.inference_mode(), autocast(device, precision):
        for _ in range(2):
            model(image, labels)
        synchronize(device)
        reset_peak(device)
        start = time.perf_counter()
        for _ in range(setting.repeats):
            out = model(image, labels)
        synchronize(device)
        seconds = (time.perf_counter() - start) / setting.repeats
    assert torch.isfinite(out.float()).all()
    return {"ms_per_image": 1000 * seconds / batch, "peak_gb": peak_gb(device)}


def time_training(setting: Setting, precision: str, batch: int, device: torch.device) -> dict:
    """Images per second of one generator training step (G then D), as ``facestyle train`` runs it."""
    from facestyle.config import get_preset
    from facestyle.losses import GeneratorLosses, hinge_d_loss
    from facestyle.model import FaceStyleNet
    from facestyle.nn.discriminator import MultiscaleDiscriminator
    from facestyle.nn.features.vgg19 import VGG19Features

    cfg, t = model_config(setting), get_preset(setting.preset).train
    torch.manual_seed(0)
    generator = FaceStyleNet(cfg).to(device).train()
    discriminator = MultiscaleDiscriminator.from_config(cfg).to(device).train()
    vgg = VGG19Features().to(device) if t.use_vgg else None  # random weights: the cost is the same
    losses = GeneratorLosses(t.lambda_feat, t.lambda_vgg, vgg=vgg)
    opt_g = torch.optim.Adam(generator.parameters(), t.lr_g, betas=(t.beta1, t.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), t.lr_d, betas=(t.beta1, t.beta2))
    images = (torch.rand(batch, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(2)) * 2
              - 1).to(device)
    labels = face_labels(cfg.image_size, batch).to(device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step() -> None:
        with autocast(device, precision):
            fake = generator(images, labels)
            fake_out, real_out = discriminator(fake, labels), discriminator(images, labels)
            loss_g = sum(losses(fake, images, fake_out, real_out).values())
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward()
        scaler.step(opt_g)
        with autocast(device, precision):
            loss_d = hinge_d_loss(discriminator(images, labels), discriminator(fake.detach(), labels))
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        scaler.update()

    step()
    synchronize(device)
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(setting.train_steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / setting.train_steps
    return {"images_per_s": batch / seconds, "peak_gb": peak_gb(device)}


def run(setting: Setting, device: torch.device, paths=("naive", "factorized", "sparse"),
        precisions=("fp32", "bf16"), log=print) -> dict[str, float]:
    """Every measurement; prints the tables and returns the headline figures."""
    forward: dict[tuple[str, str, int], dict] = {}
    for batch in setting.forward_batches:
        for precision in precisions:
            for path in paths:
                forward[path, precision, batch] = r = time_forward(setting, path, precision, batch, device)
                log(f"  forward {path:<10} {precision} batch {batch:>2}: {r['ms_per_image']:.2f} ms/image", flush=True)
    training: dict[tuple[str, int], dict] = {}
    for batch in setting.train_batches:
        for precision in precisions:
            training[precision, batch] = r = time_training(setting, precision, batch, device)
            log(f"  training {precision} batch {batch:>2}: {r['images_per_s']:.1f} images/s", flush=True)

    log()
    log(f"forward, {setting.preset} widths at {setting.size}x{setting.size} (ms per image; peak GB)")
    log("| path | precision | " + " | ".join(f"batch {b}" for b in setting.forward_batches) + " |")
    log("|---|---|" + "---:|" * len(setting.forward_batches))
    for path in paths:
        for precision in precisions:
            cells = [f"{forward[path, precision, b]['ms_per_image']:.2f} ({forward[path, precision, b]['peak_gb']:.2f})"
                     for b in setting.forward_batches]
            log(f"| {path} | {precision} | " + " | ".join(cells) + " |")
    log()
    log(f"training, {setting.preset} preset at {setting.size}x{setting.size} (images per second; peak GB)")
    log("| precision | " + " | ".join(f"batch {b}" for b in setting.train_batches) + " |")
    log("|---|" + "---:|" * len(setting.train_batches))
    for precision in precisions:
        cells = [f"{training[precision, b]['images_per_s']:.1f} ({training[precision, b]['peak_gb']:.2f})"
                 for b in setting.train_batches]
        log(f"| {precision} | " + " | ".join(cells) + " |")

    big, top = max(setting.forward_batches), max(setting.train_batches)
    low = "bf16" if "bf16" in precisions else precisions[-1]
    fastest = min(paths, key=lambda p: forward[p, low, big]["ms_per_image"])
    headline = {
        f"forward_{low}_ms_per_image_b{big}": forward[fastest, low, big]["ms_per_image"],
        f"forward_fp32_ms_per_image_b{big}": min(forward[p, "fp32", big]["ms_per_image"] for p in paths),
        f"train_{low}_images_per_s_b{top}": training[low, top]["images_per_s"],
        f"train_fp32_images_per_s_b{top}": training["fp32", top]["images_per_s"],
        "peak_gb": max(r["peak_gb"] for r in [*forward.values(), *training.values()]),
    }
    log()
    log(" ".join(f"{k}={v:.2f}" for k, v in headline.items()) + f" fastest_path_{low}={fastest}")
    return {**headline, f"fastest_path_{low}": fastest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="toy sizes (automatic without CUDA)")
    parser.add_argument("--device", default=None, help="default: cuda when present, else cpu (quick)")
    args = parser.parse_args()
    missing = stand_in_for_missing()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    setting = QUICK if args.quick or device.type != "cuda" else FULL
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, Python {sys.version.split()[0]}"
          f"{', quick form' if setting is QUICK else ''}"
          f"{'; placeholders for absent ' + ', '.join(missing) if missing else ''}", flush=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    run(setting, device)


if __name__ == "__main__":
    main()
