"""Full-size photos (issue 14 item 3): FFHQ alignment, the crop, the paste-back into the whole photo with a
feathered mask, several faces and --face. The face finder is a stub returning known points (the maths
without MediaPipe); one test runs the real landmark parser when the photo extra is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from facestyle.cli import main
from facestyle.editor.align import AlignedFace, Alignment, feather
from facestyle.editor.editor import Editor
from facestyle.editor.landmarks import FaceLandmarks, LandmarkParser
from facestyle.labels import CELEBAMASK_HQ
from tests.helpers import drawn_face, tiny_checkpoint

PHOTO_W, PHOTO_H = 1600, 1200
FACE = 256  # the drawn face's side before it is warped into the photo
HAIR = CELEBAMASK_HQ.classes.index("hair")


def similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    """(2, 3) affine matrix of a similarity transform: face pixels (x, y) -> photo pixels."""
    a = math.radians(degrees)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), shift[0]],
                     [scale * math.sin(a), scale * math.cos(a), shift[1]]])


def apply(t: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ t[:, :2].T + t[:, 2]


def warp_into(face: np.ndarray, t: np.ndarray, canvas: np.ndarray, resample: int) -> np.ndarray:
    """``face`` (h, w[, 3]) warped by ``t`` into ``canvas`` (PIL's affine transform: independent of the
    code under test); the canvas shows where the face does not reach."""
    inv = np.linalg.inv(np.vstack([t, [0, 0, 1]]))[:2]
    size = (canvas.shape[1], canvas.shape[0])
    warped = np.asarray(Image.fromarray(face).transform(size, Image.AFFINE, inv.flatten().tolist(), resample))
    inside = np.asarray(Image.new("L", (face.shape[1], face.shape[0]), 255).transform(
        size, Image.AFFINE, inv.flatten().tolist(), Image.NEAREST)) > 0
    out = canvas.copy()
    out[inside] = warped[inside]
    return out


# the drawn face's eyes and mouth corners in its own pixels (tests.helpers.drawn_face): the person's right
# eye is on the image's left
EYES = np.array([[0.4, 0.42], [0.6, 0.42]]) * FACE
MOUTH = np.array([[0.42, 0.615], [0.58, 0.615]]) * FACE


def stub_face(t: np.ndarray, scale: float = 1.0) -> FaceLandmarks:
    """A 478-point face whose irises and mouth corners are the drawn face's, mapped by ``t``; the rest of
    the points on a circle around the face (its size ranks it)."""
    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    points = np.stack([0.5 + 0.3 * scale * np.cos(angles), 0.5 + 0.35 * scale * np.sin(angles)], -1) * FACE
    points[468:473] = EYES[0]
    points[473:478] = EYES[1]
    points[61], points[291] = MOUTH
    return FaceLandmarks(apply(t, points))


def make_photo(tmp_path, scale: float = 1.0) -> tuple:
    """A 1600x1200 photo (times ``scale``; smooth noise) with a drawn face warped into it off-centre, its
    label map, and the transform; plus a 64 px reference face."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    w, h = round(PHOTO_W * scale), round(PHOTO_H * scale)
    canvas = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))
    face, labels = drawn_face(0, FACE)
    t = similarity(2.2 * scale, 12.0, (1050.0 * scale, 260.0 * scale))
    photo = warp_into(face, t, canvas, Image.BICUBIC)
    photo_labels = warp_into(labels, t, np.zeros((h, w), np.uint8), Image.NEAREST)
    Image.fromarray(photo).save(tmp_path / "big.png", compress_level=1)
    Image.fromarray(photo_labels).save(tmp_path / "big_labels.png", compress_level=1)
    ref, ref_labels = drawn_face(5, 64, colours=(120, 250))
    Image.fromarray(ref).save(tmp_path / "ref.png")
    Image.fromarray(ref_labels).save(tmp_path / "ref_labels.png")
    return tmp_path, t


@pytest.fixture
def big_photo(tmp_path):
    return make_photo(tmp_path)


