"""Training speed: steps per second and peak memory of one generator training step, per preset and batch.

A step is what `facestyle train` does: generator forward, discriminator on real and fake, the
generator's losses (hinge GAN + feature matching + perceptual, or pixel L1 for presets without VGG19)
and backward, then the discriminator's hinge loss and backward, and both Adam steps. The VGG19 loss
runs with random weights in the published layout when a preset uses it (the cost is the same).
Each (preset, batch) runs in its own process so that its peak memory is its own, with the allocator
setting `facestyle train` uses (:func:`facestyle.runtime.keep_freed_memory`).

    python benchmarks/train_speed.py                         # tiny, demo, paper@128; batch 1 and 4
    python benchmarks/train_speed.py --paper-size 256 --device cuda --batches 8   # the GPU figure
    python benchmarks/train_speed.py --presets demo --batches 4 --precisions fp32,bf16   # mixed precision

With several ``--precisions`` each (preset, batch) runs in each (autocast, float32 master weights, a
gradient scaler for fp16), and the last line adds ``demo_bf16_speedup_vs_fp32`` (bf16 / fp32 steps per
second of the demo preset at the largest batch).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace

import torch


def worker(args: argparse.Namespace) -> None:
    from facestyle.accel import Precision
    from facestyle.config import get_preset
    from facestyle.data.synthetic import SyntheticFaces
    from facestyle.losses import GeneratorLosses, hinge_d_loss
    from facestyle.model import FaceStyleNet
    from facestyle.nn.discriminator import MultiscaleDiscriminator
    from facestyle.nn.features.vgg19 import VGG19Features
    from facestyle.runtime import keep_freed_memory

    keep_freed_memory()

    device = torch.device(args.device)
    config = get_preset(args.preset)
    model_cfg = config.model
    if args.preset == "paper":
        model_cfg = replace(model_cfg, image_size=args.paper_size)
    torch.manual_seed(0)
    generator = FaceStyleNet(model_cfg).to(device).train()
    discriminator = MultiscaleDiscriminator.from_config(model_cfg).to(device).train()
    vgg = VGG19Features().to(device) if config.train.use_vgg else None
    losses = GeneratorLosses(config.train.lambda_feat, config.train.lambda_vgg, vgg=vgg)
    t = config.train
    opt_g = torch.optim.Adam(generator.parameters(), t.lr_g, betas=(t.beta1, t.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), t.lr_d, betas=(t.beta1, t.beta2))
    faces = SyntheticFaces(args.batch, model_cfg.image_size)
    images = torch.stack([faces[i][0] for i in range(args.batch)]).to(device)
    labels = torch.stack([faces[i][1] for i in range(args.batch)]).to(device)

    precision = Precision(args.precision)
    scaler = precision.grad_scaler(device)

    def step() -> None:
        with precision.autocast(device):
            fake = generator(images, labels)
            fake_out, real_out = discriminator(fake, labels), discriminator(images, labels)
            loss_g = sum(losses(fake, images, fake_out, real_out).values())
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward()
        scaler.step(opt_g)
        with precision.autocast(device):
            loss_d = hinge_d_loss(discriminator(images, labels), discriminator(fake.detach(), labels))
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"seconds_per_step": seconds, "peak_mb": peak, "size": model_cfg.image_size,
                      "params_m": sum(p.numel() for p in generator.parameters()) / 1e6}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,demo,paper")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--paper-size", type=int, default=128, help="image size for the paper preset")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, fp16 (default fp32)")
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    print(f"one training step (G + D, both Adam steps), {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    precisions = args.precisions.split(",")
    if torch.device(args.device).type == "cpu" and "bf16" in precisions:
        from facestyle.accel import cpu_has_native

        print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, bf16 arithmetic (AVX512-BF16 or AMX): "
              f"{'yes' if cpu_has_native('bf16') else 'no (bf16 cannot beat fp32 on this CPU)'}", flush=True)
    for preset in args.presets.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for precision in precisions:
                cmd = [sys.executable, __file__, "--worker", "--preset", preset, "--batch", str(batch),
                       "--paper-size", str(args.paper_size), "--steps", str(args.steps), "--device", args.device,
                       "--precision", precision]
                result = subprocess.run(cmd, capture_output=True, text=True)
                if result.returncode:
                    sys.exit(f"worker failed ({preset}, batch {batch}, {precision}):\n{result.stderr}")
                r = json.loads(result.stdout.strip().splitlines()[-1])
                rows.append((preset, batch, precision, r))
                print(f"  measured {preset} batch {batch} {precision}: {r['seconds_per_step']:.3f} s/step", flush=True)
    print()
    print("| preset | size | G params (M) | batch | precision | steps / s | images / s | peak memory (MB) |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for preset, batch, precision, r in rows:
        print(f"| {preset} | {r['size']} | {r['params_m']:.1f} | {batch} | {precision} | "
              f"{1 / r['seconds_per_step']:.2f} | {batch / r['seconds_per_step']:.2f} | {r['peak_mb']:.0f} |")
    print()
    top = max(b for _, b, _, _ in rows)
    demo = {p: r for name, b, p, r in rows if name == "demo" and b == top}
    if demo:
        first = demo.get("fp32", next(iter(demo.values())))
        line = f"demo_steps_per_second={1 / first['seconds_per_step']:.2f}"
        if "fp32" in demo and "bf16" in demo:
            speedup = demo["fp32"]["seconds_per_step"] / demo["bf16"]["seconds_per_step"]
            line += f" demo_bf16_speedup_vs_fp32={speedup:.2f}"
        print(line)


if __name__ == "__main__":
    main()
