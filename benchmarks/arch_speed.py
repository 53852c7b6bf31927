"""Speed of the compared systems (issue 12): parameters, forward seconds per image and a training step.

For each architecture (``facestyle``, ``sean``, ``spade``, ``clade``, ``clade-icpe``, ``pix2pixhd``,
``groupdnet``, ``sean-groupdnet``, ``sean-stargan``):

- its paper preset (the official widths) at ``--size`` (default 256; only the image size changes, which
  also changes the few layers whose width follows it: the VAE encoders' last linear layers and GroupDNet's
  code map): the parameters, counted on the built network (encoder and generator, no discriminator);
- the forward seconds per image at each batch of ``--batches`` on ``--device``: the reconstruction each
  architecture supports (encode, then decode; the VAEs use their mean code), in eval mode under
  ``torch.inference_mode``: one warm-up run at the smallest batch, then the median of ``--repeats`` timed
  runs at each batch;
- at its tiny preset (64 px, batch 2): one training step of the generator alone (no discriminator, no
  GAN, feature-matching or VGG terms): the reconstruction forward in training mode (the VAEs sample their
  code), pixel L1 + 0.05 x SPADE's summed KL where the network has a VAE encoder, backward and an Adam
  step; the median of ``--train-steps`` timed steps after a warm-up step.

Every architecture gets the same synthetic faces (``facestyle.data.synthetic``, stream 3) and runs in a
process of its own, with the allocator setting the ``facestyle`` command uses
(:func:`facestyle.runtime.keep_freed_memory`). Prints a table, then last its headline ``name=value``
pairs: ``fastest_arch`` and ``slowest_arch`` (forward seconds per image at the largest batch),
``slowest_over_fastest``, ``fastest_train_arch``, and where both are measured ``facestyle_vs_sean_forward``
and ``facestyle_vs_sean_train`` (facestyle's seconds over SEAN's: the cost of the multi-scale encoder and MRSA).

On a machine that other jobs keep busy, wall-clock seconds measure the contention: run with ``--threads 1
--clock cpu``, which counts the measuring process's own CPU seconds on one thread (what an idle core would
take); two OpenMP threads that wait on each other there can be 20x slower than one.

    python benchmarks/arch_speed.py                              # 256x256, batch 1 and 4 (long on 2 cores)
    python benchmarks/arch_speed.py --size 128 --threads 1 --clock cpu   # on a busy machine
    python benchmarks/arch_speed.py --size 128                   # the image size halved, same widths
    python benchmarks/arch_speed.py --quick --archs facestyle,sean   # smoke run: 128 px, batch 1, 1 repeat
    python benchmarks/arch_speed.py --device cuda --size 256     # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from facestyle.arch import ARCHS
from facestyle.config import TrainConfig

# What each architecture's forward (a reconstruction) includes; the architectures themselves (classes,
# presets, VAE or not) are facestyle.arch.ARCHS, the registry `facestyle train --arch` builds from.
VAE_MEAN = "VAE encoder (mean code) + "
FORWARD: dict[str, str] = {
    "facestyle": "multi-scale encoder + region pooling + MRSA + SEAN generator",
    "sean": "SEAN encoder + region pooling + SEAN generator",
    "spade": VAE_MEAN + "SPADE generator",
    "clade": VAE_MEAN + "CLADE generator",
    "clade-icpe": VAE_MEAN + "positional map (connected components) + CLADE generator",
    "pix2pixhd": "feature encoder + per-class average + global generator",
    "groupdnet": "per-class crops + grouped VAE encoder (mean) + group-decreasing generator",
    "sean-groupdnet": "per-class crops + grouped VAE encoder (mean) + per-class lift + SEAN generator",
    "sean-stargan": "SEAN encoder + region pooling + SEAN generator (its mapping networks draw random styles only)",
}
KL_WEIGHT = TrainConfig().kl_weight  # SPADE's lambda_kld, on its KL summed over the batch
TRAIN_BATCH, TRAIN_SIZE = 2, 64  # the tiny presets' batch and image size


def faces(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``n`` synthetic faces for every architecture: images (n, 3, S, S) in [-1, 1], labels (n, S, S)."""
    from facestyle.data.synthetic import SyntheticFaces

    data = SyntheticFaces(n, size, seed=3)
    items = [data[i] for i in range(n)]
    return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])


