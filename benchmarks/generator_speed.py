"""Forward speed of the paper-size network (ngf 64, D 512, 19 classes): fast style paths vs SEAN's naive one.

Each (path, batch) runs in its own process so that its peak memory is its own. The label maps are
face-like (the synthetic renderer's, or ``--labels PNG``), since the sparse path's work depends on how
much of the map is region boundary. Every path runs with the allocator setting the ``facestyle`` command
uses (:func:`facestyle.runtime.keep_freed_memory`: glibc keeps freed memory instead of unmapping every
block over 32 MB); one more row per batch runs the sparse path with glibc's default allocator, which is
what a plain ``import facestyle`` gets. Prints a table, then the outputs' agreement, then last
``speedup_vs_naive=X.XX`` (naive seconds per image / sparse seconds per image, at the largest batch,
both with the same allocator).

    python benchmarks/generator_speed.py             # 256x256, batch 1 and 4 (several minutes on 2 cores)
    python benchmarks/generator_speed.py --size 128  # quick
    python benchmarks/generator_speed.py --precision fp32,bf16 --paths sparse   # mixed precision

With ``--precision fp32,bf16`` every (path, batch) also runs under bf16 autocast, and the headline line ends
with ``bf16_speedup_vs_fp32=X.XX`` (fp32 / bf16 seconds per image of the default style path at the largest
batch) and ``bf16_psnr_db=Y.Y``: the lowest PSNR of bf16's output images against fp32's over the models
measured: this random paper-size network and, when present, the bundled demo model on the shared real faces
(``$FACESTYLE_SHARED/data/faces``). The header says whether the CPU has bf16 arithmetic (AVX512-BF16 or AMX,
:func:`facestyle.accel.cpu_has_native`): without it bf16 cannot be faster than fp32 on the CPU (an
AVX2-only CPU: 0.03x; one with AVX512-BF16: 1.62x; see the README's Speed section).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace

import torch

from facestyle.config import ModelConfig
from facestyle.model import FaceStyleNet
from facestyle.runtime import SYSTEM_ALLOCATOR_ENV, keep_freed_memory

PATHS = ("naive", "factorized", "sparse")


def face_labels(size: int, batch: int, labels_png: str | None) -> torch.Tensor:
    if labels_png:
        from facestyle.io import load_labels
        from facestyle.labels import CELEBAMASK_HQ
        from facestyle.nn.pooling import resize_labels_floor

        one = resize_labels_floor(load_labels(labels_png, CELEBAMASK_HQ)[None], size)[0]
        return one.expand(batch, -1, -1).clone()
    from facestyle.data.synthetic import render_labels, sample_face

    return torch.stack([torch.from_numpy(render_labels(sample_face(0, i), size)) for i in range(batch)])


def build(size: int, path: str, device: str) -> FaceStyleNet:
    torch.manual_seed(0)
    cfg = replace(ModelConfig(image_size=size, style_branch=path), generator_spectral_norm=False,
                  encoder_spectral_norm=False, noise="off")
    model = FaceStyleNet(cfg).eval()
    with torch.no_grad():  # SEAN's blend scalars are trained away from 0; make both branches count
        for name, p in model.named_parameters():
            if "blending" in name:
                p.normal_()
    return model.to(device)


def worker(args: argparse.Namespace) -> None:
    """Time one (path, batch) and report JSON on stdout; saves its output for the agreement check."""
    from facestyle.accel import Precision

    keep_freed_memory()  # unless the parent set FACESTYLE_SYSTEM_ALLOCATOR=1
    device = torch.device(args.device)
    model = build(args.size, args.path, args.device)
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(args.batch, 3, args.size, args.size, generator=g) * 2 - 1).to(device)
    labels = face_labels(args.size, args.batch, args.labels).to(device)
    with torch.inference_mode(), Precision(args.precision).autocast(device):
        out = model(image[:1], labels[:1])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = model(image, labels)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:  # growth of the process's high-water mark during the timed forwards (ru_maxrss is in KiB)
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    torch.save(out.float().cpu(), args.save)
    print(json.dumps({"seconds_per_image": min(times) / args.batch, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, fp16 (default fp32)")
    parser.add_argument("--labels", help="a CelebAMask-HQ label PNG (default: synthetic face labels)")
    parser.add_argument("--no-system-allocator-row", action="store_true",
                        help="skip the extra sparse row with glibc's default allocator")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--no-demo", action="store_true", help="skip the demo model's PSNR on the real faces")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if "," in args.precision or args.precision != "fp32":
        mixed_precision_main(args)
        return

    import tempfile

    batches = [int(b) for b in args.batches.split(",")]
    paths = args.paths.split(",")
    rows, outputs = {}, {}
    tmp = tempfile.mkdtemp(prefix="facestyle-bench-")
    print(f"paper-size network (ngf 64, D 512, 19 classes), {args.size}x{args.size}, {args.device}, "
          f"float32, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    runs = [(path, "keep") for path in paths]
    if "sparse" in paths and not args.no_system_allocator_row:
        runs.append(("sparse", "system"))
    for batch in batches:
        for path, allocator in runs:
            save = os.path.join(tmp, f"{path}-{allocator}-{batch}.pt")
            cmd = [sys.executable, __file__, "--worker", "--size", str(args.size), "--path", path,
                   "--batch", str(batch), "--repeats", str(args.repeats), "--device", args.device,
                   "--save", save] + (["--labels", args.labels] if args.labels else [])
            env = {**os.environ, SYSTEM_ALLOCATOR_ENV: "1" if allocator == "system" else "0"}
            result = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if result.returncode:
                sys.exit(f"worker failed ({path}, batch {batch}):\n{result.stderr}")
            key = path, batch, allocator
            rows[key] = json.loads(result.stdout.strip().splitlines()[-1])
            outputs[key] = torch.load(save, weights_only=True)
            print(f"  measured {path:<10} batch {batch} ({allocator} allocator): "
                  f"{rows[key]['seconds_per_image']:.3f} s/image", flush=True)

    print()
    print("| path | allocator | batch | s / image | images / s | peak memory (MB) | speedup vs naive |")
    print("|---|---|---:|---:|---:|---:|---:|")
    names = {"keep": "keep freed memory", "system": "glibc default"}
    for batch in batches:
        for path, allocator in runs:
            r = rows[path, batch, allocator]
            base = rows.get(("naive", batch, "keep"), r)["seconds_per_image"]
            print(f"| {path} | {names[allocator]} | {batch} | {r['seconds_per_image']:.3f} | "
                  f"{1 / r['seconds_per_image']:.2f} | {r['peak_mb']:.0f} | {base / r['seconds_per_image']:.2f}x |")
    print()
    for batch in batches:
        for path, allocator in runs:
            ref = outputs.get(("naive", batch, "keep"))
            if path != "naive" and ref is not None:
                out = outputs[path, batch, allocator]
                ok = torch.allclose(out, ref, rtol=1e-4, atol=1e-5)
                print(f"{path} ({allocator}) vs naive, batch {batch}: max abs diff {(out - ref).abs().max():.2e} "
                      f"({'within' if ok else 'OUTSIDE'} rtol 1e-4, atol 1e-5)")
    top = max(batches)
    if ("naive", top, "keep") in rows and ("sparse", top, "keep") in rows:
        best = rows["sparse", top, "keep"]["seconds_per_image"]
        print(f"speedup_vs_naive={rows['naive', top, 'keep']['seconds_per_image'] / best:.2f}")


def run_worker(args: argparse.Namespace, path: str, batch: int, precision: str, tmp: str) -> tuple[dict, torch.Tensor]:
    save = os.path.join(tmp, f"{path}-{precision}-{batch}.pt")
    cmd = [sys.executable, __file__, "--worker", "--size", str(args.size), "--path", path, "--batch", str(batch),
           "--repeats", str(args.repeats), "--device", args.device, "--save", save, "--precision", precision]
    cmd += ["--labels", args.labels] if args.labels else []
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, SYSTEM_ALLOCATOR_ENV: "0"})
    if result.returncode:
        sys.exit(f"worker failed ({path}, batch {batch}, {precision}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1]), torch.load(save, weights_only=True)


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [-1, 1] (peak 1 on the [0, 1] scale)."""
    import math

    mse = ((a.float() - b.float()) / 2).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def demo_psnr(precision: str, limit: int = 8) -> float | None:
    """bf16 against fp32 reconstructions of the bundled demo model on the shared real faces (None when either
    is missing)."""
    from facestyle.checkpoint import demo_dir
    from facestyle.io import shared_root

    root = shared_root()
    faces = None if root is None else root / "data" / "faces"
    if faces is None or not (faces / "images").is_dir() or not (demo_dir() / "config.json").is_file():
        return None
    from facestyle.editor.editor import Editor

    images = sorted((faces / "images").iterdir())[:limit]
    labels = [faces / "labels" / (p.stem + ".png") for p in images]
    full = Editor.from_pretrained("demo", device="cpu").reconstruct(images, labels, return_tensors=True)
    low = Editor.from_pretrained("demo", device="cpu", precision=precision).reconstruct(images, labels,
                                                                                         return_tensors=True)
    return min(psnr_db(a, b) for a, b in zip(low, full))


