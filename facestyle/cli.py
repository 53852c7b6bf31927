"""The ``facestyle`` command: one subcommand per job.

Each subcommand lives in the module that does the work; the module exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed arguments. Bad input (a
:class:`~facestyle.errors.FacestyleError`) is one line on stderr and exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from . import __version__
from .accel import PRECISION_HELP, PRECISIONS, Precision, auto_device, autocast_everywhere
from .errors import FacestyleError
from .io import DEFAULT_MAX_SIDE, MAX_SIDE
from .runtime import keep_freed_memory

# No --precision: serve runs the networks on worker threads, which the main thread's autocast does not reach;
# the mapping networks and flows are small MLPs over style codes (autocast gains nothing; the flows' ODE solver
# and log-densities want float32).
NO_PRECISION = frozenset({"serve", "train-mapping", "train-flow"})

# Modules that register subcommands, in the order they are listed by --help.
COMMAND_MODULES = (
    "facestyle.commands.core",  # reconstruct, import-sean, prepare
    "facestyle.train.generator",  # train
    "facestyle.commands.transfer",  # transfer
    "facestyle.commands.demo",  # demo
    "facestyle.commands.style",  # encode-styles, train-mapping, train-flow, sample, finetune
    "facestyle.commands.evaluate",  # evaluate, bench-harmony
    "facestyle.commands.metrics",  # weights, train-harmony
    "facestyle.train.harmonizer",  # train-harmonizer (DoveNet)
    "facestyle.commands.face",  # parse, train-parser, edit-shape, edit-color, serve
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facestyle",
        description="Harmonized regional style transfer and manipulation of face images.",
    )
    parser.add_argument("--version", action="version", version=f"facestyle {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for command in subparsers.choices.values():
        if any("--max-side" in action.option_strings for action in command._actions):
            continue  # serve has its own, for uploads
        command.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, metavar="PIXELS",
                             help=f"refuse images larger than this a side (default {DEFAULT_MAX_SIDE}; 0: no limit)")
    for name, command in subparsers.choices.items():
        options = {o for action in command._actions for o in action.option_strings}
        if "--device" in options and "--precision" not in options and name not in NO_PRECISION:
            # a command that runs networks: every one of them under autocast (the trainers have their own
            # --precision, recorded in the run folder)
            command.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32", help=PRECISION_HELP)
    return parser


def resolve_auto_device(args: argparse.Namespace) -> None:
    """``--device auto`` -> ``cuda`` or ``cpu``. A GPU is said in one line on stderr (by rank 0 under
    torchrun); the CPU, what every command used before ``auto``, only in the trainers' first line, so that
    a command's output stays quiet and bad input stays one line."""
    if getattr(args, "device", None) != "auto":
        return
    args.device = auto_device()
    if args.device != "cpu" and os.environ.get("RANK", "0") == "0":
        print(f"facestyle {args.command}: device auto: {args.device} (--device cpu to stay on the CPU)",
              file=sys.stderr)


def precision_scope(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """Autocast for the whole command when its --precision is the command line's (a trainer's is its own)."""
    if getattr(args, "run_precision", False) or getattr(args, "precision", None) is None:
        return contextlib.nullcontext()
    return autocast_everywhere(Precision(args.precision))


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # large CPU tensors are reused rather than re-mapped: see facestyle.runtime
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.max_side < 0:
        print(f"facestyle {args.command}: error: --max-side must be 0 (no limit) or positive, got {args.max_side}",
              file=sys.stderr)
        return 2
    limit = MAX_SIDE.set(args.max_side or None)
    try:
        resolve_auto_device(args)
        with precision_scope(args):
            result = args.func(args)
    except FacestyleError as exc:
        print(f"facestyle {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"facestyle {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"facestyle {args.command}: error: out of memory (try a smaller batch or image size)",
              file=sys.stderr)
        return 1
    finally:
        MAX_SIDE.reset(limit)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
