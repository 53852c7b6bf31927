"""Weights folder, VGG19 loading and arithmetic, the multi-scale discriminator and the GAN losses."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from facestyle import weights
from facestyle.config import ModelConfig, TrainConfig
from facestyle.errors import WeightsError
from facestyle.losses import (
    GeneratorLosses,
    VGGLoss,
    feature_matching_loss,
    hinge_d_loss,
    hinge_d_loss_terms,
    hinge_g_loss,
    pixel_l1_loss,
)
from facestyle.nn.discriminator import MultiscaleDiscriminator
from facestyle.nn.features.vgg19 import VGG19Features

VGG19_NAME = "vgg19-dcbbf910.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbbf910.pth"
# torchvision's vgg19 ("E"): conv channels, "M" = 2x2 max pool.
CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def torchvision_vgg19_state(seed: int = 0, classifier: bool = True) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's vgg19 state-dict keys and shapes (``features.{i}.weight``).

    The classifier entries have torchvision's names but small shapes (the real ones are 480 MB): the
    loader must ignore them whatever they hold.
    """
    gen = torch.Generator().manual_seed(seed)
    state, index, in_ch = {}, 0, 3
    for v in CFG:
        if v == "M":
            index += 1
            continue
        fan_in = in_ch * 9
        state[f"features.{index}.weight"] = torch.randn(v, in_ch, 3, 3, generator=gen) * (2 / fan_in) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(v, generator=gen) * 0.1
        index += 2  # conv, relu
        in_ch = v
    if classifier:
        for i in (0, 3, 6):
            state[f"classifier.{i}.weight"] = torch.randn(4, 4, generator=gen)
            state[f"classifier.{i}.bias"] = torch.randn(4, generator=gen)
    return state


