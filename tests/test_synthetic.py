"""Synthetic faces: determinism, resolution independence, re-rendering semantics, plausibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facestyle.data import (
    SKIN_CLASSES,
    SyntheticFaces,
    hflip,
    render,
    render_labels,
    resize_labels_centered,
    sample_face,
)
from facestyle.errors import InputError
from facestyle.labels import CELEBAMASK_HQ

C = {name: i for i, name in enumerate(CELEBAMASK_HQ.classes)}


def test_same_seed_and_index_give_the_same_face():
    a, b = sample_face(3, 7), sample_face(3, 7)
    image_a, labels_a = render(a, 64)
    image_b, labels_b = render(b, 64)
    assert np.array_equal(image_a, image_b) and np.array_equal(labels_a, labels_b)
    assert image_a.dtype == np.float32 and image_a.shape == (3, 64, 64) and -1 <= image_a.min() <= image_a.max() <= 1
    assert labels_a.dtype == np.int64 and labels_a.shape == (64, 64)
    for other in (sample_face(3, 8), sample_face(4, 7)):
        image_o, labels_o = render(other, 64)
        assert not np.array_equal(image_a, image_o) and not np.array_equal(labels_a, labels_o)


def test_resolutions_render_the_same_face():
    for index in range(5):
        face = sample_face(0, index)
        big, small = render_labels(face, 128), render_labels(face, 64)
        assert (resize_labels_centered(torch.from_numpy(big), 64).numpy() == small).mean() > 0.95
        assert np.array_equal(render(face, 64)[1], small)


def test_rerendering_with_another_face_appearance():
    a, b = sample_face(0, 1), sample_face(0, 2)
    image, labels = render(a, 96)
    same = render(a, 96, albedo_from=a)
    assert np.array_equal(same[0], image) and np.array_equal(same[1], labels)

    swapped, swapped_labels = render(a, 96, albedo_from=b, regions=list(SKIN_CLASSES))
    assert np.array_equal(swapped_labels, labels)
    skin = np.isin(labels, SKIN_CLASSES)
    assert skin.mean() > 0.1
    assert np.array_equal(swapped[:, ~skin], image[:, ~skin])  # everything else bit-identical
    assert (np.abs(swapped - image).max(0)[skin] > 1e-3).mean() > 0.95

    assert np.array_equal(render(a, 96, albedo_from=b, regions=["skin"])[0], swapped)
    everything = render(a, 96, albedo_from=b)[0]
    assert (np.abs(everything - image).max(0) > 1e-3).mean() > 0.9

    relit, relit_labels = render(a, 96, illumination=b.illumination)
    assert np.array_equal(relit_labels, labels)
    assert (np.abs(relit - image).max(0) > 1e-4).mean() > 0.95


def test_faces_are_plausible():
    common = ["background", "skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip", "hair",
              "neck", "cloth"]
    counts = np.zeros(CELEBAMASK_HQ.num_classes)
    n = 50
    for index in range(n):
        labels = render_labels(sample_face(0, index), 64)
        present = np.bincount(labels.ravel(), minlength=CELEBAMASK_HQ.num_classes) > 0
        counts += present

        def centre(name, labels=labels):
            ys, xs = np.nonzero(labels == C[name])
            return xs.mean(), ys.mean()

        # CelebAMask-HQ convention: l_* is the person's left, on the image's right
        for left, right in (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear")):
            if present[C[left]] and present[C[right]]:
                assert centre(left)[0] > centre(right)[0]
        # top to bottom: brows, eyes, nose, lips, neck
        ys = [centre(name)[1] for name in ("r_brow", "r_eye", "nose", "u_lip", "l_lip", "neck") if present[C[name]]]
        assert ys == sorted(ys)
    frequency = counts / n
    assert all(frequency[C[name]] >= 0.9 for name in common), dict(zip(CELEBAMASK_HQ.classes, frequency))
    for name in ("mouth", "eye_g", "l_ear", "ear_r", "neck_l"):
        assert 0 < frequency[C[name]] < 1, name


def test_flipped_face_keeps_left_on_the_right():
    labels = torch.from_numpy(render_labels(sample_face(0, 1), 64))
    assert labels.eq(C["l_eye"]).any() and labels.eq(C["l_brow"]).any()
    image = torch.zeros(3, 64, 64)
    _, flipped = hflip(image, labels, torch.from_numpy(CELEBAMASK_HQ.flip_permutation))
    for left in ("l_eye", "l_brow"):
        assert flipped.eq(C[left]).nonzero()[:, 1].float().mean() > 32  # still on the image's right


def test_dataset():
    dataset = SyntheticFaces(20, resolution=32, seed=5)
    assert len(dataset) == 20 and dataset.label_set is CELEBAMASK_HQ
    assert len(SyntheticFaces(20, split="train")) == 18 and SyntheticFaces(20, split="test").indices == [18, 19]
    image, labels, name = dataset[3]
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32) and image.abs().max() <= 1
    assert labels.dtype == torch.int64 and labels.shape == (32, 32) and name == dataset.names[3]
    assert np.array_equal(image.numpy(), render(sample_face(5, 3), 32)[0])
    assert dataset.params(3).index == 3
    flipped = SyntheticFaces(20, resolution=32, seed=5, transform=lambda i, l: (i.flip(-1), l.flip(-1)))
    assert torch.equal(flipped[3][0], image.flip(-1))
    for bad in (dict(count=0), dict(count=1, split="train"), dict(count=5, split="val"), dict(count=5, resolution=0)):
        with pytest.raises(InputError):
            SyntheticFaces(**bad)
