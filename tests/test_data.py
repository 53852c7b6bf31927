"""Image/label I/O, the datasets (raw CelebAMask-HQ, folders, LaPa), transforms and the --data grammar."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facestyle.data import (
    CelebAMaskHQ,
    FolderDataset,
    LaPa,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    SyntheticFaces,
    add_data_arguments,
    dataset_from_args,
    eval_transform,
    parse_data_spec,
    prepare_celebamask_hq,
    render,
    resize_labels_centered,
    sample_face,
    train_transform,
)
from facestyle.data.celebamask import ANNO_DIR, IMAGE_DIR, PARTS
from facestyle.errors import InputError
from facestyle.io import load_image, load_labels, save_image, save_labels, shared_root, to_pil
from facestyle.labels import CELEBAMASK_HQ, LAPA


def write_rgb(path: Path, height: int = 16, width: int = 16, seed: int = 0) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def write_label(path: Path, labels: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), "L").convert(mode).save(path)


def stripes(height: int = 16, width: int = 16, classes: int = 19) -> np.ndarray:
    return (np.arange(height * width).reshape(height, width) // 7) % classes


def make_folder(root: Path, names: list[str], size: int = 16) -> None:
    for i, name in enumerate(names):
        write_rgb(root / "images" / f"{name}.png", size, size, seed=i)
        write_label(root / "labels" / f"{name}.png", stripes(size, size))


# ---------------------------------------------------------------------- imageio


def test_load_image_modes(tmp_path):
    rgb = write_rgb(tmp_path / "a.png", 8, 12)
    image = load_image(tmp_path / "a.png")
    assert image.dtype == torch.float32 and image.shape == (3, 8, 12)
    assert image.min() >= -1 and image.max() <= 1
    assert torch.equal(image, torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1)

    Image.fromarray(np.dstack([rgb, np.zeros((8, 12), np.uint8)]), "RGBA").save(tmp_path / "alpha.png")
    assert torch.equal(load_image(tmp_path / "alpha.png"), image)  # alpha dropped, not composited

    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (3, 8, 12) and torch.equal(gray[0], gray[2]) and torch.equal(gray[0], image[0])

    smooth = np.broadcast_to(np.linspace(0, 255, 12, dtype=np.uint8)[None, :, None], (8, 12, 3))
    Image.fromarray(np.ascontiguousarray(smooth)).save(tmp_path / "s.jpg", quality=95)
    expected = torch.from_numpy(smooth.copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert (load_image(tmp_path / "s.jpg") - expected).abs().max() < 0.05


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_text("not an image"), "not an image"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "face.png"),
])
def test_load_errors_name_the_file(tmp_path, make, message):
    path = tmp_path / "face.png"
    make(path)
    for load in (load_image, lambda p: load_labels(p, CELEBAMASK_HQ)):
        with pytest.raises(InputError, match=message) as info:
            load(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_labels_modes(tmp_path):
    labels = stripes(8, 10)
    write_label(tmp_path / "l.png", labels)
    out = load_labels(tmp_path / "l.png", CELEBAMASK_HQ)
    assert out.dtype == torch.int64 and out.shape == (8, 10) and np.array_equal(out.numpy(), labels)

    pal = Image.fromarray(labels.astype(np.uint8), "P")
    pal.putpalette(np.array(CELEBAMASK_HQ.palette, dtype=np.uint8).ravel().tolist())
    pal.save(tmp_path / "p.png")
    assert np.array_equal(load_labels(tmp_path / "p.png", CELEBAMASK_HQ).numpy(), labels)

    write_label(tmp_path / "gray_rgb.png", labels, mode="RGB")  # three equal channels: accepted
    assert np.array_equal(load_labels(tmp_path / "gray_rgb.png", CELEBAMASK_HQ).numpy(), labels)


def test_load_labels_refuses_colour_maps_and_foreign_values(tmp_path):
    Image.fromarray(CELEBAMASK_HQ.colorize(stripes(8, 8))).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match=r"colour\.png is not single-channel \(mode RGB\); expected a class-index"):
        load_labels(tmp_path / "colour.png", CELEBAMASK_HQ)

    write_label(tmp_path / "lapa.png", np.full((4, 4), 12))
    with pytest.raises(InputError, match="value 12 is outside the lapa label set") as info:
        load_labels(tmp_path / "lapa.png", LAPA)
    assert str(tmp_path / "lapa.png") in str(info.value)


def test_save_is_atomic_and_round_trips(tmp_path):
    image = torch.rand(3, 9, 7) * 2 - 1
    save_image(image, tmp_path / "out" / "x.png")
    back = load_image(tmp_path / "out" / "x.png")
    assert (back - image).abs().max() <= 1 / 127.5 + 1e-6
    assert np.array_equal(np.asarray(to_pil(image)), np.asarray(Image.open(tmp_path / "out" / "x.png")))

    labels = torch.from_numpy(stripes(9, 7))
    save_labels(labels, tmp_path / "out" / "y.png")
    assert torch.equal(load_labels(tmp_path / "out" / "y.png", CELEBAMASK_HQ), labels)
    save_labels(labels.flip(0), tmp_path / "out" / "y.png")  # replaces the existing file
    assert torch.equal(load_labels(tmp_path / "out" / "y.png", CELEBAMASK_HQ), labels.flip(0))
    assert sorted(os.listdir(tmp_path / "out")) == ["x.png", "y.png"]  # no temporary file left

    with pytest.raises(InputError, match="losslessly"):
        save_labels(labels, tmp_path / "y.jpg")
    with pytest.raises(ValueError):
        save_labels(labels + 300, tmp_path / "z.png")
    assert not (tmp_path / "z.png").exists()


def test_shared_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESTYLE_SHARED", str(tmp_path))
    assert shared_root() == tmp_path
    monkeypatch.setenv("FACESTYLE_SHARED", str(tmp_path / "absent"))
    assert shared_root() is None


# ---------------------------------------------------------------------- real faces


def test_real_faces_folder(real_faces):
    dataset = FolderDataset(real_faces)
    assert dataset.label_set is CELEBAMASK_HQ
    stems = sorted(p.stem for p in (real_faces / "images").glob("*.png"))
    assert sorted(dataset.names) == stems and len(dataset) == len(stems)
    for i in (0, len(dataset) - 1):
        image, labels, name = dataset[i]
        assert image.dtype == torch.float32 and image.shape == (3, 256, 256)
        assert -1 <= image.min() < 0 < image.max() <= 1
        assert labels.dtype == torch.int64 and labels.shape == (256, 256)
        assert labels.min() >= 0 and labels.max() < CELEBAMASK_HQ.num_classes
        assert name == dataset.names[i]
        assert (labels == 1).any()  # skin


def test_smaller_label_map_is_resized_to_the_image(real_faces_raw):
    dataset = FolderDataset(real_faces_raw)
    image, labels, name = dataset[0]
    small = np.asarray(Image.open(real_faces_raw / "labels" / f"{name}.png"))
    assert image.shape[-2:] == labels.shape == (2 * small.shape[0], 2 * small.shape[1])
    assert np.array_equal(labels.numpy(), small.repeat(2, 0).repeat(2, 1))


# ---------------------------------------------------------------------- raw CelebAMask-HQ

RAW_INDICES = (5, 12, 27999, 28000)


def sample_faces(count: int) -> list[tuple[Image.Image, np.ndarray]]:
    """(image, labels) of the shared real faces, or of synthetic faces when the shared data is absent."""
    root = shared_root()
    faces = root / "data" / "faces" if root else None
    if faces is not None and faces.is_dir():
        names = sorted(p.stem for p in (faces / "labels").glob("*.png"))[:count]
        return [(Image.open(faces / "images" / f"{n}.png").convert("RGB"),
                 np.asarray(Image.open(faces / "labels" / f"{n}.png")).astype(np.int64)) for n in names]
    pairs = []
    for i in range(count):
        image, labels = render(sample_face(0, i), 64)
        pairs.append((to_pil(torch.from_numpy(image)), labels))
    return pairs


def build_raw_celebamask(root: Path) -> dict[int, np.ndarray]:
    """A tiny raw-layout copy of four faces (images at twice the masks' size)."""
    originals = {}
    for index, (image, labels) in zip(RAW_INDICES, sample_faces(len(RAW_INDICES))):
        (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        image.resize((2 * image.width, 2 * image.height), Image.BICUBIC).save(root / IMAGE_DIR / f"{index}.jpg")
        folder = root / ANNO_DIR / str(index // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        for cls, part in enumerate(PARTS, start=1):
            # like the real masks, "skin" covers the whole face; the parts merged after it overwrite it
            mask = (labels >= 1) & (labels <= 12) if part == "skin" else labels == cls
            if mask.any():
                mode = "RGB" if part == "nose" else "L"  # the real masks come in both kinds
                Image.fromarray(mask.astype(np.uint8) * 255).convert(mode).save(folder / f"{index:05d}_{part}.png")
        originals[index] = labels
    return originals


@pytest.fixture(scope="module")
def raw_celebamask(tmp_path_factory):
    root = tmp_path_factory.mktemp("CelebAMask-HQ")
    return root, build_raw_celebamask(root)


def test_raw_celebamask_merges_parts_and_splits_at_28000(raw_celebamask):
    root, originals = raw_celebamask
    train, test, everything = (CelebAMaskHQ(root, split=s) for s in ("train", "test", "all"))
    assert train.names == ["5", "12", "27999"] and test.names == ["28000"]
    assert everything.names == ["5", "12", "27999", "28000"]
    assert train.label_set is CELEBAMASK_HQ
    for dataset in (train, test):
        for i, name in enumerate(dataset.names):
            image, labels, got_name = dataset[i]
            assert got_name == name
            size = 2 * originals[int(name)].shape[0]
            assert image.shape == (3, size, size) and image.dtype == torch.float32
            assert labels.shape == (size, size) and labels.dtype == torch.int64
            assert np.array_equal(dataset.load_labels(i), originals[int(name)])
            assert np.array_equal(labels.numpy(), originals[int(name)].repeat(2, 0).repeat(2, 1))


def test_prepare_celebamask_hq_gives_the_same_items(raw_celebamask, tmp_path):
    root, _ = raw_celebamask
    assert prepare_celebamask_hq(root, tmp_path / "prepared", split="all", progress=False) == len(RAW_INDICES)
    assert prepare_celebamask_hq(root, tmp_path / "prepared", split="all", progress=False) == 0  # resumes
    prepared = FolderDataset(tmp_path / "prepared")
    raw = CelebAMaskHQ(root, split="all")
    assert prepared.names == raw.names
    for i in range(len(raw)):
        for a, b in zip(raw[i][:2], prepared[i][:2]):
            assert torch.equal(a, b)
    assert not list((tmp_path / "prepared").rglob("*.tmp"))


def test_raw_celebamask_errors(tmp_path, raw_celebamask):
    with pytest.raises(InputError, match="no such folder"):
        CelebAMaskHQ(tmp_path / "absent")
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match=f"not a CelebAMask-HQ folder: expected {IMAGE_DIR}"):
        CelebAMaskHQ(tmp_path)
    with pytest.raises(InputError, match="split"):
        CelebAMaskHQ(raw_celebamask[0], split="val")
    # an image without any part mask fails when read, naming the image
    root = tmp_path / "raw"
    (root / ANNO_DIR).mkdir(parents=True)
    write_rgb(root / IMAGE_DIR / "7.jpg")
    dataset = CelebAMaskHQ(root, split="train")
    with pytest.raises(InputError, match="00007_<part>.png for image 7"):
        dataset[0]
    with pytest.raises(InputError, match="no images of the test split"):
        CelebAMaskHQ(root, split="test")


# ---------------------------------------------------------------------- folders and LaPa


def test_folder_layouts(tmp_path):
    make_folder(tmp_path / "flat", ["10", "2", "b", "a"])
    (tmp_path / "flat" / "images" / "notes.txt").write_text("ignored")
    flat = FolderDataset(tmp_path / "flat")
    assert flat.names == ["2", "10", "a", "b"]
    assert FolderDataset(tmp_path / "flat", split="test").names == flat.names  # a flat folder has no splits

    make_folder(tmp_path / "sean" / "train", ["t1", "t2"])
    make_folder(tmp_path / "sean" / "test", ["s1"])
    assert FolderDataset(tmp_path / "sean", split="train").names == ["t1", "t2"]
    assert FolderDataset(tmp_path / "sean", split="test").names == ["s1"]
    assert FolderDataset(tmp_path / "sean", split="all").names == ["s1", "t1", "t2"]
    with pytest.raises(InputError, match="has no 'val' split; it has: test, train"):
        FolderDataset(tmp_path / "sean", split="val")
    with pytest.raises(InputError, match=r"has split folders \(test, train\); choose a split"):
        FolderDataset(tmp_path / "sean")


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match="absent: no such folder"):
        FolderDataset(tmp_path / "absent")

    make_folder(tmp_path / "d", ["a", "b", "c"])
    write_rgb(tmp_path / "d" / "images" / "lonely.jpg")
    with pytest.raises(InputError, match=r"1 image\(s\) without a label .*: lonely\.jpg"):
        FolderDataset(tmp_path / "d")
    (tmp_path / "d" / "images" / "lonely.jpg").unlink()
    write_label(tmp_path / "d" / "labels" / "extra.png", stripes())  # a label without an image is ignored
    assert FolderDataset(tmp_path / "d").names == ["a", "b", "c"]

    write_label(tmp_path / "d" / "labels" / "b.png", np.full((16, 16), 23))
    Image.fromarray(CELEBAMASK_HQ.colorize(stripes())).save(tmp_path / "d" / "labels" / "c.png")
    dataset = FolderDataset(tmp_path / "d")
    with pytest.raises(InputError, match=r"b\.png: value 23 is outside the celebamask-hq label set"):
        dataset[1]
    with pytest.raises(InputError, match=r"c\.png is not single-channel \(mode RGB\)"):
        dataset[2]
    (tmp_path / "d" / "images" / "a.png").write_text("this is not a picture")
    with pytest.raises(InputError, match=r"a\.png: not an image"):
        dataset[0]

    (tmp_path / "e" / "images").mkdir(parents=True)
    with pytest.raises(InputError, match="no labels/ folder"):
        FolderDataset(tmp_path / "e")
    (tmp_path / "e" / "labels").mkdir()
    with pytest.raises(InputError, match="no images"):
        FolderDataset(tmp_path / "e")


def test_lapa(tmp_path):
    for split, names in (("train", ["1", "2"]), ("val", ["3"]), ("test", ["4"])):
        for name in names:
            write_rgb(tmp_path / split / "images" / f"{name}.jpg", 12, 20)
            write_label(tmp_path / split / "labels" / f"{name}.png", np.arange(60).reshape(6, 10) % 11)
    train = LaPa(tmp_path, "train")
    assert train.label_set is LAPA and train.names == ["1", "2"]
    image, labels, name = LaPa(tmp_path, "val")[0]
    assert name == "3" and image.shape == (3, 12, 20) and labels.shape == (12, 20) and labels.max() == 10


# ---------------------------------------------------------------------- transforms


def test_resize_crop():
    image, labels = torch.rand(3, 40, 30) * 2 - 1, torch.arange(1200).reshape(40, 30)
    out_image, out_labels = Resize(20)(image, labels)
    assert out_image.shape == (3, 20, 20) and out_labels.shape == (20, 20) and out_labels.dtype == torch.int64
    assert out_image.abs().max() <= 1
    assert set(out_labels.unique().tolist()) <= set(labels.unique().tolist())
    assert torch.equal(resize_labels_centered(labels, (80, 60)), labels.repeat_interleave(2, 0).repeat_interleave(2, 1))

    crop = RandomCrop(16, generator=torch.Generator().manual_seed(3))
    a = crop(image, labels)
    b = RandomCrop(16, generator=torch.Generator().manual_seed(3))(image, labels)
    assert a[0].shape == (3, 16, 16) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    top, left = divmod(int(a[1][0, 0]), 30)  # the crop cuts image and labels at the same place
    assert torch.equal(labels[top:top + 16, left:left + 16], a[1])
    assert torch.equal(image[:, top:top + 16, left:left + 16], a[0])
    with pytest.raises(ValueError):
        RandomCrop(64)(image, labels)


def test_flip_swaps_left_and_right_classes():
    labels = torch.zeros(8, 10, dtype=torch.int64)
    labels[2, 1], labels[3, 2], labels[4, 3], labels[5, 0] = 4, 6, 8, 17  # l_eye, l_brow, l_ear, neck
    image = torch.rand(3, 8, 10) * 2 - 1
    flip = RandomHorizontalFlip(CELEBAMASK_HQ, p=1.0)
    image_f, labels_f = flip(image, labels)
    assert labels_f[2, 8] == 5 and labels_f[3, 7] == 7 and labels_f[4, 6] == 9 and labels_f[5, 9] == 17
    assert torch.equal(image_f, image.flip(-1))
    assert all(torch.equal(a, b) for a, b in zip(flip(image_f, labels_f), (image, labels)))
    assert RandomHorizontalFlip(CELEBAMASK_HQ, p=0.0)(image, labels)[1] is labels


def test_train_transform_is_reproducible_with_the_global_seed():
    image, labels = torch.rand(3, 40, 40) * 2 - 1, torch.from_numpy(stripes(40, 40))
    transform = train_transform(24, 30, CELEBAMASK_HQ, flip=True)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append([transform(image, labels) for _ in range(6)])
    for (a_img, a_lab), (b_img, b_lab) in zip(*runs):
        assert a_img.shape == (3, 24, 24) and torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)
    assert len({r[1].sum().item() for r in runs[0]}) > 1  # it does vary from call to call
    image_e, labels_e = eval_transform(24)(image, labels)
    assert image_e.shape == (3, 24, 24) and labels_e.shape == (24, 24)