def model_config(arch: str, preset: str, size: int) -> Any:
    """The architecture's ``paper`` or ``tiny`` preset at ``size`` (an InputError when the size does not suit it)."""
    return replace(ARCHS[arch].model_config(preset), image_size=size)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def forward_seconds(net: torch.nn.Module, image: torch.Tensor, labels: torch.Tensor, repeats: int,
                    clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds per image of ``repeats`` reconstructions (the caller has run a warm-up)."""
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = clock()
            net(image, labels)
            _sync(image.device)
            times.append(clock() - start)
    return statistics.median(times) / image.shape[0]


def train_step_seconds(arch: str, device: torch.device, steps: int,
                       clock: Callable[[], float] = time.perf_counter) -> tuple[float, int]:
    """Median seconds of ``steps`` generator steps at the tiny preset (after a warm-up step) and the tiny
    network's parameter count."""
    from facestyle.nn.synthesis import Reconstruction

    spec = ARCHS[arch]
    torch.manual_seed(0)
    cfg = spec.model_config("tiny")
    net = spec.build(cfg).to(device).train()
    image, labels = faces(TRAIN_BATCH, cfg.image_size)
    image, labels = image.to(device), labels.to(device)
    t = TrainConfig()
    opt = torch.optim.Adam(net.parameters(), t.lr_g, betas=(t.beta1, t.beta2))

    def step() -> None:
        if hasattr(net, "reconstruct"):
            rec: Reconstruction = net.reconstruct(image, labels, sample=True)
            fake, kl = rec.image, rec.kl
        else:  # FaceStyleNet: no VAE
            fake, kl = net(image, labels), None
        loss = torch.nn.functional.l1_loss(fake, image)
        if spec.vae:
            loss = loss + KL_WEIGHT * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)

    step()  # warm-up (Adam's state is allocated here)
    times = []
    for _ in range(steps):
        start = clock()
        step()
        times.append(clock() - start)
    return statistics.median(times), sum(p.numel() for p in net.parameters())


def worker(args: argparse.Namespace) -> None:
    """Measure one architecture; one JSON line on stdout."""
    from facestyle.runtime import keep_freed_memory

    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    spec = ARCHS[args.arch]
    torch.manual_seed(0)
    net = spec.build(model_config(args.arch, args.preset, args.size)).to(device).eval()
    result: dict[str, Any] = {"params": sum(p.numel() for p in net.parameters())}
    image, labels = faces(max(batches), args.size)
    image, labels = image.to(device), labels.to(device)
    with torch.inference_mode():  # warm-up, once, at the smallest batch
        net(image[:min(batches)], labels[:min(batches)])
        _sync(device)
    for batch in batches:
        result[f"forward_b{batch}"] = forward_seconds(net, image[:batch], labels[:batch], args.repeats,
                                                     CLOCKS[args.clock])
    del net
    if args.train_steps:
        result["train_step"], result["tiny_params"] = train_step_seconds(args.arch, device, args.train_steps,
                                                                            CLOCKS[args.clock])
    print(json.dumps(result))


