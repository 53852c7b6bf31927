"""Random regional styles and style fine-tuning: ``encode-styles``, ``train-mapping``, ``train-flow``,
``sample`` and ``finetune`` (paper sections 3.1, 3.4 eq. 6, 3.5 and 4.6-4.7).

The pipeline for a trained generator CHECKPOINT::

    facestyle encode-styles --checkpoint CKPT --data celebamask-hq:ROOT --out bank.safetensors
    facestyle train-mapping --bank bank.safetensors --region skin --out runs/map-skin --checkpoint CKPT
    facestyle train-flow --bank bank.safetensors --region skin --out runs/flow-skin --checkpoint CKPT
    facestyle sample --checkpoint CKPT --target me.png --target-labels me.png --region skin --n 10 --out-dir out
    facestyle finetune --checkpoint CKPT --target me.png --target-labels me.png --region skin \\
        --steps 0.5,1,2 --seed 0 --out-dir out
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..accel import DEVICE_HELP
from ..errors import InputError
from .core import (
    FACE_HELP,
    add_face_options,
    add_model_options,
    add_parser_option,
    check_input_file,
    check_not_overwriting_inputs,
    check_output_dir,
    cli_warnings,
    face_of,
    load_editor,
    photo_and_labels,
    positive_int,
    progress,
    save_images,
)

if TYPE_CHECKING:
    from ..editor.editor import Editor

PRESET_CHOICES = ("paper", "demo", "tiny")


# --------------------------------------------------------------------------------------- encode-styles


def run_encode_styles(args: argparse.Namespace) -> int:
    from ..styles.bank import encode_bank

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder, expected the bank's file name (e.g. bank.safetensors)")
    if out.parent.exists() and not out.parent.is_dir():
        raise InputError(f"{out}: {out.parent} is a file, not a folder")
    if out.suffix != ".safetensors":
        raise InputError(f"{out}: a style bank is a .safetensors file")
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    with progress(None, "encode-styles") as bar:
        bank = encode_bank(args.checkpoint, args.data, split=args.split, seed=args.seed, batch_size=args.batch_size,
                           device=args.device, limit=args.limit, resolution=args.resolution, progress=bar.update)
    bank.save(out)
    present = bank.presence.float().mean(0)
    common = ", ".join(f"{region} {float(present[list(bank.labels.region_classes(region))].min()):.0%}"
                       for region in ("skin", "hair"))
    print(f"wrote {out}: {len(bank)} x {bank.codes.shape[1]} codes of length {bank.style_dim} "
          f"({bank.label_set}; present: {common})")
    return 0


# ---------------------------------------------------------------------------------- training commands


def _add_training_options(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--bank", metavar="BANK.safetensors", help="style bank from facestyle encode-styles "
                                                              "(default with --resume: the run's own)")
    p.add_argument("--region", default="skin",
                   help="the region group: skin (skin + nose), hair, or any region or class name (default: skin)")
    p.add_argument("--out", metavar="RUN_DIR", help="the run folder (default with --resume: that run)")
    p.add_argument("--checkpoint", metavar="DIR|demo", default=None,
                   help="the generator the bank was encoded with: checked, and the finished network is "
                        f"installed in DIR/{kind}/REGION, where sample/finetune find it")
    p.add_argument("--preset", choices=PRESET_CHOICES, default=None,
                   help="network size and schedule (default: paper; on --resume: the run's own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one value, e.g. --set model.hidden_dim=128 or --set train.lr=1e-4 (repeatable)")
    p.add_argument("--steps", type=positive_int, default=None, help="train.steps: where the schedule ends")
    p.add_argument("--batch-size", type=positive_int, default=None, help="train.batch_size")
    p.add_argument("--stop-at", type=positive_int, default=None, metavar="STEP",
                   help="stop after this step (saving), keeping the schedule; resume later")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run (its latest checkpoint or a step folder)")
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace a network already installed in DIR/{kind}/REGION, and start afresh in an --out "
                        f"that holds a run of train-{kind} (both are refused without it)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def _overrides(args: argparse.Namespace) -> list[str]:
    items = list(args.overrides)
    items += [f"train.{k}={v}" for k, v in (("steps", args.steps), ("batch_size", args.batch_size)) if v is not None]
    return items


def _run_dir(args: argparse.Namespace, kind: str) -> Path:
    """--out (or the run --resume continues), checked before anything is read or written: a new or empty
    folder, or a run of this trainer with --resume / --overwrite; and where the network will be installed."""
    from ..styles.networks import check_install_target
    from ..train.common import check_run_folder, default_run_dir

    if args.out is None and args.resume is None:
        raise InputError("--out RUN_DIR is required (or --resume RUN_DIR)")
    if args.resume is None and args.bank is None:
        raise InputError("--bank BANK.safetensors is required (make one with facestyle encode-styles)")
    if args.bank is not None:
        check_input_file(args.bank, "a style bank (.safetensors)")
    out = Path(args.out) if args.out is not None else default_run_dir(args.resume)
    check_run_folder(out, args.resume or False, kind=kind, overwrite=args.overwrite)
    if args.checkpoint is not None:
        check_install_target(args.checkpoint, kind, args.region, args.overwrite)
    return out


def run_train_mapping(args: argparse.Namespace) -> int:
    from ..train.mapping import train_mapping

    out = _run_dir(args, "mapping")
    train_mapping(args.bank, out, args.region, preset=args.preset, overrides=_overrides(args),
                  resume=args.resume or False, device=args.device, stop_at=args.stop_at, install_to=args.checkpoint,
                  overwrite=args.overwrite)
    return 0


def run_train_flow(args: argparse.Namespace) -> int:
    from ..train.flow import train_flow

    out = _run_dir(args, "flow")
    train_flow(args.bank, out, args.region, objective=args.objective, preset=args.preset,
               overrides=_overrides(args), resume=args.resume or False, device=args.device, stop_at=args.stop_at,
               install_to=args.checkpoint, overwrite=args.overwrite)
    return 0


# --------------------------------------------------------------------------------------- sample, finetune


def _edit_target(args: argparse.Namespace, command: str, rows: dict[str, list[str]], titles: list[str],
                 columns: list[str], sheet: str, edit: Callable[[Editor, Path, Path, str], list]) -> Path:
    """Check --target/--target-labels/--out-dir, then for each row (key: its file names in OUT_DIR) write
    ``edit(editor, target, labels, key)``'s images, and the contact sheet of all rows beside the target."""
    from ..io import open_image, save_image
    from ..visualize import contact_sheet

    _, target, labels = photo_and_labels(args.target, args.target_labels)
    out_dir = check_output_dir(args.out_dir)
    paths = {key: [out_dir / name for name in names] for key, names in rows.items()}
    check_not_overwriting_inputs([*(p for row in paths.values() for p in row), out_dir / sheet],
                                 [p for p in (target, labels) if p is not None])
    if args.seed is None:  # drawn here, so that it can be printed and the result reproduced
        args.seed = random.SystemRandom().randrange(2**31)
    editor = load_editor(args)
    sheet_rows = []
    with cli_warnings(command):
        photo = face_of(editor, args, target, labels)  # found and aligned once for every row
        for key, row in paths.items():
            images = edit(editor, photo, labels, key)
            save_images(images, row)
            sheet_rows.append([open_image(target), *images])
    save_image(contact_sheet(sheet_rows, columns, row_titles=titles, cell=128), out_dir / sheet)
    return out_dir


