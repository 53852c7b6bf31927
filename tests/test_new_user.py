"""What a new user tripped over (issue 14, item 5) and what users of SEAN's editor expect (item 6): the set-up
files, the seed printout, the demo's fine-tuning columns, help and error texts, palette-colour label maps,
the web editor's labels, the per-region transfer strength, undo and the before/after view."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facestyle.cli import main
from facestyle.editor.editor import Editor
from facestyle.errors import InputError
from facestyle.labels import CELEBAMASK_HQ
from facestyle.model import FaceStyleNet
from tests.helpers import drawn_face, tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
HAIR = CELEBAMASK_HQ.classes.index("hair")


def run(capsys, *argv) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "c")


@pytest.fixture
def face_files(tmp_path):
    photo, labels = drawn_face(1, 64)
    paths = {"photo": tmp_path / "photo.png", "labels": tmp_path / "labels.png",
             "palette": tmp_path / "labels_colour.png", "ref": tmp_path / "ref.png"}
    Image.fromarray(photo).save(paths["photo"])
    Image.fromarray(labels).save(paths["labels"])
    Image.fromarray(CELEBAMASK_HQ.colorize(labels.astype(np.int64))).save(paths["palette"])
    Image.fromarray(drawn_face(2, 64)[0]).save(paths["ref"])
    return paths


# ----------------------------------------------------------------------------------------- set-up files


def test_pyproject_has_an_spdx_licence_and_the_photo_extra():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # an SPDX string: no setuptools deprecation warning
    (photo,) = project["optional-dependencies"]["photo"]
    assert photo.replace(" ", "").startswith("mediapipe==0.10.21;") and "python_version<'3.13'" in photo.replace(
        " ", "")


def test_make_install_shows_progress_and_installs_the_photo_extra_and_test_says_it_installs_chromium():
    make = (REPO / "Makefile").read_text()
    install = make.split("$(STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    assert "--quiet" not in install and "-q " not in install
    assert re.search(r"pip install .*-e \"\.\[[a-z,]*photo[a-z,]*\]\"", install)
    test = make.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert test.index("chromium") < test.index("install-browser.sh") and "apt-get" in test
    script = (REPO / "scripts" / "install-browser.sh").read_text()
    assert script.index("Ctrl-C") < script.index("apt-get update")
    readme = (REPO / "README.md").read_text()
    setup = readme.split("make test", 1)[1][:1500]
    assert "chromium" in setup.lower() and "apt-get" in setup


# ---------------------------------------------------------------------------------------------- command line


def test_sample_and_finetune_print_the_seed_they_drew(capsys, tmp_path, face_files):
    code, out, err = run(capsys, "sample", "--checkpoint", "demo", "--target", face_files["photo"],
                         "--target-labels", face_files["labels"], "--region", "hair", "--n", "1",
                         "--out-dir", tmp_path / "s")
    assert code == 0, err
    seed = int(re.search(r"seed (\d+)", out).group(1))
    first = np.asarray(Image.open(tmp_path / "s" / "hair_00.png"))
    code, out, err = run(capsys, "sample", "--checkpoint", "demo", "--target", face_files["photo"],
                         "--target-labels", face_files["labels"], "--region", "hair", "--n", "1", "--seed",
                         seed, "--out-dir", tmp_path / "again")
    assert code == 0, err
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "again" / "hair_00.png")))
    code, out, err = run(capsys, "finetune", "--checkpoint", "demo", "--target", face_files["photo"],
                         "--target-labels", face_files["labels"], "--region", "skin", "--steps", "1",
                         "--space", "style", "--out-dir", tmp_path / "f")
    assert code == 0, err
    assert re.search(r"seed \d+", out) and "--seed" in out


def test_edit_color_help_shows_a_plain_percent_sign(capsys):
    with pytest.raises(SystemExit):
        main(["edit-color", "--help"])
    out = capsys.readouterr().out
    assert "10%" in out.replace("\n", " ") and "%%" not in out


def test_an_error_names_the_command_once(capsys, tmp_path, ckpt):
    code, _, err = run(capsys, "reconstruct", "--checkpoint", ckpt, "--out", tmp_path / "o.png")
    assert code == 2 and len(err) == 1
    assert err[0].count("reconstruct") == 1 and "missing --image" in err[0], err


def test_transfer_takes_a_palette_colour_label_map_as_edit_shape_does(capsys, tmp_path, ckpt, face_files):
    outs = []
    for labels in ("labels", "palette"):
        out = tmp_path / f"out_{labels}.png"
        code, _, err = run(capsys, "transfer", "--checkpoint", ckpt, "--target", face_files["photo"],
                           "--target-labels", face_files[labels], "--reference", face_files["ref"],
                           "--reference-labels", face_files[labels], "--regions", "hair", "--out", out)
        assert code == 0, err
        outs.append(np.asarray(Image.open(out)))
    assert np.array_equal(*outs)


def test_the_demo_labels_its_fine_tuning_columns_with_steps_that_visibly_differ():
    from facestyle.demo.styles import FINETUNE_STEPS, SAMPLES, style_columns

    columns = style_columns()
    assert columns[:2] == ["target", "labels"]
    for i, step in enumerate(FINETUNE_STEPS):
        assert f"step {step:+g}" in columns[2 + i]
    assert all(f"style {i + 1}" in columns[2 + i] for i in range(SAMPLES))
    editor = Editor.from_pretrained("demo", parser="none")
    photo, labels = drawn_face(3, editor.image_size)
    images = [np.asarray(im, np.float32) for im in editor.finetune(photo, labels, region="skin", step=list(
        FINETUNE_STEPS), seed=0, space="style")]
    skin = np.isin(labels, CELEBAMASK_HQ.region_classes("skin"))
    changes = [np.abs(a - b).mean(-1)[skin].mean() for a, b in zip(images, images[1:])]
    assert min(changes) > 2.0, changes  # each column differs from the next by more than 2/255 on the skin


# ------------------------------------------------------------------------------------------------ strength


def test_strength_zero_gives_the_targets_codes_and_one_the_references():
    torch.manual_seed(0)
    target, reference = torch.randn(2, 19, 8), torch.randn(2, 19, 8)
    present = torch.ones(2, 19, dtype=torch.bool)
    moved = torch.zeros(19, dtype=torch.bool)
    moved[HAIR] = True
    assert torch.equal(FaceStyleNet.compose(target, present, reference, present, moved, 0.0), target)
    one = FaceStyleNet.compose(target, present, reference, present, moved, 1.0)
    assert torch.equal(one[:, HAIR], reference[:, HAIR]) and torch.equal(one[:, ~moved], target[:, ~moved])
    half = FaceStyleNet.compose(target, present, reference, present, moved, 0.5)
    assert torch.allclose(half[:, HAIR], (target[:, HAIR] + reference[:, HAIR]) / 2)


def test_transfer_strength_in_the_editor_and_on_the_command_line(capsys, tmp_path, ckpt, face_files):
    editor = Editor.from_pretrained(ckpt, parser="none")
    photo, labels, ref = (str(face_files[k]) for k in ("photo", "labels", "ref"))
    none = np.asarray(editor.transfer(photo, labels, ref, labels, regions="hair", strength=0.0))
    same = np.asarray(editor.transfer(photo, labels, photo, labels, regions="hair"))  # s_c = s_t
    full = np.asarray(editor.transfer(photo, labels, ref, labels, regions="hair"))
    half = np.asarray(editor.transfer(photo, labels, ref, labels, regions="hair", strength={"hair": 0.5}))
    assert np.array_equal(none, same) and not np.array_equal(half, full) and not np.array_equal(half, none)
    with pytest.raises(InputError, match="0 to 1"):
        editor.transfer(photo, labels, ref, labels, regions="hair", strength=1.5)
    with pytest.raises(InputError, match="not among the moved regions"):
        editor.transfer(photo, labels, ref, labels, regions="hair", strength={"skin": 0.5})
    out = tmp_path / "half.png"
    code, _, err = run(capsys, "transfer", "--checkpoint", ckpt, "--target", photo, "--target-labels", labels,
                       "--reference", ref, "--reference-labels", labels, "--regions", "hair", "--strength",
                       "hair=0.5", "--out", out)
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(out)), half)
    code, _, err = run(capsys, "transfer", "--checkpoint", ckpt, "--target", photo, "--target-labels", labels,
                       "--reference", ref, "--reference-labels", labels, "--strength", "lots", "--out", out)
    assert code == 2 and len(err) == 1 and "--strength" in err[0]


# -------------------------------------------------------------------------------------------- web editor


def test_web_label_uploads_are_optional_only_when_a_parser_can_run(ckpt, monkeypatch):
    pytest.importorskip("gradio")
    from facestyle.app.server import build_app

    def labels_of(editor):
        demo = build_app(editor)
        try:
            return {c.get("props", {}).get("elem_id"): c.get("props", {}).get("label")
                    for c in demo.config["components"]}
        finally:
            demo.facestyle_sessions.close()

    monkeypatch.setattr("facestyle.editor.landmarks.mediapipe_available", lambda: False)
    without = labels_of(Editor.from_pretrained(ckpt))  # the landmark parser, but no mediapipe
    assert "required" in without["target-labels"] and "optional" not in without["target-labels"]
    monkeypatch.setattr("facestyle.editor.landmarks.mediapipe_available", lambda: True)
    with_parser = labels_of(Editor.from_pretrained(ckpt))
    assert "(optional)" in with_parser["target-labels"] and "(optional)" in with_parser["reference-labels"]


def test_the_share_hint_is_left_out_of_the_servers_output():
    pytest.importorskip("gradio")
    from facestyle.app.server import _WithoutShareHint

    stream = io.StringIO()
    out = _WithoutShareHint(stream)
    print("* Running on local URL:  http://127.0.0.1:7860", file=out)
    print("* To create a public link, set `share=True` in `launch()`.", file=out)
    print("ready", file=out)
    assert stream.getvalue() == "* Running on local URL:  http://127.0.0.1:7860\nready\n"


def test_undo_brings_back_the_previous_result_and_target_and_before_shows_the_photo(ckpt, tmp_path, face_files):
    pytest.importorskip("gradio")
    from facestyle.app.server import ServerLimits, _App
    from facestyle.app.sessions import SessionStore

    store = SessionStore(root=tmp_path / "sessions", ttl=600, capacity=4)
    app = _App(Editor.from_pretrained(ckpt, parser="none"), ServerLimits(), store)
    quiet = lambda *a, **k: None  # noqa: E731
    try:
        target, *_ = app.load(str(face_files["photo"]), str(face_files["labels"]), "target", quiet, session="s")
        reference, *_ = app.load(str(face_files["ref"]), str(face_files["labels"]), "reference", quiet,
                                 session="s")
        first, first_state, _ = app.transfer(target, reference, ["hair"], True, 1.0, progress=quiet)
        second, second_state, text = app.transfer(target, reference, ["hair"], True, 0.5, progress=quiet)
        assert "strength 0.5" in text
        first_pixels = np.asarray(Image.open(first))
        before = np.asarray(Image.open(app.before_after(second_state, True)))
        assert np.array_equal(before, np.asarray(Image.open(face_files["photo"]).convert("RGB")))
        assert app.before_after(second_state, False) == str(store.session("s").photo("result").path)
        app.continue_from(second_state)
        assert store.session("s").photo("target").id == second_state["photo"]
        *_, note = app.undo(target)  # undoes "continue editing": the original target is back
        assert store.session("s").photo("target").id == target["photo"] and "target" in note
        path, state, *_ = app.undo(target)  # undoes the second transfer: the first result is back
        assert state["photo"] == first_state["photo"]
        assert np.array_equal(np.asarray(Image.open(path)), first_pixels)
        path, state, *_ = app.undo(target)  # before the first transfer: no result
        assert path is None and state == {}
        with pytest.raises(InputError, match="nothing to undo"):
            app.undo(target)
    finally:
        store.close()