def reference_vgg19(state: dict[str, torch.Tensor], images: torch.Tensor) -> list[torch.Tensor]:
    """relu1_1 ... relu5_1 computed directly with F.conv2d from the state dict."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((images + 1) / 2 - mean) / std
    outputs, index, first_conv_of_block = [], 0, True
    for v in CFG:
        if v == "M":
            x = F.max_pool2d(x, 2)
            index += 1
            first_conv_of_block = True
            continue
        x = F.relu(F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1))
        if first_conv_of_block:
            outputs.append(x)
            first_conv_of_block = False
        index += 2
    return outputs


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    state = torchvision_vgg19_state()
    torch.save(state, folder / VGG19_NAME)
    return folder, state


@pytest.fixture(scope="module")
def random_vgg(vgg19_file):
    folder, _ = vgg19_file
    return VGG19Features.load_weights(folder)


# --- weights folder -----------------------------------------------------------------------------------


def test_weights_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert weights.weights_dir() == tmp_path / "torch" / "hub" / "checkpoints"
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "env"))
    assert weights.weights_dir() == tmp_path / "env"
    assert weights.weights_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_registry_hash_prefixes_match_file_names():
    for name in ("vgg19-dcbbf910.pth", "vgg16-397923af.pth", "alexnet-owt-7be5be79.pth",
                 "pt_inception-2015-12-05-6726825d.pth"):
        entry = weights.WEIGHT_FILES[name]
        assert name.rsplit("-", 1)[1].startswith(entry.sha256)
        assert entry.url.endswith(name)


def test_missing_file_names_file_and_url(tmp_path, monkeypatch):
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    with pytest.raises(WeightsError) as info:
        VGG19Features.load_weights(tmp_path)
    message = str(info.value)
    assert VGG19_NAME in message and VGG19_URL in message and str(tmp_path) in message
    assert "\n" not in message


def test_find_weight_uses_env_and_legacy_name(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    legacy = tmp_path / "vgg19-dcbb9e9d.pth"
    legacy.write_bytes(b"x")
    assert weights.find_weight(VGG19_NAME) == legacy
    (tmp_path / VGG19_NAME).write_bytes(b"x")
    assert weights.find_weight(VGG19_NAME) == tmp_path / VGG19_NAME


def test_load_state_dict_file_formats_and_corruption(tmp_path):
    from safetensors.torch import save_file

    state = {"a": torch.arange(6.0).view(2, 3), "b": torch.ones(2)}
    save_file(state, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        loaded = weights.load_state_dict_file(tmp_path / name)
        assert loaded.keys() == state.keys() and torch.equal(loaded["a"], state["a"])

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((tmp_path / "w.pth").read_bytes()[:100])
    with pytest.raises(WeightsError, match="truncated.pth"):
        weights.load_state_dict_file(truncated)
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([torch.ones(1)], not_a_state_dict)
    with pytest.raises(WeightsError, match="list.pth"):
        weights.load_state_dict_file(not_a_state_dict)


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "object.pth"
    torch.save({"weight": torch.ones(1), "obj": _Arbitrary()}, path)
    with pytest.raises(WeightsError, match="object.pth"):
        weights.load_state_dict_file(path)


class _Arbitrary:
    pass


def test_check_weights_statuses(tmp_path):
    (tmp_path / "vgg16-397923af.pth").write_bytes(b"too short")
    (tmp_path / VGG19_NAME).write_bytes(b"no known size, wrong hash")
    rows = {row.name: row for row in weights.check_weights(tmp_path)}
    assert set(rows) == set(weights.WEIGHT_FILES)
    assert rows["vgg16-397923af.pth"].status == "wrong size"
    assert rows[VGG19_NAME].status == "present"
    inception = "pt_inception-2015-12-05-6726825d.pth"
    assert rows[inception].status == "missing"
    assert rows[inception].path == tmp_path / inception
    rows = {row.name: row for row in weights.check_weights(tmp_path, verify_hash=True)}
    assert rows[VGG19_NAME].status == "wrong hash"
    assert rows[VGG19_NAME].url == VGG19_URL


def test_check_weights_hash_accepts_matching_file(tmp_path, monkeypatch):
    content = b"some weights"
    digest = hashlib.sha256(content).hexdigest()
    entry = weights.WeightFile("tiny.pth", "test file", "https://example.org/tiny.pth", size=len(content),
                               sha256=digest[:8])
    monkeypatch.setattr(weights, "WEIGHT_FILES", {"tiny.pth": entry})
    (tmp_path / "tiny.pth").write_bytes(content)
    [row] = weights.check_weights(tmp_path, verify_hash=True)
    assert row.status == "present"


# --- VGG19 ---------------------------------------------------------------------------------------------


def test_vgg19_matches_direct_computation(vgg19_file, random_vgg):
    _, state = vgg19_file
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    outputs = random_vgg(images)
    expected = reference_vgg19(state, images)
    assert len(outputs) == 5
    for out, ref, channels, size in zip(outputs, expected, (64, 128, 256, 512, 512), (32, 16, 8, 4, 2)):
        assert out.shape == (2, channels, size, size)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_vgg19_layout_is_torchvision(random_vgg):
    convs = [int(k.split(".")[1]) for k in random_vgg.state_dict() if k.endswith(".weight")]
    assert convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert not any(p.requires_grad for p in random_vgg.parameters())
    random_vgg.train()
    assert not random_vgg.training


def test_vgg19_from_safetensors(tmp_path, vgg19_file):
    from safetensors.torch import save_file

    _, state = vgg19_file
    save_file(state, tmp_path / "vgg19.safetensors")
    model = VGG19Features.from_file(tmp_path / "vgg19.safetensors")
    torch.testing.assert_close(model.features[34].weight, state["features.34.weight"])


def test_vgg19_wrong_shape_or_keys(tmp_path):
    state = torchvision_vgg19_state(classifier=False)
    state["features.5.weight"] = state["features.5.weight"][:, :32]
    torch.save(state, tmp_path / VGG19_NAME)
    with pytest.raises(WeightsError, match=r"vgg19-dcbbf910\.pth.*features\.5\.weight"):
        VGG19Features.load_weights(tmp_path)

    model = VGG19Features()
    state = torchvision_vgg19_state(classifier=False)
    del state["features.16.bias"]  # e.g. a VGG16 file, whose features.16 is a pool
    with pytest.raises(WeightsError, match=r"some\.pth: missing key 'features\.16\.bias'"):
        model.load_torchvision_state_dict(state, source="some.pth")

    state = torchvision_vgg19_state(classifier=False)
    state["module.extra"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="unexpected key 'module.extra'"):
        model.load_torchvision_state_dict(state, source="some.pth")


def test_vgg19_follows_dtype(random_vgg):
    model = VGG19Features()
    model.load_state_dict(random_vgg.state_dict())
    model = model.to(torch.float64)
    images = torch.rand(1, 3, 32, 32, dtype=torch.float64) * 2 - 1
    outputs = model(images)
    assert all(o.dtype == torch.float64 for o in outputs)
    torch.testing.assert_close(outputs[2], random_vgg(images.float())[2].double(), rtol=1e-4, atol=1e-5)


# --- discriminator -------------------------------------------------------------------------------------


def _patch_size(size: int, n_layers: int) -> list[int]:
    """Spatial sizes of a scale's outputs: k=4, p=2 convs, stride 2 then stride 1 for the last two."""
    sizes = []
    for n in range(n_layers + 1):
        stride = 2 if n < max(n_layers - 1, 1) else 1
        size = (size + 2 * 2 - 4) // stride + 1
        sizes.append(size)
    return sizes


