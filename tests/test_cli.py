"""The command line: reconstruct, transfer, import-sean and prepare, and their answers to bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import drawn_face, tiny_checkpoint
from PIL import Image

from facestyle.cli import main
from facestyle.io import shared_root
from facestyle.labels import CELEBAMASK_HQ

REPO = Path(__file__).resolve().parent.parent
HAIR = CELEBAMASK_HQ.classes.index("hair")


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("cli") / "tiny")


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> Path:
    """A folder with images/ and labels/ (three faces, paired by stem): real shared faces when present."""
    root = tmp_path_factory.mktemp("faces")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    shared = shared_root()
    sources = sorted((shared / "data" / "faces" / "images").glob("*.png"))[:3] if shared else []
    if len(sources) == 3:
        for i, src in enumerate(sources):
            # Downsized to keep the CLI tests fast; the editor tests use the full 256x256 faces.
            Image.open(src).convert("RGB").resize((96, 96), Image.BICUBIC).save(root / "images" / f"face{i}.png")
            Image.open(src.parent.parent / "labels" / src.name).resize((96, 96), Image.NEAREST).save(
                root / "labels" / f"face{i}.png")
    else:
        for i in range(3):
            photo, labels = drawn_face(i, 64, colours=(30, 226), noise=8)
            Image.fromarray(photo).save(root / "images" / f"face{i}.png")
            Image.fromarray(labels, "L").save(root / "labels" / f"face{i}.png")
    return root


def run(capsys, *argv: str | Path) -> tuple[int, str, list[str]]:
    """Run ``facestyle ARGV`` in-process: (exit status, stdout, stderr lines)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---------------------------------------------------------------------- reconstruct


def test_reconstruct_one_photo(capsys, checkpoint, faces, tmp_path):
    out = tmp_path / "sub" / "rec.png"
    code, stdout, err = run(capsys, "reconstruct", "--checkpoint", checkpoint, "--image", faces / "images/face0.png",
                            "--labels", faces / "labels/face0.png", "--out", out)
    assert code == 0, err
    assert str(out) in stdout
    assert Image.open(out).size == Image.open(faces / "images/face0.png").size
    assert files_in(tmp_path) == ["rec.png"]  # no temporary file left behind


def test_reconstruct_folder(capsys, checkpoint, faces, tmp_path):
    code, stdout, err = run(capsys, "reconstruct", "--checkpoint", checkpoint, "--image-dir", faces / "images",
                            "--label-dir", faces / "labels", "--out-dir", tmp_path / "out", "--batch-size", "2")
    assert code == 0, err
    assert files_in(tmp_path / "out") == ["face0.png", "face1.png", "face2.png"]
    assert "3 image(s)" in stdout
    single = tmp_path / "single.png"
    assert run(capsys, "reconstruct", "--checkpoint", checkpoint, "--image", faces / "images/face1.png",
               "--labels", faces / "labels/face1.png", "--out", single)[0] == 0
    a = np.asarray(Image.open(single), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "out" / "face1.png"), dtype=np.int16)
    assert np.abs(a - b).max() <= 1  # batching does not change the result


# ---------------------------------------------------------------------- transfer


def test_transfer_one_pair(capsys, checkpoint, faces, tmp_path):
    out = tmp_path / "t.png"
    code, stdout, err = run(capsys, "transfer", "--checkpoint", checkpoint,
                            "--target", faces / "images/face0.png", "--target-labels", faces / "labels/face0.png",
                            "--reference", faces / "images/face1.png",
                            "--reference-labels", faces / "labels/face1.png",
                            "--regions", "skin,hair", "--out", out, "--no-harmonize")
    assert code == 0, err
    assert err == []
    assert Image.open(out).size == Image.open(faces / "images/face0.png").size


def test_transfer_every_target_with_a_reference_list(capsys, checkpoint, faces, tmp_path):
    refs = [faces / "images/face1.png", faces / "images/face2.png"]
    ref_labels = [faces / "labels/face1.png", faces / "labels/face2.png"]
    code, stdout, err = run(capsys, "transfer", "--checkpoint", checkpoint, "--target-dir", faces / "images",
                            "--target-label-dir", faces / "labels", "--reference", *refs,
                            "--reference-labels", *ref_labels, "--regions", "lips", "--out-dir", tmp_path / "o",
                            "--batch-size", "2")
    assert code == 0, err
    assert files_in(tmp_path / "o") == sorted(f"face{t}__face{r}.png" for t in range(3) for r in (1, 2))
    assert "6 image(s)" in stdout