def run_sample(args: argparse.Namespace) -> int:
    out_dir = _edit_target(
        args, "sample", {args.region: [f"{args.region}_{i:02d}.png" for i in range(args.n)]}, [args.region],
        ["target", *(f"style {i}" for i in range(args.n))], "sheet.png",
        lambda editor, target, labels, region: editor.sample(target, labels, region=region, n=args.n, seed=args.seed,
                                                             harmonize=not args.no_harmonize))
    print(f"wrote {args.n} {args.region} style(s) and sheet.png to {out_dir} (seed {args.seed}; pass --seed "
          f"{args.seed} to draw them again)")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from ..editor.styles import parse_steps
    from ..nn.flow import Solver

    steps = parse_steps(args.steps)
    spaces = ("z", "style") if args.space == "both" else (args.space,)
    solver = None if args.solver is None else Solver(args.solver, args.atol, args.rtol, args.solver_steps)
    out_dir = _edit_target(
        args, "finetune", {space: [f"{space}_{i:02d}_step{step:g}.png" for i, step in enumerate(steps)]
                           for space in spaces},
        [f"{space} space" for space in spaces], ["target", *(f"step {s:g}" for s in steps)], "sequence.png",
        lambda editor, target, labels, space: editor.finetune(
            target, labels, region=args.region, step=steps, seed=args.seed, space=space,
            harmonize=not args.no_harmonize, solver=solver if space == "z" else None))
    print(f"wrote {len(steps) * len(spaces)} fine-tuned image(s) and sequence.png to {out_dir} (seed {args.seed}; "
          f"pass --seed {args.seed} for the same direction)")
    return 0