@pytest.mark.parametrize("n_layers", [2, 3, 4])
def test_discriminator_shapes(n_layers):
    torch.manual_seed(0)
    num_classes, ndf = 5, 8
    disc = MultiscaleDiscriminator(num_classes, ndf=ndf, num_discriminators=2, n_layers=n_layers)
    images = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, num_classes, (2, 64, 64))
    outputs = disc(images, labels)
    assert len(outputs) == 2
    for scale, size in zip(outputs, (64, 32)):
        assert len(scale) == n_layers + 1
        channels = [min(ndf * 2**i, 512) for i in range(n_layers)] + [1]
        assert [f.shape[1] for f in scale] == channels
        assert [f.shape[-1] for f in scale] == _patch_size(size, n_layers)
        assert scale[-1].shape[0] == 2
    # a one-hot map gives the same result as class indices (eval: no spectral-norm power iteration)
    disc.eval()
    onehot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(disc(images, onehot)[1][-1], disc(images, labels)[1][-1])


def test_discriminator_first_scale_is_spade_nlayer():
    disc = MultiscaleDiscriminator(19, ndf=64, num_discriminators=2, n_layers=3)
    blocks = disc.scales[0].blocks
    strides = [b[0].stride[0] for b in blocks]
    assert strides == [2, 2, 1, 1]
    assert blocks[0][0].in_channels == 22
    assert [b[0].out_channels for b in blocks] == [64, 128, 256, 1]
    assert hasattr(blocks[1][0], "parametrizations") and not hasattr(blocks[0][0], "parametrizations")


def test_discriminator_gradient_reaches_input():
    disc = MultiscaleDiscriminator(4, ndf=8, num_discriminators=2, n_layers=3)
    images = torch.randn(1, 3, 32, 32, requires_grad=True)
    labels = torch.randint(0, 4, (1, 32, 32))
    outputs = disc(images, labels)
    hinge_g_loss(outputs).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters() if p.requires_grad)


def test_discriminator_from_config():
    cfg = ModelConfig(label_set="lapa", ndf=8, num_discriminators=3, discriminator_layers=2)
    disc = MultiscaleDiscriminator.from_config(cfg)
    assert len(disc.scales) == 3
    assert disc.scales[0].blocks[0][0].in_channels == 11 + 3
    assert len(disc(torch.randn(1, 3, 64, 64), torch.randint(0, 11, (1, 64, 64)))[2]) == 3


# --- losses --------------------------------------------------------------------------------------------


def _outputs(*logits_values: float, shape=(2, 1, 5, 5)):
    return [[torch.randn(2, 4, 6, 6), torch.full(shape, v)] for v in logits_values]