def test_transfer_reference_folder(capsys, checkpoint, faces, tmp_path):
    code, _, err = run(capsys, "transfer", "--checkpoint", checkpoint, "--target", faces / "images/face0.png",
                       "--target-labels", faces / "labels/face0.png", "--reference-dir", faces / "images",
                       "--reference-label-dir", faces / "labels", "--out-dir", tmp_path / "o")
    assert code == 0, err
    assert files_in(tmp_path / "o") == [f"face0__face{r}.png" for r in range(3)]


def test_transfer_warns_once_for_a_region_absent_from_the_reference(capsys, checkpoint, faces, tmp_path):
    labels = np.array(Image.open(faces / "labels/face1.png"))
    labels[labels == HAIR] = 0
    Image.fromarray(labels, "L").save(tmp_path / "bald.png")
    code, _, err = run(capsys, "transfer", "--checkpoint", checkpoint, "--target-dir", faces / "images",
                       "--target-label-dir", faces / "labels", "--reference", faces / "images/face1.png",
                       "--reference-labels", tmp_path / "bald.png", "--regions", "hair",
                       "--out-dir", tmp_path / "o", "--batch-size", "1")
    assert code == 0
    assert len(err) == 1, err
    assert err[0].startswith("facestyle transfer: warning: region 'hair' is absent from")
    assert len(files_in(tmp_path / "o")) == 3


@pytest.mark.usefixtures("one_thread")
def test_folder_transfer_outputs_never_collide(capsys, checkpoint, faces, tmp_path):
    """``a`` + ``b__c`` and ``a__b`` + ``c`` both name ``a__b__c.png``: the second is written beside it."""
    targets, refs = tmp_path / "t", tmp_path / "r"
    for folder, names in ((targets, ("a", "a__b")), (refs, ("b__c", "c"))):
        for sub in ("images", "labels"):
            (folder / sub).mkdir(parents=True)
        for i, name in enumerate(names):
            for sub in ("images", "labels"):
                shutil.copy(faces / sub / f"face{i + (folder == refs)}.png", folder / sub / f"{name}.png")
    out = tmp_path / "o"
    code, stdout, err = run(capsys, "transfer", "--checkpoint", checkpoint, "--target-dir", targets / "images",
                            "--target-label-dir", targets / "labels", "--reference-dir", refs / "images",
                            "--reference-label-dir", refs / "labels", "--regions", "skin", "--out-dir", out)
    assert code == 0, err
    assert files_in(out) == ["a__b__b__c.png", "a__b__c.png", "a__b__c~2.png", "a__c.png"]
    assert "wrote 4 image(s)" in stdout
    assert len(err) == 1 and "both make a__b__c.png; the second is written as a__b__c~2.png" in err[0], err
    # the renamed file holds its own pair's result (a__b + c), not the other's
    single = tmp_path / "single.png"
    assert run(capsys, "transfer", "--checkpoint", checkpoint, "--target", targets / "images" / "a__b.png",
               "--target-labels", targets / "labels" / "a__b.png", "--reference", refs / "images" / "c.png",
               "--reference-labels", refs / "labels" / "c.png", "--regions", "skin", "--out", single)[0] == 0
    pixels = {name: np.asarray(Image.open(path), dtype=np.int16) for name, path in
              (("single", single), ("first", out / "a__b__c.png"), ("second", out / "a__b__c~2.png"))}
    assert np.abs(pixels["single"] - pixels["second"]).max() <= 1  # batching changes a result by 1 at most
    assert np.abs(pixels["single"] - pixels["first"]).mean() > 5


def test_distinct_names_compares_case_insensitively_and_never_reuses_a_name():
    from facestyle.commands.core import distinct_names

    assert distinct_names(["x", "X", "x~2", "y"]) == (["x", "X~3", "x~2", "y"], {1: "X"})
    assert distinct_names(["a", "b"]) == (["a", "b"], {})


