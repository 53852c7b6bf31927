"""The paper's metrics on known cases, the weight loaders against random-weight files in the published key
layouts, the harmony classifier on the shared harmonization triplets, and ``facestyle weights``."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facestyle.checkpoint import save_pretrained
from facestyle.cli import main
from facestyle.data.harmony import HarmonyDataset, find_harmony_samples
from facestyle.errors import CheckpointError, InputError, WeightsError
from facestyle.metrics import (
    LPIPS,
    FeatureCache,
    GaussianStats,
    class_mask,
    fid_folders,
    fid_from_features,
    fid_from_stats,
    frechet_distance,
    harmony_score,
    image_set_features,
    pairwise_lpips,
    psnr,
    region_diversity,
    ssim,
    to_unit_range,
)
from facestyle.nn.features.inception import FIDInceptionV3
from facestyle.nn.harmony import HarmonyClassifier, HarmonyConfig
from facestyle.train.harmony import train_harmony

# torchvision's published layouts, written out independently of the project's modules.
ALEXNET_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
VGG16_CONVS = dict(zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                       ((64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
                        (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512))))
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_FILE_SIZE = 95_628_359  # bytes, as published by pytorch-fid


pytestmark = pytest.mark.usefixtures("one_thread")


def _bundled_heads(net: str) -> Path:
    """The LPIPS v0.1 linear heads shipped inside torchmetrics."""
    import torchmetrics

    path = Path(torchmetrics.__file__).parent / "functional" / "image" / "lpips_models" / f"{net}.pth"
    if not path.is_file():
        pytest.skip(f"torchmetrics does not ship {path.name}")
    return path


def _he(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in)


def alexnet_state(g: torch.Generator) -> dict[str, torch.Tensor]:
    """Random AlexNet convolutions in torchvision's key layout."""
    state = {}
    for i, (cout, cin, k) in ALEXNET_CONVS.items():
        state[f"features.{i}.weight"] = _he((cout, cin, k, k), g)
        state[f"features.{i}.bias"] = torch.zeros(cout)
    return state


