"""The network's contracts: exact factorized SEAN branch, region pooling, encoder fusion, MRSA, checkpoints."""

from dataclasses import replace

import pytest
import torch

from facestyle.config import ModelConfig, get_preset
from facestyle.errors import CheckpointError
from facestyle.model import FaceStyleNet
from facestyle.nn.mrsa import MRSA
from facestyle.nn.pooling import region_average_pool

TINY = get_preset("tiny").model


def face_like_labels(batch: int, size: int, num_classes: int = 19, seed: int = 0) -> torch.Tensor:
    """Blocky label maps (regions several pixels wide), some classes absent, like a parsed face."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, num_classes, (batch, 1, 8, 8), generator=g).float()
    labels = torch.nn.functional.interpolate(coarse, size=size, mode="nearest")[:, 0].long()
    labels[labels == 3] = 1  # class 3 never appears
    return labels


def randomize_blending(model: FaceStyleNet) -> None:
    for name, p in model.named_parameters():
        if "blending" in name or "noise_var" in name:
            p.data.normal_()


@pytest.mark.parametrize("branch", ["sparse", "factorized"])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_fast_style_branches_equal_naive(norm, branch, monkeypatch):
    from facestyle.nn.sean import SEANNorm

    monkeypatch.setattr(SEANNorm, "SPARSE_MAX_BOUNDARY", 1.0)  # take the sparse path at every resolution
    torch.manual_seed(0)
    model = FaceStyleNet(replace(TINY, norm=norm, noise="off", style_branch=branch)).eval()
    randomize_blending(model)
    image = torch.rand(3, 3, 64, 64) * 2 - 1
    labels = face_like_labels(3, 64)
    with torch.no_grad():
        fast = model(image, labels)
        model.generator.set_style_branch("naive")
        slow = model(image, labels)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("branch", ["sparse", "factorized"])
def test_fast_branch_gradients_equal_naive(branch, monkeypatch):
    from facestyle.nn.sean import SEANNorm

    monkeypatch.setattr(SEANNorm, "SPARSE_MAX_BOUNDARY", 1.0)
    torch.manual_seed(1)
    # spectral norm's power iteration would move u between the two passes in train mode
    cfg = replace(TINY, noise="off", generator_spectral_norm=False, encoder_spectral_norm=False)
    model = FaceStyleNet(cfg).train()
    randomize_blending(model)
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    labels = face_like_labels(2, 64, seed=1)
    grads = {}
    for path in (branch, "naive"):
        model.zero_grad()
        model.generator.set_style_branch(path)
        model(image, labels).square().mean().backward()
        grads[path] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads[branch].keys() == grads["naive"].keys()
    for name, g in grads[branch].items():
        torch.testing.assert_close(g, grads["naive"][name], rtol=1e-3, atol=1e-6, msg=name)


def test_sparse_path_takes_boundary_pixels_only():
    from facestyle.nn.sean import _boundary_mask

    labels = torch.zeros(1, 12, 12, dtype=torch.long)
    labels[0, :, 6:] = 1
    mask = _boundary_mask(labels)[0]
    assert mask[:2].all() and mask[:, -2:].all()  # the zero-padded border
    assert mask[5, 4:8].all() and not mask[5, 3] and not mask[5, 8]  # two pixels either side of the edge


def test_region_average_pool_matches_per_region_means():
    torch.manual_seed(0)
    features = torch.randn(2, 5, 8, 8)
    labels = face_like_labels(2, 16, num_classes=6)  # pooled at the feature map's size with nearest
    codes, presence = region_average_pool(features, labels, 6)
    small = labels[:, ::2, ::2]
    for b in range(2):
        for r in range(6):
            mask = small[b] == r
            assert presence[b, r] == mask.any()
            expected = features[b][:, mask].mean(1) if mask.any() else torch.zeros(5)
            torch.testing.assert_close(codes[b, r], expected)


@pytest.mark.parametrize("fusion", ["softmax", "sum", "last"])
def test_encoder_fusion_modes(fusion):
    model = FaceStyleNet(replace(TINY, fusion=fusion))
    codes, presence = model.encode(torch.rand(2, 3, 64, 64), face_like_labels(2, 64))
    assert codes.shape == (2, 19, TINY.style_dim)
    assert not presence[:, 3].any()
    assert (codes[:, 3] == 0).all()
    weights = model.encoder.fusion_weights()
    if fusion == "softmax":
        torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    elif fusion == "last":
        assert weights is None
    # eq. 2 by hand: every layer's map resized to the last one's size, projected, weighted and summed;
    # softmax(a) weights (eq. 1) or, for "sum", the raw a (uniform 1/5 at the start)
    image = torch.rand(1, 3, 64, 64)
    model.eval()  # spectral norm's power iteration would change the weights between calls
    with torch.no_grad():
        if fusion != "last":
            model.encoder.fusion_logits.normal_()
        maps = model.encoder.layers(image)
        size = maps[-1].shape[-2:]
        resized = [torch.nn.functional.interpolate(m, size=size, mode="bilinear", antialias=True) for m in maps]
        projected = [proj(m) for proj, m in zip(model.encoder.projections, resized if fusion != "last" else maps[-1:])]
        logits = model.encoder.fusion_logits if fusion != "last" else None
        expected = {"softmax": lambda: sum(w * f for w, f in zip(torch.softmax(logits, 0), projected)),
                    "sum": lambda: sum(w * f for w, f in zip(logits, projected)),
                    "last": lambda: projected[0]}[fusion]()
        torch.testing.assert_close(model.encoder(image), expected, rtol=1e-5, atol=1e-6)
    if fusion == "sum":
        fresh = FaceStyleNet(replace(TINY, fusion="sum")).encoder.fusion_weights()
        torch.testing.assert_close(fresh, torch.full((5,), 0.2))  # no softmax: the raw weights, uniform at first


def test_sean_encoder_without_projection_returns_its_own_map():
    cfg = replace(TINY, fusion="last", encoder_projection=False, encoder_out=TINY.style_dim)
    model = FaceStyleNet(cfg)
    assert model.encoder.projections is None
    assert model.encoder(torch.rand(1, 3, 64, 64)).abs().max() <= 1  # SEAN's tanh output is the code map


def test_gradient_reaches_fusion_weights_and_mrsa():
    torch.manual_seed(0)
    model = FaceStyleNet(TINY).train()
    image, labels = torch.rand(2, 3, 64, 64) * 2 - 1, face_like_labels(2, 64)
    model(image, labels).mean().backward()
    assert model.encoder.fusion_logits.grad.abs().sum() > 0
    assert model.mrsa.alpha.grad.abs() > 0
    # at alpha = 0 the projections get no gradient, by construction (as in SAGAN)
    assert model.mrsa.query.weight.grad.abs().sum() == 0
    model.zero_grad()
    with torch.no_grad():
        model.mrsa.alpha.fill_(0.5)
    model(image, labels).mean().backward()
    for proj in (model.mrsa.query, model.mrsa.key, model.mrsa.value):
        assert proj.weight.grad.abs().sum() > 0


def test_mrsa_corrects_present_rows_only():
    torch.manual_seed(0)
    mrsa = MRSA(8)
    with torch.no_grad():
        mrsa.alpha.fill_(1.0)
    composite, target = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    presence = torch.tensor([[True, True, False, True, False], [False] * 5])
    out = mrsa(composite, target, presence)
    torch.testing.assert_close(out[0, [2, 4]], composite[0, [2, 4]])  # absent rows unchanged
    assert (out[0, [0, 1, 3]] - composite[0, [0, 1, 3]]).abs().min() > 0  # every present row corrected
    torch.testing.assert_close(out[1], composite[1])  # no present key: no correction
    # absent keys are masked: the target's absent codes cannot leak in
    target2 = target.clone()
    target2[0, 2] += 100
    torch.testing.assert_close(mrsa(composite, target2, presence), out)
    m = mrsa.attention(composite, target, presence)
    torch.testing.assert_close(m[0, [0, 1, 3]].sum(-1), torch.ones(3))
    out.sum().backward()
    assert torch.isfinite(mrsa.query.weight.grad).all()


def mrsa_by_loops(mrsa: MRSA, composite: torch.Tensor, target: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """Eq. 4-5 written out class by class: for each present class i, attend over the present classes j."""
    out = composite.clone()
    for b in range(composite.shape[0]):
        present = [j for j in range(composite.shape[1]) if presence[b, j]]
        for i in present:
            q = mrsa.query(composite[b, i])
            logits = torch.stack([q @ mrsa.key(target[b, j]) * mrsa.scale for j in present])
            weights = torch.softmax(logits, dim=0)
            values = [mrsa.value(target[b, j]) for j in present]
            out[b, i] = composite[b, i] + mrsa.alpha * sum(w * v for w, v in zip(weights, values))
    return out


@pytest.mark.parametrize("scale", ["sqrt_d", "none"])
def test_mrsa_equals_eq4_5_written_with_loops(scale):
    g = torch.Generator().manual_seed(3)
    mrsa = MRSA(6, scale)
    with torch.no_grad():
        mrsa.alpha.fill_(0.7)
    composite, target = torch.randn(4, 7, 6, generator=g), torch.randn(4, 7, 6, generator=g)
    presence = torch.rand(4, 7, generator=g) > 0.4
    presence[0] = True
    presence[1] = False
    presence[2, :] = False
    presence[2, 4] = True  # a single present class attends to itself only
    with torch.no_grad():
        torch.testing.assert_close(mrsa(composite, target, presence), mrsa_by_loops(mrsa, composite, target, presence))


def test_mrsa_mlp_mix_starts_as_eq5_and_scales_with_the_region():
    g = torch.Generator().manual_seed(5)
    linear, mlp = MRSA(6), MRSA(6, mix="mlp")
    mlp.load_state_dict({**mlp.state_dict(), **linear.state_dict()})
    with torch.no_grad():
        linear.alpha.fill_(0.5)
        mlp.alpha.fill_(0.5)
    composite, target = torch.randn(3, 5, 6, generator=g), torch.randn(3, 5, 6, generator=g)
    presence = torch.rand(3, 5, generator=g) > 0.3
    presence[2] = False
    with torch.no_grad():
        torch.testing.assert_close(mlp(composite, target, presence), linear(composite, target, presence))  # at init
        torch.nn.init.normal_(mlp.mix[-1].weight, generator=g)
        out = mlp(composite, target, presence)
        torch.testing.assert_close(out[~presence], composite[~presence])  # absent rows (and sample 2) unchanged
        # eq. 5's correction does not depend on the row's own code beyond the attention weights; with one
        # present class those weights are fixed, so only the MLP makes two codes' corrections differ
        one = torch.zeros(2, 5, dtype=torch.bool)
        one[:, 1] = True
        two_codes = torch.cat([composite[:1], composite[:1] * 3])
        same_target = target[:1].expand(2, -1, -1)
        eq5 = linear(two_codes, same_target, one) - two_codes
        torch.testing.assert_close(eq5[0, 1], eq5[1, 1])
        mixed = mlp(two_codes, same_target, one) - two_codes
        assert (mixed[0, 1] - mixed[1, 1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="mix must be"):
        MRSA(6, mix="gated")


def test_mrsa_paper_scale_switch():
    a, b = MRSA(16, "sqrt_d"), MRSA(16, "none")
    b.load_state_dict(a.state_dict())
    s, p = torch.randn(1, 4, 16) * 3, torch.ones(1, 4, dtype=torch.bool)
    assert not torch.allclose(a.attention(s, s, p), b.attention(s, s, p))


def test_attention_off_and_bypass():
    torch.manual_seed(0)
    model = FaceStyleNet(replace(TINY, attention="off")).eval()
    assert model.mrsa is None
    image, labels = torch.rand(1, 3, 64, 64) * 2 - 1, face_like_labels(1, 64)
    with torch.no_grad():
        out = model.transfer(image, labels, image.flip(-1), labels, torch.ones(19, dtype=torch.bool))
    assert out.shape == (1, 3, 64, 64)
    # harmonize=False on a model with MRSA is the attention-off model with the same other weights
    on = FaceStyleNet(TINY).eval()
    with torch.no_grad():
        on.mrsa.alpha.fill_(1.0)
    model.load_state_dict({k: v for k, v in on.state_dict().items() if not k.startswith("mrsa.")})
    args = (image, labels, image.flip(-1), labels.flip(-1), torch.ones(19, dtype=torch.bool))
    with torch.no_grad():
        off_out = model.transfer(*args)
        torch.testing.assert_close(on.transfer(*args, harmonize=False), off_out)
        assert not torch.allclose(on.transfer(*args, harmonize=True), off_out)  # MRSA (alpha = 1) changes it


def test_compose_keeps_target_style_where_reference_lacks_the_class():
    s_t, s_r = torch.zeros(1, 4, 2), torch.ones(1, 4, 2)
    p_t = torch.ones(1, 4, dtype=torch.bool)
    p_r = torch.tensor([[True, False, True, True]])
    s_c = FaceStyleNet.compose(s_t, p_t, s_r, p_r, torch.tensor([False, True, True, False]))
    assert s_c[0, :, 0].tolist() == [0, 0, 1, 0]


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_generator_output_sizes(size):
    cfg = replace(TINY, image_size=size, ngf=4, style_dim=8, spade_hidden=8, encoder_ngf=4, encoder_out=8)
    model = FaceStyleNet(cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, size, size) * 2 - 1, face_like_labels(1, size))
    assert out.shape == (1, 3, size, size)
    assert out.abs().max() <= 1


def test_float64_and_lapa_label_set():
    cfg = replace(TINY, label_set="lapa")
    model = FaceStyleNet(cfg).to(torch.float64).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64, dtype=torch.float64), face_like_labels(1, 64, num_classes=11))
    assert out.dtype == torch.float64 and cfg.num_classes == 11


def test_checkpoint_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = FaceStyleNet(TINY).eval()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = FaceStyleNet.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == TINY
    image, labels = torch.rand(1, 3, 64, 64) * 2 - 1, face_like_labels(1, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, labels), model(image, labels))
    with pytest.raises(CheckpointError, match="lapa"):
        FaceStyleNet.from_pretrained(tmp_path / "ckpt", label_set="lapa")
    with pytest.raises(CheckpointError, match="not found"):
        FaceStyleNet.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        FaceStyleNet.from_pretrained(tmp_path / "empty")
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        FaceStyleNet.from_pretrained(tmp_path / "ckpt")
    assert not list(tmp_path.glob("ckpt/*.tmp"))


def test_checkpoint_weights_must_match_config(tmp_path):
    FaceStyleNet(TINY).save_pretrained(tmp_path / "a")
    other = replace(TINY, style_dim=TINY.style_dim * 2)
    FaceStyleNet(other).save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").replace(tmp_path / "a" / "model.safetensors")
    with pytest.raises(CheckpointError, match="does not match"):
        FaceStyleNet.from_pretrained(tmp_path / "a")


def test_config_validation():
    from facestyle.errors import InputError

    with pytest.raises(InputError, match="multiple of 32"):
        ModelConfig(image_size=100)
    with pytest.raises(InputError, match="unknown label set"):
        ModelConfig(label_set="ffhq")


def test_inference_kernel_cache_follows_weight_updates():
    torch.manual_seed(0)
    model = FaceStyleNet(replace(TINY, noise="off", style_branch="factorized")).eval()
    image, labels = torch.rand(1, 3, 64, 64) * 2 - 1, face_like_labels(1, 64)
    with torch.no_grad():
        before = model(image, labels)
        for p in model.generator.parameters():
            p.mul_(1.1)  # an in-place update, as an optimizer step or load_state_dict makes
        after = model(image, labels)
        model.generator.set_style_branch("naive")
        expected = model(image, labels)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fusion", ["softmax", "sum", "last"])
def test_pooling_before_projection_equals_pooling_the_fused_map(fusion):
    torch.manual_seed(0)
    model = FaceStyleNet(replace(TINY, fusion=fusion, encoder_spectral_norm=False))
    if fusion != "last":
        with torch.no_grad():
            model.encoder.fusion_logits.normal_()
    image, labels = torch.rand(2, 3, 64, 64) * 2 - 1, face_like_labels(2, 64)
    codes, presence = model.encode(image, labels)
    expected, expected_presence = region_average_pool(model.encoder(image), labels, 19)
    torch.testing.assert_close(codes, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(presence, expected_presence)


def test_every_trainable_parameter_gets_a_gradient_with_noise_off():
    """DistributedDataParallel stops on a trainable parameter without a gradient: with noise off the noise
    scales are frozen (and kept, so checkpoints keep one layout)."""
    torch.manual_seed(0)
    model = FaceStyleNet(replace(TINY, noise="off"))
    image = torch.rand(2, 3, TINY.image_size, TINY.image_size) * 2 - 1
    model(image, face_like_labels(2, TINY.image_size, TINY.num_classes)).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert any("noise_var" in name for name in model.state_dict())


def test_encoder_norm_none_keeps_the_light_that_instance_norm_discards():
    """SEAN's instance-normed encoder gives the same codes for an image and a dimmer copy of it (scaled about
    mid-grey); encoder_norm = none keeps the difference, which the demo needs to reconstruct its lights."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, TINY.image_size, TINY.image_size) * 2 - 1
    labels = face_like_labels(1, TINY.image_size, TINY.num_classes)
    for norm, same in (("instance", True), ("none", False)):
        model = FaceStyleNet(replace(TINY, encoder_norm=norm)).eval()
        with torch.no_grad():
            codes, _ = model.encode(image, labels)
            dim, _ = model.encode(image * 0.6, labels)
        assert torch.allclose(codes, dim, atol=1e-4) is same, norm
