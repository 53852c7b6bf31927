"""SEAN's reference generator, rebuilt from the golden manifest, imported and checked against its outputs;
the warm start of the paper's model from SEAN (``facestyle train --init sean:PATH``)."""

import json
import math
import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from facestyle.cli import main
from facestyle.config import get_preset
from facestyle.convert.sean import convert_sean_state_dict, fold_spectral_norm
from facestyle.convert.warm_start import effective_state, init_from_sean
from facestyle.model import FaceStyleNet


@pytest.fixture(scope="module")
def golden(shared_root):
    root = shared_root / "golden" / "sean-generator"
    if not root.is_dir():
        pytest.skip("golden SEAN vectors not found")
    return root


def reference_state_dict(root):
    """The reference weights, rebuilt by the fill rule of the golden README."""
    calibration = load_file(str(root / "sean_bn_calibration.safetensors"))
    state = {}
    for entry in json.loads((root / "sean_state_dict_manifest.json").read_text()):
        key, shape = entry["key"], entry["shape"]
        g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
        fan_in = math.sqrt(math.prod(shape[1:])) if len(shape) >= 2 else 1.0
        if key.endswith("num_batches_tracked"):
            value = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("noise_var"):
            value = torch.zeros(shape)
        elif key.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            value = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith(("weight_u", "weight_v")):
            value = torch.randn(shape, generator=g)
            value = value / value.norm()
        elif key.endswith(("blending_gamma", "blending_beta")):
            value = torch.randn(shape, generator=g)
        elif key.startswith("conv_img.") and len(shape) >= 2:
            value = 0.005 * torch.randn(shape, generator=g) / fan_in
        elif len(shape) >= 2:
            value = torch.randn(shape, generator=g) / fan_in
        else:
            value = 0.1 * torch.randn(shape, generator=g)
        state[key] = calibration.get(key, value)
    return state


def golden_inputs(root):
    image = np.array(Image.open(root / "image.png").convert("RGB"), dtype=np.float32)
    labels = np.array(Image.open(root / "label.png"), dtype=np.int64)
    return torch.from_numpy(image).permute(2, 0, 1)[None] / 127.5 - 1, torch.from_numpy(labels)[None]


@pytest.mark.slow
def test_import_sean_reproduces_reference_outputs(golden, tmp_path):
    state = reference_state_dict(golden)
    pth = tmp_path / "latest_net_G.pth"
    torch.save(state, pth)
    del state
    try:
        assert main(["import-sean", str(pth), str(tmp_path / "sean")]) == 0
    finally:
        pth.unlink()  # about 1 GB
    model = FaceStyleNet.from_pretrained(tmp_path / "sean")
    cfg = model.config
    assert (cfg.fusion, cfg.attention, cfg.style_dim, cfg.ngf, cfg.num_classes) == ("last", "off", 512, 64, 19)
    image, labels = golden_inputs(golden)
    expected_codes = np.load(golden / "expected_style_codes.npy")
    expected_out = np.load(golden / "expected_output.npy")
    with torch.inference_mode():
        codes, presence = model.encode(image, labels)
        np.testing.assert_allclose(codes[0].numpy(), expected_codes, atol=1e-3, rtol=0)
        assert (presence[0].numpy() == expected_codes.any(1)).all()
        out = model.decode(labels, codes)
        assert np.abs(out[0].numpy() - expected_out).max() < 1e-3
        # Every path reproduces the reference; the naive one (SEAN's own arithmetic) is itself 1.8e-5
        # from it, which is float32 summation order through 14 SEAN layers of 1024 channels. The fast
        # paths agree with it to that floor (the tiny-model tests hold them to rtol 1e-4, atol 1e-5).
        outputs = {}
        for branch in ("naive", "factorized", "sparse"):
            model.generator.set_style_branch(branch)
            outputs[branch] = model.decode(labels, codes)
            assert np.abs(outputs[branch][0].numpy() - expected_out).max() < 1e-3, branch
    for branch in ("factorized", "sparse"):
        torch.testing.assert_close(outputs[branch], outputs["naive"], rtol=1e-4, atol=5e-5)


def test_convert_rejects_other_state_dicts(golden):
    from facestyle.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not a SEAN generator"):
        convert_sean_state_dict({"fc.weight": torch.zeros(4, 19, 3, 3)})


def test_fold_spectral_norm_matches_torch_eval_mode():
    conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(4, 6, 3))
    conv(torch.randn(1, 4, 5, 5))  # one power iteration in train mode sets u, v
    conv.eval()
    folded = fold_spectral_norm(conv.weight_orig, conv.weight_u, conv.weight_v)
    torch.testing.assert_close(folded, conv.weight)


# ------------------------------------------------------------------------ warm start: --init sean:PATH


