"""Shape and colour editing (paper section 5): what changes where, where new classes get their style,
automatic parsing, the style mean, and the edit-shape / edit-color commands."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facestyle.checkpoint import demo_dir
from facestyle.cli import main
from facestyle.config import get_preset
from facestyle.editor.editor import Editor
from facestyle.editor.edits import NewClassWarning, decolorize_nearest
from facestyle.errors import CheckpointError, InputError
from facestyle.labels import CELEBAMASK_HQ
from facestyle.model import FaceStyleNet
from facestyle.nn.parser import PARSER_PRESETS, FaceParserNet
from facestyle.styles.mean import compute_style_mean, load_style_mean, save_style_mean

CLASSES = CELEBAMASK_HQ.classes
SKIN, HAIR, HAT, NECK = (CLASSES.index(c) for c in ("skin", "hair", "hat", "neck"))


def drawn_face(seed: int = 0, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A drawn face (photo (H, W, 3) uint8, labels (H, W) int64): background, cloth, neck, hair, skin, ears,
    eyes, brows, nose, lips, mouth, each in its own colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size

    def ellipse(cy, cx, ry, rx):
        return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1

    labels = np.zeros((size, size), np.int64)
    labels[y > 0.85] = 18
    labels[(y > 0.65) & (np.abs(x - 0.5) < 0.12)] = NECK
    labels[ellipse(0.38, 0.5, 0.36, 0.34)] = HAIR
    labels[ellipse(0.46, 0.24, 0.07, 0.04)] = 8
    labels[ellipse(0.46, 0.76, 0.07, 0.04)] = 9
    labels[ellipse(0.47, 0.5, 0.27, 0.24)] = SKIN
    for cls, dx in ((6, -0.1), (7, 0.1)):
        labels[ellipse(0.37, 0.5 + dx, 0.02, 0.06)] = cls
    for cls, dx in ((4, -0.1), (5, 0.1)):
        labels[ellipse(0.43, 0.5 + dx, 0.025, 0.05)] = cls
    labels[ellipse(0.51, 0.5, 0.06, 0.03)] = 2
    labels[ellipse(0.61, 0.5, 0.025, 0.09)] = 11
    labels[ellipse(0.645, 0.5, 0.025, 0.08)] = 12
    colours = rng.integers(40, 216, size=(CELEBAMASK_HQ.num_classes, 3))
    photo = np.clip(colours[labels] + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
    return photo, labels


def longer_hair(labels: np.ndarray) -> np.ndarray:
    """The label map with the hair grown down over the background at both sides of the face."""
    new = labels.copy()
    h, w = labels.shape
    rows = slice(int(0.35 * h), int(0.8 * h))
    for cols in (slice(int(0.08 * w), int(0.25 * w)), slice(int(0.75 * w), int(0.92 * w))):
        band = new[rows, cols]
        band[band == 0] = HAIR
    return new


def with_hat(labels: np.ndarray) -> np.ndarray:
    new = labels.copy()
    h, w = labels.shape
    new[: int(0.15 * h), int(0.25 * w): int(0.75 * w)] = HAT
    return new


def hair_strokes(labels: np.ndarray, colour=(220, 30, 30)) -> np.ndarray:
    """An RGBA layer with three thick strokes across the hair (transparent elsewhere)."""
    h, w = labels.shape
    rgba = np.zeros((h, w, 4), np.uint8)
    for row in (0.1, 0.17, 0.24):
        y = int(row * h)
        rgba[y:y + max(3, h // 24), int(0.3 * w):int(0.7 * w)] = (*colour, 255)
    rgba[labels != HAIR] = 0  # the painter stayed on the hair
    return rgba


def region_change(a, b, mask: np.ndarray) -> tuple[float, float]:
    """Mean absolute difference of two results inside and outside ``mask``."""
    diff = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean(-1)
    return float(diff[mask].mean()), float(diff[~mask].mean())


def run(capsys, *argv) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path_factory.mktemp("face") / "tiny")


@pytest.fixture(scope="module")
def editor(tiny_checkpoint):
    return Editor.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module", params=["tiny", "demo"])
def any_editor(request, editor):
    """(editor, how much more the edited region must change than the rest): the tiny random checkpoint for
    the mechanics (an untrained generator spreads every change over the whole image, so only "more"), and
    the demo model, when it is installed, for the real behaviour (at least twice as much)."""
    if request.param == "tiny":
        return editor, 1.0
    if not (demo_dir() / "config.json").is_file():
        pytest.skip("the demo model is not installed (facestyle/assets/demo)")
    return Editor.from_pretrained("demo"), 2.0


@pytest.fixture(scope="module")
def face():
    return drawn_face(0)


# --------------------------------------------------------------------------------------- shape editing


def test_shape_edit_changes_the_edited_region_more_than_the_rest(any_editor, face):
    any_editor, factor = any_editor
    photo, labels = face
    new = longer_hair(labels)
    edited = new != labels
    assert edited.mean() > 0.02
    before = any_editor.edit_shape(photo, labels, labels)
    after = any_editor.edit_shape(photo, labels, new)
    assert after.size == before.size == (photo.shape[1], photo.shape[0])
    inside, outside = region_change(after, before, edited)
    print(f"shape edit: mean change {inside:.1f} inside the edited pixels, {outside:.1f} elsewhere")
    assert inside > factor * outside and inside > 1.0


def test_shape_edit_with_the_same_map_is_the_reconstruction(editor, face):
    photo, labels = face
    a = editor.edit_shape(photo, labels, labels, return_tensors=True)
    b = editor.reconstruct(photo, labels, return_tensors=True)
    torch.testing.assert_close(a, b)


def test_color_edit_changes_the_painted_region_more_than_the_rest(any_editor, face):
    any_editor, factor = any_editor
    photo, labels = face
    strokes = hair_strokes(labels)
    before = any_editor.reconstruct(photo, labels)
    after, details = any_editor.edit_color(photo, labels, strokes, return_details=True)
    assert details["classes"] == ["hair"]
    inside, outside = region_change(after, before, labels == HAIR)
    print(f"colour edit: mean change {inside:.1f} in the hair, {outside:.1f} elsewhere")
    assert inside > factor * outside and inside > 1.0


def test_color_edit_takes_strokes_as_an_image_and_mask_pair(editor, face):
    photo, labels = face
    rgba = hair_strokes(labels)
    a = editor.edit_color(photo, labels, rgba, return_tensors=True)
    b = editor.edit_color(photo, labels, (rgba[..., :3], rgba[..., 3] > 0), return_tensors=True)
    torch.testing.assert_close(a, b)
    region = editor.edit_color(photo, labels, rgba, pool="region", return_tensors=True)
    assert not torch.equal(a, region)


def test_color_edit_bad_strokes(editor, face):
    photo, labels = face
    with pytest.raises(InputError, match="empty"):
        editor.edit_color(photo, labels, np.zeros((*labels.shape, 4), np.uint8))
    with pytest.raises(InputError, match="alpha"):
        editor.edit_color(photo, labels, Image.fromarray(photo))
    with pytest.raises(InputError, match="aspect"):
        editor.edit_color(photo, labels, np.full((40, 80, 4), 255, np.uint8))
    with pytest.raises(InputError, match="none of the target's regions"):
        editor.edit_color(photo, labels, hair_strokes(labels), regions="lips")


# ------------------------------------------------------------------------------ styles of new classes


@pytest.fixture()
def fresh_editor(tmp_path):
    """An editor on its own copy of the tiny checkpoint (so that mapping networks and means can be added)."""
    torch.manual_seed(0)
    ckpt = FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path / "ckpt")
    return Editor.from_pretrained(ckpt)


def _install_hat_mapping(editor) -> torch.nn.Module:
    import dataclasses

    from facestyle.nn.mapping import MAPPING_PRESETS, MappingConfig, MappingNetwork
    from facestyle.styles.bank import checkpoint_identity

    cfg = dataclasses.replace(MAPPING_PRESETS["tiny"], region="hat", classes=(HAT,),
                              style_dim=editor.model.config.style_dim)
    assert isinstance(cfg, MappingConfig)
    torch.manual_seed(3)
    network = MappingNetwork(cfg).eval()
    network.save_pretrained(editor.checkpoint_dir / "mapping" / "hat",
                            bank={"checkpoint_sha256": checkpoint_identity(editor.checkpoint_dir)})
    return network


def _codes(editor, photo, labels, new, **kwargs):
    with torch.inference_mode():
        photos = editor._prepare_images(photo)
        maps = editor._prepare_labels(labels, photos)
        new_maps = editor._prepare_labels(new, photos)
        s_t, p_t = editor.model.encode(photos.images, maps)
        p_new = torch.zeros_like(p_t)
        p_new[0, new_maps.unique()] = True
        return editor._new_class_codes(s_t, p_t, p_new, **kwargs)


def test_new_classes_take_their_style_from_the_reference_then_mapping_then_mean(fresh_editor, face):
    editor = fresh_editor
    photo, labels = face
    new = with_hat(labels)
    d = editor.model.config.style_dim

    # nothing to take it from: a zero code and a warning
    with pytest.warns(NewClassWarning, match="hat"):
        codes, sources = _codes(editor, photo, labels, new)
    assert sources == {"hat": "none (zero code)"} and float(codes[0, HAT].abs().sum()) == 0

    # the dataset mean kept with the checkpoint
    mean = torch.randn(CELEBAMASK_HQ.num_classes, d)
    count = torch.ones(CELEBAMASK_HQ.num_classes, dtype=torch.int64)
    save_style_mean(editor.checkpoint_dir, mean, count)
    editor = Editor.from_pretrained(editor.checkpoint_dir)
    codes, sources = _codes(editor, photo, labels, new)
    assert sources == {"hat": "dataset mean"}
    torch.testing.assert_close(codes[0, HAT], mean[HAT])

    # a mapping network for the hat comes before the mean
    network = _install_hat_mapping(editor)
    editor = Editor.from_pretrained(editor.checkpoint_dir)
    codes, sources = _codes(editor, photo, labels, new, seed=5)
    assert sources == {"hat": "mapping network (hat)"}
    torch.testing.assert_close(codes[0, HAT], network.sample(1, torch.Generator().manual_seed(5))[0, 0])

    # a reference that has a hat comes first; one without a hat does not count
    ref_photo, ref_labels = drawn_face(1)
    ref_labels = with_hat(ref_labels)
    with torch.inference_mode():
        refs = editor._prepare_images(ref_photo)
        s_r, p_r = editor.model.encode(refs.images, editor._prepare_labels(ref_labels, refs))
    codes, sources = _codes(editor, photo, labels, new, s_r=s_r, p_r=p_r)
    assert sources == {"hat": "reference"}
    torch.testing.assert_close(codes[0, HAT], s_r[0, HAT])
    _, sources = _codes(editor, photo, labels, new, s_r=s_r, p_r=torch.zeros_like(p_r))
    assert sources == {"hat": "mapping network (hat)"}

    # and through the public method
    _, details = editor.edit_shape(photo, labels, new, reference=ref_photo, reference_labels=ref_labels,
                                   return_details=True)
    assert details["sources"] == {"hat": "reference"}


def test_classes_the_target_has_keep_its_codes(editor, face):
    photo, labels = face
    codes, sources = _codes(editor, photo, labels, longer_hair(labels))
    assert sources == {}
    with torch.inference_mode():
        photos = editor._prepare_images(photo)
        s_t, _ = editor.model.encode(photos.images, editor._prepare_labels(labels, photos))
    torch.testing.assert_close(codes, s_t)


def test_style_mean_files(tmp_path):
    codes = torch.tensor([[[1.0, 2.0], [5.0, 5.0]], [[3.0, 4.0], [9.0, 9.0]]])
    presence = torch.tensor([[True, False], [True, False]])
    mean, count = compute_style_mean(codes, presence)
    torch.testing.assert_close(mean, torch.tensor([[2.0, 3.0], [0.0, 0.0]]))
    assert count.tolist() == [2, 0]
    ckpt = FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path / "ckpt")
    assert load_style_mean(ckpt) is None
    save_style_mean(ckpt, mean, count)
    loaded_mean, loaded_count = load_style_mean(ckpt)
    torch.testing.assert_close(loaded_mean, mean)
    torch.manual_seed(9)  # another generator in the same folder: the mean no longer belongs to it
    FaceStyleNet(get_preset("tiny").model).save_pretrained(ckpt)
    with pytest.raises(CheckpointError, match="another generator"):
        load_style_mean(ckpt)


def test_style_mean_command(capsys, tmp_path):
    torch.manual_seed(0)
    ckpt = FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path / "ckpt")
    code, stdout, err = run(capsys, "style-mean", "--checkpoint", ckpt, "--data", "synthetic:6", "--split", "all")
    assert code == 0, err
    mean, count = load_style_mean(ckpt)
    assert mean.shape == (CELEBAMASK_HQ.num_classes, get_preset("tiny").model.style_dim)
    assert int(count[SKIN]) == 6 and "wrote" in stdout
    code, _, err = run(capsys, "style-mean", "--checkpoint", ckpt)
    assert code == 2 and len(err) == 1


# ------------------------------------------------------------------------------------ automatic parsing


def test_a_missing_label_map_is_parsed_when_a_parser_is_configured(tmp_path, face):
    torch.manual_seed(0)
    ckpt = FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path / "ckpt")
    photo, labels = face
    no_parser = Editor.from_pretrained(ckpt, parser="none")
    with pytest.raises(InputError, match="no face parser"):
        no_parser.edit_shape(photo, None, labels)
    net = FaceParserNet(PARSER_PRESETS["tiny"])
    with torch.no_grad():  # a parser that sees skin everywhere
        net.classifier.weight.zero_()
        net.classifier.bias.zero_()
        net.classifier.bias[SKIN] = 10.0
    net.save_pretrained(ckpt / "parser")
    editor = Editor.from_pretrained(ckpt)  # finds CHECKPOINT/parser/
    assert editor.parser is not None
    parsed = editor._labels_or_parse(photo, None)
    assert parsed.shape == labels.shape and (parsed == SKIN).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NewClassWarning)  # every class but skin is new to the parsed map
        result = editor.edit_shape(photo, None, labels, return_tensors=True)
        expected = editor.edit_shape(photo, np.full_like(labels, SKIN), labels, return_tensors=True)
    torch.testing.assert_close(result, expected)


def test_decolorize_nearest_snaps_antialiased_colours():
    palette = np.asarray(CELEBAMASK_HQ.palette, np.uint8)
    rgb = palette[[[HAIR, SKIN]]].copy()
    rgb[0, 0] = np.clip(rgb[0, 0].astype(int) + 10, 0, 255)  # a slightly-off hair colour
    assert decolorize_nearest(rgb, CELEBAMASK_HQ).tolist() == [[HAIR, SKIN]]
    photo = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="palette"):
        decolorize_nearest(photo, CELEBAMASK_HQ, max_distance=20)


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def files(tmp_path_factory, face) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("edit-files")
    photo, labels = face
    paths = {name: root / f"{name}.png" for name in ("image", "labels", "new", "new_colour", "strokes", "rgb",
                                                     "photo_as_labels")}
    Image.fromarray(photo).save(paths["image"])
    Image.fromarray(labels.astype(np.uint8), "L").save(paths["labels"])
    Image.fromarray(longer_hair(labels).astype(np.uint8), "L").save(paths["new"])
    Image.fromarray(CELEBAMASK_HQ.colorize(with_hat(labels))).save(paths["new_colour"])
    Image.fromarray(hair_strokes(labels), "RGBA").save(paths["strokes"])
    Image.fromarray(hair_strokes(labels)[..., :3]).save(paths["rgb"])
    Image.fromarray(photo).save(paths["photo_as_labels"])
    return paths


def test_edit_shape_command(capsys, tiny_checkpoint, files, tmp_path):
    out = tmp_path / "out.png"
    code, stdout, err = run(capsys, "edit-shape", "--checkpoint", tiny_checkpoint, "--image", files["image"],
                            "--labels", files["labels"], "--new-labels", files["new"], "--out", out)
    assert code == 0, err
    assert Image.open(out).size == Image.open(files["image"]).size and f"wrote {out}" in stdout
    # a palette-coloured map with a new class, its style from a reference
    code, stdout, err = run(capsys, "edit-shape", "--checkpoint", tiny_checkpoint, "--image", files["image"],
                            "--labels", files["labels"], "--new-labels", files["new_colour"],
                            "--reference", files["image"], "--reference-labels", files["new_colour"], "--out", out)
    assert code == 0, err
    assert "hat from reference" in stdout
    # no source for the hat: a warning line, and still a result
    code, stdout, err = run(capsys, "edit-shape", "--checkpoint", tiny_checkpoint, "--image", files["image"],
                            "--labels", files["labels"], "--new-labels", files["new_colour"], "--out", out)
    assert code == 0 and "hat from none" in stdout
    assert len(err) == 1 and err[0].startswith("facestyle edit-shape: warning: class 'hat' is new"), err


def test_edit_color_command(capsys, tiny_checkpoint, files, tmp_path):
    out = tmp_path / "out.png"
    code, stdout, err = run(capsys, "edit-color", "--checkpoint", tiny_checkpoint, "--image", files["image"],
                            "--labels", files["labels"], "--strokes", files["strokes"], "--out", out)
    assert code == 0, err
    assert "recoloured: hair" in stdout and Image.open(out).size == Image.open(files["image"]).size
    code, stdout, err = run(capsys, "edit-color", "--checkpoint", tiny_checkpoint, "--image", files["image"],
                            "--labels", files["labels"], "--strokes", files["rgb"], "--stroke-mask",
                            files["strokes"], "--out", out)
    assert code == 0, err


BAD_CASES = {
    "missing image": ("edit-shape", {"--image": "nope.png"}),
    "missing new labels": ("edit-shape", {"--new-labels": "nope.png"}),
    "photo as new labels": ("edit-shape", {"--new-labels": "photo_as_labels"}),
    "labels without parser": ("edit-shape", {"--labels": None, "--parser": "none"}),
    "reference labels alone": ("edit-shape", {"--reference-labels": "labels"}),
    "bad output format": ("edit-shape", {"--out": "out.xyz"}),
    "strokes without alpha": ("edit-color", {"--strokes": "rgb"}),
    "unknown region": ("edit-color", {"--regions": "antlers"}),
    "strokes off the regions": ("edit-color", {"--regions": "lips"}),
    "overwrite input": ("edit-color", {"--out": "image"}),
    "bad checkpoint": ("edit-color", {"--checkpoint": "nope"}),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_edit_commands_bad_input_is_one_line(capsys, case, tiny_checkpoint, files, tmp_path):
    command, changes = BAD_CASES[case]
    options = {"--checkpoint": str(tiny_checkpoint), "--image": files["image"], "--labels": files["labels"],
               "--out": tmp_path / "out.png"}
    options.update({"--new-labels": files["new"]} if command == "edit-shape" else {"--strokes": files["strokes"]})
    for key, value in changes.items():
        if value is None:
            options.pop(key)
        elif value in files:
            options[key] = files[value]
        else:
            options[key] = tmp_path / value if value.endswith((".png", ".xyz")) else value
    argv = [command] + [str(x) for pair in options.items() for x in pair]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray warnings on the way to the error either
        code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith(f"facestyle {command}: error:"), err
