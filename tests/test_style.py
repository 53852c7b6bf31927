"""Random regional styles and style fine-tuning: style banks, mapping networks (eq. 3, 6), flows
(eq. 7-8, both objectives), the Editor's sample/finetune, their errors, and the commands.

Small dimensions (codes of 2 x 4 or 2 x 16 values, hidden width 32) and capped solver steps keep the
file fast; everything runs on the CPU with one thread."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from facestyle.checkpoint import demo_dir
from facestyle.cli import main
from facestyle.config import get_preset
from facestyle.data.synthetic import render, sample_face
from facestyle.editor.editor import Editor
from facestyle.editor.styles import parse_steps, unit_direction
from facestyle.errors import CheckpointError, InputError
from facestyle.io import save_image, save_labels
from facestyle.model import FaceStyleNet
from facestyle.nn.flow import (
    CALIBRATION_STEPS,
    FLOW_PRESETS,
    ContinuousNormalizingFlow,
    FlowConfig,
    Solver,
    SolverError,
)
from facestyle.nn.mapping import MAPPING_PRESETS, CodeWhitener, MappingConfig, MappingNetwork
from facestyle.styles.bank import StyleBank, checkpoint_identity, encode_bank
from facestyle.styles.networks import available_style_networks, load_style_network
from facestyle.train.flow import calibration_codes, train_flow
from facestyle.train.mapping import moment_errors, train_mapping

SKIN = (1, 2)  # skin + nose in CelebAMask-HQ
K, D = 2, 4  # the synthetic banks' group: 2 classes x 4 values


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------- fixtures


_g = torch.Generator().manual_seed(7)
MU = torch.randn(K * D, generator=_g)
A = torch.cat([torch.randn(K * D, 3, generator=_g), 0.1 * torch.eye(K * D)], dim=1)  # (8, 11)


def gaussian(n: int, seed: int) -> torch.Tensor:
    """Codes (n, 2, 4) of a known correlated Gaussian: mean MU, covariance A A^T (rank 3 + 0.01 I)."""
    g = torch.Generator().manual_seed(seed)
    return (MU + torch.randn(n, A.shape[1], generator=g) @ A.T).reshape(n, K, D)


def make_bank(codes: torch.Tensor, classes=SKIN, label_set: str = "celebamask-hq", sha: str = "0" * 64) -> StyleBank:
    """A bank whose only present classes are ``classes``, with these codes."""
    n, r = codes.shape[0], 19 if label_set == "celebamask-hq" else 11
    full = torch.zeros(n, r, codes.shape[-1])
    full[:, list(classes)] = codes
    presence = torch.zeros(n, r, dtype=torch.bool)
    presence[:, list(classes)] = True
    return StyleBank(full, presence, label_set, sha, [f"s{i}" for i in range(n)], {"data": "test"})


@pytest.fixture(scope="module")
def gaussian_bank(tmp_path_factory) -> Path:
    return make_bank(gaussian(1024, seed=0)).save(tmp_path_factory.mktemp("bank") / "gaussian.safetensors")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-init tiny generator (64x64, D = 16)."""
    torch.manual_seed(0)
    return FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("face")
    image, labels = render(sample_face(11, 0), 64)
    return (save_image(torch.from_numpy(image), root / "face.png"),
            save_labels(torch.from_numpy(labels), root / "face_labels.png"))


@pytest.fixture(scope="module")
def trained_flows(gaussian_bank, tmp_path_factory) -> dict[str, ContinuousNormalizingFlow]:
    """A flow per objective, trained briefly on the Gaussian bank, per-coordinate standardised (so that
    the correlations are the flow's to learn)."""
    flows = {}
    for objective, steps in (("maximum-likelihood", 60), ("flow-matching", 400)):
        run = tmp_path_factory.mktemp("flow") / objective
        train_flow(gaussian_bank, run, "skin", objective=objective, preset="tiny",
                   overrides=[f"train.steps={steps}", "train.batch_size=128", "train.lr=1e-2",
                              "model.normalization=standardize", "train.log_every=1000"])
        flows[objective] = load_style_network(run / "final", "flow")
    return flows