@pytest.fixture
def stub_finder(monkeypatch):
    """The landmark parser's detection replaced by known faces (set ``stub_finder.faces``)."""
    class Stub:
        faces: list[FaceLandmarks] = []
        calls = 0

    def detect(self, rgb):
        Stub.calls += 1
        return sorted(Stub.faces, key=lambda f: -f.area), np.ones(rgb.shape[:2], np.float32)

    monkeypatch.setattr(LandmarkParser, "detect", detect)
    return Stub


def test_alignment_follows_the_face_and_its_inverse_is_the_identity():
    t = similarity(2.2, 12.0, (1050.0, 260.0))
    size = 64
    in_face = Alignment.from_points(*EYES, *MOUTH, size, (FACE, FACE))
    in_photo = Alignment.from_points(*apply(t, EYES), *apply(t, MOUTH), size, (PHOTO_H, PHOTO_W))
    # the crop is FFHQ's: centred between the eyes and mouth, a side of max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)
    # (the half side is max(2 * 0.2, 1.8 * 0.195) * 256 here), upright in the face's own frame
    assert in_face.scale * size == pytest.approx(2 * max(2.0 * 0.2, 1.8 * 0.195) * FACE)
    assert in_face.axes[0][1] == pytest.approx(0.0, abs=1e-9) and in_face.axes[0][0] > 0
    centre = in_face.to_photo(np.array([size / 2, size / 2]))
    eye_avg, mouth_avg = EYES.mean(0), MOUTH.mean(0)
    assert np.allclose(centre, eye_avg + 0.1 * (mouth_avg - eye_avg))
    # a similarity of the photo moves the crop with it: the same face pixels land in the same crop pixels
    uv = np.random.default_rng(1).uniform(0, size, (20, 2))
    assert np.allclose(in_photo.to_photo(uv), apply(t, in_face.to_photo(uv)), atol=1e-6)
    assert np.allclose(in_photo.to_crop(in_photo.to_photo(uv)), uv, atol=1e-9)
    # crop, then paste back with a full mask: the photo again on the face's square (a smooth photo)
    yy, xx = torch.meshgrid(torch.arange(PHOTO_H) / PHOTO_H, torch.arange(PHOTO_W) / PHOTO_W, indexing="ij")
    photo = torch.stack([torch.sin(xx * 20), torch.cos(yy * 15), torch.sin((xx + yy) * 10)]) * 0.8
    wide = in_photo.resized(256)
    crop = wide.crop(photo)
    back = wide.paste(crop, photo, torch.ones(256, 256))
    inside = wide.mask_in_photo(torch.ones(256, 256)) > 0.999
    assert inside.sum() > 0.9 * (wide.scale * 256) ** 2
    assert float((back - photo).abs()[:, inside].mean()) < 0.01
    assert torch.equal(back[:, ~(wide.mask_in_photo(torch.ones(256, 256)) > 0)],
                       photo[:, ~(wide.mask_in_photo(torch.ones(256, 256)) > 0)])


def test_feather_is_zero_away_from_the_changed_pixels_and_one_on_them():
    changed = torch.zeros(2, 128, 128, dtype=torch.bool)
    changed[0, 40:60, 50:70] = True
    m = feather(changed)
    assert m.shape == changed.shape and float(m.max()) <= 1 and float(m.min()) >= 0
    assert torch.all(m[0][changed[0]] > 0.999)
    reach = 2 + math.ceil(2 * 1.0)  # dilate 128/64, blur sigma 128/128 cut at 2 sigma
    far = torch.ones(128, 128, dtype=torch.bool)
    far[40 - reach:60 + reach, 50 - reach:70 + reach] = False
    assert torch.all(m[0][far] == 0) and torch.all(m[1] == 0)


