"""The web editor under load (issue 15): memory with many live sessions of large photos, memory once they
expire, and whole downloads for concurrent identical requests.

It starts ``facestyle serve`` on a free port of 127.0.0.1 (and talks to nothing else), with its Gradio
cache in a temporary folder of its own, and drives it with ``gradio_client``:

1. **start**: the server's resident memory once it answers, and after a warm-up (one small tab that
   loads a 256 px target and reference and transfers once): the starting memory;
2. **live**: ``--sessions`` tabs (default 50), each uploading a ``--side`` px photo (default 4000x4000,
   JPEG) with its label map; the memory once all are loaded (every one still live: the loading takes less
   than the time to live, and the sessions' folders are counted), and the high-water mark;
3. **expired**: the memory once every session has expired (the server's ``--session-ttl``, here
   ``--ttl``) and its folder is gone;
4. **concurrent**: ``--concurrent`` tabs (default 20) load the same small photos, then transfer the same
   regions at once; every result is fetched and must decode whole and be identical to the others, at a
   path of its own.

It prints a table, then last its headline figures as ``name=value`` pairs. Bounded: at most
``--timeout`` seconds in all (the server is stopped and the temporary folder removed in every case).

    python benchmarks/server_load.py                          # about 5 minutes on 2 busy cores
    python benchmarks/server_load.py --sessions 10 --side 2000 --ttl 30 --concurrent 6     # quick
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
HAIR, SKIN, NECK, CLOTH = 13, 1, 17, 18  # CelebAMask-HQ classes


# --------------------------------------------------------------------------------------------- inputs


def drawn_face(side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(photo (side, side, 3) uint8, label map (side, side) uint8): a drawn face with smooth shading."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[0:side, 0:side]
    y, x = y / side, x / side
    labels = np.zeros((side, side), np.uint8)
    labels[np.broadcast_to(y > 0.85, labels.shape)] = CLOTH
    labels[(y > 0.65) & (np.abs(x - 0.5) < 0.12)] = NECK
    labels[((y - 0.38) / 0.38) ** 2 + ((x - 0.5) / 0.34) ** 2 <= 1] = HAIR
    labels[((y - 0.46) / 0.27) ** 2 + ((x - 0.5) / 0.24) ** 2 <= 1] = SKIN
    labels[(np.abs(y - 0.42) < 0.03) & (np.abs(x - 0.4) < 0.05)] = 4
    labels[(np.abs(y - 0.42) < 0.03) & (np.abs(x - 0.6) < 0.05)] = 5
    labels[(np.abs(y - 0.62) < 0.02) & (np.abs(x - 0.5) < 0.07)] = 11
    colours = rng.integers(40, 216, (19, 3)).astype(np.uint8)
    shade = (0.8 + 0.2 * np.cos(3 * x + 2 * y)).astype(np.float32)[..., None]
    photo = (colours[labels] * shade).clip(0, 255).astype(np.uint8)
    return photo, labels


def write_inputs(folder: Path, side: int) -> dict[str, Path]:
    paths = {}
    photo, labels = drawn_face(side, 0)
    paths["big"], paths["big_labels"] = folder / "big.jpg", folder / "big_labels.png"
    Image.fromarray(photo).save(paths["big"], quality=90)
    Image.fromarray(labels, "L").save(paths["big_labels"])
    del photo, labels
    for name, seed in (("target", 1), ("reference", 2)):
        photo, labels = drawn_face(256, seed)
        paths[name], paths[f"{name}_labels"] = folder / f"{name}.jpg", folder / f"{name}_labels.png"
        Image.fromarray(photo).save(paths[name], quality=90)
        Image.fromarray(labels, "L").save(paths[f"{name}_labels"])
    return paths


# --------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident, high-water mark) of a process, in MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def session_folders(cache: Path) -> int:
    return sum(1 for root in cache.glob("facestyle-sessions-*") for f in root.iterdir() if f.is_dir())


class Server:
    def __init__(self, args: argparse.Namespace, cache: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "GRADIO_ANALYTICS_ENABLED": "False",
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        command = [sys.executable, "-m", "facestyle.cli", "serve", "--checkpoint", args.checkpoint,
                   "--host", "127.0.0.1", "--port", str(self.port), "--session-ttl", str(args.ttl),
                   "--max-sessions", str(args.sessions + args.concurrent + 2), "--max-upload-mb", "50",
                   "--queue-size", str(max(32, args.concurrent + 4))]
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)

    def wait_ready(self, deadline: float) -> None:
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer in time")
            time.sleep(0.5)

    def memory(self) -> tuple[float, float]:
        return memory_mb(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # closes the server and its sessions
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -------------------------------------------------------------------------------------------- clients


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def load(c, photo: Path, labels: Path, role: str = "target") -> None:
    from gradio_client import handle_file

    c.predict(handle_file(photo), handle_file(labels), api_name=f"/load_{role}")


def fetch(url: str, file_data) -> bytes:
    data = file_data if isinstance(file_data, dict) else vars(file_data)
    link = data.get("url") or f"{url}gradio_api/file={data['path']}"
    with urllib.request.urlopen(link if link.startswith("http") else url + link.lstrip("/"), timeout=120) as r:
        return r.read()


def whole_image_digest(blob: bytes) -> str | None:
    """The pixels' digest of a PNG that decodes whole; None for a truncated or corrupt one."""
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im.load()
            return hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()
    except Exception:
        return None


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="demo", help="generator checkpoint for the server (default: demo)")
    parser.add_argument("--sessions", type=int, default=50, help="live sessions of large photos (default: 50)")
    parser.add_argument("--side", type=int, default=4000, help="their photos' side in pixels (default: 4000)")
    parser.add_argument("--ttl", type=float, default=150.0,
                        help="the server's session time to live, seconds; must exceed the loading time (default: 150)")
    parser.add_argument("--concurrent", type=int, default=20, help="concurrent identical requests (default: 20)")
    parser.add_argument("--workers", type=int, default=2, help="tabs loading at once (default: 2)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds (default: 900)")
    args = parser.parse_args()
    if not (1 <= args.sessions <= 200 and 64 <= args.side <= 4096 and 1 <= args.concurrent <= 64):
        raise SystemExit("--sessions 1..200, --side 64..4096, --concurrent 1..64")
    deadline = time.monotonic() + args.timeout
    work = Path(tempfile.mkdtemp(prefix="facestyle-server-load-"))
    cache = work / "gradio"
    server = None
    try:
        paths = write_inputs(work, args.side)
        size_mb = paths["big"].stat().st_size / 2**20
        print(f"{args.sessions} sessions of a {args.side}x{args.side} photo ({size_mb:.1f} MB "
              f"JPEG) with its label map; time to live {args.ttl:g} s; {args.concurrent} concurrent identical "
              f"transfers; checkpoint {args.checkpoint}", flush=True)
        server = Server(args, cache, work / "serve.log")
        server.wait_ready(deadline)
        launch_mb, _ = server.memory()

        warm = client(server.url)  # the first requests import and allocate what every later one reuses
        load(warm, paths["target"], paths["target_labels"])
        load(warm, paths["reference"], paths["reference_labels"], "reference")
        warm.predict(["skin", "hair"], True, api_name="/transfer")
        time.sleep(1)
        start_mb, _ = server.memory()

        # ---- many live sessions of large photos
        samples: list[float] = []
        t0 = time.monotonic()

        def one_session(_: int) -> None:
            if time.monotonic() > deadline:
                raise TimeoutError("out of time")
            load(client(server.url), paths["big"], paths["big_labels"])
            samples.append(server.memory()[0])

        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(one_session, range(args.sessions)))
        loading_s = time.monotonic() - t0
        live_mb, peak_mb = server.memory()
        live_folders = session_folders(cache)
        print(f"  loaded {args.sessions} sessions in {loading_s:.0f} s; {live_folders} session folders "
              f"(with the warm-up's)", flush=True)
        all_live = loading_s < args.ttl and live_folders == args.sessions + 1

        # ---- every session expires
        expire_by = time.monotonic() + args.ttl + min(30.0, max(0.5, args.ttl / 4)) + 10
        while session_folders(cache) and time.monotonic() < min(expire_by, deadline):
            time.sleep(2)
        left = session_folders(cache)
        time.sleep(3)
        after_mb, _ = server.memory()
        print(f"  sessions left after expiry: {left}", flush=True)

        # ---- concurrent identical requests
        tabs = [client(server.url) for _ in range(args.concurrent)]
        for tab in tabs:
            load(tab, paths["target"], paths["target_labels"])
            load(tab, paths["reference"], paths["reference_labels"], "reference")
        barrier = threading.Barrier(len(tabs))
        results: list = [None] * len(tabs)
        failures: list[str] = []

        def transfer(i: int) -> None:
            try:
                barrier.wait(timeout=60)
                image = tabs[i].predict(["skin", "hair"], True, api_name="/transfer")[0]
                results[i] = (image if isinstance(image, dict) else vars(image))["path"], fetch(server.url, image)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=transfer, args=(i,), daemon=True) for i in range(len(tabs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic()))
        done = [r for r in results if r is not None]
        digests = [whole_image_digest(blob) for _, blob in done]
        majority = max(set(digests), key=digests.count) if digests else None
        truncated = sum(d is None for d in digests) + len(tabs) - len(done)
        differing = sum(d is not None and d != majority for d in digests)
        distinct_paths = len({p for p, _ in done})
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    change_pct = 100 * (after_mb - start_mb) / start_mb
    print()
    print("| phase | resident memory (MB) | note |")
    print("|---|---:|---|")
    print(f"| server started | {launch_mb:.0f} | answering, nothing loaded |")
    print(f"| after warm-up (start) | {start_mb:.0f} | one small tab, one transfer |")
    print(f"| {args.sessions} live sessions | {live_mb:.0f} | {args.side}x{args.side} photo + label map each; "
          f"{'all live' if all_live else 'NOT all live'} ({loading_s:.0f} s to load < ttl {args.ttl:g} s) |")
    print(f"| high-water mark while loading | {max([peak_mb, *samples]):.0f} | VmHWM |")
    print(f"| after expiry | {after_mb:.0f} | {change_pct:+.1f}% vs start; {left} session folders left |")
    print()
    print("| concurrent identical transfers | completed | whole | identical | distinct paths | failures |")
    print("|---:|---:|---:|---:|---:|---|")
    print(f"| {args.concurrent} | {len(done)} | {sum(d is not None for d in digests)} | "
          f"{sum(d is not None and d == majority for d in digests)} | {distinct_paths} | "
          f"{'; '.join(failures[:3]) or 'none'} |")
    print()
    print(f"sessions={args.sessions} side={args.side} all_live={int(all_live)} start_mb={start_mb:.0f} "
          f"live_mb={live_mb:.0f} peak_mb={peak_mb:.0f} after_expiry_mb={after_mb:.0f} "
          f"after_expiry_change_pct={change_pct:+.1f} sessions_left={left} concurrent={args.concurrent} "
          f"completed={len(done)} truncated={truncated} differing={differing} distinct_paths={distinct_paths}")


if __name__ == "__main__":
    main()
