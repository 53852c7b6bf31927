"""Where and how the networks run (facestyle.accel): mixed precision, --device auto, torch.compile."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import pytest
import torch

from facestyle.accel import Precision, auto_device, cpu_has_native
from facestyle.cli import build_parser, resolve_auto_device
from facestyle.config import get_preset
from facestyle.editor.editor import Editor
from facestyle.editor.inputs import resolve_device
from facestyle.errors import InputError
from facestyle.model import FaceStyleNet
from facestyle.train.common import CheckpointedRun, Distributed

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(branch: str = "sparse") -> FaceStyleNet:
    torch.manual_seed(0)
    model = FaceStyleNet(replace(get_preset("tiny").model, style_branch=branch, noise="off")).eval()
    with torch.no_grad():  # trained blend scalars are away from 0: make both branches of every norm count
        for name, p in model.named_parameters():
            if "blending" in name:
                p.normal_()
    return model


def face_batch(n: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    from facestyle.data.synthetic import render_labels, sample_face

    labels = torch.stack([torch.from_numpy(render_labels(sample_face(0, i), size)) for i in range(n)]).long()
    image = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return image, labels


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1]."""
    mse = ((a.float() - b.float()) / 2).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.mark.parametrize("branch", ["sparse", "factorized", "naive"])
def test_bf16_output_is_close_to_fp32(branch):
    """Every style path runs under bf16 autocast on the CPU and draws what float32 draws, to bf16's rounding."""
    model = tiny_model(branch)
    image, labels = face_batch()
    with torch.inference_mode():
        reference = model(image, labels)
        with Precision("bf16").autocast("cpu"):
            low = model(image, labels)
        again = model(image, labels)  # the kernel cache of the bf16 run does not leak into float32
    assert reference.dtype == torch.float32 and low.dtype == torch.bfloat16
    assert torch.equal(again, reference)
    assert psnr(low, reference) > 35, psnr(low, reference)
    assert psnr(low, reference) < math.inf  # it did run in bf16


def test_editor_precision_runs_in_bf16_and_returns_float32():
    model = tiny_model()
    image, labels = face_batch(1)
    full = Editor(model).reconstruct(image, labels, return_tensors=True)
    mixed_editor = Editor(tiny_model(), precision="bf16")
    mixed = mixed_editor.reconstruct(image, labels, return_tensors=True)
    assert mixed.dtype == torch.float32 and mixed.shape == full.shape
    assert 35 < psnr(mixed, full) < math.inf
    assert "bf16" in repr(mixed_editor)
    with pytest.raises(InputError, match="unknown precision"):
        Editor(model, precision="fp8")


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_its_arithmetic_warns_once(monkeypatch, caplog, native):
    import facestyle.accel as accel

    monkeypatch.setattr(accel, "_warned", set())
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    assert cpu_has_native("bf16") is native and cpu_has_native("fp32")
    with caplog.at_level("WARNING", logger="facestyle.accel"):
        for _ in range(2):
            with Precision("bf16").autocast("cpu"):
                assert torch.get_autocast_dtype("cpu") == torch.bfloat16
            with Precision("fp32").autocast("cpu"):
                pass
    said = [r.getMessage() for r in caplog.records if r.name == "facestyle.accel"]
    assert said == ([] if native else [said[0]]) and all("no bf16 arithmetic" in m for m in said)


def test_fp16_training_steps_through_a_gradient_scaler():
    """A trainer's optimize(): fp16 scales the loss and steps; fp32 and bf16 need no scaler."""
    run = CheckpointedRun()
    run.dist, run.device = Distributed(), torch.device("cpu")
    run.init_precision("fp16", None)
    assert run.scaler.is_enabled()
    net = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before, start = net.weight.detach().clone(), run.scaler.get_scale()
    for _ in range(4):  # the first steps overflow at the initial scale: skipped, and the scale backs off
        with run.autocast():
            loss = net(torch.ones(2, 4)).float().square().mean()
        run.optimize(loss, opt)
    assert 0 < run.scaler.get_scale() < start
    assert not torch.equal(net.weight, before) and net.weight.dtype == torch.float32  # master weights stay fp32
    assert torch.isfinite(net.weight).all()
    # resume: the recorded precision unless another is asked for
    run.init_precision(None, {"precision": "bf16"})
    assert run.precision.name == "bf16" and not run.scaler.is_enabled()
    run.init_precision("fp32", {"precision": "bf16"})
    assert run.precision.name == "fp32"
    run.init_precision(None, {})  # a checkpoint from before precisions were recorded
    assert run.precision.name == "fp32"


def test_device_auto_is_cuda_when_present_else_cpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_device() == "cpu"
    assert resolve_device("auto") == torch.device("cpu")
    assert Distributed().device("auto") == torch.device("cpu")
    args = argparse.Namespace(command="reconstruct", device="auto")
    resolve_auto_device(args)
    assert args.device == "cpu" and capsys.readouterr().err == ""  # the CPU, as before auto: quiet
    args = argparse.Namespace(command="reconstruct", device="cuda:1")  # an explicit choice is kept, silently
    resolve_auto_device(args)
    assert args.device == "cuda:1" and capsys.readouterr().err == ""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_device() == "cuda"
    args = argparse.Namespace(command="reconstruct", device="auto")
    resolve_auto_device(args)
    assert args.device == "cuda"
    said = capsys.readouterr().err.strip()
    assert said == "facestyle reconstruct: device auto: cuda (--device cpu to stay on the CPU)"


def test_every_command_that_runs_a_model_defaults_to_auto_and_takes_precision():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    with_device = {name: cmd for name, cmd in commands.items()
                   if any("--device" in a.option_strings for a in cmd._actions)}
    assert {"reconstruct", "transfer", "train", "train-parser", "evaluate", "demo"} <= set(with_device)
    for name, cmd in with_device.items():
        defaults = {a.dest: a.default for a in cmd._actions}
        assert defaults["device"] == "auto", name
        if name not in ("serve", "train-mapping", "train-flow"):
            assert "precision" in defaults, name
    args = parser.parse_args(["reconstruct", "--checkpoint", "demo", "--precision", "bf16"])
    assert args.precision == "bf16" and args.device == "auto"


@pytest.mark.slow
def test_compiled_tiny_model_matches_eager():
    """torch.compile (inductor on the CPU) draws what eager mode draws."""
    model = tiny_model("factorized")
    image, labels = face_batch()
    compiled = torch.compile(model, dynamic=False)
    with torch.no_grad():
        eager = model(image, labels)
        out = compiled(image, labels)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
