"""The ``facestyle`` command: one subcommand per job.

Each subcommand lives in the module that does the work; the module exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed arguments. Bad input (a
:class:`~facestyle.errors.FacestyleError`) is one line on stderr and exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import FacestyleError
from .io import DEFAULT_MAX_SIDE, MAX_SIDE
from .runtime import keep_freed_memory

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
    return parser


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
