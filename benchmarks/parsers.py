"""Face parsers on the hand-annotated shared faces: per-class IoU, the per-face mean IoU and the dataset's.

The faces are the 14 rows of ``$FACESTYLE_SHARED/data/faces/index.tsv`` marked ``annotated`` (CelebA-HQ
test faces and MaskGAN's demo faces, 256x256, CelebAMask-HQ classes). Two means are given:

- ``face mIoU``: for each face, the IoU averaged over the classes of its ground truth (a class the parser
  never predicts there counts 0: eyeglasses, earrings...), then averaged over the faces;
- ``dataset mIoU``: one confusion matrix over all the faces, its per-class IoUs averaged.

    python benchmarks/parsers.py                                  # the landmark parser (photo extra)
    python benchmarks/parsers.py --parser runs/parser/final       # ... and a trained parser beside it
    python benchmarks/parsers.py --bisenet 79999_iter.pth         # ... and face-parsing.PyTorch's BiSeNet

The landmark parser needs ``pip install 'facestyle[photo]'`` (it is skipped, with a note, without it).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facestyle.editor.landmarks import LandmarkParser, mediapipe_available
from facestyle.editor.parser import BiSeNetParser, FaceParser
from facestyle.io import shared_root
from facestyle.labels import CELEBAMASK_HQ
from facestyle.train.parser import confusion_matrix, face_iou, iou_from_confusion

NUM = CELEBAMASK_HQ.num_classes


def annotated_faces(root: Path) -> list[tuple[str, Path, Path]]:
    """(name, photo, label map) of the faces marked ``annotated`` in the shared index."""
    faces = root / "data" / "faces"
    rows = [line.split("\t") for line in (faces / "index.tsv").read_text().splitlines()[1:] if line.strip()]
    return [(r[0], faces / "images" / f"{r[0]}.png", faces / "labels" / f"{r[0]}.png")
            for r in rows if len(r) > 2 and r[2] == "annotated"]


def score(parser, faces: list[tuple[str, Path, Path]]) -> dict:
    """Per-face IoUs, the dataset confusion matrix's per-class IoU and both means, and seconds per face."""
    confusion = torch.zeros(NUM, NUM, dtype=torch.int64)
    per_face = []
    start = time.perf_counter()
    for _, photo, labels in faces:
        truth = torch.from_numpy(np.asarray(Image.open(labels)).astype(np.int64))
        predicted = parser.parse(str(photo))
        confusion += confusion_matrix(predicted, truth, NUM)
        per_face.append(face_iou(predicted, truth, NUM))
    seconds = (time.perf_counter() - start) / len(faces)
    per_class, dataset_miou, accuracy = iou_from_confusion(confusion)
    return {"per_face": per_face, "face_miou": float(np.mean(per_face)), "dataset_miou": dataset_miou,
            "per_class": per_class, "accuracy": accuracy, "seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parser", action="append", default=[], metavar="DIR",
                    help="a trained parser checkpoint to score beside the landmark parser (repeatable)")
    ap.add_argument("--bisenet", default=None, metavar="PATH",
                    help="face-parsing.PyTorch's 79999_iter.pth, to score its BiSeNet (at 512 x 512) beside them")
    ap.add_argument("--shared", default=None, help="the shared data folder (default: $FACESTYLE_SHARED)")
    args = ap.parse_args()
    root = Path(args.shared) if args.shared else shared_root()
    if root is None or not (root / "data" / "faces" / "index.tsv").is_file():
        print("parsers: the shared faces are missing (set FACESTYLE_SHARED)", file=sys.stderr)
        return 2
    faces = annotated_faces(root)
    parsers = {}
    if mediapipe_available():
        parsers["landmarks"] = LandmarkParser()
    else:
        print("note: mediapipe is not installed (pip install 'facestyle[photo]'): the landmark parser is skipped")
    for path in args.parser:
        parsers[f"trained ({Path(path).name})"] = FaceParser.from_pretrained(path)
    if args.bisenet:
        parsers["bisenet"] = BiSeNetParser.from_file(args.bisenet)
    results = {name: score(parser, faces) for name, parser in parsers.items()}

    names = list(results)
    print(f"{len(faces)} annotated faces ({root / 'data' / 'faces'})\n")
    print("| class | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for c, cls in enumerate(CELEBAMASK_HQ.classes):
        cells = [results[n]["per_class"][c] for n in names]
        if all(v is None for v in cells):
            continue
        print(f"| {cls} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in cells) + " |")
    for key, title in (("dataset_miou", "dataset mIoU"), ("face_miou", "**face mIoU**"), ("accuracy", "pixel acc.")):
        print(f"| {title} | " + " | ".join(f"{results[n][key]:.3f}" for n in names) + " |")
    print("| s / face | " + " | ".join(f"{results[n]['seconds']:.2f}" for n in names) + " |")
    print()
    for name, *_ in faces:
        i = [n for n, *_ in faces].index(name)
        print(f"{name}: " + ", ".join(f"{n} {results[n]['per_face'][i]:.3f}" for n in names))
    print()
    pairs = []
    for n in names:
        key = "landmarks" if n == "landmarks" else "trained" if n.startswith("trained") else n
        pairs += [f"{key}_face_miou={results[n]['face_miou']:.3f}",
                  f"{key}_dataset_miou={results[n]['dataset_miou']:.3f}"]
    print(" ".join(pairs) if pairs else "no_parser=1")
    return 0 if not any(math.isnan(r["face_miou"]) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
