"""``facestyle transfer``: give target faces the style of chosen regions of reference faces."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from .core import (
    FACE_HELP,
    add_face_options,
    add_model_options,
    add_parser_option,
    batched,
    check_not_overwriting_inputs,
    check_output_dir,
    check_output_file,
    cli_warnings,
    distinct_names,
    face_of,
    given_labels,
    input_paths,
    load_editor,
    one_or_folder,
    pair_by_stem,
    photo_and_labels,
    progress,
    save_images,
)

DESCRIPTION = """\
Transfer the style of regions (skin, hair, lips...) from reference faces to target faces, harmonized
by multi-region style attention (MRSA) unless --no-harmonize.

One pair:
  facestyle transfer --checkpoint DIR --target IMG --target-labels PNG \\
      --reference IMG --reference-labels PNG --regions skin,hair --out OUT.png

Every target with every reference (the folder form):
  targets:    --target-dir DIR --target-label-dir DIR   (or one --target/--target-labels)
  references: --reference IMG [IMG ...] --reference-labels PNG [PNG ...]
              or --reference-dir DIR --reference-label-dir DIR
  output:     --out-dir DIR, one file per pair: OUT_DIR/{target_stem}__{reference_stem}.png
              (two pairs that would give one name, such as a + b__c and a__b + c: the second
              is written as NAME~2.png, with a warning)

