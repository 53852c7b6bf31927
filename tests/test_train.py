"""Generator training: loss goes down on real faces, harmony supervision lowers the composite loss, exact
resume, NaN stop, VGG errors, checkpoints, signals, the data stream, and the ``facestyle train`` command.
Everything runs the tiny preset on CPU."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import facestyle.losses
from facestyle.cli import main
from facestyle.config import PRESETS, load_config
from facestyle.data.spec import parse_data_spec
from facestyle.data.transforms import eval_transform
from facestyle.errors import InputError, WeightsError
from facestyle.io import shared_root
from facestyle.model import FaceStyleNet
from facestyle.nn.features.vgg19 import VGG19Features
from facestyle.train.common import (
    DataStream,
    Distributed,
    EpochSampler,
    GracefulStop,
    RunStopped,
    TrainingError,
    flatten_state,
    latest_checkpoint,
    list_checkpoints,
    load_trainer_state,
    save_trainer_state,
    unflatten_state,
)
from facestyle.train.generator import GeneratorTrainer, learning_rate_factor, train_generator

# Quiet, fast runs: no samples or logs unless a test asks for them.
FAST = ["train.sample_every=0", "train.log_every=1000", "train.save_every=1000"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(*overrides: str):
    return load_config(preset="tiny", overrides=[*FAST, *overrides])


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def count_calls_then(monkeypatch: pytest.MonkeyPatch, after: int, action) -> None:
    """Wrap the pixel L1 loss (the tiny preset's reconstruction term, called once per step): from call
    ``after + 1`` on, ``action(loss)`` replaces its result."""
    original = facestyle.losses.pixel_l1_loss
    calls = {"n": 0}

    def wrapped(fake, real, weight=10.0):
        calls["n"] += 1
        loss = original(fake, real, weight)
        return action(loss) if calls["n"] > after else loss

    monkeypatch.setattr(facestyle.losses, "pixel_l1_loss", wrapped)


# ------------------------------------------------------------------------------------------ training


def test_training_lowers_reconstruction_error_on_real_faces(tmp_path: Path) -> None:
    root = shared_root()
    faces = root / "data" / "faces" if root else None
    if faces is None or not (faces / "images").is_dir():
        pytest.skip("shared faces not found ($FACESTYLE_SHARED/data/faces)")
    config = tiny("train.steps=24", "train.decay_start=24", "train.lr_g=1e-3", "train.batch_size=4")
    run = tmp_path / "run"
    train_generator(config, f"folder:{faces}", run, stop_at=1)  # "before": the weights after one step
    train_generator(config, None, run, resume=True)

    dataset = parse_data_spec(f"folder:{faces}", transform=eval_transform(64))
    batch = [dataset[i] for i in range(4)]
    image, labels = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])

    def error(checkpoint: Path) -> float:
        with torch.no_grad():
            return F.l1_loss(FaceStyleNet.from_pretrained(checkpoint)(image, labels), image).item()

    before, after = error(run / "checkpoints" / "step_0000001"), error(run / "final")
    assert after < 0.8 * before, (before, after)


def composite_error(trainer: GeneratorTrainer, batch) -> float:
    """Mean |harmonized transfer - ground truth| over a composite batch, in eval mode."""
    trainer.model.eval()
    try:
        with torch.no_grad():
            return F.l1_loss(trainer.harmonize(batch)[0], batch.truth).item()
    finally:
        trainer.model.train()


def train_steps(trainer: GeneratorTrainer, image: torch.Tensor, labels: torch.Tensor, steps: int) -> dict:
    trainer.start_training()
    for _ in range(steps):
        losses = trainer.train_step(image, labels)
        trainer.step += 1
    return losses


@pytest.mark.parametrize("harmony", ["synthetic", "relit"])
def test_harmony_supervision_lowers_the_composite_loss(tmp_path: Path, harmony: str) -> None:
    """A few high-lr steps on the trainer's own step-0 composites (held fixed) lower their error to the ground
    truth. For synthetic composites, whose ground truths are faces the reconstruction never sees, the same
    steps without harmony supervision (same initial weights, same data batch) leave it clearly higher."""
    settings = ("train.lr_g=2e-3", "train.harmony_share=1")
    trainer = GeneratorTrainer(tiny(f"train.harmony={harmony}", *settings), "synthetic:4", tmp_path / "on")
    image, labels, _ = next(iter(trainer.data))
    fixed = trainer.composite_batch(image, labels)
    assert fixed.target.shape == (2, 3, 64, 64) and fixed.classes.any(1).all()
    if harmony == "relit":  # the step's own photos are the targets and the ground truths
        assert torch.equal(fixed.truth, image) and not torch.equal(fixed.reference, image)
    trainer.composite_batch = lambda image, labels: fixed
    before = composite_error(trainer, fixed)

    losses = train_steps(trainer, image, labels, 5)
    assert {"harmony_l1", "harmony_feat", "harmony_gan"} <= losses.keys()
    after = composite_error(trainer, fixed)
    assert after < 0.8 * before, (before, after)
    if harmony == "synthetic":
        control = GeneratorTrainer(tiny("train.harmony=off", *settings), "synthetic:4", tmp_path / "off")
        assert composite_error(control, fixed) == before
        assert "harmony_l1" not in train_steps(control, image, labels, 5)
        assert after < 0.9 * composite_error(control, fixed), (before, after)


def test_harmony_code_loss_trains_mrsa_alone(tmp_path: Path) -> None:
    """``train.harmony_code_weight``: the same transfer image, plus a code loss whose gradient reaches MRSA
    (the mlp mix included) and nothing else; steps on fixed composites lower it; refused without MRSA."""
    settings = ("train.harmony=synthetic", "train.harmony_share=1", "model.attention_mix=mlp", "train.lr_g=2e-3")
    trainer = GeneratorTrainer(tiny(*settings, "train.harmony_code_weight=10"), "synthetic:4", tmp_path / "on")
    image, labels, _ = next(iter(trainer.data))
    fixed = trainer.composite_batch(image, labels)
    trainer.model.eval()
    with torch.no_grad():
        plain = trainer.model.transfer(fixed.target, fixed.target_labels, fixed.reference, fixed.reference_labels,
                                       fixed.classes)
        torch.testing.assert_close(trainer.harmonize(fixed)[0], plain)
    trainer.model.train()
    with torch.no_grad():
        trainer.model.mrsa.alpha.fill_(0.5)  # away from 0, so that every MRSA weight gets a gradient
    _, code_loss = trainer.harmonize(fixed)
    code_loss.backward()
    for name, p in trainer.model.named_parameters():
        reached = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert reached == (name.startswith("mrsa.") and not name.startswith("mrsa.mix.0.")), name
    trainer.model.zero_grad(set_to_none=True)

    def code_error() -> float:
        trainer.model.eval()
        with torch.no_grad():
            value = float(trainer.harmonize(fixed)[1])
        trainer.model.train()
        return value

    before = code_error()
    trainer.composite_batch = lambda image, labels: fixed
    losses = train_steps(trainer, image, labels, 5)
    assert "harmony_code" in losses and "harmony_l1" in losses
    assert code_error() < 0.8 * before
    with pytest.raises(InputError, match="harmony_code_weight trains MRSA"):
        GeneratorTrainer(tiny(*settings, "train.harmony_code_weight=1", "model.attention=off"), "synthetic:4",
                         tmp_path / "off")


def test_harmony_composites_follow_the_step(tmp_path: Path) -> None:
    """``both`` splits a step's composites between synthetic and relit (an odd one alternating by step); the
    draw depends only on the step (resume-safe), and each step draws new ones."""
    trainer = GeneratorTrainer(tiny("train.harmony=both", "train.batch_size=3", "train.harmony_share=1"),
                               "synthetic:4", tmp_path)
    image, labels, _ = next(iter(trainer.data))
    first = trainer.composite_batch(image, labels)
    assert torch.equal(first.target, trainer.composite_batch(image, labels).target)
    assert torch.equal(first.truth[2:], image[:1]) and not torch.equal(first.truth[:2], image[:2])  # 2 + 1
    trainer.step = 1
    second = trainer.composite_batch(image, labels)
    assert torch.equal(second.truth[1:], image[:2]) and not torch.equal(second.target[0], first.target[0])  # 1 + 2


@pytest.mark.parametrize("harmony", ["off", "both"])
def test_resume_is_bit_identical(tmp_path: Path, harmony: str) -> None:
    """2N steps in one go == N steps, stop, resume to 2N (across an epoch boundary and the lr decay)."""
    config = tiny("train.steps=6", "train.decay_start=2", "train.deterministic=true", "train.sample_every=2",
                  f"train.harmony={harmony}")
    train_generator(config, "synthetic:10", tmp_path / "straight")
    train_generator(config, "synthetic:10", tmp_path / "resumed", stop_at=3)
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed")] == [3]
    train_generator(config, None, tmp_path / "resumed", resume=True)

    for name in ("model.safetensors", "trainer/state.safetensors"):
        a = load_file(str(tmp_path / "straight" / "checkpoints" / "step_0000006" / name))
        b = load_file(str(tmp_path / "resumed" / "checkpoints" / "step_0000006" / name))
        assert a.keys() == b.keys()
        assert [k for k in a if not torch.equal(a[k], b[k])] == [], name
    state = load_trainer_state(tmp_path / "resumed" / "checkpoints" / "step_0000006" / "trainer")
    assert state["step"] == 6 and state["data"] == {"epoch": 1, "position": 4}  # 9 faces: 4 batches of 2


def test_bf16_run_records_its_precision_and_resumes_in_it_bit_identically(tmp_path: Path) -> None:
    """--precision bf16: recorded in run.json and the checkpoints; a resume without --precision continues in
    bf16, and ends where an uninterrupted bf16 run ends."""
    config = tiny("train.steps=2", "train.deterministic=true", *FAST)
    train_generator(config, "synthetic:6", tmp_path / "straight", precision="bf16")
    train_generator(config, "synthetic:6", tmp_path / "resumed", stop_at=1, precision="bf16")
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["precision"] == "bf16"
    train_generator(config, None, tmp_path / "resumed", resume=True)  # no precision: the run's own
    final = "checkpoints/step_0000002"
    state = load_trainer_state(tmp_path / "resumed" / final / "trainer")
    assert state["precision"] == "bf16"
    a, b = (load_file(str(tmp_path / run / final / "model.safetensors")) for run in ("straight", "resumed"))
    assert all(v.dtype == torch.float32 for v in a.values())  # float32 master weights
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    count_calls_then(monkeypatch, after=4, action=lambda loss: loss * float("nan"))
    run = tmp_path / "run"
    code = main(["train", "--preset", "tiny", "--data", "synthetic:8", "--out", str(run), "--steps", "10",
                 "--set", "train.save_every=2", "--set", "train.sample_every=0"])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("facestyle train: error: non-finite generator loss at step 5 (")
    assert "l1=nan" in error and "step_0000004" in error

    assert latest_checkpoint(run) == run / "checkpoints" / "step_0000004"
    assert not (run / "checkpoints" / "step_0000005").exists() and not (run / "final").exists()
    model = FaceStyleNet.from_pretrained(latest_checkpoint(run))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nonfinite_weights_are_never_saved(tmp_path: Path) -> None:
    trainer = GeneratorTrainer(tiny(), "synthetic:4", tmp_path)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("inf"))
    with pytest.raises(TrainingError, match="non-finite weights at step 0 .*nothing was saved"):
        trainer.save_checkpoint()
    assert not list_checkpoints(tmp_path)


def test_missing_vgg_weights_fail_before_training(tmp_path: Path, capsys) -> None:
    config = tiny("train.use_vgg=true")
    with pytest.raises(WeightsError, match=r"vgg19-dcbbf910\.pth.*https://download\.pytorch\.org/models/"):
        train_generator(config, "synthetic:8", tmp_path / "run", weights_dir=tmp_path / "empty")
    assert not (tmp_path / "run").exists()  # nothing written, no step taken

    args = ["train", "--preset", "tiny", "--set", "train.use_vgg=true", "--data", "synthetic:8",
            "--weights-dir", str(tmp_path / "empty"), "--steps", "1"]
    assert main([*args, "--out", str(tmp_path / "cli")]) == 2
    assert "vgg19-dcbbf910.pth" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "no-vgg"), "--no-vgg"]) == 0
    assert (tmp_path / "no-vgg" / "final" / "model.safetensors").is_file()


def test_vgg_perceptual_loss_trains(tmp_path: Path, monkeypatch) -> None:
    """The perceptual path end to end, with a random-weight VGG19 standing in for the ImageNet one."""
    monkeypatch.setattr(VGG19Features, "load_weights", classmethod(lambda cls, weights_dir=None: cls()))
    train_generator(tiny("train.use_vgg=true", "train.steps=2", "train.log_every=1"), "synthetic:4", tmp_path)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "loss/vgg" in logged[-1] and "loss/l1" not in logged[-1]


# --------------------------------------------------------------------------------- checkpoints, signals


def test_checkpoints_rotate_and_the_run_folder_loads(tmp_path: Path) -> None:
    train_generator(tiny("train.steps=5", "train.save_every=1", "train.keep_last=2"), "synthetic:4", tmp_path)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5]
    assert (tmp_path / "latest").read_text().strip() == "checkpoints/step_0000005"
    assert not list(tmp_path.rglob(".tmp-*"))
    newest = weights(tmp_path / "checkpoints" / "step_0000005")
    for folder in (tmp_path, tmp_path / "final"):  # the mirror and the finished generator
        assert all(torch.equal(newest[k], v) for k, v in weights(folder).items())
        FaceStyleNet.from_pretrained(folder)

    with pytest.raises(TrainingError, match="already holds a run; continue it with --resume"):
        train_generator(tiny(), "synthetic:4", tmp_path)


def test_sigint_finishes_the_step_saves_and_resumes(tmp_path: Path, monkeypatch, capsys, request) -> None:
    def interrupt(loss):
        os.kill(os.getpid(), signal.SIGINT)  # delivered to GracefulStop's handler in this thread
        return loss

    count_calls_then(monkeypatch, after=2, action=interrupt)
    config = tiny("train.steps=8")
    # the run must put back the handler it found; a background job starts with SIGINT ignored, so set one
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    with pytest.raises(RunStopped) as stopped:  # the process exits 130 (Ctrl-C), not 0: the run is not finished
        train_generator(config, "synthetic:4", tmp_path)
    assert stopped.value.code == 130
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3]  # step 3 finished, then saved
    assert not (tmp_path / "final").exists()
    err = capsys.readouterr().err
    assert "SIGINT received" in err and "stopped by Ctrl-C (SIGINT) at step 3 (exit status 130): saved" in err, err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    monkeypatch.undo()
    train_generator(config, None, tmp_path, resume=True)
    assert load_trainer_state(latest_checkpoint(tmp_path) / "trainer")["step"] == 8


def test_graceful_stop_flags_then_aborts() -> None:
    stop = GracefulStop()
    stop.handler(signal.SIGTERM)
    assert stop.requested == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C does not wait
        stop.handler(signal.SIGINT)


# ------------------------------------------------------------------------------------- pieces


def test_learning_rate_schedule_is_constant_then_linear_to_zero() -> None:
    cfg = tiny("train.steps=10", "train.decay_start=6").train
    assert [learning_rate_factor(s, cfg) for s in range(11)] == [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0]


def test_trainer_state_round_trips_optimizers_without_pickle(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_trainer_state(tmp_path, {"optimizer": opt.state_dict(), "step": 7, "none": None})
    assert {p.name for p in tmp_path.iterdir()} == {"state.json", "state.safetensors"}
    loaded = load_trainer_state(tmp_path)
    assert loaded["step"] == 7 and loaded["none"] is None
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.999)
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(loaded["optimizer"])
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(opt2.state_dict()["state"][0][k], opt.state_dict()["state"][0][k])

    tensors: dict[str, torch.Tensor] = {}
    structure = {1: (torch.ones(2), "a"), "x": [2.5, {"y": torch.zeros(1)}]}
    restored = unflatten_state(json.loads(json.dumps(flatten_state(structure, "s", tensors))), tensors)
    assert restored[1][1] == "a" and restored["x"][0] == 2.5 and torch.equal(restored[1][0], torch.ones(2))


def test_epoch_sampler_shards_and_resumes() -> None:
    whole = list(EpochSampler(10, seed=3))
    assert sorted(i for i, _ in whole) == list(range(10))
    assert whole == list(EpochSampler(10, seed=3)) and whole != list(EpochSampler(10, seed=4))
    resumed = EpochSampler(10, seed=3)
    resumed.set_epoch(0, start=4)
    assert list(resumed) == whole[4:]
    ranks = [list(EpochSampler(11, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 5 and not {i for i, _ in ranks[0]} & {i for i, _ in ranks[1]}


def test_data_stream_position_names_the_next_batch() -> None:
    dataset = [(torch.full((1,), float(i)), torch.zeros(1, dtype=torch.long), str(i)) for i in range(7)]

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return len(dataset)

        def __getitem__(self, key):
            return dataset[key[0]]

    stream = DataStream(Items(), batch_size=2, seed=0, dist_env=Distributed())
    it = iter(stream)
    seen = [next(it)[0].flatten().tolist() for _ in range(5)]  # 3 batches per epoch, then epoch 1
    assert stream.state_dict() == {"epoch": 1, "position": 4}
    again = DataStream(Items(), batch_size=2, seed=0, dist_env=Distributed())
    again.load_state_dict({"epoch": 1, "position": 2})
    assert next(iter(again))[0].flatten().tolist() == seen[4]


# ------------------------------------------------------------------------------------------ the CLI


def test_cli_trains_and_writes_the_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = main(["train", "--preset", "tiny", "--data", "synthetic:6", "--out", str(run), "--steps", "2",
                 "--batch-size", "2", "--set", "train.sample_every=2", "--set", "train.log_every=1"])
    assert code == 0
    saved = load_config(run / "config.yaml", preset="paper")
    assert saved == load_config(preset="tiny", overrides=["train.steps=2", "train.sample_every=2",
                                                          "train.log_every=1"])
    assert json.loads((run / "run.json").read_text())["spec"] == "synthetic:6"
    assert (run / "samples" / "step_0000002.png").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert any((run / "tb").iterdir())
    assert FaceStyleNet.from_pretrained(run).config == saved.model

    # --resume with a longer schedule reads the run's own config and data
    assert main(["train", "--resume", str(run), "--steps", "3"]) == 0
    assert latest_checkpoint(run).name == "step_0000003"


def test_cli_harmony_switch_round_trips(tmp_path: Path, capsys) -> None:
    """--set train.harmony=both trains with composites, lands in config.yaml and is read back on --resume; a
    config.yaml from before the switch loads with it off; the presets: paper off, demo both."""
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--data", "synthetic:4", "--out", str(run), "--steps", "1",
                 "--set", "train.harmony=both", "--set", "train.harmony_weight=2", *[f"--set={o}" for o in FAST]]) == 0
    saved = load_config(run / "config.yaml")
    assert (saved.train.harmony, saved.train.harmony_weight, saved.train.harmony_share) == ("both", 2.0, 0.5)
    assert main(["train", "--resume", str(run), "--steps", "2", "--set", "train.log_every=1"]) == 0
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["step"] == 2 and "loss/harmony_l1" in logged and "loss/l1" in logged

    old = tmp_path / "old.yaml"
    old.write_text("\n".join(line for line in (run / "config.yaml").read_text().splitlines() if "harmony" not in line))
    assert load_config(old).train.harmony == "off"
    assert PRESETS["paper"].train.harmony == PRESETS["tiny"].train.harmony == "off"
    assert PRESETS["demo"].train.harmony == "both"
    with pytest.raises(InputError, match="train.harmony must be one of off, synthetic, relit, both"):
        load_config(preset="tiny", overrides=["train.harmony=always"])
    capsys.readouterr()
    assert main(["train", "--preset", "tiny", "--data", "synthetic:4", "--out", str(tmp_path / "lapa"),
                 "--set", "model.label_set=lapa", "--set", "train.harmony=synthetic"]) == 2
    assert "train.harmony=synthetic draws synthetic faces" in capsys.readouterr().err
    assert not (tmp_path / "lapa").exists()


@pytest.mark.parametrize("data", ["nonsense", "folder:/no/such/folder", "synthetic:many"])
def test_cli_bad_data_is_one_line(tmp_path: Path, capsys, data: str) -> None:
    assert main(["train", "--preset", "tiny", "--data", data, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facestyle train: error: --data")
    assert not (tmp_path / "run").exists()
