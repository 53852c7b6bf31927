"""Every architecture of ``facestyle train --arch`` (issue 12): parameters and forward speed at its paper
preset, and one training step at its tiny preset.

For each architecture: the generator's parameters (encoder included) at the paper preset, the seconds
per image of a reconstruction (encode + decode, eval mode, no gradients) at batch 1 and 4 on the CPU (and
on CUDA when torch sees one, ``--device cuda``), and the seconds of one trainer step (generator +
discriminator, the tiny preset's losses) at the tiny preset, batch 2, 64 px. Label maps are the synthetic
renderer's faces. Prints a table, then last the headline ``name=value`` pairs: each architecture's
forward seconds per image at the largest batch and the slowest over the fastest.

    python benchmarks/arch_speed.py                  # 256x256 (many minutes on 2 cores)
    python benchmarks/arch_speed.py --size 128       # quick form
    python benchmarks/arch_speed.py --archs spade,groupdnet --size 128 --repeats 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from facestyle.arch import ARCHS, load_arch_config
from facestyle.data.synthetic import SyntheticFaces


def faces(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = SyntheticFaces(n, size, seed=3)
    items = [data[i] for i in range(n)]
    return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])


def forward_seconds(net, image: torch.Tensor, labels: torch.Tensor, repeats: int) -> float:
    """Best of ``repeats`` timed reconstructions (after one warm-up), per image."""
    with torch.inference_mode():
        net(image, labels)
        best = float("inf")
        for _ in range(repeats):
            if image.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            net(image, labels)
            if image.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return best / image.shape[0]


def train_step_seconds(arch: str, repeats: int) -> float:
    """One GeneratorTrainer step at the tiny preset (after a warm-up step), batch 2."""
    from facestyle.train.generator import GeneratorTrainer

    config = load_arch_config(preset="tiny", arch=arch, overrides=["train.sample_every=0"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = GeneratorTrainer(config, "synthetic:4", Path(tmp) / "run")
        image, labels = trainer.sample_batch[0][:2], trainer.sample_batch[1][:2]
        trainer.start_training()
        trainer.train_step(image, labels)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            trainer.train_step(image, labels)
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated (default: all)")
    parser.add_argument("--size", type=int, default=256, help="image size of the paper presets (default 256)")
    parser.add_argument("--batches", default="1,4", help="forward batch sizes (default 1,4)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs, best kept (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--no-train", action="store_true", help="skip the tiny training step")
    args = parser.parse_args()
    archs = [a for a in args.archs.split(",") if a]
    batches = [int(b) for b in args.batches.split(",")]
    device = torch.device(args.device)
    torch.manual_seed(0)
    image, labels = faces(max(batches), args.size)
    image, labels = image.to(device), labels.to(device)
    rows = []
    for arch in archs:
        spec = ARCHS[arch]
        config = replace(spec.model_config("paper"), image_size=args.size)
        net = spec.build(config).to(device).eval()
        row = {"arch": arch, "params_m": sum(p.numel() for p in net.parameters()) / 1e6}
        for b in batches:
            row[f"b{b}"] = forward_seconds(net, image[:b], labels[:b], args.repeats)
        del net
        if not args.no_train:
            row["train"] = train_step_seconds(arch, args.repeats)
        rows.append(row)
        print(f"measured {arch}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "arch"), flush=True)

    head = ["architecture", "params (M)", *[f"fwd s/img b{b}" for b in batches]] + ([] if args.no_train else
                                                                                    ["tiny train step s"])
    print(f"\n{args.size}x{args.size} paper presets on {device} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["arch"], f"{r['params_m']:.2f}", *[f"{r[f'b{b}']:.3f}" for b in batches]]
        if not args.no_train:
            cells.append(f"{r['train']:.3f}")
        print("| " + " | ".join(cells) + " |")
    last = f"b{batches[-1]}"
    pairs = [f"{r['arch']}_s_per_img={r[last]:.4f}" for r in rows]
    fastest, slowest = min(r[last] for r in rows), max(r[last] for r in rows)
    print("\n" + " ".join([*pairs, f"slowest_over_fastest={slowest / fastest:.2f}"]))


if __name__ == "__main__":
    main()