--harmonizer DIR|demo runs a post-hoc harmonizer (DoveNet, `facestyle train-harmonizer`) on each
result, with the transferred regions as its mask (with --no-harmonize: the paper's SEAN+DoveNet).

Photos and label maps in folders are paired by file stem. Label maps left out (--target-labels,
--reference-labels, or their folders) are drawn by the face parser: CHECKPOINT/parser/ when there is
one, else the landmark parser (pip install 'facestyle[photo]'); see --parser. For example:
  facestyle transfer --checkpoint demo --target photo.jpg --reference ref.png --regions hair --out out.png

Results have the target photo's size.
A region absent from a reference keeps the target's style there (with a warning).

""" + FACE_HELP + """ A reference given without its label map is aligned on its largest face.
"""


def _targets(args: argparse.Namespace) -> list[tuple[str, Path, Path | None]]:
    if one_or_folder(args, ("target", "target_labels"), ("target_dir", "target_label_dir"), "the targets",
                     optional=("target_labels", "target_label_dir")):
        return pair_by_stem(args.target_dir, args.target_label_dir)
    return [photo_and_labels(args.target, args.target_labels)]


def _references(args: argparse.Namespace) -> list[tuple[str, Path, Path | None]]:
    if one_or_folder(args, ("reference", "reference_labels"), ("reference_dir", "reference_label_dir"),
                     "the references", optional=("reference_labels", "reference_label_dir")):
        return pair_by_stem(args.reference_dir, args.reference_label_dir)
    if args.reference_labels is None:
        refs = [photo_and_labels(image, None) for image in args.reference]
    elif len(args.reference) != len(args.reference_labels):
        raise InputError(f"{len(args.reference)} --reference image(s) but {len(args.reference_labels)} "
                         "--reference-labels: give one label map per reference, in the same order")
    else:
        refs = [photo_and_labels(image, labels) for image, labels in zip(args.reference, args.reference_labels)]
    return refs


def pair_outputs(out_dir: Path, pairs: list[tuple[str, str]]) -> list[Path]:
    """``OUT_DIR/{target_stem}__{reference_stem}.png`` for each (target, reference) stem pair, made distinct:
    when two pairs would give one name (``a`` + ``b__c`` and ``a__b`` + ``c``, or two references of one
    stem) the one later in (target, reference) order is written as ``NAME~2.png`` and a warning line says so.
    The names do not depend on the order in which a folder lists its files."""
    order = sorted(range(len(pairs)), key=lambda i: pairs[i])
    ordered = [pairs[i] for i in order]
    sorted_stems, renamed = distinct_names([f"{t}__{r}" for t, r in ordered])
    for i, name in renamed.items():
        first = next(j for j, (t, r) in enumerate(ordered) if f"{t}__{r}".casefold() == name.casefold())
        print(f"facestyle transfer: warning: target {ordered[first][0]!r} + reference {ordered[first][1]!r} and "
              f"target {ordered[i][0]!r} + reference {ordered[i][1]!r} both make {name}.png; the second is "
              f"written as {sorted_stems[i]}.png", file=sys.stderr)
    stems = [""] * len(pairs)
    for position, i in enumerate(order):
        stems[i] = sorted_stems[position]
    return [out_dir / f"{stem}.png" for stem in stems]


def _strength(text: str) -> float | dict[str, float]:
    """--strength: one number for every moved region, or REGION=VALUE pairs."""
    try:
        if "=" not in text:
            return float(text)
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise InputError(f"--strength must be a number from 0 to 1 or REGION=VALUE pairs (hair=0.5,skin=1), "
                         f"got {text!r}") from None


def run_transfer(args: argparse.Namespace) -> int:
    targets = _targets(args)
    references = _references(args)
    if args.out is not None and args.out_dir is not None:
        raise InputError("give either --out (one pair) or --out-dir (many pairs), not both")
    if args.out is not None:
        if len(targets) * len(references) != 1:
            raise InputError(f"--out takes one result, but there are {len(targets)} target(s) and "
                             f"{len(references)} reference(s); use --out-dir")
        jobs = [(targets[0], references[0], check_output_file(args.out))]
    elif args.out_dir is not None:
        out_dir = check_output_dir(args.out_dir)
        pairs = [(t, r) for r in references for t in targets]
        outputs = pair_outputs(out_dir, [(t[0], r[0]) for t, r in pairs])
        jobs = [(t, r, out) for (t, r), out in zip(pairs, outputs, strict=True)]
    else:
        raise InputError("missing --out OUT.png (one pair) or --out-dir DIR (many pairs)")
    check_not_overwriting_inputs([out for _, _, out in jobs], input_paths(targets, references))

    editor = load_editor(args)
    regions = editor.resolve_regions(args.regions)  # an unknown name fails before any work
    if not regions:
        raise InputError("--regions is empty; name at least one region, e.g. --regions skin,hair")
    strength = _strength(args.strength)
    editor.region_strengths(regions, strength)  # a bad value fails before any work
    harmonizer = None if args.harmonizer is None else editor.harmonizer(args.harmonizer)
    with cli_warnings("transfer"), progress(len(jobs), "transfer") as bar:
        for chunk_start in range(0, len(jobs), len(targets)):  # one reference, all its targets
            per_reference = jobs[chunk_start:chunk_start + len(targets)]
            (_, ref_image, ref_labels) = per_reference[0][1]
            reference = face_of(editor, args, ref_image, ref_labels, reference=True)
            for chunk in batched(per_reference, args.batch_size):
                results = editor.transfer([face_of(editor, args, t[1], t[2]) for t, _, _ in chunk],
                                          given_labels([t[2] for t, _, _ in chunk]),
                                          reference, ref_labels, regions=list(regions),
                                          harmonize=not args.no_harmonize, harmonizer=harmonizer,
                                          strength=strength)
                save_images(results, [out for _, _, out in chunk])
                bar.update(len(chunk))
    print(f"wrote {args.out}" if args.out is not None else f"wrote {len(jobs)} image(s) to {args.out_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("transfer", help="transfer regional styles from reference faces to targets",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    add_parser_option(p)
    add_face_options(p)
    p.add_argument("--regions", default="skin,hair", metavar="R1,R2",
                   help="comma-separated regions to transfer: skin (skin + nose), hair, eyes, brows, lips, "
                        "mouth, nose, ears, neck, cloth, background, or a class name (default: skin,hair)")
    p.add_argument("--strength", default="1", metavar="S|R=S,...",
                   help="how far each moved region's style goes from the target's (0) to the reference's (1, the "
                        "default): one number, or per region, e.g. hair=0.5,skin=1")
    p.add_argument("--no-harmonize", action="store_true", help="skip MRSA (plain SEAN-style code swap)")
    p.add_argument("--harmonizer", metavar="DIR|demo",
                   help="also run a post-hoc harmonizer (DoveNet: a train-harmonizer folder, a checkpoint with "
                        "harmonizer/, or demo for the bundled demo's) on each result")
    t = p.add_argument_group("targets (one, or a folder)")
    t.add_argument("--target", metavar="IMG", help="the target photo")
    t.add_argument("--target-labels", metavar="PNG", help="its label map (class indices; parsed when left out)")
    t.add_argument("--target-dir", metavar="DIR", help="folder of target photos")
    t.add_argument("--target-label-dir", metavar="DIR", help="folder of their label maps (same stems)")
    r = p.add_argument_group("references (a list, or a folder)")
    r.add_argument("--reference", nargs="+", metavar="IMG", help="reference photo(s)")
    r.add_argument("--reference-labels", nargs="+", metavar="PNG",
                   help="their label maps, in the same order (parsed when left out)")
    r.add_argument("--reference-dir", metavar="DIR", help="folder of reference photos")
    r.add_argument("--reference-label-dir", metavar="DIR", help="folder of their label maps (same stems)")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="OUT.png", help="the result, for one target and one reference")
    o.add_argument("--out-dir", metavar="DIR", help="folder of results: {target_stem}__{reference_stem}.png")
    p.set_defaults(func=run_transfer)