def test_hinge_losses_known_values():
    real, fake = _outputs(2.0, 2.0), _outputs(-2.0, -2.0)
    assert hinge_d_loss(real, fake).item() == 0.0
    assert hinge_g_loss(_outputs(0.5, 0.5)).item() == pytest.approx(-0.5)
    # relu(1 - 0) = 1 on real and relu(1 + 0) = 1 on fake, averaged over scales
    real_term, fake_term = hinge_d_loss_terms(_outputs(0.0, 0.5), _outputs(0.0, 0.0))
    assert real_term.item() == pytest.approx((1.0 + 0.5) / 2)
    assert fake_term.item() == pytest.approx(1.0)
    # bare logits per scale are accepted
    assert hinge_g_loss([torch.full((1, 1, 2, 2), 1.0), torch.full((1, 1, 2, 2), 3.0)]).item() == -2.0


def test_feature_matching():
    torch.manual_seed(0)
    real = _outputs(1.0, 2.0)
    same = [[f.clone() for f in scale] for scale in real]
    assert feature_matching_loss(same, real).item() == 0.0
    fake = [[f + 0.5 for f in scale] for scale in real]
    # logits excluded: one intermediate layer per scale, L1 = 0.5 each, times 10 / 2 scales
    assert feature_matching_loss(fake, real, weight=10.0).item() == pytest.approx(0.5 * 2 * 10 / 2)


def test_feature_matching_gradient_only_to_fake():
    real = [[torch.randn(1, 2, 3, 3, requires_grad=True), torch.randn(1, 1, 2, 2)]]
    fake = [[torch.randn(1, 2, 3, 3, requires_grad=True), torch.randn(1, 1, 2, 2)]]
    feature_matching_loss(fake, real).backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None


def test_perceptual_loss(random_vgg):
    torch.manual_seed(0)
    loss = VGGLoss(random_vgg, weight=10.0)
    a = torch.rand(1, 3, 32, 32) * 2 - 1
    b = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(a, a.clone()).item() == 0.0
    ab, ba = loss(a, b), loss(b, a)
    assert ab.item() > 0
    torch.testing.assert_close(ab, ba)
    # the weighted sum of per-layer L1s
    expected = 10.0 * sum(w * F.l1_loss(x, y) for w, x, y in
                          zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1), random_vgg(a), random_vgg(b)))
    torch.testing.assert_close(ab, expected)
    fake = a.clone().requires_grad_(True)
    real = b.clone().requires_grad_(True)
    loss(fake, real).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0 and real.grad is None


def test_pixel_l1_fallback():
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(pixel_l1_loss(a, b, weight=7.0), 7.0 * (a - b).abs().mean())


def test_generator_losses(random_vgg, vgg19_file):
    torch.manual_seed(0)
    fake_image, real_image = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    fake_out, real_out = _outputs(0.5, 0.5), _outputs(1.0, 1.0)

    no_vgg = GeneratorLosses.from_config(TrainConfig(use_vgg=False, lambda_feat=2.0, lambda_vgg=3.0))
    terms = no_vgg(fake_image, real_image, fake_out, real_out)
    assert set(terms) == {"gan", "feat", "l1"}
    assert terms["gan"].item() == pytest.approx(-0.5)
    torch.testing.assert_close(terms["l1"], 3.0 * (fake_image - real_image).abs().mean())
    torch.testing.assert_close(terms["feat"], feature_matching_loss(fake_out, real_out, 2.0))

    folder, _ = vgg19_file
    with_vgg = GeneratorLosses.from_config(TrainConfig(use_vgg=True, lambda_vgg=3.0), weights_dir=folder)
    terms = with_vgg(fake_image, real_image, fake_out, real_out)
    assert set(terms) == {"gan", "feat", "vgg"}
    torch.testing.assert_close(terms["vgg"], VGGLoss(random_vgg, 3.0)(fake_image, real_image))


def test_generator_losses_without_weights(tmp_path, monkeypatch):
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    with pytest.raises(WeightsError, match=VGG19_NAME):
        GeneratorLosses.from_config(TrainConfig(use_vgg=True), weights_dir=tmp_path)