def test_a_large_photo_comes_back_whole_with_only_the_edited_face_changed(big_photo, stub_finder, tmp_path):
    folder, t = big_photo
    stub_finder.faces = [stub_face(t)]
    editor = Editor.from_pretrained(tiny_checkpoint(tmp_path / "ckpt"), device="cpu", parser="none")
    face = editor.align(str(folder / "big.png"))
    assert isinstance(face, AlignedFace) and face.crop.shape == (3, 64, 64) and face.labels is None
    # the crop is the drawn face's own FFHQ crop: the face was found where it was put
    drawn, drawn_labels = drawn_face(0, FACE)
    own = Alignment.from_points(*EYES, *MOUTH, 64, (FACE, FACE))
    reference_crop = own.crop(torch.from_numpy(drawn).permute(2, 0, 1).float() / 127.5 - 1)
    assert float((face.crop - reference_crop).abs().mean()) < 0.08
    labels = face.crop_labels(torch.from_numpy(np.asarray(Image.open(folder / "big_labels.png")).astype(np.int64)))
    own_labels = own.crop_labels(torch.from_numpy(drawn_labels.astype(np.int64)))
    assert float((labels == own_labels).float().mean()) > 0.9

    out = editor.transfer(face, str(folder / "big_labels.png"), str(folder / "ref.png"), str(folder / "ref_labels.png"),
                          regions="hair")
    assert out.size == (PHOTO_W, PHOTO_H)
    before = np.asarray(Image.open(folder / "big.png")).astype(int)
    after = np.asarray(out).astype(int)
    diff = np.abs(after - before).max(-1) > 0
    # pixels outside the feathered mask of the moved region (hair) keep their exact values
    mask = face.alignment.mask_in_photo(feather(labels == HAIR)).numpy()
    assert not diff[mask == 0].any()
    assert diff[mask > 0.99].mean() > 0.5  # and the hair did change
    # everything changed lies on the face's square, far from the photo's edges
    ys, xs = np.nonzero(diff)
    corners = apply(t, np.array([[0, 0], [FACE, 0], [0, FACE], [FACE, FACE]]))
    assert xs.min() >= corners[:, 0].min() - 1 and xs.max() <= corners[:, 0].max() + 1
    assert ys.min() >= corners[:, 1].min() - 1 and ys.max() <= corners[:, 1].max() + 1

    # a shape edit drawn at the photo's size: only where the map changed (hair -> background), feathered
    big_labels = np.asarray(Image.open(folder / "big_labels.png"))
    Image.fromarray(np.where(big_labels == HAIR, 0, big_labels).astype(np.uint8)).save(folder / "new.png")
    out = editor.edit_shape(face, str(folder / "big_labels.png"), str(folder / "new.png"))
    diff = np.abs(np.asarray(out).astype(int) - before).max(-1) > 0
    new_labels = face.crop_labels(torch.from_numpy(np.where(big_labels == HAIR, 0, big_labels).astype(np.int64)))
    mask = face.alignment.mask_in_photo(feather(new_labels != labels)).numpy()
    assert out.size == (PHOTO_W, PHOTO_H) and diff.any() and not diff[mask == 0].any()


