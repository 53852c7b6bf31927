"""The Editor (facestyle.editor.editor): input kinds, sizes, batching, regional transfer and its warnings, bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facestyle.checkpoint import demo_dir
from facestyle.config import get_preset
from facestyle.editor.editor import Editor, RegionAbsentWarning
from facestyle.errors import CheckpointError, InputError
from facestyle.io import load_image, load_labels, shared_root
from facestyle.labels import CELEBAMASK_HQ
from facestyle.model import FaceStyleNet

HAIR = CELEBAMASK_HQ.classes.index("hair")
ALL_REGIONS = [r for r, classes in CELEBAMASK_HQ.regions.items() if classes]


# ---------------------------------------------------------------------- fixtures


def synthetic_face(seed: int, height: int = 96, width: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """A drawn face: (H, W, 3) uint8 photo and (H, W) CelebAMask-HQ labels (background, cloth, neck, hair,
    skin, ears, brows, eyes, nose, lips, mouth)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    cx = 0.5 + rng.uniform(-0.04, 0.04)

    def ellipse(cy: float, ex: float, ry: float, rx: float) -> np.ndarray:
        return ((y - cy) / ry) ** 2 + ((x - ex) / rx) ** 2 <= 1

    labels = np.zeros((height, width), np.int64)
    labels[y > 0.85] = 18  # cloth
    labels[(y > 0.65) & (np.abs(x - cx) < 0.12)] = 17  # neck
    labels[ellipse(0.38, cx, 0.34 + rng.uniform(0, 0.08), 0.34)] = 13  # hair
    labels[ellipse(0.45, cx - 0.27, 0.07, 0.04)] = 8
    labels[ellipse(0.45, cx + 0.27, 0.07, 0.04)] = 9
    labels[ellipse(0.46, cx, 0.27, 0.24)] = 1  # skin
    for cls, dx in ((6, -0.1), (7, 0.1)):
        labels[ellipse(0.36, cx + dx, 0.02, 0.06)] = cls
    for cls, dx in ((4, -0.1), (5, 0.1)):
        labels[ellipse(0.42, cx + dx, 0.025, 0.05)] = cls
    labels[ellipse(0.5, cx, 0.06, 0.03)] = 2
    labels[ellipse(0.6, cx, 0.025, 0.09)] = 11
    labels[ellipse(0.635, cx, 0.025, 0.08)] = 12
    labels[ellipse(0.617, cx, 0.008, 0.07)] = 10
    colours = rng.integers(30, 226, size=(CELEBAMASK_HQ.num_classes, 3))
    photo = colours[labels] + rng.normal(0, 8, size=(height, width, 3))
    return np.clip(photo, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def editor(tiny_checkpoint) -> Editor:
    return Editor.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="session")
def plain_editor() -> Editor:
    """Random generator weights, MRSA off: a transfer is a pure code swap (SEAN's)."""
    torch.manual_seed(1)
    return Editor(FaceStyleNet(dataclasses.replace(get_preset("tiny").model, attention="off")))


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> list[tuple[Path, Path]]:
    """(photo, label map) files: real shared faces (256x256) when present, else drawn ones (96x80)."""
    root = shared_root()
    if root is not None and (root / "data" / "faces" / "images").is_dir():
        images = sorted((root / "data" / "faces" / "images").glob("*.png"))[:6]
        pairs = [(p, root / "data" / "faces" / "labels" / p.name) for p in images]
        if len(pairs) == 6 and all(lab.is_file() for _, lab in pairs):
            return pairs
    folder = tmp_path_factory.mktemp("faces")
    pairs = []
    for i in range(6):
        photo, labels = synthetic_face(i)
        Image.fromarray(photo).save(folder / f"face{i}.png")
        Image.fromarray(labels.astype(np.uint8), "L").save(folder / f"face{i}_labels.png")
        pairs.append((folder / f"face{i}.png", folder / f"face{i}_labels.png"))
    return pairs