def _add_one_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, metavar="IMG", help="the target photo")
    p.add_argument("--target-labels", metavar="PNG", help="its label map (class indices; parsed when left out)")
    add_parser_option(p)
    add_face_options(p)
    p.add_argument("--region", default="skin", help="region with a trained network (default: skin)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh draw, printed)")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="folder for the results")
    p.add_argument("--no-harmonize", action="store_true", help="skip MRSA")


# ---------------------------------------------------------------------------------------- registration


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..data.spec import add_data_arguments

    p = subparsers.add_parser(
        "encode-styles", help="encode a dataset's regional style codes into a style bank",
        description="Encode every image of a dataset with a generator checkpoint's encoder: style codes "
                    "(N, R, D) and presence (N, R), with the label set and the checkpoint's identity, in one "
                    ".safetensors file. The mapping networks and flows train on it.")
    p.add_argument("--checkpoint", required=True, metavar="DIR|demo", help="generator checkpoint")
    add_data_arguments(p, default_split="train")
    p.add_argument("--out", required=True, metavar="BANK.safetensors", help="the bank to write")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="N", help="images per pass (default: 16)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="encode only the first N images")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an existing bank")
    p.set_defaults(func=run_encode_styles)

    p = subparsers.add_parser(
        "train-mapping", help="train a region group's style mapping network on a style bank (eq. 6)",
        description="Train the mapping network M_g (z ~ N(0, I) -> the group's style codes) and its code-space "
                    "discriminator adversarially (paper eq. 6, lr 2e-4) on a style bank. The run folder works "
                    "like facestyle train's (checkpoints/, latest, tb/, metrics.jsonl, --resume, Ctrl-C saves).")
    _add_training_options(p, "mapping")
    p.set_defaults(func=run_train_mapping)

    p = subparsers.add_parser(
        "train-flow", help="train a region group's continuous normalizing flow on a style bank",
        description="Train the CNF used for style fine-tuning (paper 3.5) on a style bank, by maximum likelihood "
                    "(FFJORD: Hutchinson trace, dopri5) or by flow matching (straight paths: few solver steps "
                    "for the same accuracy). Run folder as facestyle train's.")
    _add_training_options(p, "flow")
    p.add_argument("--objective", choices=("maximum-likelihood", "flow-matching"), default=None,
                   help="training objective (default: maximum-likelihood; on --resume: the run's own)")
    p.set_defaults(func=run_train_flow)

    p = subparsers.add_parser(
        "sample", help="random styles for one region of a face (regional style mapping)",
        description="Write N versions of a face that differ only in one region's style: the region's codes "
                    "come from its mapping network, harmonized by MRSA. Files: OUT_DIR/REGION_00.png ... and "
                    "sheet.png." + " " + FACE_HELP.replace("\n", " "))
    add_model_options(p, batch=False)
    _add_one_target(p)
    p.add_argument("--n", type=positive_int, default=10, help="how many styles (default: 10)")
    p.set_defaults(func=run_sample)

    p = subparsers.add_parser(
        "finetune", help="nudge one region's style along a random direction (CNF, paper 3.5)",
        description="Move a region's style codes along a unit direction d by each step size: in the flow's "
                    "latent space (z -> z + step * d, eq. 7-8) or, as the paper's baseline, in the style space. "
                    "Files: OUT_DIR/{space}_{i}_step{step}.png and sequence.png." + " " + FACE_HELP.replace("\n", " "))
    add_model_options(p, batch=False)
    _add_one_target(p)
    p.add_argument("--steps", required=True, metavar="S1,S2,...", help="step sizes, e.g. 0.5,1,2")
    p.add_argument("--space", choices=("z", "style", "both"), default="z",
                   help="z: the flow's latent space (default); style: the codes directly (baseline); both")
    s = p.add_argument_group("ODE solver (default: the flow's own)")
    s.add_argument("--solver", default=None, help="dopri5, rk4, midpoint, euler...")
    s.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (adaptive solvers)")
    s.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance (adaptive solvers)")
    s.add_argument("--solver-steps", type=positive_int, default=8, help="steps per solve (fixed-step solvers)")
    p.set_defaults(func=run_finetune)