def test_several_faces_are_ranked_by_size_and_face_n_picks_one(big_photo, stub_finder, tmp_path, capsys):
    folder, t = big_photo
    small = similarity(0.5, 0.0, (100.0, 700.0))
    stub_finder.faces = [stub_face(small), stub_face(t)]
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    editor = Editor.from_pretrained(ckpt, device="cpu", parser="none")
    boxes = editor.faces(str(folder / "big.png"))
    assert [b.index for b in boxes] == [0, 1] and boxes[0].size > boxes[1].size
    assert boxes[1].left < 200 and boxes[0].left > 900  # the largest is the big face on the right
    second = editor.align(str(folder / "big.png"), face=1)
    assert second.index == 1 and second.alignment.scale < editor.align(str(folder / "big.png")).alignment.scale

    out = tmp_path / "out.png"
    common = ["transfer", "--checkpoint", ckpt, "--device", "cpu", "--target", folder / "big.png",
              "--target-labels", folder / "big_labels.png", "--reference", folder / "ref.png",
              "--reference-labels", folder / "ref_labels.png", "--regions", "hair"]
    assert main([str(a) for a in [*common, "--face", "0", "--out", out]]) == 0
    assert Image.open(out).size == (PHOTO_W, PHOTO_H)
    capsys.readouterr()
    assert main([str(a) for a in [*common, "--face", "2", "--out", tmp_path / "no.png"]]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "face 2 asked for, but 2 face(s) found" in err[0], err
    assert not (tmp_path / "no.png").exists()

    # parse lists the faces it found
    assert main([str(a) for a in ["parse", folder / "big.png", "--out-dir", tmp_path / "parsed", "--face", "1"]]) == 0
    listing = capsys.readouterr().out
    assert "2 face(s)" in listing and "face 0: box" in listing and "face 1: box" in listing, listing
    assert Image.open(tmp_path / "parsed" / "big.png").size == (PHOTO_W, PHOTO_H)


def test_the_landmark_parser_finds_aligns_and_pastes_back_a_real_face(real_faces, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    face = np.asarray(Image.open(real_faces / "images" / "maskgan-0.png").convert("RGB"))
    rng = np.random.default_rng(0)
    canvas = np.asarray(Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize(
        (PHOTO_W, PHOTO_H), Image.BICUBIC))
    t = similarity(2.0, -8.0, (300.0, 420.0))
    Image.fromarray(warp_into(face, t, canvas, Image.BICUBIC)).save(tmp_path / "big.png", compress_level=1)
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    code = main([str(a) for a in ["transfer", "--checkpoint", ckpt, "--device", "cpu", "--target", tmp_path / "big.png",
                                  "--reference", real_faces / "images" / "maskgan-0.png", "--regions", "hair",
                                  "--out", tmp_path / "out.png"]])
    assert code == 0, capsys.readouterr().err
    out = np.asarray(Image.open(tmp_path / "out.png")).astype(int)
    before = np.asarray(Image.open(tmp_path / "big.png")).astype(int)
    assert out.shape == before.shape == (PHOTO_H, PHOTO_W, 3)
    diff = np.abs(out - before).max(-1) > 0
    assert diff.any()
    ys, xs = np.nonzero(diff)
    corners = apply(t, np.array([[0, 0], [256, 0], [0, 256], [256, 256]]))
    margin = 0.1 * 256 * 2.0
    assert xs.min() >= corners[:, 0].min() - margin and xs.max() <= corners[:, 0].max() + margin
    assert ys.min() >= corners[:, 1].min() - margin and ys.max() <= corners[:, 1].max() + margin


def test_the_web_editor_lists_the_faces_and_returns_the_full_size_photo(stub_finder, tmp_path, monkeypatch):
    pytest.importorskip("gradio", reason="the web extra is not installed")
    from facestyle.app.server import ServerLimits, _App

    folder, t = make_photo(tmp_path, 0.5)  # 800x600: the web editor's path, at a quarter of the pixels
    stub_finder.faces = [stub_face(similarity(0.25, 0.0, (50.0, 350.0))), stub_face(t)]
    monkeypatch.setattr(LandmarkParser, "available", staticmethod(lambda: True))  # the stub stands in for MediaPipe
    app = _App(Editor.from_pretrained(tiny_checkpoint(tmp_path / "ckpt"), device="cpu"), ServerLimits())

    def no_progress(*args, **kwargs):
        return None

    target, *_, note = app.load(str(folder / "big.png"), None, "target", no_progress, session="s")
    assert "face 0 of 2" in note
    menu = app.face_menu(target)
    assert menu["visible"] and [value for _, value in menu["choices"]] == [0, 1] and menu["value"] == 0
    reference, *_ = app.load(str(folder / "ref.png"), str(folder / "ref_labels.png"), "reference", no_progress,
                             session="s")
    path, result, _ = app.transfer(target, reference, ["hair", "skin"], True, progress=no_progress)
    before = np.asarray(Image.open(folder / "big.png")).astype(int)
    after = np.asarray(Image.open(path)).astype(int)
    assert after.shape == before.shape == (PHOTO_H // 2, PHOTO_W // 2, 3)  # the download is the whole photo
    diff = np.abs(after - before).max(-1) > 0
    ys, xs = np.nonzero(diff)
    assert len(xs) and xs.min() > 450 and ys.max() < 500  # only the large face on the right changed
    target, *_, note = app.load(str(folder / "big.png"), None, "target", no_progress, session="s", face=1)
    assert "face 1 of 2" in note and app.face_menu(target)["value"] == 1
