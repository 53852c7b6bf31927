"""The face parser: network, training (mean IoU, resume), parsing photos of any shape, the parse command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facestyle.cli import main
from facestyle.config import get_preset
from facestyle.editor.parser import FaceParser, crop_box
from facestyle.errors import CheckpointError, InputError
from facestyle.labels import CELEBAMASK_HQ
from facestyle.model import FaceStyleNet
from facestyle.nn.parser import PARSER_PRESETS, FaceParserNet
from facestyle.train.parser import confusion_matrix, iou_from_confusion, train_parser

TINY = PARSER_PRESETS["tiny"]


def constant_parser(cls: int = 1) -> FaceParser:
    """A tiny parser that labels every pixel ``cls``: what it returns shows where it looked."""
    net = FaceParserNet(TINY)
    with torch.no_grad():
        net.classifier.weight.zero_()
        net.classifier.bias.zero_()
        net.classifier.bias[cls] = 10.0
    return FaceParser(net)


def run(capsys, *argv) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ network


@pytest.mark.parametrize("stride", [8, 16])
def test_network_shapes_at_both_output_strides(stride):
    import dataclasses

    net = FaceParserNet(dataclasses.replace(TINY, output_stride=stride))
    logits = net(torch.zeros(2, 3, 64, 64))
    assert logits.shape == (2, CELEBAMASK_HQ.num_classes, 64, 64)
    assert net.predict(torch.zeros(1, 3, 64, 64)).shape == (1, 64, 64)


def test_checkpoint_round_trip_and_kind(tmp_path):
    torch.manual_seed(0)
    net = FaceParserNet(TINY).eval()
    directory = net.save_pretrained(tmp_path / "parser", step=3)
    loaded = FaceParserNet.from_pretrained(directory)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x), net(x))
    assert json.loads((directory / "config.json").read_text())["kind"] == "parser"
    generator = FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path / "generator")
    with pytest.raises(CheckpointError, match="not a parser"):
        FaceParserNet.from_pretrained(generator)
    with pytest.raises(CheckpointError, match="without a face parser"):
        FaceParser.from_pretrained(generator)


def test_a_generator_checkpoint_with_a_parser_folder_names_its_parser(tmp_path):
    generator = FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path / "generator")
    FaceParserNet(TINY).save_pretrained(generator / "parser")
    assert FaceParser.from_pretrained(generator).path == generator / "parser"


def test_iou_from_confusion():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 2, 2, 0]])
    per_class, mean, accuracy = iou_from_confusion(confusion_matrix(prediction, target, 4))
    assert per_class[:3] == pytest.approx([1 / 3, 2 / 3, 3 / 4])
    assert per_class[3] is None  # neither present nor predicted: not counted
    assert mean == pytest.approx((1 / 3 + 2 / 3 + 3 / 4) / 3)
    assert accuracy == pytest.approx(6 / 8)


# ----------------------------------------------------------------------------------------- training


def test_training_a_few_steps_on_the_shared_faces_improves_mean_iou(real_faces, tmp_path):
    run_dir = train_parser(f"folder:{real_faces}", tmp_path / "run", preset="tiny", steps=40)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = metrics["history"]
    untrained, trained = history[0], history[-1]
    assert (untrained["step"], trained["step"]) == (0, 40)
    print(f"held-out mean IoU: {untrained['mean_iou']:.3f} untrained -> {trained['mean_iou']:.3f} after 40 steps")
    assert trained["mean_iou"] > untrained["mean_iou"] + 0.03
    assert metrics["per_class"]["background"] is not None and "held out" in metrics["held_out"]
    # the run folder loads as a parser, and the finished one is in final/
    assert FaceParser.from_pretrained(run_dir).image_size == TINY.image_size
    assert (run_dir / "final" / "model.safetensors").is_file()


def test_resumed_training_matches_an_uninterrupted_run(tmp_path):
    common = dict(preset="tiny", steps=6, overrides=["train.save_every=3", "train.batch_size=2"], data_seed=1)
    straight = train_parser("synthetic:20", tmp_path / "straight", **common)
    train_parser("synthetic:20", tmp_path / "split", stop_at=3, **common)
    resumed = train_parser(None, tmp_path / "split", resume=True, **common)
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((resumed / "metrics.json").read_text())
    assert [e["step"] for e in b["history"]] == [0, 3, 6]
    assert a["history"] == b["history"]
    torch.testing.assert_close(FaceParserNet.from_pretrained(straight).state_dict(),
                               FaceParserNet.from_pretrained(resumed).state_dict())


def test_training_refuses_bad_settings(tmp_path):
    with pytest.raises(InputError, match="holdout"):
        train_parser("synthetic:20", tmp_path / "a", preset="tiny", overrides=["train.holdout=1.5"])
    with pytest.raises(InputError, match="unknown config key"):
        train_parser("synthetic:20", tmp_path / "b", preset="tiny", overrides=["model.depth=3"])


# ------------------------------------------------------------------------------------------ parsing


def test_crop_boxes():
    assert crop_box(100, 160, "center") == (0, 30, 100, 100)
    assert crop_box(160, 100, "center") == (30, 0, 100, 100)
    assert crop_box(100, 160, "none") == (0, 0, 100, 160)
    assert crop_box(100, 160, (10, 5, 80)) == (5, 10, 80, 80)
    with pytest.raises(InputError, match="inside"):
        crop_box(100, 160, (100, 0, 80))


def test_a_non_square_photo_is_centre_cropped_and_mapped_back_to_its_own_size():
    parser = constant_parser(cls=1)
    photo = np.full((120, 200, 3), 128, np.uint8)
    labels = parser.parse(photo)
    assert labels.shape == (120, 200) and labels.dtype == torch.int64
    assert (labels[:, 40:160] == 1).all()  # the centred 120 x 120 square was parsed
    assert (labels[:, :40] == 0).all() and (labels[:, 160:] == 0).all()  # background outside the crop
    box = parser.parse(photo, crop=(10, 20, 90))
    assert (box[20:110, 10:100] == 1).all() and int((box == 1).sum()) == 90 * 90
    assert (parser.parse(photo, crop="none") == 1).all()


def test_parse_accepts_the_editors_input_kinds(tmp_path):
    parser = constant_parser(cls=13)
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((50, 40, 3), np.uint8)).save(path)
    maps = parser.parse([path, Image.open(path), torch.zeros(3, 30, 30)])
    assert [tuple(m.shape) for m in maps] == [(50, 40), (50, 40), (30, 30)]
    with pytest.raises(InputError):
        parser.parse(42)


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture()
def parser_checkpoint(tmp_path) -> Path:
    return constant_parser(cls=13).model.save_pretrained(tmp_path / "parser")


def test_parse_command_writes_label_maps_and_previews(capsys, parser_checkpoint, tmp_path):
    photos = []
    for name, size in (("wide", (90, 150)), ("square", (64, 64))):
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(np.full((*size, 3), 100, np.uint8)).save(path)
        photos.append(path)
    out = tmp_path / "labels"
    code, stdout, err = run(capsys, "parse", "--checkpoint", parser_checkpoint, *photos, "--out-dir", out)
    assert code == 0, err
    assert "wrote 2 label map(s)" in stdout
    wide = Image.open(out / "wide.png")
    assert wide.mode == "L" and wide.size == (150, 90)
    arr = np.asarray(wide)
    assert (arr[:, 30:120] == 13).all() and (arr[:, :30] == 0).all()
    preview = Image.open(out / "previews" / "wide.png")
    assert preview.mode == "RGB" and preview.getpixel((75, 45)) == CELEBAMASK_HQ.palette[13]
    assert Image.open(out / "square.png").size == (64, 64)


@pytest.mark.parametrize("case", ["missing image", "not a parser", "bad crop", "not an image"])
def test_parse_command_bad_input_is_one_line(capsys, case, parser_checkpoint, tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    generator = FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path / "generator")
    argv = {"missing image": [parser_checkpoint, tmp_path / "nope.png"],
            "not a parser": [generator, photo],
            "bad crop": [parser_checkpoint, photo, "--crop", "left"],
            "not an image": [parser_checkpoint, text]}[case]
    code, _, err = run(capsys, "parse", "--checkpoint", *argv, "--out-dir", tmp_path / "out")
    assert code == 2 and len(err) == 1 and err[0].startswith("facestyle parse: error:"), err


def test_train_parser_command_reports_the_held_out_iou(capsys, tmp_path):
    code, stdout, err = run(capsys, "train-parser", "--data", "synthetic:20", "--out", tmp_path / "run",
                            "--preset", "tiny", "--steps", "4", "--set", "train.save_every=2", "--batch-size", "2")
    assert code == 0, err
    assert "held-out mean IoU" in stdout
    assert any("mean" in line and "pixel accuracy" in line for line in err)  # the IoU table, via the log
    code, _, err = run(capsys, "train-parser", "--data", "synthetic:20", "--out", tmp_path / "run", "--preset", "tiny")
    assert code == 2 and "already holds a run" in err[-1]