def test_transfer_help_documents_the_folder_output_names(capsys):
    with pytest.raises(SystemExit):
        main(["transfer", "--help"])
    assert "{target_stem}__{reference_stem}.png" in capsys.readouterr().out


# ---------------------------------------------------------------------- bad input


@pytest.fixture()
def bad_files(tmp_path, faces, checkpoint) -> dict[str, Path]:
    text = tmp_path / "text.png"
    text.write_text("this is not an image\n")
    value25 = tmp_path / "labels25.png"
    labels = np.array(Image.open(faces / "labels/face0.png"))
    labels[3, 5] = 25
    Image.fromarray(labels, "L").save(value25)
    not_ckpt = tmp_path / "not_a_checkpoint"
    not_ckpt.mkdir()
    (not_ckpt / "readme.txt").write_text("hello")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(checkpoint, corrupt)
    (corrupt / "config.json").write_text('{"format": "facestyle", "model": {')
    wrong_config = tmp_path / "wrong_config"
    shutil.copytree(checkpoint, wrong_config)
    cfg = json.loads((wrong_config / "config.json").read_text())
    cfg["model"]["style_dim"] = 8
    (wrong_config / "config.json").write_text(json.dumps(cfg))
    return {"text": text, "value25": value25, "not_ckpt": not_ckpt, "corrupt": corrupt,
            "wrong_config": wrong_config, "missing": tmp_path / "missing.png"}


RECONSTRUCT_CASES = {
    # name: (image, labels, checkpoint, extra args, expected words in the error line)
    "missing image": ("missing", "labels", "ckpt", [], ["missing.png", "no such file"]),
    "missing labels": ("image", "missing", "ckpt", [], ["missing.png", "no such file"]),
    "text as image": ("text", "labels", "ckpt", [], ["text.png", "not an image"]),
    "photo as label map": ("image", "image", "ckpt", [], ["face0.png", "palette colours"]),
    "label value 25": ("image", "value25", "ckpt", [], ["labels25.png", "value 25", "celebamask-hq"]),
    "not a checkpoint": ("image", "labels", "not_ckpt", [], ["not_a_checkpoint", "not a facestyle checkpoint"]),
    "missing checkpoint": ("image", "labels", "missing", [], ["missing.png", "not found"]),
    "corrupt config": ("image", "labels", "corrupt", [], ["config.json", "not valid JSON"]),
    "weights do not match config": ("image", "labels", "wrong_config", [], ["does not match"]),
    "other label set": ("image", "labels", "ckpt", ["--label-set", "lapa"], ["celebamask-hq", "lapa"]),
    "bad device": ("image", "labels", "ckpt", ["--device", "toaster"], ["unknown device"]),
}


@pytest.mark.parametrize("case", list(RECONSTRUCT_CASES))
def test_reconstruct_bad_input_is_one_line(capsys, case, bad_files, faces, checkpoint, tmp_path):
    image, labels, ckpt, extra, words = RECONSTRUCT_CASES[case]
    paths = {**bad_files, "image": faces / "images/face0.png", "labels": faces / "labels/face0.png",
             "ckpt": checkpoint}
    out = tmp_path / "out" / "result.png"
    code, stdout, err = run(capsys, "reconstruct", "--checkpoint", paths[ckpt], "--image", paths[image],
                            "--labels", paths[labels], "--out", out, *extra)
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("facestyle reconstruct: error: ")
    assert "Traceback" not in err[0]
    for word in words:
        assert word in err[0], (word, err[0])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["unknown region", "bad label value", "text reference", "count mismatch",
                                  "out with many pairs", "unknown suffix", "both forms"])