def mixed_precision_main(args: argparse.Namespace) -> None:
    """Each (path, batch) in every precision of --precision, in its own process; the bf16 headline."""
    import tempfile

    batches = [int(b) for b in args.batches.split(",")]
    paths, precisions = args.paths.split(","), args.precision.split(",")
    tmp = tempfile.mkdtemp(prefix="facestyle-bench-")
    from facestyle.accel import cpu_has_native

    print(f"paper-size network (ngf 64, D 512, 19 classes, random weights), {args.size}x{args.size}, {args.device}, "
          f"{', '.join(precisions)}, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    if torch.device(args.device).type == "cpu":
        print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, bf16 arithmetic (AVX512-BF16 or AMX): "
              f"{'yes' if cpu_has_native('bf16') else 'no: bf16 runs through float32 conversions or reference loops'}",
              flush=True)
    rows, outputs = {}, {}
    for batch in batches:
        for path in paths:
            for precision in precisions:
                rows[path, batch, precision], outputs[path, batch, precision] = run_worker(args, path, batch,
                                                                                          precision, tmp)
                print(f"  measured {path:<10} batch {batch} {precision}: "
                      f"{rows[path, batch, precision]['seconds_per_image']:.3f} s/image", flush=True)
    print()
    print("| path | batch | precision | s / image | images / s | speedup vs fp32 | PSNR vs fp32 (dB) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    psnrs = []
    for batch in batches:
        for path in paths:
            base = rows.get((path, batch, "fp32"))
            for precision in precisions:
                r = rows[path, batch, precision]
                speed = f"{base['seconds_per_image'] / r['seconds_per_image']:.2f}x" if base else "-"
                quality = "-"
                if base and precision != "fp32":
                    value = psnr_db(outputs[path, batch, precision], outputs[path, batch, "fp32"])
                    psnrs.append(value)
                    quality = f"{value:.1f}"
                print(f"| {path} | {batch} | {precision} | {r['seconds_per_image']:.3f} | "
                      f"{1 / r['seconds_per_image']:.2f} | {speed} | {quality} |")
    demo = None if args.no_demo or "bf16" not in precisions else demo_psnr("bf16")
    if demo is not None:
        print(f"\ndemo model on the shared real faces, bf16 vs fp32 reconstructions: lowest PSNR {demo:.1f} dB")
        psnrs.append(demo)
    top, default = max(batches), "sparse" if "sparse" in paths else paths[0]
    if "bf16" in precisions and "fp32" in precisions:
        speedup = rows[default, top, "fp32"]["seconds_per_image"] / rows[default, top, "bf16"]["seconds_per_image"]
        print(f"\npath={default} batch={top} bf16_speedup_vs_fp32={speedup:.2f} bf16_psnr_db={min(psnrs):.1f}")


if __name__ == "__main__":
    main()