def untrained_flow(objective: str) -> ContinuousNormalizingFlow:
    torch.manual_seed(0)
    cfg = replace(FLOW_PRESETS["tiny"], classes=SKIN, style_dim=D, objective=objective, normalization="standardize")
    flow = ContinuousNormalizingFlow(cfg)
    flow.normalizer.fit(gaussian(1024, seed=0))
    return flow.eval()


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """The 2-Wasserstein distance squared between Gaussians with the samples' moments."""
    from scipy.linalg import sqrtm

    cx, cy = torch.cov(x.T).double().numpy(), torch.cov(y.T).double().numpy()
    return float((x.mean(0) - y.mean(0)).square().sum()) + float(np.trace(cx + cy - 2 * sqrtm(cx @ cy).real))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).max())


# ------------------------------------------------------------------------------------- mapping (eq. 6)


def test_mapping_training_moves_the_codes_moments_toward_the_bank(gaussian_bank, tmp_path):
    run = train_mapping(gaussian_bank, tmp_path / "run", "skin", preset="tiny", overrides=["train.log_every=100"])
    trained = load_style_network(run / "final", "mapping")
    torch.manual_seed(0)
    untrained = MappingNetwork(trained.config)
    untrained.normalizer.fit(gaussian(1024, seed=0))
    real = gaussian(4096, seed=1).flatten(1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        before_codes, after_codes = untrained.sample(4096, g).flatten(1), trained.sample(4096, g).flatten(1)
    before, after = moment_errors(before_codes, real), moment_errors(after_codes, real)
    # the untrained network's codes sit at the bank's mean (its normalisation) with almost no spread
    assert frechet_distance(after_codes, real) < 0.25 * frechet_distance(before_codes, real)
    assert after[1] < 0.5 * before[1], (before, after)  # covariance (relative Frobenius error)
    assert after[0] < 0.5, (before, after)  # mean (per-coordinate RMS; the codes' std is about 1.7)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 400 and metrics[0]["step"] == 100 and "codes/covariance_error" in metrics[-1]


def test_mapping_network_shapes_and_scale():
    cfg = replace(MAPPING_PRESETS["tiny"], classes=(1, 2, 13), style_dim=5)
    net = MappingNetwork(cfg)
    codes = gaussian(64, 0)[:, :, :1].expand(64, 2, 5)
    net.normalizer.fit(torch.cat([codes, codes[:, :1]], dim=1) * 3 + 2)
    out = net(torch.randn(7, cfg.latent_dim))
    assert out.shape == (7, 3, 5)
    assert torch.allclose(net.normalizer.denormalize(net.forward_normalized(torch.zeros(1, 16))),
                          net(torch.zeros(1, 16)))
    with pytest.raises(InputError, match="at least one class"):
        MappingConfig(classes=())


# --------------------------------------------------------------------------------------- flows (eq. 7-8)


@pytest.mark.parametrize("objective", ["maximum-likelihood", "flow-matching"])
def test_flow_log_likelihood_beats_the_untrained_flow(trained_flows, objective):
    held_out = gaussian(256, seed=3)
    solver = Solver("dopri5", 1e-6, 1e-6)
    with torch.no_grad():
        trained = trained_flows[objective].log_prob(held_out, solver=solver).mean()
        untrained = untrained_flow(objective).log_prob(held_out, solver=solver).mean()
    assert trained > untrained + 0.5, (float(trained), float(untrained))  # nats per sample
    # the true density bounds what any model reaches on average (up to sampling noise)
    truth = torch.distributions.MultivariateNormal(MU, A @ A.T).log_prob(held_out.flatten(1)).mean()
    assert trained < truth + 0.5


@pytest.mark.parametrize("objective", ["maximum-likelihood", "flow-matching"])
def test_code_to_z_to_code_returns_the_code(trained_flows, objective):
    flow = trained_flows[objective]
    codes = gaussian(128, seed=4)
    with torch.no_grad():
        z = flow(codes)  # the default solver, calibrated at the end of training
        forward_nfe = flow.nfe
        back = flow.reverse(z)
    assert relative_error(back, codes) < 1e-3
    assert 0 < forward_nfe <= 2_000 and flow.nfe > 0
    assert z.shape == (128, K * D)


@pytest.mark.parametrize("objective", ["maximum-likelihood", "flow-matching"])
def test_training_calibrates_the_cheapest_solver_that_inverts(trained_flows, objective, gaussian_bank):
    """The finished flow's default solver is the cheapest rk4 whose round trip on the trainer's
    calibration codes is within half of 1e-3 (relative, the largest error): one step fewer is not."""
    flow = trained_flows[objective]
    solver = flow.config.solver
    assert solver.method == "rk4", solver.describe()
    codes = calibration_codes(StyleBank.load(gaussian_bank).group(SKIN), 256, seed=0)
    error, nfe = flow.round_trip_error(codes, solver)
    assert error <= 5e-4 and nfe == 2 * 4 * solver.steps
    rank = CALIBRATION_STEPS.index(solver.steps)
    assert rank > 0  # these flows need more than the fewest steps: the check below has something to check
    fewer = Solver("rk4", steps=CALIBRATION_STEPS[rank - 1])
    assert flow.round_trip_error(codes, fewer)[0] > 5e-4


def test_resume_of_a_finished_run_writes_a_missing_final(gaussian_bank, tmp_path):
    """A run stopped while its final folder was written (the calibration takes a while) gets it on resume."""
    run = tmp_path / "flow"
    overrides = ["train.steps=20", "train.batch_size=64", "train.log_every=1000"]
    train_flow(gaussian_bank, run, "skin", objective="flow-matching", preset="tiny", overrides=overrides)
    first = json.loads((run / "final" / "config.json").read_text())
    shutil.rmtree(run / "final")
    train_flow(gaussian_bank, run, "skin", resume=run)
    again = json.loads((run / "final" / "config.json").read_text())
    assert again["step"] == 20 and again["model"] == first["model"]
    assert load_style_network(run / "final", "flow").config.method == "rk4"


def test_hutchinson_estimates_the_exact_log_likelihood():
    flow = untrained_flow("maximum-likelihood")
    codes = gaussian(1, seed=5).expand(4096, K, D)
    solver = Solver("rk4", steps=4)
    with torch.no_grad():
        exact = flow.log_prob(codes[:1], trace="exact", solver=solver)
        for probe in ("rademacher", "gaussian"):
            estimate = flow.log_prob(codes, trace="hutchinson", probe=probe, solver=solver,
                                     generator=torch.Generator().manual_seed(0))
            assert abs(float(estimate.mean() - exact)) < 4 * float(estimate.std()) / math.sqrt(4096) + 1e-4


def test_whitening_is_invertible_and_whitens():
    codes = gaussian(2048, seed=6)
    w = CodeWhitener(K, D)
    w.fit(codes)
    x = w.normalize(codes).flatten(1)
    assert torch.allclose(torch.cov(x.T), torch.eye(K * D), atol=1e-3)
    assert torch.allclose(w.denormalize(w.normalize(codes)), codes, atol=1e-4)
    _, logdet = torch.linalg.slogdet(torch.cov(codes.flatten(1).T).double())
    assert abs(float(w.log_abs_det()) + 0.5 * float(logdet)) < 1e-3


def test_solver_limits_and_settings():
    flow = untrained_flow("maximum-likelihood")
    codes = gaussian(4, seed=7)
    with pytest.raises(SolverError, match="more than 1 steps"):
        flow(codes, Solver("dopri5", 1e-12, 1e-12, max_steps=1))
    with pytest.raises(InputError, match="unknown ODE solver"):
        Solver("leapfrog")
    with pytest.raises(InputError, match="objective"):
        FlowConfig(objective="score-matching")
    assert FlowConfig(objective="flow-matching").solver.method == "rk4"
    assert FlowConfig().solver.method == "dopri5"
    flow.double()  # device/dtype agnostic: a float64 flow solves in float64
    assert flow(codes.double()).dtype == torch.float64


# ------------------------------------------------------------------------------------------ style bank


def test_style_bank_records_label_set_and_checkpoint(checkpoint, tmp_path):
    bank = encode_bank(checkpoint, "synthetic:8", split="all")
    assert bank.codes.shape == (8, 19, 16) and bank.presence.shape == (8, 19)
    assert bank.checkpoint_sha256 == checkpoint_identity(checkpoint)
    path = bank.save(tmp_path / "bank.safetensors")
    loaded = StyleBank.load(path, label_set="celebamask-hq", checkpoint=checkpoint)
    assert torch.equal(loaded.codes, bank.codes) and torch.equal(loaded.presence, bank.presence)
    assert loaded.names == bank.names and loaded.info["data"] == "synthetic:8"
    classes, skin = loaded.region("skin")
    assert classes == SKIN and skin.shape[1:] == (2, 16)
    with pytest.raises(CheckpointError, match="celebamask-hq codes, not lapa"):
        StyleBank.load(path, label_set="lapa")
    other = FaceStyleNet(get_preset("tiny").model).save_pretrained(tmp_path / "other")
    with pytest.raises(CheckpointError, match="encoded by another generator"):
        StyleBank.load(path, checkpoint=other)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable style bank"):
        StyleBank.load(tmp_path / "junk.safetensors")


# ------------------------------------------------------------------------------- sampling, fine-tuning


def random_mapping(editor: Editor, region: str = "skin", seed: int = 0) -> MappingNetwork:
    """An untrained mapping network for ``region`` whose codes spread like the tiny model's codes."""
    torch.manual_seed(seed)
    classes = editor.label_set.region_classes(region)
    net = MappingNetwork(replace(MAPPING_PRESETS["tiny"], region=region, classes=classes, style_dim=16))
    net.normalizer.std.fill_(2.0)  # well away from the target's own codes
    return net


def region_change(images: torch.Tensor, labels: np.ndarray, classes) -> tuple[float, float]:
    """Mean absolute change between the results, inside the region's pixels and outside them."""
    spread = (images - images.mean(0, keepdim=True)).abs().mean((0, 1)).numpy()
    inside = np.isin(labels, classes)
    return float(spread[inside].mean()), float(spread[~inside].mean())


@pytest.mark.parametrize("region", ["skin", "hair"])
def test_sampling_changes_the_region_more_than_the_rest(checkpoint, face, region):
    editor = Editor.from_pretrained(checkpoint)
    editor.add_style_network(random_mapping(editor, region))
    images = editor.sample(*face, region=region, n=4, seed=0, return_tensors=True)
    assert images.shape == (4, 3, 64, 64)
    labels = np.asarray(Image.open(face[1]))
    inside, outside = region_change(images, labels, editor.label_set.region_classes(region))
    assert inside > 1.2 * outside, (inside, outside)  # random weights spread a style through the convolutions
    again = editor.sample(*face, region=region, n=4, seed=0, return_tensors=True)
    assert torch.equal(images, again)  # the seed fixes the styles
    pil = editor.sample(*face, region=region, n=2, seed=1)
    assert len(pil) == 2 and pil[0].size == (64, 64)


def test_demo_model_sampling_changes_the_region_more_than_the_rest():
    if not (demo_dir() / "config.json").is_file() or not available_style_networks(demo_dir(), "mapping"):
        pytest.skip("the bundled demo model (with mapping networks) is not installed")
    editor = Editor.from_pretrained("demo")
    editor.checkpoint_dir = demo_dir()
    image, labels = render(sample_face(2026, 0), editor.image_size)
    region = editor.style_regions("mapping")[0]
    images = editor.sample(torch.from_numpy(image), torch.from_numpy(labels), region=region, n=4, seed=0,
                           return_tensors=True)
    inside, outside = region_change(images, labels, editor.label_set.region_classes(region))
    assert inside > 2 * outside, (inside, outside)


def test_finetuning_in_z_and_style_space(checkpoint, face, trained_flows):
    editor = Editor.from_pretrained(checkpoint)
    flow = trained_flows["flow-matching"]
    with pytest.raises(CheckpointError, match="codes of length 4"):
        editor.add_style_network(flow)  # trained on 4-value codes; this model's are 16
    torch.manual_seed(0)
    cfg = replace(FLOW_PRESETS["tiny"], classes=SKIN, style_dim=16, objective="flow-matching")
    flow16 = ContinuousNormalizingFlow(cfg)
    flow16.normalizer.fit(torch.randn(256, 2, 16))
    editor.add_style_network(flow16)

    codes = torch.randn(1, 2, 16)
    d = unit_direction(32, seed=3)
    with torch.no_grad():
        same = editor.finetune_codes(codes, "skin", [0.0], seed=3)
        moved = editor.finetune_codes(codes, "skin", [0.5, 1.0, 2.0], direction=d, space="style")
    assert relative_error(same, codes) < 1e-3  # step 0: the round trip
    assert torch.allclose((moved - codes).flatten(1).norm(dim=1), torch.tensor([0.5, 1.0, 2.0]), atol=1e-5)
    assert torch.allclose(moved[2] - codes[0], 2 * d.reshape(2, 16), atol=1e-5)

    z = editor.finetune(*face, region="skin", step=0.5, n_steps=3, seed=0, return_tensors=True)
    style = editor.finetune(*face, region="skin", step=[0.5, 1.0, 1.5], seed=0, space="style", return_tensors=True)
    assert z.shape == style.shape == (3, 3, 64, 64)
    labels = np.asarray(Image.open(face[1]))
    inside, outside = region_change(z, labels, SKIN)
    assert inside > outside
    assert not torch.equal(z, style)


def test_mixin_methods_use_only_the_editor_attributes(checkpoint, face):
    StyleEditor = type("StyleEditor", (Editor,), {})
    editor = StyleEditor.from_pretrained(checkpoint)
    editor.add_style_network(random_mapping(editor))
    assert editor.style_regions("mapping") == ["skin"]
    assert isinstance(editor.style_network("mapping", "skin"), MappingNetwork)
    out = editor.sample(*face, region="skin", n=2, seed=0)
    assert len(out) == 2
    assert "M_g(z)" in StyleEditor.sample.__doc__


# ---------------------------------------------------------------------------------------------- errors


def test_a_region_without_a_network_lists_the_available_ones(checkpoint, face, tmp_path):
    editor = Editor.from_pretrained(checkpoint)
    editor.checkpoint_dir = checkpoint
    with pytest.raises(CheckpointError, match="no mapping network for region 'hair'.*none is available"):
        editor.sample(*face, region="hair", n=1)
    net = random_mapping(editor, "skin")
    net.save_pretrained(checkpoint / "mapping" / "skin", bank={"checkpoint_sha256": checkpoint_identity(checkpoint)})
    try:
        assert editor.style_regions("mapping") == ["skin"]
        with pytest.raises(CheckpointError, match="no mapping network for region 'hair'.*available: skin"):
            editor.sample(*face, region="hair", n=1)
        assert len(editor.sample(*face, region="skin", n=1)) == 1  # found by region name, beside the generator
        with pytest.raises(CheckpointError, match="no flow network for region 'skin'"):
            editor.finetune(*face, region="skin", step=1.0)
        # a network trained on another generator's codes is refused
        net.save_pretrained(checkpoint / "mapping" / "lips", bank={"checkpoint_sha256": "f" * 64})
        with pytest.raises(CheckpointError, match="another generator"):
            editor.style_network("mapping", "lips")
    finally:
        import shutil

        shutil.rmtree(checkpoint / "mapping")


def test_bad_steps_and_directions():
    assert parse_steps("0.5, 1,2") == [0.5, 1.0, 2.0]
    assert parse_steps(-1) == [-1.0]
    for bad in ("", "0.5,,1", "a", "1,nan", "inf"):
        with pytest.raises(InputError, match="steps"):
            parse_steps(bad)
    with pytest.raises(InputError, match="code space has 32"):
        unit_direction(32, direction=torch.ones(5))
    with pytest.raises(InputError, match="non-zero"):
        unit_direction(4, direction=torch.zeros(4))
    assert torch.allclose(unit_direction(4, direction=[3.0, 0, 0, 4]).norm(), torch.tensor(1.0))


# ------------------------------------------------------------------------------------------------- CLI


def run(capsys, *argv) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def test_commands_encode_train_sample_finetune(capsys, checkpoint, face, tmp_path):
    ckpt = tmp_path / "ckpt"  # a private copy: the networks get installed beside it
    ckpt.mkdir()
    for name in ("config.json", "model.safetensors"):
        (ckpt / name).write_bytes((checkpoint / name).read_bytes())
    bank = tmp_path / "bank.safetensors"
    code, out, err = run(capsys, "encode-styles", "--checkpoint", ckpt, "--data", "synthetic:8", "--split", "all",
                         "--resolution", "80", "--out", bank)  # rendered at 80, resized to the model's 64
    assert code == 0, err
    assert "8 x 19 codes of length 16" in out
    assert run(capsys, "encode-styles", "--checkpoint", ckpt, "--data", "synthetic:8", "--out", bank)[0] == 2

    common = ["--bank", bank, "--preset", "tiny", "--batch-size", "4", "--checkpoint", ckpt]
    code, _, err = run(capsys, "train-mapping", *common, "--region", "skin", "--out", tmp_path / "map", "--steps", "6")
    assert code == 0, err
    code, _, err = run(capsys, "train-flow", *common, "--region", "skin", "--out", tmp_path / "flow", "--steps", "4")
    assert code == 0, err
    code, _, err = run(capsys, "train-flow", *common, "--region", "hair", "--objective", "flow-matching",
                       "--out", tmp_path / "flow-hair", "--steps", "4")
    assert code == 0, err
    assert available_style_networks(ckpt, "mapping") == ["skin"]
    assert available_style_networks(ckpt, "flow") == ["hair", "skin"]
    config = json.loads((ckpt / "flow" / "hair" / "config.json").read_text())
    assert config["kind"] == "flow" and config["model"]["classes"] == [13]
    assert config["model"]["objective"] == "flow-matching"
    assert config["bank"]["checkpoint_sha256"] == checkpoint_identity(ckpt)
    assert (tmp_path / "map" / "final" / "model.safetensors").is_file()
    assert (tmp_path / "map" / "tb").is_dir() and (tmp_path / "map" / "metrics.jsonl").is_file()

    target = ["--checkpoint", ckpt, "--target", face[0], "--target-labels", face[1]]
    code, out, err = run(capsys, "sample", *target, "--region", "skin", "--n", "3", "--seed", "0",
                         "--out-dir", tmp_path / "samples")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "sheet.png", "skin_00.png", "skin_01.png", "skin_02.png"]
    code, out, err = run(capsys, "finetune", *target, "--region", "skin", "--steps", "0.5,1,2", "--seed", "0",
                         "--space", "both", "--out-dir", tmp_path / "tune")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "tune").iterdir())
    assert names == ["sequence.png", "style_00_step0.5.png", "style_01_step1.png", "style_02_step2.png",
                     "z_00_step0.5.png", "z_01_step1.png", "z_02_step2.png"]
    assert Image.open(tmp_path / "tune" / "z_00_step0.5.png").size == (64, 64)

    # errors: one line, exit 2
    for argv, message in [
        (["sample", *target, "--region", "hair", "--n", "2", "--out-dir", tmp_path / "x"], "available: skin"),
        (["finetune", *target, "--region", "skin", "--steps", "0.5,abc", "--out-dir", tmp_path / "x"], "steps"),
        (["finetune", *target, "--region", "lips", "--steps", "1", "--out-dir", tmp_path / "x"],
         "available: hair, skin"),
        (["train-mapping", "--bank", bank, "--out", tmp_path / "m2", "--checkpoint", checkpoint.parent / "nope"],
         "checkpoint not found"),
        (["train-flow", "--bank", bank, "--region", "elbow", "--out", tmp_path / "f2"], "unknown region 'elbow'"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and len(err) == 1 and message in err[0], (argv, err)
    assert not (tmp_path / "x").exists()


def test_training_refuses_a_bank_of_another_checkpoint_or_label_set(capsys, checkpoint, tmp_path):
    bank = make_bank(gaussian(64, 0), sha="a" * 64).save(tmp_path / "bank.safetensors")
    code, _, err = run(capsys, "train-mapping", "--bank", bank, "--out", tmp_path / "m", "--preset", "tiny",
                       "--checkpoint", checkpoint)
    assert code == 2 and "encoded by another generator" in err[0]
    lapa = make_bank(gaussian(64, 0), classes=(1, 6), label_set="lapa").save(tmp_path / "lapa.safetensors")
    with pytest.raises(CheckpointError, match="lapa codes, not celebamask-hq"):
        StyleBank.load(lapa, label_set="celebamask-hq")
    code, _, err = run(capsys, "train-flow", "--bank", lapa, "--out", tmp_path / "f", "--preset", "tiny",
                       "--checkpoint", checkpoint)
    assert code == 2 and "lapa" in err[0]
    assert not (tmp_path / "m").exists() and not (tmp_path / "f").exists()


def test_resume_continues_exactly(gaussian_bank, tmp_path):
    overrides = ["train.steps=20", "train.batch_size=32", "train.save_every=5", "train.log_every=5"]
    straight = train_mapping(gaussian_bank, tmp_path / "a", "skin", preset="tiny", overrides=overrides)
    train_mapping(gaussian_bank, tmp_path / "b", "skin", preset="tiny", overrides=overrides, stop_at=12)
    assert not (tmp_path / "b" / "final").exists()
    resumed = train_mapping(None, tmp_path / "b", "skin", resume=True)
    a = load_file(str(straight / "final" / "model.safetensors"))
    b = load_file(str(resumed / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 12, 15, 20]


def test_demo_styles_rows_and_graceful_skip(checkpoint, tmp_path):
    from facestyle.demo.sheet import demo_faces
    from facestyle.demo.styles import demo_styles

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name in ("config.json", "model.safetensors"):
        (ckpt / name).write_bytes((checkpoint / name).read_bytes())
    editor = Editor.from_pretrained(ckpt)
    pairs = demo_faces(editor.image_size)[:1]
    lines: list[str] = []
    assert demo_styles(editor, pairs, tmp_path / "none", log=lines.append, checkpoint=ckpt) == []
    assert sum("skipped" in line for line in lines) == 3

    sha = {"checkpoint_sha256": checkpoint_identity(ckpt)}
    for region in ("skin", "hair"):
        random_mapping(editor, region).save_pretrained(ckpt / "mapping" / region, bank=sha)
    torch.manual_seed(0)
    flow = ContinuousNormalizingFlow(replace(FLOW_PRESETS["tiny"], classes=SKIN, style_dim=16))
    flow.normalizer.fit(torch.randn(256, 2, 16))
    flow.save_pretrained(ckpt / "flow" / "skin", bank=sha)
    editor = Editor.from_pretrained(ckpt)
    rows = demo_styles(editor, pairs, tmp_path / "out", log=lines.append, checkpoint=ckpt)
    assert [title for title, _ in rows] == ["random skin", "random hair", "tune skin (z)", "tune skin (style)"]
    assert all(len(row) == 7 for _, row in rows)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "styles_sheet.png" in written and "pair0_random_hair_4.png" in written
    assert "pair0_finetune_style_4.png" in written and "pair0_finetune_z_0.png" in written


def test_a_non_finite_loss_stops_training_without_saving(gaussian_bank, tmp_path, monkeypatch, capsys):
    original = ContinuousNormalizingFlow.flow_matching_loss
    calls = {"n": 0}

    def nan_after_three(self, *args, **kwargs):
        calls["n"] += 1
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] > 3 else loss

    monkeypatch.setattr(ContinuousNormalizingFlow, "flow_matching_loss", nan_after_three)
    code, _, err = run(capsys, "train-flow", "--bank", gaussian_bank, "--objective", "flow-matching", "--preset",
                       "tiny", "--set", "train.save_every=2", "--out", tmp_path / "run")
    assert code == 2 and "non-finite loss at step 4" in err[-1] and "step_0000002" in err[-1]
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_0000002"]