def test_transfer_bad_input_is_one_line(capsys, case, bad_files, faces, checkpoint, tmp_path):
    img, lab = faces / "images", faces / "labels"
    base = ["transfer", "--checkpoint", checkpoint]
    one_target = ["--target", img / "face0.png", "--target-labels", lab / "face0.png"]
    one_reference = ["--reference", img / "face1.png", "--reference-labels", lab / "face1.png"]
    out = ["--out", tmp_path / "out" / "r.png"]
    argv, words = {
        "unknown region": ([*one_target, *one_reference, "--regions", "skin,beard", *out],
                           ["unknown region 'beard'", "skin, hair"]),
        "bad label value": ([*one_target, "--reference", img / "face1.png", "--reference-labels",
                             bad_files["value25"], *out], ["labels25.png", "value 25"]),
        "text reference": ([*one_target, "--reference", bad_files["text"], "--reference-labels",
                            lab / "face1.png", *out], ["text.png", "not an image"]),
        "count mismatch": ([*one_target, "--reference", img / "face1.png", img / "face2.png",
                            "--reference-labels", lab / "face1.png", "--out-dir", tmp_path / "out"],
                           ["one label map per reference"]),
        "out with many pairs": (["--target-dir", img, "--target-label-dir", lab, *one_reference, *out],
                                ["--out-dir"]),
        "unknown suffix": ([*one_target, *one_reference, "--out", tmp_path / "out" / "r.xyz"],
                           ["unknown image format"]),
        "both forms": ([*one_target, "--target-dir", img, *one_reference, *out], ["not both"]),
    }[case]
    code, _, err = run(capsys, *base, *argv)
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("facestyle transfer: error: ")
    for word in words:
        assert word in err[0], (word, err[0])
    assert not (tmp_path / "out").exists()


