"""``facestyle demo``: the README's first command."""

from __future__ import annotations

import argparse

from ..accel import DEVICE_HELP


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="reconstruct and transfer skin, hair and lips between bundled synthetic faces",
        description="Runs the bundled model on synthetic faces lit differently and writes the results and "
                    "a contact sheet.")
    parser.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    parser.add_argument("--checkpoint", default="demo", help="checkpoint directory (default: the bundled demo)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.sheet import run_demo

    run_demo(args.out, checkpoint=args.checkpoint, device=args.device)
    return 0
