"""The landmark parser (MediaPipe's face mesh, the photo extra) and the parser defaults of the commands and
the Editor. Tests that run MediaPipe skip when it is not installed."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from facestyle.cli import main
from facestyle.editor.editor import Editor
from facestyle.editor.landmarks import INSTALL_HINT, LandmarkParser
from facestyle.errors import InputError
from facestyle.labels import CELEBAMASK_HQ, LAPA, class_index_map
from facestyle.train.parser import face_iou
from tests.helpers import drawn_face, tiny_checkpoint

TARGET_IOU = 0.6  # issue 14: the landmark parser's mean IoU on the annotated shared faces


def run(capsys, *argv) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


@pytest.fixture
def no_mediapipe(monkeypatch):
    """As if the photo extra were not installed."""
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # `import mediapipe` raises ImportError
    monkeypatch.setattr("facestyle.editor.landmarks.mediapipe_available", lambda: False)


@pytest.fixture
def photo_file(tmp_path):
    photo, labels = drawn_face(0, 64)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(labels).save(tmp_path / "labels.png")
    return tmp_path / "photo.png", tmp_path / "labels.png"


def test_a_shared_face_is_parsed_within_the_iou_target(real_faces):
    pytest.importorskip("mediapipe")
    name = "maskgan-0"
    truth = torch.from_numpy(np.asarray(Image.open(real_faces / "labels" / f"{name}.png")).astype(np.int64))
    parsed = LandmarkParser().parse(str(real_faces / "images" / f"{name}.png"))
    assert parsed.shape == truth.shape and parsed.dtype == torch.int64
    assert face_iou(parsed, truth, CELEBAMASK_HQ.num_classes) >= TARGET_IOU
    # the person's left eye is on the image's right, as CelebAMask-HQ marks it
    l_eye, r_eye = (CELEBAMASK_HQ.classes.index(c) for c in ("l_eye", "r_eye"))
    assert (parsed == l_eye).nonzero()[:, 1].float().mean() > (parsed == r_eye).nonzero()[:, 1].float().mean()


def test_a_photo_without_a_face_is_one_clear_error():
    pytest.importorskip("mediapipe")
    with pytest.raises(InputError, match="no face found"):
        LandmarkParser().parse(np.full((64, 64, 3), 128, np.uint8))


def test_without_mediapipe_the_parser_says_what_to_install(no_mediapipe, tmp_path, photo_file, capsys):
    photo, _ = photo_file
    with pytest.raises(InputError, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        LandmarkParser().parse(str(photo))
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    editor = Editor.from_pretrained(ckpt)  # no CHECKPOINT/parser: the landmark parser is the default
    assert isinstance(editor.parser, LandmarkParser) and not editor.can_parse
    with pytest.raises(InputError, match="facestyle\\[photo\\]"):
        editor.reconstruct(str(photo))
    code, _, err = run(capsys, "reconstruct", "--checkpoint", ckpt, "--image", photo, "--out", tmp_path / "o.png")
    assert code == 2 and len(err) == 1 and INSTALL_HINT in err[0], err
    assert not (tmp_path / "o.png").exists()


def test_commands_take_photos_without_label_maps(tmp_path, photo_file, capsys, monkeypatch):
    """transfer, reconstruct and sample parse a photo whose label map is left out (a stand-in parser here; with
    --no-align, as the stand-in finds no face: tests/test_align.py covers the aligned path)."""
    photo, labels = photo_file
    truth = torch.from_numpy(np.asarray(Image.open(labels)).astype(np.int64))
    seen = []

    def parse(self, images, crop="center"):
        seen.append(images)
        return [truth.clone() for _ in images] if isinstance(images, list) else truth.clone()

    monkeypatch.setattr(LandmarkParser, "parse", parse)
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    code, out, err = run(capsys, "transfer", "--checkpoint", ckpt, "--target", photo, "--reference", photo,
                         "--regions", "hair", "--no-align", "--out", tmp_path / "t.png")
    assert code == 0, err
    assert Image.open(tmp_path / "t.png").size == (64, 64) and len(seen) == 2
    code, _, err = run(capsys, "reconstruct", "--checkpoint", ckpt, "--image", photo, "--no-align",
                       "--out", tmp_path / "r.png")
    assert code == 0, err
    given = Editor.from_pretrained(ckpt, parser="none").reconstruct(str(photo), str(labels))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "r.png")), np.asarray(given))
    code, _, err = run(capsys, "reconstruct", "--checkpoint", ckpt, "--parser", "none", "--image", photo,
                       "--out", tmp_path / "n.png")
    assert code == 2 and "no face parser" in err[0]


def test_the_landmark_parser_writes_another_label_set_by_class_name():
    mapping = class_index_map(CELEBAMASK_HQ, LAPA)
    assert LAPA.classes[mapping[CELEBAMASK_HQ.classes.index("hair")]] == "hair"
    assert LAPA.classes[mapping[CELEBAMASK_HQ.classes.index("l_eye")]] == "l_eye"
    assert mapping[CELEBAMASK_HQ.classes.index("neck")] == 0  # LaPa has no neck
    assert LandmarkParser("lapa").label_set is LAPA


def test_mediapipes_routine_stderr_chatter_is_dropped_and_its_errors_kept(capfd):
    """MediaPipe's native code prints a delegate notice and glog-format lines on every first use: a user
    running `transfer` sees one line, "wrote out.png"; a native error still reaches stderr."""
    from facestyle.editor.landmarks import _native_stderr_filtered

    with _native_stderr_filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"W0000 00:00:1795995791.198152   15611 inference_feedback_manager.cc:114] Feedback manager\n"
                    b"E0000 00:00:1795995791.3   15611 calculator_graph.cc:887] a real failure\n")
    err = capfd.readouterr().err
    assert err == "E0000 00:00:1795995791.3   15611 calculator_graph.cc:887] a real failure\n"