# ---------------------------------------------------------------------- --data


def test_parse_data_spec(tmp_path):
    make_folder(tmp_path / "f", ["a", "b"])
    folder = parse_data_spec(f"folder:{tmp_path / 'f'}", split="test", resolution=8)
    assert isinstance(folder, FolderDataset) and folder[0][0].shape == (3, 8, 8)
    assert parse_data_spec(f"folder:{tmp_path / 'f'}", label_set="lapa").label_set is LAPA
    synthetic = parse_data_spec("synthetic:20", split="test", resolution=32, seed=3)
    assert isinstance(synthetic, SyntheticFaces) and len(synthetic) == 2 and synthetic[0][0].shape == (3, 32, 32)
    assert parse_data_spec("synthetic:20", split="all").resolution == 128

    forms = "valid forms: celebamask-hq:ROOT, folder:ROOT, lapa:ROOT, synthetic:COUNT"
    for bad in ("nonsense", "imagenet:/data", "synthetic:many", "folder:"):
        with pytest.raises(InputError, match=forms):
            parse_data_spec(bad)
    with pytest.raises(InputError, match="write folder:"):
        parse_data_spec(str(tmp_path / "f"))
    for kind in ("celebamask-hq", "folder", "lapa"):
        with pytest.raises(InputError, match="nowhere does not exist"):
            parse_data_spec(f"{kind}:{tmp_path / 'nowhere'}")