@contextlib.contextmanager
def allow_absent_regions():
    """Region-absent warnings are expected here (not every face has a hat or earrings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegionAbsentWarning)
        yield


def region_mask(labels: torch.Tensor, region: str) -> torch.Tensor:
    return torch.isin(labels, torch.tensor(CELEBAMASK_HQ.region_classes(region)))


# ---------------------------------------------------------------------- inputs and outputs


def test_every_input_kind_gives_the_same_result(editor, faces):
    image_path, labels_path = faces[0]
    photo = np.array(Image.open(image_path).convert("RGB"))
    label_map = np.array(Image.open(labels_path))
    expected = editor.reconstruct(image_path, labels_path, return_tensors=True)
    kinds = {
        "str paths": (str(image_path), str(labels_path)),
        "PIL": (Image.open(image_path), Image.open(labels_path)),
        "numpy uint8": (photo, label_map),
        "numpy float": (photo.astype(np.float32) / 255.0, label_map.astype(np.int32)),
        "tensor": (load_image(image_path), torch.from_numpy(label_map.astype(np.int64))),
        "uint8 tensor": (torch.from_numpy(photo).permute(2, 0, 1), torch.from_numpy(label_map)),
    }
    for kind, (image, labels) in kinds.items():
        out = editor.reconstruct(image, labels, return_tensors=True)
        assert out.shape == expected.shape, kind
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0, msg=kind)
    batch = editor.reconstruct([image_path, photo], [labels_path, label_map], return_tensors=True)
    assert isinstance(batch, list) and len(batch) == 2
    for out in batch:
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    stacked = editor.reconstruct(load_image(image_path)[None].repeat(2, 1, 1, 1),
                                 torch.from_numpy(label_map.astype(np.int64))[None].repeat(2, 1, 1),
                                 return_tensors=True)
    assert stacked.shape == (2, *expected.shape)
    torch.testing.assert_close(stacked[1], expected, atol=1e-5, rtol=0)


def test_output_forms(editor, faces):
    (image, labels), (image2, labels2) = faces[:2]
    single = editor.reconstruct(image, labels)
    assert isinstance(single, Image.Image) and single.mode == "RGB"
    assert single.size == Image.open(image).size
    many = editor.reconstruct([image, image2], [labels, labels2])
    assert isinstance(many, list) and all(isinstance(im, Image.Image) for im in many)
    tensor = editor.reconstruct(image, labels, return_tensors=True)
    assert tensor.ndim == 3 and tensor.shape[0] == 3
    assert tensor.min() >= -1 and tensor.max() <= 1
    np.testing.assert_allclose(np.asarray(single, dtype=np.float32), ((tensor.numpy() + 1) * 127.5).transpose(1, 2, 0),
                               atol=0.51)


def test_output_has_the_photo_size():
    torch.manual_seed(0)
    editor = Editor(FaceStyleNet(get_preset("tiny").model))
    photo, labels = synthetic_face(3, height=96, width=80)
    out = editor.reconstruct(photo, labels)
    assert out.size == (80, 96)
    # A label map at another size (same aspect) is fitted to its photo first.
    half = labels[::2, ::2].copy()
    assert editor.reconstruct(photo, half).size == (80, 96)
    out = editor.transfer(photo, labels, *synthetic_face(4, height=200, width=200), regions="hair",
                          return_tensors=True)
    assert out.shape == (3, 96, 80)
    with pytest.raises(InputError, match="aspect ratio"):
        editor.reconstruct(photo, labels.T.copy())


def test_raw_celebamask_sizes(editor, real_faces_raw):
    """CelebAMask-HQ ships 1024x1024 photos with 512x512 label maps: the map is fitted to its photo."""
    image = real_faces_raw / "images" / "maskgan-0.jpg"
    labels = real_faces_raw / "labels" / "maskgan-0.png"
    if not (image.is_file() and labels.is_file()):
        pytest.skip("maskgan-0 not in the shared raw faces")
    out = editor.transfer(image, labels, image, labels, regions="hair")
    assert out.size == Image.open(image).size


def test_batches_of_mixed_sizes_match_single_calls(editor, faces):
    big_photo, big_labels = faces[0]
    small_photo, small_labels = synthetic_face(5, height=96, width=80)
    outs = editor.reconstruct([big_photo, small_photo], [big_labels, small_labels], return_tensors=True)
    # float32 GEMMs block differently at batch 2 and 1: rounding, not a mix-up (that differs by ~1e-1)
    torch.testing.assert_close(outs[0], editor.reconstruct(big_photo, big_labels, return_tensors=True),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(outs[1], editor.reconstruct(small_photo, small_labels, return_tensors=True),
                               atol=1e-4, rtol=0)


def test_transfer_broadcasts_one_reference_or_one_target(editor, faces):
    (t0, l0), (t1, l1), (r, rl) = faces[:3]
    pair = editor.transfer([t0, t1], [l0, l1], r, rl, regions=["hair"], return_tensors=True)
    assert len(pair) == 2
    torch.testing.assert_close(pair[1], editor.transfer(t1, l1, r, rl, regions=["hair"], return_tensors=True),
                               atol=1e-5, rtol=0)
    fan = editor.transfer(t0, l0, [t1, r], [l1, rl], regions="hair")
    assert isinstance(fan, list) and len(fan) == 2
    with pytest.raises(InputError, match="2 targets and 3 references"):
        editor.transfer([t0, t1], [l0, l1], [r, r, r], [rl, rl, rl])


# ---------------------------------------------------------------------- transfer


def test_transfer_with_every_named_region(editor, faces):
    (target, target_labels), (reference, reference_labels) = faces[:2]
    size = Image.open(target).size
    for region in ALL_REGIONS:
        with allow_absent_regions():
            out = editor.transfer(target, target_labels, reference, reference_labels, regions=[region])
        assert out.size == size, region
    with allow_absent_regions():
        out = editor.transfer(target, target_labels, reference, reference_labels, regions=",".join(ALL_REGIONS))
    assert out.size == size


def test_unknown_region_lists_the_valid_ones(editor, faces):
    (target, target_labels), (reference, reference_labels) = faces[:2]
    with pytest.raises(InputError, match=r"unknown region 'beard'.*skin, hair, eyes"):
        editor.transfer(target, target_labels, reference, reference_labels, regions=["beard"])


def test_region_absent_from_reference_warns_and_keeps_the_target_style(editor, faces, caplog):
    (target, target_labels), (reference, reference_labels) = faces[:2]
    target_map = load_labels(target_labels, CELEBAMASK_HQ)
    assert (target_map == HAIR).any()
    bald = load_labels(reference_labels, CELEBAMASK_HQ).clone()
    bald[bald == HAIR] = 0
    with caplog.at_level(logging.WARNING, logger="facestyle"), \
            pytest.warns(RegionAbsentWarning, match="region 'hair' is absent from "):
        out = editor.transfer(target, target_map, reference, bald, regions=["hair"], return_tensors=True)
    assert any("'hair'" in r.getMessage() for r in caplog.records)
    composite = editor.transfer(target, target_map, reference, bald, regions=[], return_tensors=True)
    torch.testing.assert_close(out, composite, atol=0, rtol=0)
    torch.testing.assert_close(out, editor.reconstruct(target, target_map, return_tensors=True),
                               atol=1e-6, rtol=0)


def test_absent_warning_names_the_reference_file(editor, faces, tmp_path):
    (target, target_labels), (reference, reference_labels) = faces[:2]
    bald = load_labels(reference_labels, CELEBAMASK_HQ).numpy().astype(np.uint8)
    bald[bald == HAIR] = 0
    bald_path = tmp_path / "bald.png"
    Image.fromarray(bald, "L").save(bald_path)
    with pytest.warns(RegionAbsentWarning, match="hair") as record:
        editor.transfer(target, target_labels, str(reference), bald_path, regions="hair")
    assert str(reference) in str(record[0].message)


def test_transfer_takes_exactly_the_region_codes_from_the_reference(plain_editor, faces, monkeypatch):
    (target, target_labels), (reference, reference_labels) = faces[:2]
    ed = plain_editor
    seen: list[torch.Tensor] = []
    decode = ed.model.decode
    monkeypatch.setattr(ed.model, "decode", lambda labels, codes: seen.append(codes.clone()) or decode(labels, codes))

    def codes_of(image, labels):
        photos = ed._prepare_images(image)
        return ed.model.encode(photos.images, ed._prepare_labels(labels, photos))

    with torch.inference_mode():
        s_t, p_t = codes_of(target, target_labels)
        s_r, p_r = codes_of(reference, reference_labels)
    for region in ALL_REGIONS:
        with allow_absent_regions():
            ed.transfer(target, target_labels, reference, reference_labels, regions=[region], harmonize=False)
        codes = seen.pop()
        take = torch.zeros(CELEBAMASK_HQ.num_classes, dtype=torch.bool)
        take[list(CELEBAMASK_HQ.region_classes(region))] = True
        take &= p_t[0] & p_r[0]
        torch.testing.assert_close(codes[0][take], s_r[0][take], atol=0, rtol=0)
        torch.testing.assert_close(codes[0][~take], s_t[0][~take], atol=0, rtol=0)


@pytest.mark.parametrize("region", ["hair", "eyes", "lips", "skin"])
def test_transfer_changes_pixels_inside_the_region_more_than_outside(plain_editor, faces, region):
    """With MRSA off and no harmonization, SEAN's per-region modulation localises the change even with
    random generator weights (receptive fields spread some of it outside)."""
    ratios = []
    for a, b in ((0, 1), (2, 3), (4, 5)):
        (target, target_labels), (reference, reference_labels) = faces[a], faces[b]
        with allow_absent_regions():
            same = plain_editor.transfer(target, target_labels, reference, reference_labels, regions=[],
                                         harmonize=False, return_tensors=True)
            moved = plain_editor.transfer(target, target_labels, reference, reference_labels, regions=[region],
                                          harmonize=False, return_tensors=True)
        inside = region_mask(load_labels(target_labels, CELEBAMASK_HQ), region)
        if not inside.any() or inside.all():
            continue
        change = (moved - same).abs().mean(0)
        ratios.append(float(change[inside].mean() / change[~inside].mean()))
    assert ratios and np.mean(ratios) > 1.1, ratios


def test_harmonize_switch_reaches_mrsa(tiny_checkpoint, faces):
    editor = Editor.from_pretrained(tiny_checkpoint)
    with torch.no_grad():
        editor.model.mrsa.alpha.fill_(1.0)  # at 0 (its initial value) MRSA is the identity
    (target, target_labels), (reference, reference_labels) = faces[:2]
    on = editor.transfer(target, target_labels, reference, reference_labels, regions="hair", return_tensors=True)
    off = editor.transfer(target, target_labels, reference, reference_labels, regions="hair", harmonize=False,
                          return_tensors=True)
    assert (on - off).abs().max() > 1e-4


@pytest.mark.skipif(not (demo_dir() / "config.json").is_file(), reason="the bundled demo model is not built yet")
def test_demo_transfer_is_regional(faces):
    editor = Editor.from_pretrained("demo")
    (target, target_labels), (reference, reference_labels) = faces[:2]
    inside_labels = load_labels(target_labels, CELEBAMASK_HQ)
    base = editor.transfer(target, target_labels, reference, reference_labels, regions=[], return_tensors=True)
    for region in ALL_REGIONS:
        inside = region_mask(inside_labels, region)
        if not inside.any() or inside.all():
            continue
        with allow_absent_regions():
            out = editor.transfer(target, target_labels, reference, reference_labels, regions=[region],
                                  return_tensors=True)
        change = (out - base).abs().mean(0)
        if change.max() == 0:  # absent from the reference
            continue
        assert change[inside].mean() > change[~inside].mean(), region


@pytest.mark.skipif(not (demo_dir() / "config.json").is_file(), reason="the bundled demo model is not built yet")
def test_the_package_loads_the_demo_network_as_the_editor_does():
    import facestyle

    assert {"Editor", "FaceStyleNet", "FaceParser"} <= set(facestyle.__all__)
    model = facestyle.FaceStyleNet.from_pretrained("demo")
    editor_model = facestyle.Editor.from_pretrained("demo").model
    assert isinstance(model, FaceStyleNet) and model.config == editor_model.config
    ours, theirs = model.state_dict(), editor_model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


# ---------------------------------------------------------------------- bad input


def test_label_value_outside_the_set(editor, faces):
    image, labels = faces[0]
    bad = load_labels(labels, CELEBAMASK_HQ).clone()
    bad[0, 0] = 25
    with pytest.raises(InputError, match=r"value 25 is outside the celebamask-hq label set"):
        editor.reconstruct(image, bad)


def test_a_palette_colour_label_map_is_read_as_its_classes_and_a_photo_is_refused(editor, faces):
    image, labels = faces[0]
    colours = Image.fromarray(CELEBAMASK_HQ.colorize(load_labels(labels, CELEBAMASK_HQ).numpy()))
    expected = np.asarray(editor.reconstruct(image, labels))
    assert np.array_equal(np.asarray(editor.reconstruct(image, colours)), expected)
    assert np.array_equal(np.asarray(editor.reconstruct(image, np.asarray(colours))), expected)
    noise = np.random.default_rng(0).integers(0, 256, (*np.asarray(colours).shape[:2], 3), dtype=np.uint8)
    with pytest.raises(InputError, match="palette colours"):
        editor.reconstruct(image, noise)


@pytest.mark.parametrize("image, message", [
    (np.full((64, 64, 3), 200.0, np.float32), r"\[0, 1\]"),
    (torch.full((3, 64, 64), 3.0), r"\[-1, 1\]"),
    (torch.zeros(5, 64, 64), r"\(3, H, W\)"),
    (np.zeros((64, 64, 7), np.uint8), "image array"),
    (42, "expected a path, PIL image"),
    ([], "no image"),
])
def test_bad_images(editor, image, message):
    with pytest.raises(InputError, match=message):
        editor.reconstruct(image, np.zeros((64, 64), np.int64))


def test_missing_and_non_image_files(editor, faces, tmp_path):
    image, labels = faces[0]
    with pytest.raises(InputError, match="no such file"):
        editor.reconstruct(tmp_path / "nope.png", labels)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        editor.reconstruct(text, labels)
    with pytest.raises(InputError, match="one label map per photo"):
        editor.reconstruct([image, image], [labels])
    with pytest.raises(InputError, match="whole class indices"):
        editor.reconstruct(image, np.full(Image.open(image).size[::-1], 1.5))


def test_bad_checkpoints(tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Editor.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a facestyle checkpoint"):
        Editor.from_pretrained(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="made for the celebamask-hq label set, not lapa"):
        Editor.from_pretrained(tiny_checkpoint, label_set="lapa")
    with pytest.raises(InputError, match="unknown label set"):
        Editor.from_pretrained(tiny_checkpoint, label_set="helen")
    with pytest.raises(InputError, match="unknown device"):
        Editor.from_pretrained(tiny_checkpoint, device="toaster")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            Editor.from_pretrained(tiny_checkpoint, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(tiny_checkpoint, faces):
    (target, target_labels), (reference, reference_labels) = faces[:2]
    cpu = Editor.from_pretrained(tiny_checkpoint, device="cpu")  # the default (auto) would pick the GPU
    gpu = Editor.from_pretrained(tiny_checkpoint, device="cuda")
    expected = cpu.transfer(target, target_labels, reference, reference_labels, return_tensors=True)
    out = gpu.transfer(target, target_labels, reference, reference_labels, return_tensors=True)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), expected, atol=2e-3, rtol=0)
    on_device = gpu.reconstruct(load_image(target).cuda(), load_labels(target_labels, CELEBAMASK_HQ).cuda())
    assert on_device.size == Image.open(target).size
