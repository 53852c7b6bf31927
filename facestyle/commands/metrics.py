"""``facestyle weights`` (which pretrained weight files are there) and ``facestyle train-harmony``."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from ..accel import DEVICE_HELP
from ..errors import InputError
from ..train.common import add_precision_arguments
from .core import positive_float, positive_int

WEIGHTS_DESCRIPTION = """\
List the standard weight files the metrics and losses need (VGG19, VGG16, AlexNet, the FID
InceptionV3, LPIPS's linear heads) as present, missing, wrong size or wrong hash, with where each is
published. The weights folder is --weights-dir, else $FACESTYLE_WEIGHTS, else torch's hub cache
(where torchvision and pytorch-fid put the same files). LPIPS's heads are also found inside the
installed lpips / torchmetrics packages. A metric whose file is missing is skipped in the tables.
"""

TRAIN_HARMONY_DESCRIPTION = """\
Train the harmony classifier (paper 4.1): a CNN that tells real photos from composites, given the
image and the foreground mask. --data is an iHarmony4-style folder (HAdobe5k for the paper):
composite_images/{name}_{k}_{j}.jpg, masks/{name}_{k}.png, real_images/{name}.jpg and
HAdobe5k_train.txt / HAdobe5k_test.txt (without the lists, 10% of the real photos are held out).
--out becomes a run folder that loads as the classifier (config.json + model.safetensors), with
checkpoints/step_X/ (kept atomically, the last two), latest, metrics.jsonl and run.json. --out must be
a new or empty folder, or a harmony run with --resume (continue) or --overwrite (start afresh).
Ctrl-C or SIGTERM saves a checkpoint, then exits with status 130 or 143.
"""


def run_weights(args: argparse.Namespace) -> int:
    from ..weights import ENV_VAR, WEIGHT_FILES, check_weights, weights_dir

    directory = weights_dir(args.weights_dir)
    source = "--weights-dir" if args.weights_dir else (f"${ENV_VAR}" if os.environ.get(ENV_VAR) else
                                                        "torch's hub cache")
    exists = "" if directory.is_dir() else " (does not exist)"
    print(f"weights folder: {directory}{exists} (from {source})")
    rows = check_weights(args.weights_dir, verify_hash=args.verify)
    width = max(len(r.name) for r in rows)
    for row in rows:
        entry = WEIGHT_FILES[row.name]
        print(f"  {row.status:<10}  {row.name:<{width}}  {entry.description}")
        if row.status == "present":
            print(f"  {'':<10}  {'':<{width}}  at {row.path}")
        else:
            if row.status != "missing":
                print(f"  {'':<10}  {'':<{width}}  at {row.path}")
            print(f"  {'':<10}  {'':<{width}}  published at {row.url}")
    present = sum(r.status == "present" for r in rows)
    note = "" if args.verify else "; --verify also checks SHA-256 digests (reads every file)"
    print(f"{present} of {len(rows)} present{note}")
    return 0


def run_train_harmony(args: argparse.Namespace) -> int:
    from ..train.harmony import train_harmony

    if not 0 <= args.held_out < 1:
        raise InputError(f"--held-out must be in [0, 1), got {args.held_out}")
    if args.workers < 0:
        raise InputError(f"--workers must be 0 or more, got {args.workers}")
    result = train_harmony(
        args.data, args.out, steps=args.steps, batch_size=args.batch_size, image_size=args.image_size, lr=args.lr,
        device=args.device, resume=args.resume, seed=args.seed, save_every=args.save_every,
        held_out_fraction=args.held_out, num_workers=args.workers, overwrite=args.overwrite,
        precision=args.precision, compile=args.compile,
    )
    held = result.held_out
    accuracy = "no held-out split" if held is None or math.isnan(held.accuracy) else \
        f"held-out accuracy {held.accuracy:.4f} on {held.count} images"
    stopped = f" (stopped by {result.stopped})" if result.stopped else ""
    print(f"harmony classifier at step {result.step}{stopped}: {accuracy}; saved in {Path(args.out)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("weights", help="list the pretrained weight files: present, missing or wrong",
                              description=WEIGHTS_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights-dir", metavar="DIR",
                   help="the weights folder (default: $FACESTYLE_WEIGHTS, then torch's hub cache)")
    p.add_argument("--verify", action="store_true", help="also check each file's SHA-256 digest (slow)")
    p.set_defaults(func=run_weights)

    p = subparsers.add_parser("train-harmony", help="train the harmony-score classifier on HAdobe5k",
                              description=TRAIN_HARMONY_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, metavar="HADOBE5K_ROOT", help="iHarmony4-style folder")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (loads as the classifier)")
    p.add_argument("--steps", type=positive_int, default=20_000, help="total steps (default: 20000)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="images per step, half real, half composite on average (default: 32, or the run's)")
    p.add_argument("--image-size", type=positive_int, default=None, metavar="PX",
                   help="square input size of the classifier (default: 256, or the run's)")
    p.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate (default: 2e-4)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_precision_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in --out although it holds a harmony run (its checkpoints and logs are "
                        "removed; nothing else in the folder is touched)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and data order (default: 0)")
    p.add_argument("--save-every", type=positive_int, default=1000, metavar="STEPS",
                   help="checkpoint and held-out accuracy every STEPS steps (default: 1000)")
    p.add_argument("--held-out", type=float, default=0.1, metavar="FRACTION",
                   help="share of real photos held out when the folder has no *_test.txt (default: 0.1)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="data-loading processes (default: 0, in the training process)")
    p.set_defaults(func=run_train_harmony)