def test_folder_with_a_bad_file_stops_with_one_line(capsys, checkpoint, faces, bad_files, tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    shutil.copytree(faces / "images", images)
    shutil.copytree(faces / "labels", labels)
    shutil.copy(bad_files["value25"], labels / "face2.png")
    code, _, err = run(capsys, "reconstruct", "--checkpoint", checkpoint, "--image-dir", images,
                       "--label-dir", labels, "--out-dir", tmp_path / "out", "--batch-size", "1")
    assert code == 2 and len(err) == 1 and "value 25" in err[0], err
    assert "face2.png" not in files_in(tmp_path / "out")  # finished outputs are whole, no partial file
    assert all(not name.startswith(".") for name in files_in(tmp_path / "out"))
    (labels / "face2.png").unlink()
    code, _, err = run(capsys, "reconstruct", "--checkpoint", checkpoint, "--image-dir", images,
                       "--label-dir", labels, "--out-dir", tmp_path / "out2")
    assert code == 2 and len(err) == 1 and "no label map for 1 of 3" in err[0], err
    assert not (tmp_path / "out2").exists()


def test_refuses_to_overwrite_its_inputs(capsys, checkpoint, faces, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(faces / "images", images)
    code, _, err = run(capsys, "reconstruct", "--checkpoint", checkpoint, "--image-dir", images,
                       "--label-dir", faces / "labels", "--out-dir", images)
    assert code == 2 and len(err) == 1 and "overwrite an input" in err[0], err


def test_real_process_prints_one_line_without_traceback(checkpoint, faces, tmp_path):
    """The installed entry point, in its own process (no in-process exception handling to lean on)."""
    text = tmp_path / "face.png"
    text.write_text("not an image")
    script = REPO / ".venv" / "bin" / "facestyle"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "facestyle.cli"]
    proc = subprocess.run([*command, "reconstruct", "--checkpoint", str(checkpoint), "--image", str(text),
                           "--labels", str(faces / "labels/face0.png"), "--out", str(tmp_path / "o.png")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "not an image" in lines[0]
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------------- import-sean and prepare


def test_import_sean_refuses_a_non_sean_state_dict(capsys, tmp_path):
    pth = tmp_path / "other.pth"
    torch.save({"a": torch.zeros(1)}, pth)
    code, _, err = run(capsys, "import-sean", pth, tmp_path / "imported")
    assert code == 2 and len(err) == 1, err
    assert "other.pth" in err[0] and "not a SEAN generator" in err[0]
    assert files_in(tmp_path / "imported") == []


def test_import_sean_missing_and_unreadable_files(capsys, tmp_path):
    code, _, err = run(capsys, "import-sean", tmp_path / "latest_net_G.pth", tmp_path / "imported")
    assert code == 2 and len(err) == 1 and "no such file" in err[0], err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage" * 10)
    code, _, err = run(capsys, "import-sean", junk, tmp_path / "imported")
    assert code == 2 and len(err) == 1 and "junk.pth" in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "imported").exists()


def test_prepare_celebamask_hq(capsys, tmp_path, faces):
    raw = tmp_path / "CelebAMask-HQ"
    (raw / "CelebA-HQ-img").mkdir(parents=True)
    (raw / "CelebAMask-HQ-mask-anno" / "0").mkdir(parents=True)
    labels = np.array(Image.open(faces / "labels/face0.png"))
    Image.open(faces / "images/face0.png").save(raw / "CelebA-HQ-img" / "1.jpg")
    for part in ("skin", "hair", "nose"):
        mask = labels == CELEBAMASK_HQ.classes.index(part)
        mask_path = raw / "CelebAMask-HQ-mask-anno" / "0" / f"00001_{part}.png"
        Image.fromarray(mask.astype(np.uint8) * 255, "L").save(mask_path)
    code, stdout, err = run(capsys, "prepare", "celebamask-hq", raw, tmp_path / "prepared", "--split", "train")
    assert code == 0, err
    assert files_in(tmp_path / "prepared") == ["1.jpg", "1.png"]
    merged = np.array(Image.open(tmp_path / "prepared" / "labels" / "1.png"))
    expected = np.where(np.isin(labels, [1, 2, 13]), labels, 0)
    np.testing.assert_array_equal(merged, expected)

    code, _, err = run(capsys, "prepare", "celebamask-hq", tmp_path / "nowhere", tmp_path / "p2")
    assert code == 2 and len(err) == 1 and "nowhere" in err[0], err
    assert not (tmp_path / "p2").exists()

    # corrupt photos: a truncated PNG and a .jpg of garbage are skipped, one line each; the good one is written
    good = (raw / "CelebA-HQ-img" / "1.jpg").read_bytes()
    Image.open(faces / "images/face1.png").save(raw / "CelebA-HQ-img" / "2.png")
    data = (raw / "CelebA-HQ-img" / "2.png").read_bytes()
    (raw / "CelebA-HQ-img" / "2.png").write_bytes(data[:len(data) // 2])
    (raw / "CelebA-HQ-img" / "3.jpg").write_bytes(b"\xff\xd8\xff not a JPEG at all" * 20)
    for i in (2, 3):
        for name in ("00001_skin.png", "00001_hair.png"):
            shutil.copy(raw / "CelebAMask-HQ-mask-anno" / "0" / name,
                        raw / "CelebAMask-HQ-mask-anno" / "0" / name.replace("00001", f"0000{i}"))
    code, stdout, err = run(capsys, "prepare", "celebamask-hq", raw, tmp_path / "p3", "--split", "train")
    assert code == 2, err
    skipped = [line for line in err if "warning: skipped" in line]
    assert len(skipped) == 2 and "2.png" in skipped[0] and "3.jpg" in skipped[1], err
    assert err[-1].startswith("facestyle prepare: error: 2 photo(s) could not be read"), err
    assert "Traceback" not in "".join(err) and "wrote 1 image(s)" in stdout
    assert files_in(tmp_path / "p3") == ["1.jpg", "1.png"]
    assert (tmp_path / "p3" / "images" / "1.jpg").read_bytes() == good


def test_images_larger_than_max_side_are_refused_in_one_line(tmp_path, capsys):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("RGB", (5000, 40)).save(big)  # a few kB on disk, 5000 px wide
    labels = tmp_path / "labels.png"
    Image.new("L", (5000, 40)).save(labels)
    out = tmp_path / "out.png"
    code = main(["reconstruct", "--checkpoint", "demo", "--image", str(big), "--labels", str(labels),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "larger than 4096 pixels a side" in err and "--max-side" in err
    code = main(["reconstruct", "--checkpoint", "demo", "--image", str(big), "--labels", str(labels),
                 "--out", str(out), "--max-side", "100"])
    assert code == 2 and "larger than 100 pixels" in capsys.readouterr().err
    assert main(["reconstruct", "--checkpoint", "demo", "--image", str(big), "--labels", str(labels),
                 "--out", str(out), "--max-side", "-1"]) == 2