@pytest.fixture(scope="module")
def lpips_weights(tmp_path_factory) -> Path:
    """A weights folder with random AlexNet and VGG16 files in torchvision's key layout (the heads are
    found inside torchmetrics)."""
    folder = tmp_path_factory.mktemp("lpips-weights")
    g = torch.Generator().manual_seed(0)
    alex = alexnet_state(g)
    alex["classifier.1.weight"] = torch.zeros(2, 2)  # ignored (the real ones are 4096 x 9216 ...)
    torch.save(alex, folder / "alexnet-owt-7be5be79.pth")
    vgg = {}
    for i, (cout, cin) in VGG16_CONVS.items():
        vgg[f"features.{i}.weight"] = _he((cout, cin, 3, 3), g)
        vgg[f"features.{i}.bias"] = torch.zeros(cout)
    vgg["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(vgg, folder / "vgg16-397923af.pth")
    return folder


@pytest.fixture(scope="module")
def alex_lpips(lpips_weights) -> LPIPS:
    return LPIPS.load_weights("alex", lpips_weights)


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


# ---------------------------------------------------------------------------------------------- PSNR / SSIM


def test_to_unit_range_and_range_check():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    assert torch.equal(to_unit_range(x).flatten(), torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(InputError, match="to_unit_range"):
        psnr(x.expand(1, 3, 4, 4) * 1.0, x.expand(1, 3, 4, 4) * 1.0)


def test_psnr_identical_is_inf_and_noise_matches_closed_form():
    a = _images(3, 16, 0)
    assert torch.isinf(psnr(a, a)).all()
    # +-0.1 around 0.5: MSE = 0.01 exactly, PSNR = 10 log10(1 / 0.01) = 20 dB.
    signs = torch.randint(0, 2, (2, 3, 16, 16), generator=torch.Generator().manual_seed(1)) * 2 - 1
    base = torch.full((2, 3, 16, 16), 0.5)
    assert torch.allclose(psnr(base + 0.1 * signs, base), torch.tensor([20.0, 20.0]), atol=1e-4)
    # Random noise: per image 10 log10(1 / mean((a - b)^2)).
    b = (a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    expected = 10 * torch.log10(1 / (a.double() - b.double()).pow(2).mean((1, 2, 3)))
    values = psnr(b, a)
    assert values.shape == (3,)
    assert torch.allclose(values.double(), expected, atol=1e-3)


def test_ssim_identical_range_and_data_range_is_one():
    a, b = _images(4, 32, 3), _images(4, 32, 4)
    assert torch.allclose(ssim(a, a), torch.ones(4), atol=1e-5)
    values = ssim(a, b)
    assert values.shape == (4,)
    assert ((values >= -1) & (values <= 1)).all()
    assert (values < 0.5).all()  # independent noise images are far from identical
    # Constant images c1, c2: SSIM = (2 c1 c2 + C1) / (c1^2 + c2^2 + C1) with C1 = (0.01 L)^2, L = 1.
    c1, c2 = 0.02, 0.05  # dark: C1 matters
    x, y = (torch.full((1, 3, 16, 16), c, dtype=torch.float64) for c in (c1, c2))
    for_range = {L: (2 * c1 * c2 + (0.01 * L) ** 2) / (c1 ** 2 + c2 ** 2 + (0.01 * L) ** 2) for L in (1, 2)}
    assert float(ssim(x, y)) == pytest.approx(for_range[1], abs=1e-9)
    assert abs(for_range[1] - for_range[2]) > 0.02  # the wrong range would be visible
    # ... and on dark noisy images, range 2 (the [-1, 1] mistake) gives visibly other values.
    from torchmetrics.functional.image.ssim import structural_similarity_index_measure as tm_ssim

    dark = 0.2 * a
    noisy = (dark + 0.02 * torch.randn(a.shape, generator=torch.Generator().manual_seed(5))).clamp(0, 1)
    right = tm_ssim(noisy, dark, data_range=1.0, reduction="none")
    wrong = tm_ssim(noisy, dark, data_range=2.0, reduction="none")
    assert torch.allclose(ssim(noisy, dark), right, atol=1e-6)
    assert (wrong - right).abs().min() > 0.01


# ---------------------------------------------------------------------------------------------- LPIPS


def test_lpips_loads_published_layout_and_is_a_distance(alex_lpips):
    heads = torch.load(_bundled_heads("alex"), map_location="cpu", weights_only=True)
    for k, head in enumerate(alex_lpips.heads):
        assert torch.equal(head, heads[f"lin{k}.model.1.weight"].flatten())
    a, b = _images(2, 64, 6), _images(2, 64, 7)
    d_ab, d_ba = alex_lpips(a, b), alex_lpips(b, a)
    assert d_ab.shape == (2,)
    assert torch.allclose(alex_lpips(a, a), torch.zeros(2), atol=1e-7)
    assert torch.allclose(d_ab, d_ba, atol=1e-7)
    assert (d_ab > 0).all()


def test_lpips_matches_reference_arithmetic(alex_lpips):
    """Against torchmetrics' scaling layer, linear layers, normalisation and averaging on the same features."""
    from torchmetrics.functional.image.lpips import NetLinLayer, ScalingLayer, _normalize_tensor, _spatial_average

    heads = torch.load(_bundled_heads("alex"), map_location="cpu", weights_only=True)
    a, b = _images(2, 64, 8), _images(2, 64, 9)
    scaling = ScalingLayer()
    fa, fb = alex_lpips.backbone(scaling(2 * a - 1)), alex_lpips.backbone(scaling(2 * b - 1))
    expected = 0
    for k, (x, y) in enumerate(zip(fa, fb)):
        lin = NetLinLayer(x.shape[1], use_dropout=True).eval()
        lin.load_state_dict({"model.1.weight": heads[f"lin{k}.model.1.weight"]})
        expected = expected + _spatial_average(lin((_normalize_tensor(x) - _normalize_tensor(y)) ** 2))
    assert torch.allclose(alex_lpips(a, b), expected.flatten(), rtol=1e-4, atol=1e-6)


def test_lpips_vgg_backbone_and_masks(lpips_weights):
    model = LPIPS.load_weights("vgg", lpips_weights)
    a, b = _images(1, 32, 10), _images(1, 32, 11)
    full = model(a, b)
    assert float(full) > 0 and torch.allclose(model(b, a), full, atol=1e-7)
    assert torch.allclose(model(a, b, torch.ones(1, 32, 32)), full, rtol=1e-5)  # all-ones mask = plain LPIPS
    assert torch.isnan(model(a, b, torch.zeros(1, 32, 32))).all()  # empty mask: undefined


def test_lpips_missing_backbone_names_the_file(tmp_path):
    with pytest.raises(WeightsError, match="alexnet-owt-7be5be79.pth"):
        LPIPS.load_weights("alex", tmp_path)
    with pytest.raises(WeightsError, match="vgg16-397923af.pth"):
        LPIPS.load_weights("vgg", tmp_path)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "alexnet-owt-7be5be79.pth")
    with pytest.raises(WeightsError, match="features.0.weight has shape"):
        LPIPS.load_weights("alex", tmp_path)


# ---------------------------------------------------------------------------------------------- mCSD / mOCD


def test_region_diversity_change_inside_only(alex_lpips):
    size = 128
    labels = torch.zeros(size, size, dtype=torch.long)
    labels[:, : size // 2] = 1  # class 1: the left half
    base = _images(1, size, 12)
    variants = base.repeat(4, 1, 1, 1)
    noise = _images(4, size, 13)
    inside = class_mask(labels, [1])
    variants[:, :, inside] = noise[:, :, inside]  # only class 1 changes
    result = region_diversity(alex_lpips, variants, labels, [1])
    assert result.pairs == 6
    assert result.mcsd > 0
    assert result.mocd < 0.25 * result.mcsd  # only what the receptive fields leak across the border
    pairs = pairwise_lpips(alex_lpips, variants, inside)
    assert pairs.shape == (6,)
    assert result.mcsd == pytest.approx(float(pairs.mean()), rel=1e-5)
    # Swapping the roles: styles that change only the rest give the opposite picture.
    swapped = region_diversity(alex_lpips, variants, labels, [0])
    assert swapped.mcsd == pytest.approx(result.mocd, rel=1e-5)
    assert swapped.mocd == pytest.approx(result.mcsd, rel=1e-5)


# ---------------------------------------------------------------------------------------------- FID


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a = rng.normal(size=(d, d))
    sigma = a @ a.T + 0.1 * np.eye(d)
    assert frechet_distance(mu1, sigma, mu1, sigma) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(mu1, np.eye(d), mu2, np.eye(d)) == pytest.approx(float(((mu1 - mu2) ** 2).sum()))
    s1, s2 = rng.uniform(0.1, 2, d), rng.uniform(0.1, 2, d)
    expected = float(((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum() + ((mu1 - mu2) ** 2).sum())
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    c = 1.7  # sigma2 = c^2 sigma1: tr((S1 S2)^(1/2)) = c tr(S1)
    expected = (1 - c) ** 2 * np.trace(sigma) + ((mu1 - mu2) ** 2).sum()
    assert frechet_distance(mu1, sigma, mu2, c * c * sigma) == pytest.approx(expected, rel=1e-9)
    # A general pair against pytorch-fid's formula with scipy's sqrtm.
    linalg = pytest.importorskip("scipy.linalg")
    b = rng.normal(size=(d, d))
    sigma2 = b @ b.T + 0.1 * np.eye(d)
    covmean = linalg.sqrtm(sigma @ sigma2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(sigma) + np.trace(sigma2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, sigma, mu2, sigma2) == pytest.approx(reference, rel=1e-8)
    assert frechet_distance(mu2, sigma2, mu1, sigma) == pytest.approx(reference, rel=1e-8)


def test_fid_from_features_statistics():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(50, 8))
    stats = GaussianStats.from_features(torch.from_numpy(f).float())
    assert stats.mu.dtype == np.float64 and stats.count == 50
    assert np.allclose(stats.sigma, np.cov(f.astype(np.float32).astype(np.float64), rowvar=False))
    assert fid_from_features(f, f) == pytest.approx(0, abs=1e-8)
    assert fid_from_features(f, f + 1.0) == pytest.approx(8.0, rel=1e-8)  # a shift of 1 in 8 dimensions
    # Fewer vectors than dimensions: the nuclear-norm path agrees with the covariance path.
    wide_a, wide_b = rng.normal(size=(5, 12)), rng.normal(size=(7, 12)) * 2 + 0.5
    via_stats = fid_from_stats(GaussianStats.from_features(wide_a), GaussianStats.from_features(wide_b))
    assert fid_from_features(wide_a, wide_b) == pytest.approx(via_stats, rel=1e-7)
    assert fid_from_features(wide_a, wide_a) == pytest.approx(0, abs=1e-9)
    with pytest.raises(InputError):
        fid_from_features(f[:1], f)


def _inception_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random state dict with pytorch-fid's key names and shapes (the 1008-way fc included)."""
    state = {}
    for key, value in FIDInceptionV3().state_dict().items():
        if key.endswith("conv.weight"):
            state[key] = _he(tuple(value.shape), generator)
        elif key.endswith("bn.running_var") or key.endswith("bn.weight"):
            state[key] = torch.ones_like(value)
        else:  # biases, running means, num_batches_tracked
            state[key] = torch.zeros_like(value)
    state["fc.weight"] = torch.zeros(1008, 2048)
    state["fc.bias"] = torch.zeros(1008)
    return state


def test_inception_key_layout_matches_pytorch_fid():
    state = _inception_state(torch.Generator().manual_seed(0))
    floats = [v for k, v in state.items() if v.is_floating_point()]
    # Facts about the published file, independent of the project's module definitions:
    assert sum(k.endswith(".conv.weight") for k in state) == 94  # BasicConv2d layers without AuxLogits
    expected_shapes = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1), "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7), "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1), "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "fc.weight": (1008, 2048),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    payload = 4 * sum(v.numel() for v in floats)  # float32 bytes; the rest of the file is the zip's headers
    assert 0.998 * INCEPTION_FILE_SIZE < payload < INCEPTION_FILE_SIZE


@pytest.fixture(scope="module")
def inception(tmp_path_factory) -> FIDInceptionV3:
    """FIDInceptionV3 loaded from a random-weight file at the published size (~95 MB, deleted after)."""
    folder = tmp_path_factory.mktemp("fid-weights")
    path = folder / INCEPTION_FILE
    torch.save(_inception_state(torch.Generator().manual_seed(0)), path)
    model = FIDInceptionV3.load_weights(folder)
    assert model.weights_id is not None and INCEPTION_FILE in model.weights_id
    yield model
    path.unlink()


def test_inception_loader_errors(tmp_path):
    with pytest.raises(WeightsError, match=INCEPTION_FILE):
        FIDInceptionV3.load_weights(tmp_path)
    state = _inception_state(torch.Generator().manual_seed(0))
    model = FIDInceptionV3()
    without = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    model.load_pytorch_fid_state_dict(without)  # older files lack num_batches_tracked
    del without["Mixed_7c.branch_pool.conv.weight"]
    with pytest.raises(WeightsError, match="Mixed_7c.branch_pool.conv.weight"):
        model.load_pytorch_fid_state_dict(without)


def test_fid_features_and_cache(inception, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
    cache = FeatureCache(tmp_path / "cache")
    first = image_set_features(paths, inception, cache=cache)
    assert first.shape == (3, 2048) and torch.isfinite(first).all()
    assert (first >= 0).all() and first.abs().sum() > 0  # pool3 of ReLUs
    assert (cache.hits, cache.misses) == (0, 1)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    again = image_set_features(paths, inception, cache=cache)
    assert (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(again, first)
    # A changed image is a different set: recomputed, and only its row changes.
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(paths[1])
    os.utime(paths[1], ns=(paths[1].stat().st_atime_ns, paths[1].stat().st_mtime_ns + 10**9))
    changed = image_set_features(paths, inception, cache=cache)
    assert (cache.hits, cache.misses) == (1, 2)
    assert torch.allclose(changed[[0, 2]], first[[0, 2]], atol=1e-5)
    assert not torch.allclose(changed[1], first[1])
    assert fid_from_features(first, first) == pytest.approx(0, abs=1e-6)
    # Two folders: both sets come from the cache (one key, the same files).
    assert fid_folders(folder, folder, model=inception, cache=cache) == pytest.approx(0, abs=1e-6)
    assert (cache.hits, cache.misses) == (3, 2)


# ---------------------------------------------------------------------------------------------- harmony


def test_harmony_classifier_score_and_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = HarmonyClassifier(HarmonyConfig(image_size=32, width=8, depth=3))
    images = _images(3, 48, 14)
    masks = torch.zeros(3, 48, 48, dtype=torch.bool)
    masks[:, 10:30, 10:30] = True
    scores = harmony_score(model, images, masks)
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()
    model.save_pretrained(tmp_path / "clf")
    loaded = HarmonyClassifier.from_pretrained(tmp_path / "clf")
    assert loaded.config == model.config
    assert torch.allclose(harmony_score(loaded, images, masks), scores, atol=1e-6)
    with pytest.raises(InputError, match="to_unit_range"):
        harmony_score(model, images * 2 - 1, masks)
    save_pretrained(model, tmp_path / "other", kind="generator", config={})
    with pytest.raises(CheckpointError, match="not a harmony"):
        HarmonyClassifier.from_pretrained(tmp_path / "other")


def test_harmony_reader_iharmony4_names_and_split_lists(tmp_path):
    root = tmp_path / "HAdobe5k"
    for sub in ("composite_images", "masks", "real_images"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for photo in ("a0001", "a0002", "a0003"):
        Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(root / "real_images" / f"{photo}.jpg")
        mask = np.zeros((24, 40), np.uint8)
        mask[4:12, 8:20] = 255
        Image.fromarray(mask).save(root / "masks" / f"{photo}_1.png")
        for j in (1, 2):
            name = f"{photo}_1_{j}.jpg"
            Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(root / "composite_images" / name)
            names.append(name)
    (root / "HAdobe5k_train.txt").write_text("".join(f"composite_images/{n}\n" for n in names[:4]))
    (root / "HAdobe5k_test.txt").write_text("".join(f"{n}\n" for n in names[4:]))
    train, test = find_harmony_samples(root, "train"), find_harmony_samples(root, "test")
    assert [s.composite.name for s in train] == names[:4] and [s.composite.name for s in test] == names[4:]
    assert train[0].mask.name == "a0001_1.png" and train[0].real.name == "a0001.jpg"
    image, mask, target = HarmonyDataset(train, 16)[0]
    assert image.shape == (3, 16, 16) and mask.shape == (1, 16, 16) and float(target) == 1.0
    assert 0 < float(mask.mean()) < 0.5
    (root / "masks" / "a0003_1.png").unlink()
    with pytest.raises(InputError, match="a0003_1_1 has no mask"):
        find_harmony_samples(root, "test")


def test_harmony_reader_on_shared_triplets(shared_root):
    root = shared_root / "data" / "harmonization" / "iHarmony4"
    if not root.is_dir():
        pytest.skip("shared iHarmony4 sample not found")
    samples = find_harmony_samples(root, "all")
    assert len(samples) >= 1
    image, mask, target = HarmonyDataset(samples, 32)[1]  # the composite of a multi-megapixel photo
    assert image.shape == (3, 32, 32) and float(target) == 0.0
    assert 0 < float(mask.mean()) < 1


def test_train_harmony_on_shared_triplets(shared_root, tmp_path):
    root = shared_root / "data" / "harmonization" / "RainNet"
    if not root.is_dir():
        pytest.skip("shared RainNet triplets not found")
    out = tmp_path / "harmony"
    settings = dict(batch_size=4, image_size=32, lr=1e-3, width=8, depth=3, save_every=6)
    result = train_harmony(root, out, steps=12, **settings)
    assert result.step == 12
    assert result.probe_after.loss < result.probe_before.loss  # it learns the training images
    assert result.held_out is not None and result.held_out.count == 2  # one of the three photos held out
    classifier = HarmonyClassifier.from_pretrained(out)  # the run folder loads as the classifier
    samples = find_harmony_samples(root, "all")
    image, mask, _ = HarmonyDataset(samples, 32)[0]
    score = harmony_score(classifier, image[None], mask[None])
    assert score.shape == (1,) and 0 <= float(score) <= 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000006", "step_0000012"]
    with pytest.raises(InputError, match="--resume"):
        train_harmony(root, out, steps=14, **settings)
    resumed = train_harmony(root, out, steps=14, resume=True, batch_size=4)
    assert resumed.step == 14 and resumed.probe_before is None
    assert (out / "latest").read_text().strip() == "checkpoints/step_0000014"


# ---------------------------------------------------------------------------------------------- CLI


def test_weights_command_lists_missing_and_present(tmp_path, capsys):
    assert main(["weights", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("vgg19-dcbbf910.pth", "vgg16-397923af.pth", "alexnet-owt-7be5be79.pth", INCEPTION_FILE):
        line = next(line for line in out.splitlines() if name in line)
        assert line.split()[0] == "missing"
    assert "https://github.com/mseitzer/pytorch-fid/releases" in out
    (tmp_path / "vgg19-dcbbf910.pth").write_bytes(b"x" * 10)  # size unknown: present
    (tmp_path / "vgg16-397923af.pth").write_bytes(b"x" * 10)  # published size known: wrong
    assert main(["weights", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if "vgg19-dcbbf910.pth" in line).split()[0] == "present"
    assert "wrong size" in next(line for line in out.splitlines() if "vgg16-397923af.pth" in line)


def test_train_harmony_command_rejects_bad_data(tmp_path, capsys):
    assert main(["train-harmony", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
