"""``facestyle evaluate`` (the paper's Tables 1-4) and ``facestyle bench-harmony`` (harmony against ground truth)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..accel import DEVICE_HELP
from ..data.spec import DATA_FORMS, SPLITS
from ..labels import LABEL_SETS
from .core import check_output_dir, nonnegative_int, positive_int

EVALUATE_DESCRIPTION = """\
Measure a checkpoint as the paper's tables do, and write REPORT_DIR/report.md, results.csv,
results.json and per_image.csv.

  reconstruction   Table 1: PSNR, SSIM, LPIPS, FID of the reconstructions of --data
  transfer         Table 2: FID and HS per region; --data's test split is cut into halves,
                   target i gets the region of reference i (skin = skin + nose)
  cross-transfer   Table 3: FID / HS of --reference-data references onto --data targets, label maps
                   mapped between label sets through the classes both share
  multimodal       Table 4: FID, mCSD, mOCD of --styles random styles per image and region (needs the
                   checkpoint's regional style mapping networks)

LPIPS and FID need the standard weight files (see `facestyle weights`); HS needs
--harmony-classifier (`facestyle train-harmony`); --harmonizer DIR adds the transfer task's
SEAN+DoveNet row (`facestyle train-harmonizer`). A metric that cannot be computed is reported as
skipped, with the reason. Examples:

  facestyle evaluate --checkpoint run/ --task reconstruction --data celebamask-hq:CelebAMask-HQ \\
      --paper-rows --out reports/recon
  facestyle evaluate --checkpoint run/ --task cross-transfer --data lapa:LaPa \\
      --reference-data celebamask-hq:CelebAMask-HQ --harmony-classifier hs/ --out reports/cross
"""

BENCH_DESCRIPTION = """\
Measure harmony where the ground truth is known.

Synthetic faces (default): a target and a reference lit differently; the ground truth of a transfer is
the target re-rendered with the reference's albedo in the transferred region under the target's light.
For each region (skin = skin + nose, hair), the error to the ground truth inside and outside the region
for: the model with MRSA, the same model with MRSA bypassed, an attention-off model
(--attention-off-checkpoint, the paper's "w/o SA"), a naive cut-and-paste composite, the untouched
target, the model's reconstruction of the ground truth itself (its floor), then DoveNet after the
bypassed transfer (when the checkpoint holds a harmonizer or --harmonizer names one) and a second
checkpoint's MRSA transfer (--compare-checkpoint).

Real photos (--data SPEC, any labelled photos): the relit protocol of image-harmonization datasets.
Each photo is a target once per region; the reference is the same photo after a seeded photometric
change (exposure, white balance, gamma, a light gradient); the ground truth is the unchanged photo.
MSE / PSNR over the image and fMSE / fPSNR over the region on the 0-255 scale (as iHarmony4), and the
region's mean-colour error, for: MRSA, MRSA bypassed at inference, the composite (no harmonization),
DoveNet after the bypassed transfer (when present), and the ground-truth reconstruction (floor).

Writes REPORT_DIR/report.md, results.csv, results.json, per_pair.csv and contact_sheet.png.

  facestyle bench-harmony --checkpoint demo --pairs 64 --seed 0 --out reports/bench
  facestyle bench-harmony --checkpoint demo --data folder:faces/ --out reports/bench-real
"""


def _paper_rows(text: str) -> str:
    from ..evaluation.paper import paper_dataset

    if text == "auto":  # the option given without a value: the dataset is inferred from --data
        return text
    try:
        return paper_dataset(text)
    except Exception as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import EvaluateOptions, evaluate, parse_regions
    from ..evaluation.report import table_markdown

    out = check_output_dir(args.out)
    options = EvaluateOptions(
        checkpoint=args.checkpoint, task=args.task, data=args.data, out=out, reference_data=args.reference_data,
        regions=parse_regions(args.regions), harmony_classifier=args.harmony_classifier, harmonizer=args.harmonizer,
        weights_dir=args.weights_dir, limit=args.limit, batch_size=args.batch_size, device=args.device,
        paper_rows=args.paper_rows, split=args.split, seed=args.seed, lpips_net=args.lpips_net, styles=args.styles,
        data_label_set=args.data_label_set, reference_label_set=args.reference_label_set,
        save_images=args.save_images, fid_cache=not args.no_fid_cache, workers=args.workers,
    )
    report = evaluate(options)
    for table in report.tables:
        print(table_markdown(table))
    print(f"\nwrote {Path(out) / 'report.md'} (and results.csv, results.json, {report.per_image_name})")
    return 0


SYNTHETIC_PAIRS = 32  # --pairs of the synthetic benchmark when not given
SYNTHETIC_ONLY = (("attention_off_checkpoint", "--attention-off-checkpoint"),
                  ("compare_checkpoint", "--compare-checkpoint"), ("harmony_classifier", "--harmony-classifier"),
                  ("min_light_difference", "--min-light-difference"))


def run_bench_harmony(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..evaluation.bench_harmony import BenchOptions, bench_harmony
    from ..evaluation.bench_relit import RelitOptions, bench_relit
    from ..evaluation.evaluate import parse_regions
    from ..evaluation.report import table_markdown

    if args.data is not None:
        given = [flag for key, flag in SYNTHETIC_ONLY if getattr(args, key) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only for the synthetic benchmark (without --data)")
    elif args.split is not None or args.data_label_set is not None:
        raise InputError("--split and --data-label-set go with --data (the benchmark on labelled photos)")
    out = check_output_dir(args.out)
    if args.data is not None:
        report = bench_relit(RelitOptions(
            checkpoint=args.checkpoint, data=args.data, out=out, pairs=args.pairs, seed=args.seed,
            regions=parse_regions(args.regions), split=args.split or "test", data_label_set=args.data_label_set,
            harmonizer=args.harmonizer, device=args.device, batch_size=args.batch_size, sheet_pairs=args.sheet_pairs,
        ))
    else:
        report = bench_harmony(BenchOptions(
            checkpoint=args.checkpoint, pairs=args.pairs or SYNTHETIC_PAIRS, seed=args.seed, out=out,
            attention_off_checkpoint=args.attention_off_checkpoint, compare_checkpoint=args.compare_checkpoint,
            harmonizer=args.harmonizer, harmony_classifier=args.harmony_classifier,
            regions=parse_regions(args.regions), weights_dir=args.weights_dir, device=args.device,
            batch_size=args.batch_size, lpips_net=args.lpips_net, sheet_pairs=args.sheet_pairs,
            min_light_difference=args.min_light_difference,
        ))
    for table in report.tables:
        print(table_markdown(table))
        print()
    print(f"wrote {Path(out) / 'report.md'} (and results.csv, results.json, per_pair.csv, contact_sheet.png)")
    return 0


COMPARE_DESCRIPTION = """\
Several checkpoints of any architecture (facestyle train --arch) on one task and the same data: one
table with a row per checkpoint (ARCH (FOLDER)), and with --paper-rows DATASET the paper's published rows
beside, marked published. Writes OUT/report.md, results.csv and results.json (evaluate's schema),
per_image.csv (a system column first), contact_sheet.png (one column per system on the same inputs) and
each checkpoint's own evaluate report under OUT/systems/. A checkpoint whose architecture cannot do the
task is refused, naming what it can do, before any is evaluated.

  facestyle compare --checkpoints runs/spade,runs/groupdnet,runs/facestyle --task reconstruction \\
      --data synthetic:64 --split train --out reports/compare
"""


def run_compare(args: argparse.Namespace) -> int:
    from ..evaluation.compare import CompareOptions, compare
    from ..evaluation.evaluate import parse_regions
    from ..evaluation.report import table_markdown

    out = check_output_dir(args.out)
    checkpoints = [c.strip() for c in args.checkpoints.split(",") if c.strip()]
    report = compare(CompareOptions(
        checkpoints=checkpoints, task=args.task, data=args.data, out=out, paper_rows=args.paper_rows,
        regions=parse_regions(args.regions), limit=args.limit, batch_size=args.batch_size, device=args.device,
        split=args.split, seed=args.seed, styles=args.styles, weights_dir=args.weights_dir,
        harmony_classifier=args.harmony_classifier, lpips_net=args.lpips_net, sheet_images=args.sheet_images))
    print(table_markdown(report.tables[0]))
    print(f"\nwrote {Path(out) / 'report.md'} (and results.csv, results.json, per_image.csv, contact_sheet.png)")
    return 0


def _register_compare(subparsers: argparse._SubParsersAction) -> None:
    from ..evaluation.compare import COMPARED_TASKS
    from ..evaluation.evaluate import DEFAULT_STYLES

    p = subparsers.add_parser("compare", help="checkpoints of any --arch on one task: one table, a contact sheet",
                              description=COMPARE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", required=True, metavar="A,B,...", help="checkpoint folders, comma-separated")
    p.add_argument("--task", required=True, choices=COMPARED_TASKS, help="which table")
    p.add_argument("--data", required=True, metavar="KIND:ARG", help=f"the test images: {', '.join(DATA_FORMS)}")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report (created)")
    p.add_argument("--paper-rows", type=_paper_rows, metavar="DATASET",
                   help="add the paper's published rows of DATASET (celebamask-hq, ffhq or lapa)")
    p.add_argument("--regions", default="skin,hair", metavar="R1,R2", help="transfer / multimodal regions")
    p.add_argument("--split", choices=SPLITS, default="test", help="split of the dataset (default: test)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="use the first N images")
    p.add_argument("--seed", type=int, default=0, help="synthetic face stream and sampled styles (default: 0)")
    p.add_argument("--styles", type=positive_int, default=DEFAULT_STYLES, metavar="N",
                   help=f"multimodal: random styles per image and region (default: {DEFAULT_STYLES})")
    p.add_argument("--sheet-images", type=nonnegative_int, default=4, metavar="K",
                   help="inputs shown in contact_sheet.png (default: 4; 0: no sheet)")
    p.add_argument("--harmony-classifier", metavar="DIR", help="harmony classifier for HS (default: HS skipped)")
    p.add_argument("--weights-dir", metavar="DIR",
                   help="folder of the standard weight files (default: $FACESTYLE_WEIGHTS, then torch's hub cache)")
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default: alex)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N", help="images per forward (default: 8)")
    p.set_defaults(func=run_compare)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="DIR|demo",
                   help="checkpoint directory (config.json + model.safetensors), or 'demo'")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report (created)")
    p.add_argument("--regions", default="skin,hair", metavar="R1,R2",
                   help="regions, each measured on its own: skin (skin + nose), hair, lips... (default: skin,hair)")
    p.add_argument("--harmony-classifier", metavar="DIR",
                   help="harmony classifier for HS (facestyle train-harmony); without it HS is skipped")
    p.add_argument("--weights-dir", metavar="DIR",
                   help="folder of the standard weight files (default: $FACESTYLE_WEIGHTS, then torch's hub cache)")
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default: alex)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N", help="images per forward (default: 8)")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..evaluation.evaluate import DEFAULT_STYLES, TASKS

    p = subparsers.add_parser("evaluate", help="the paper's Tables 1-4 for a checkpoint (Markdown, CSV, JSON)",
                              description=EVALUATE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--task", required=True, choices=TASKS, help="which table")
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, metavar="KIND:ARG",
                   help=f"the test images (the targets for cross-transfer): {', '.join(DATA_FORMS)}")
    d.add_argument("--reference-data", metavar="KIND:ARG", help="cross-transfer: the references' dataset")
    d.add_argument("--split", choices=SPLITS, default="test", help="split of the datasets (default: test)")
    d.add_argument("--limit", type=positive_int, metavar="N", help="use the first N images of each dataset")
    d.add_argument("--data-label-set", choices=sorted(LABEL_SETS),
                   help="label set of a folder: --data (default: the checkpoint's)")
    d.add_argument("--reference-label-set", choices=sorted(LABEL_SETS),
                   help="label set of a folder: --reference-data (default: the checkpoint's)")
    d.add_argument("--seed", type=int, default=0,
                   help="synthetic face stream, torch's RNG and the sampled styles (default: 0)")
    d.add_argument("--workers", type=nonnegative_int, default=0, metavar="N",
                   help="data-loading processes (default: 0)")
    p.add_argument("--styles", type=positive_int, default=DEFAULT_STYLES, metavar="N",
                   help=f"multimodal: random styles per image and region (default: {DEFAULT_STYLES}, the paper's)")
    p.add_argument("--paper-rows", nargs="?", const="auto", type=_paper_rows, metavar="DATASET",
                   help="show the paper's rows beside (DATASET: celebamask-hq, ffhq or lapa; default: from --data, "
                        "or --reference-data for cross-transfer)")
    p.add_argument("--harmonizer", metavar="DIR|demo",
                   help="transfer: add the paper's SEAN+DoveNet row, this DoveNet (facestyle train-harmonizer, or a "
                        "checkpoint with harmonizer/) on the checkpoint's transfer with MRSA bypassed")
    p.add_argument("--save-images", action="store_true", help="also write the generated images to REPORT_DIR/images")
    p.add_argument("--no-fid-cache", action="store_true", help="do not cache the real images' FID features")
    p.set_defaults(func=run_evaluate)

    p = subparsers.add_parser("bench-harmony",
                              help="harmony against ground truth on synthetic faces, or on relit photos (--data)",
                              description=BENCH_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--pairs", type=positive_int, default=None, metavar="N",
                   help=f"target/reference pairs (default: {SYNTHETIC_PAIRS}); with --data the first N photos "
                        "(default: all)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="synthetic face stream of the pairs, or with --data the stream of photometric changes "
                        "(default: 0)")
    d = p.add_argument_group("real photos")
    d.add_argument("--data", metavar="KIND:ARG",
                   help=f"benchmark on labelled photos by the relit protocol: {', '.join(DATA_FORMS)}")
    d.add_argument("--split", choices=SPLITS, default=None, help="with --data: split of the dataset (default: test)")
    d.add_argument("--data-label-set", choices=sorted(LABEL_SETS),
                   help="with --data: label set of a folder: dataset (default: the checkpoint's)")
    p.add_argument("--harmonizer", metavar="DIR",
                   help="a harmonizer (DoveNet) for the 'DoveNet after the bypassed transfer' row (default: the "
                        "checkpoint's own harmonizer/ folder when it has one)")
    p.add_argument("--attention-off-checkpoint", metavar="DIR",
                   help="a separately trained attention = off checkpoint (the paper's 'w/o SA') to compare with")
    p.add_argument("--compare-checkpoint", metavar="DIR",
                   help="a second checkpoint whose MRSA transfer is a row of its own (e.g. the same preset trained "
                        "without harmony supervision)")
    p.add_argument("--sheet-pairs", type=nonnegative_int, default=4, metavar="K",
                   help="pairs shown in contact_sheet.png (default: 4; 0: no sheet)")
    p.add_argument("--min-light-difference", type=float, default=None, metavar="D",
                   help="least mean |log light| difference between target and reference lighting (default: 0.15)")
    p.set_defaults(func=run_bench_harmony)
    _register_compare(subparsers)