def headline(rows: dict[str, dict[str, Any]], top: int) -> dict[str, str]:
    """The last line's pairs (see the module docstring)."""
    key = f"forward_b{top}"
    speed = {arch: r[key] for arch, r in rows.items()}
    fastest, slowest = min(speed, key=speed.__getitem__), max(speed, key=speed.__getitem__)
    pairs = {"fastest_arch": fastest, "slowest_arch": slowest,
             "slowest_over_fastest": f"{speed[slowest] / speed[fastest]:.2f}"}
    train = {arch: r["train_step"] for arch, r in rows.items() if "train_step" in r}
    if train:
        pairs["fastest_train_arch"] = min(train, key=train.__getitem__)
    if "facestyle" in rows and "sean" in rows:
        pairs["facestyle_vs_sean_forward"] = f"{speed['facestyle'] / speed['sean']:.2f}"
        if "facestyle" in train and "sean" in train:
            pairs["facestyle_vs_sean_train"] = f"{train['facestyle'] / train['sean']:.2f}"
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=",".join(ARCHS), help=f"comma-separated subset of {', '.join(ARCHS)}")
    parser.add_argument("--size", type=int, help="image size of the paper presets (default 256; --quick: 128)")
    parser.add_argument("--batches", help="forward batch sizes (default 1,4; --quick: 1)")
    parser.add_argument("--repeats", type=int, help="timed forwards per batch, median kept (default 3; --quick: 1)")
    parser.add_argument("--train-steps", type=int, help="timed tiny training steps, median kept; 0 skips them "
                        "(default 3; --quick: 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--preset", choices=("paper", "tiny"), default="paper",
                        help="the preset of the parameter and forward columns (default paper; tiny: for tests)")
    parser.add_argument("--threads", type=int, help="torch threads in each measuring process (default: torch's, "
                        "one per core); 1 on a machine that other jobs keep busy")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall (default) or cpu: the process's CPU seconds, with one thread what an idle core "
                        "would take, for a machine that other jobs keep busy (needs --threads 1, the CPU)")
    parser.add_argument("--quick", action="store_true", help="smoke run: --size 128 --batches 1 --repeats 1 "
                        "--train-steps 1 (each can still be given)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = {"size": 128, "batches": "1", "repeats": 1, "train_steps": 1}
    default = {"size": 256, "batches": "1,4", "repeats": 3, "train_steps": 3}
    for name, value in (quick if args.quick else default).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.worker:
        worker(args)
        return

    archs = [a for a in args.archs.split(",") if a]
    unknown = [a for a in archs if a not in ARCHS]
    if unknown or not archs:
        parser.exit(2, f"arch_speed: unknown architecture(s) {', '.join(unknown) or '(none given)'}; "
                       f"choose from {', '.join(ARCHS)}\n")
    try:
        batches = [int(b) for b in args.batches.split(",")]
        threads_ok = args.threads is None or args.threads >= 1
        if min(batches) < 1 or args.repeats < 1 or args.train_steps < 0 or not threads_ok:
            raise ValueError
    except ValueError:
        parser.exit(2, "arch_speed: --batches must be positive integers, --repeats and --threads at least 1, "
                       "--train-steps at least 0\n")
    from facestyle.errors import InputError

    for arch in archs:
        try:
            model_config(arch, args.preset, args.size)
        except InputError as err:
            parser.exit(2, f"arch_speed: --size {args.size} does not suit {arch}: {err}\n")
    if args.clock == "cpu" and (args.threads != 1 or args.device != "cpu"):
        parser.exit(2, "arch_speed: --clock cpu needs --threads 1 and --device cpu (it counts one thread's CPU "
                       "seconds)\n")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.exit(2, "arch_speed: --device cuda, but torch sees no CUDA device\n")

    print(f"{args.preset} presets at {args.size}x{args.size} on {args.device}, float32, torch {torch.__version__}, "
          f"{args.clock} clock, {args.threads or torch.get_num_threads()} threads; forward: median of "
          f"{args.repeats} after a warm-up at batch {min(batches)}; "
          f"tiny training step: batch {TRAIN_BATCH}, {TRAIN_SIZE} px, median of {args.train_steps}", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    for arch in archs:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--arch", arch, "--size", str(args.size),
               "--batches", args.batches, "--repeats", str(args.repeats), "--train-steps", str(args.train_steps),
               "--device", args.device, "--preset", args.preset, "--clock", args.clock]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"worker failed ({arch}):\n{result.stderr}")
        rows[arch] = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"  measured {arch}: " + json.dumps(rows[arch]), flush=True)

    top = max(batches)
    sean = rows.get("sean", {}).get(f"forward_b{top}")
    head = ["architecture", "params (M)", *[f"forward s/image, batch {b}" for b in batches]]
    head += [f"vs sean, batch {top}"] if sean else []
    head += ["tiny G step (s)", "tiny params (M)"] if args.train_steps else []
    head += ["forward includes"]
    print()
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 2) + "---|")
    for arch, r in rows.items():
        cells = [arch, f"{r['params'] / 1e6:.2f}", *[f"{r[f'forward_b{b}']:.3f}" for b in batches]]
        cells += [f"{r[f'forward_b{top}'] / sean:.2f}x"] if sean else []
        cells += [f"{r['train_step']:.3f}", f"{r['tiny_params'] / 1e6:.3f}"] if args.train_steps else []
        cells += [FORWARD[arch]]
        print("| " + " | ".join(cells) + " |")
    if args.train_steps:
        print(f"\ntiny G step: the generator's reconstruction forward (training mode), pixel L1 "
              f"(+ {KL_WEIGHT} x KL for the VAEs), backward and Adam; no discriminator.")
    print()
    print(" ".join(f"{k}={v}" for k, v in headline(rows, top).items()))


if __name__ == "__main__":
    main()
