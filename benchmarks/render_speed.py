"""Synthetic-face rendering speed: milliseconds per face at several resolutions.

The synthetic faces (``facestyle.data.synthetic``) are rendered on the fly by the demo training, the
harmony benchmark and the tests, so their cost sits inside every one of those loops. The target is a few
milliseconds per 128x128 face on one CPU core (rendering must stay well under a training step).

    python benchmarks/render_speed.py                      # 64, 128, 256; 20 faces each
    python benchmarks/render_speed.py --sizes 128 --faces 100
"""

from __future__ import annotations

import argparse
import time

from facestyle.data.synthetic import render, sample_face


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256", help="comma-separated resolutions")
    parser.add_argument("--faces", type=int, default=20, help="faces rendered per resolution")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    faces = [sample_face(args.seed, i) for i in range(args.faces)]
    rows = []
    for size in sizes:
        render(faces[0], size)  # warm-up
        start = time.perf_counter()
        for face in faces:
            render(face, size)
        rows.append((size, (time.perf_counter() - start) / len(faces) * 1e3))
    print("| size | ms / face | faces / s |")
    print("|---:|---:|---:|")
    for size, ms in rows:
        print(f"| {size} | {ms:.2f} | {1e3 / ms:.0f} |")
    print()
    print(" ".join(f"render_ms_{size}={ms:.2f}" for size, ms in rows))


if __name__ == "__main__":
    main()