def test_data_arguments():
    parser = add_data_arguments(argparse.ArgumentParser(), default_split="test")
    args = parser.parse_args(["--data", "synthetic:10", "--resolution", "16", "--seed", "4"])
    assert (args.data, args.split, args.resolution, args.seed) == ("synthetic:10", "test", 16, 4)
    dataset = dataset_from_args(args)
    assert len(dataset) == 1 and dataset[0][0].shape == (3, 16, 16) and dataset.seed == 4
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "synthetic:10", "--split", "everything"])


def test_relit_changes_are_seeded_and_follow_their_formula():
    from facestyle.data.relight import PhotometricChange, apply_changes, change_for

    assert change_for(3, 7) == change_for(3, 7) and change_for(3, 7) != change_for(3, 8)
    assert change_for(3, 7) != change_for(3, 7, salt=1)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 8, 6, generator=g) * 2 - 1
    identity = PhotometricChange(1.0, (1.0, 1.0, 1.0), 1.0, 0.0, 0.0)
    torch.testing.assert_close(apply_changes(images, [identity, identity]), images)
    change = PhotometricChange(1.5, (1.1, 1.0, 0.9), 0.8, math.pi / 2, 0.2)  # light from below (+y)
    out = apply_changes(images, [identity, change])
    torch.testing.assert_close(out[0], images[0])
    x01 = (images[1] + 1) / 2
    y = (torch.arange(8) + 0.5) / 8 * 2 - 1
    ramp = 1 + 0.2 * y[:, None]  # sin(pi/2) = 1 along y
    expected = (x01 ** 0.8 * 1.5 * torch.tensor([1.1, 1.0, 0.9])[:, None, None] * ramp).clamp(0, 1) * 2 - 1
    torch.testing.assert_close(out[1], expected, rtol=1e-5, atol=1e-6)


