"""A transfer through the web editor's request path versus the same transfer through the command line's.

The paper-size network (ngf 64, D 512, 19 classes, random weights, ``--size`` px, default 256) transfers
hair and skin from a reference photo to a target photo (drawn faces of ``--size`` px, PNG files with their
label maps), harmonized:

- **command line**: what ``facestyle transfer`` does per pair, on the main thread: the editor reads both
  photos and label maps from their files, transfers, and the result is written as a PNG;
- **server**: what a click on *Transfer* in ``facestyle serve`` runs: the handler (``_App.transfer``: the
  photos read back from the session's files, the transfer under the model lock, the result written to
  the request's folder) on a worker thread of anyio's pool, as Gradio runs a synchronous handler, after
  the two photos were loaded into a session (not timed);
- **server, an arena per thread**: the same, with glibc's arena count set back to its default after the
  memory setting (what ``facestyle serve`` did before it set the count to one: the worker thread then
  allocates from an arena of its own, which maps and unmaps every large block).

Each runs in its own process (the allocator's state is per process), with the memory setting the
``facestyle`` command applies (:func:`facestyle.runtime.keep_freed_memory`), one warm-up and then
``--repeats`` transfers; ``--rounds`` runs every mode again, in reverse order every other round, and the
fastest transfer of each mode counts. Both the wall-clock time and the process's CPU time (user + system,
all threads: the page faults of re-mapped blocks are system time) are given; on a machine busy with other
jobs the CPU time is the steadier figure. The server's result must equal the command line's. Prints a
table, then last ``server_vs_command=X.XX`` (server / command-line wall seconds; target at most 1.10),
``server_vs_command_cpu=X.XX`` (the same in CPU seconds) and ``per_thread_arenas_vs_command_cpu=Y.YY``.

    python benchmarks/serve_speed.py              # 256 px (a few minutes on 2 cores)
    python benchmarks/serve_speed.py --size 128   # quick
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
MODES = {"command": "command line (main thread)", "server": "server (worker thread)",
         "server-arenas": "server, an arena per thread (before)"}
REGIONS = ["hair", "skin"]


def inputs(folder: Path, size: int) -> dict[str, Path]:
    sys.path.insert(0, str(HERE))
    from server_load import drawn_face

    paths = {}
    for name, seed in (("target", 0), ("reference", 1)):
        photo, labels = drawn_face(size, seed)
        paths[name], paths[f"{name}_labels"] = folder / f"{name}.png", folder / f"{name}_labels.png"
        Image.fromarray(photo).save(paths[name])
        Image.fromarray(labels, "L").save(paths[f"{name}_labels"])
    return paths


def worker(args: argparse.Namespace) -> None:
    """Time one mode; report JSON on stdout and leave the last result at ``args.save``."""
    sys.path.insert(0, str(HERE))
    import anyio
    from generator_speed import build

    from facestyle.editor.editor import Editor
    from facestyle.runtime import keep_freed_memory

    keep_freed_memory()  # as the facestyle command does first thing
    if args.mode == "server-arenas":  # glibc's default arena count (8 per core): worker threads get their own
        ctypes.CDLL(None).mallopt(-8, 8 * os.cpu_count())  # M_ARENA_MAX
    files = inputs(Path(args.folder), args.size)
    editor = Editor(build(args.size, "sparse", "cpu"))
    times, cpu = [], []
    if args.mode == "command":
        from facestyle.commands.core import save_images

        for _ in range(args.repeats + 1):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = editor.transfer(files["target"], files["target_labels"], files["reference"],
                                     files["reference_labels"], regions=REGIONS, harmonize=True)
            save_images([result], [Path(args.save)])
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    else:
        from facestyle.app.server import ServerLimits, _App

        def no_progress(*a, **k) -> None:
            pass

        app = _App(editor, ServerLimits())
        target = app.load(str(files["target"]), str(files["target_labels"]), "target", no_progress)[0]
        reference = app.load(str(files["reference"]), str(files["reference_labels"]), "reference", no_progress)[0]

        async def requests() -> str:
            path = ""
            for _ in range(args.repeats + 1):
                start, start_cpu = time.perf_counter(), time.process_time()
                path = (await anyio.to_thread.run_sync(app.transfer, target, reference, REGIONS, True))[0]
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            return path

        result_path = anyio.run(requests)
        Image.open(result_path).save(args.save)
        app.sessions.close()
    print(json.dumps({"seconds": min(times[1:]), "cpu_seconds": min(cpu[1:]), "warmup": times[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    modes = args.modes.split(",")
    print(f"transfer of {', '.join(REGIONS)}, harmonized, paper-size network (random weights), "
          f"{args.size}x{args.size}, "
          f"cpu, float32, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    rows, results = {}, {}
    with tempfile.TemporaryDirectory(prefix="facestyle-serve-speed-") as tmp:
        for round_ in range(args.rounds):
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                folder = Path(tmp) / f"{mode}-{round_}"
                folder.mkdir()
                save = folder / "result.png"
                cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--size", str(args.size),
                       "--repeats", str(args.repeats), "--folder", str(folder), "--save", str(save)]
                env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "FACESTYLE_SYSTEM_ALLOCATOR")}
                done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if done.returncode:
                    sys.exit(f"worker failed ({mode}):\n{done.stderr}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                best = rows.setdefault(mode, row)
                rows[mode] = {key: min(best[key], row[key]) for key in row}
                results[mode] = np.asarray(Image.open(save).convert("RGB"), dtype=np.int16)
                print(f"  measured {MODES[mode]}: {row['seconds']:.3f} s, {row['cpu_seconds']:.3f} CPU s", flush=True)
    base = rows.get("command")
    print()
    print("| path | s / transfer | CPU s / transfer | first (warm-up) s | vs command line (wall) | (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in modes:
        r = rows[mode]
        wall = f"{r['seconds'] / base['seconds']:.2f}x" if base else "-"
        cpu = f"{r['cpu_seconds'] / base['cpu_seconds']:.2f}x" if base else "-"
        print(f"| {MODES[mode]} | {r['seconds']:.3f} | {r['cpu_seconds']:.3f} | {r['warmup']:.3f} | {wall} | {cpu} |")
    print()
    if "command" in results:
        for mode in modes:
            if mode != "command":
                diff = int(np.abs(results[mode] - results["command"]).max())
                print(f"{MODES[mode]} vs command line: result max abs difference {diff} (of 255)")
    if base:
        heads = [f"size={args.size}"]
        for mode, name in (("server", "server"), ("server-arenas", "per_thread_arenas")):
            if mode in rows:
                if mode == "server":
                    heads.append(f"{name}_vs_command={rows[mode]['seconds'] / base['seconds']:.2f}")
                heads.append(f"{name}_vs_command_cpu={rows[mode]['cpu_seconds'] / base['cpu_seconds']:.2f}")
        print(" ".join(heads))

if __name__ == "__main__":
    main()