@pytest.mark.slow
def test_warm_start_reproduces_sean_at_step_zero(golden):
    """The paper preset (multi-scale encoder with softmax fusion, MRSA on) initialised from the reference
    SEAN weights: SEAN's codes and SEAN's output, through the whole pipeline with MRSA active."""
    sean_config, sean_state = convert_sean_state_dict(reference_state_dict(golden))
    torch.manual_seed(0)
    model = FaceStyleNet(get_preset("paper").model)
    cfg = model.config
    assert (cfg.fusion, cfg.attention, cfg.generator_spectral_norm, cfg.encoder_spectral_norm) == (
        "softmax", "on", True, True)
    lines = init_from_sean(model, sean_config, sean_state).lines()
    del sean_state
    assert lines[0].startswith("init from SEAN") and "MRSA alpha 0" in lines[0]
    assert model.mrsa.alpha.item() == 0
    assert all(not p.weight.any() for p in model.encoder.projections[:-1])
    image, labels = golden_inputs(golden)
    expected_codes = np.load(golden / "expected_style_codes.npy")
    expected_out = np.load(golden / "expected_output.npy")
    model.eval()
    with torch.inference_mode():
        codes, presence = model.encode(image, labels)
        np.testing.assert_allclose(codes[0].numpy(), expected_codes, atol=1e-3, rtol=0)
        out = model(image, labels)  # encode -> MRSA (alpha 0) -> SEAN generator
        assert np.abs(out[0].numpy() - expected_out).max() < 1e-3


def tiny_sean(projection: bool = False, encoder_out: int = 16, norm: str = "batch", noise: str = "train"):
    """A SEAN-shaped tiny model: its encoder's last map (or its projection) is the code, no MRSA."""
    return replace(get_preset("tiny").model, norm=norm, encoder_out=encoder_out, fusion="last",
                   encoder_projection=projection, attention="off", noise=noise, generator_spectral_norm=True,
                   encoder_spectral_norm=False)


def randomized(model: FaceStyleNet) -> FaceStyleNet:
    """Non-trivial batch-norm statistics, blending scalars and noise (all zero or one at initialisation)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith("running_var"):
                value.copy_(0.5 + torch.rand(value.shape, generator=g))
            elif key.endswith(("running_mean", "blending_gamma", "blending_beta", "noise_var")):
                value.copy_(0.3 * torch.randn(value.shape, generator=g))
    return model


@pytest.mark.parametrize("fusion, projection, encoder_out", [("softmax", False, 16), ("sum", True, 32)])
def test_warm_start_gives_seans_codes_and_output_on_a_tiny_model(fusion, projection, encoder_out):
    """A tiny SEAN (spectral norm folded from its stored vectors, batch norm with running statistics) into
    a multi-scale model with MRSA and spectral norm: the same codes and, in eval mode, the same images."""
    torch.manual_seed(0)
    sean_config = tiny_sean(projection, encoder_out)
    sean = randomized(FaceStyleNet(sean_config)).eval()
    model = FaceStyleNet(replace(sean_config, fusion=fusion, encoder_projection=True, attention="on",
                                 encoder_spectral_norm=True))
    report = init_from_sean(model, sean_config, effective_state(sean))
    assert report.mrsa and report.zeroed_projections == 4 and len(report.spectral) == 23
    assert model.mrsa.alpha.item() == 0
    model.eval()
    g = torch.Generator().manual_seed(2)
    image = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    labels = torch.randint(0, 19, (2, 8, 8), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    with torch.no_grad():
        codes, presence = model.encode(image, labels)
        sean_codes, sean_presence = sean.encode(image, labels)
        torch.testing.assert_close(codes, sean_codes, rtol=1e-5, atol=1e-6)
        assert torch.equal(presence, sean_presence)
        torch.testing.assert_close(model(image, labels), sean(image, labels), rtol=1e-4, atol=1e-5)
        # Training's power iteration starts where the stored vectors are: SEAN's top singular direction.
        conv = model.generator.head_0.conv_0.parametrizations.weight
        model.train()
        model(image, labels)
        assert abs(torch.dot(conv[0]._u, conv.original.flatten(1) @ conv[0]._v).item()
                   - report.spectral["generator.head_0.conv_0.weight"]) < 1e-3


def test_train_init_sean_starts_a_run_from_seans_weights(tmp_path, capsys):
    torch.manual_seed(0)
    FaceStyleNet(tiny_sean(norm="instance", noise="always")).save_pretrained(tmp_path / "sean")  # tiny's norm
    init, run = f"sean:{tmp_path / 'sean'}", tmp_path / "run"
    args = ["train", "--preset", "tiny", "--data", "synthetic:4", "--steps", "1", "--batch-size", "2",
            "--set", "train.sample_every=0"]
    sean_sizes = [*args, "--set", "model.encoder_out=16"]
    assert main([*sean_sizes, "--out", str(run), "--init", init]) == 0
    err = capsys.readouterr().err
    assert "init from SEAN" in err and "MRSA alpha 0" in err and "model.noise=always" in err
    assert FaceStyleNet.from_pretrained(run).config.fusion == "softmax"

    # Only a new run, only SEAN's sizes, only SEAN: each one line and exit status 2, before any file.
    bad = {
        "new run": [*sean_sizes, "--resume", str(run), "--init", init],
        "model.encoder_out=32 (SEAN: 16)": [*args, "--out", str(tmp_path / "r1"), "--init", init],
        "expected sean:PATH": [*sean_sizes, "--out", str(tmp_path / "r2"), "--init", str(tmp_path / "sean")],
        "not found": [*sean_sizes, "--out", str(tmp_path / "r3"), "--init", f"sean:{tmp_path / 'G.pth'}"],
        "not a SEAN checkpoint": [*sean_sizes, "--out", str(tmp_path / "r4"), "--init", f"sean:{run}"],
    }
    for message, argv in bad.items():
        assert main(argv) == 2, message
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 5))