def test_harmony_pairs_have_their_ground_truth():
    from facestyle.data.composites import relit_pairs, synthetic_pairs

    batch = synthetic_pairs(0, [0, 1, 2], 32)
    assert batch.target.shape == batch.truth.shape == batch.composite.shape == (3, 3, 32, 32)
    assert batch.classes.any(1).all()  # every pair moves at least one class
    outside = batch.mask == 0
    # outside the moved classes the truth and the composite are the target itself
    assert torch.equal(torch.where(outside, batch.truth, 0), torch.where(outside, batch.target, 0))
    assert torch.equal(torch.where(outside, batch.composite, 0), torch.where(outside, batch.target, 0))
    inside = batch.mask > 0
    assert not torch.equal(torch.where(inside, batch.truth, 0), torch.where(inside, batch.target, 0))
    again = synthetic_pairs(0, [0, 1, 2], 32)
    assert torch.equal(again.truth, batch.truth) and torch.equal(again.classes, batch.classes)

    images, labels = batch.target, batch.target_labels
    relit = relit_pairs(images, labels, CELEBAMASK_HQ, seed=5, indices=[10, 11, 12])
    assert torch.equal(relit.truth, images) and torch.equal(relit.reference_labels, labels)
    assert not torch.equal(relit.reference, images)  # the reference is the photo after a change
    assert torch.equal(torch.where(relit.mask > 0, relit.reference, relit.target), relit.composite)
    again = relit_pairs(images, labels, CELEBAMASK_HQ, seed=5, indices=[10, 11, 12])
    assert torch.equal(again.reference, relit.reference) and torch.equal(again.classes, relit.classes)
