"""DoveNet, the post-hoc harmonizer (facestyle.nn.dovenet, facestyle.train.harmonizer): sizes, shapes, the
partial convolutions, save/load, training, resume, the command line and the Editor / evaluate wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import drawn_face, tiny_checkpoint

from facestyle.checkpoint import demo_dir
from facestyle.cli import main
from facestyle.editor.editor import Editor
from facestyle.errors import CheckpointError
from facestyle.nn.dovenet import DOVENET_PRESETS, DomainVerificationDiscriminator, DoveNet, dovenet_input
from facestyle.styles.networks import HARMONIZER_DIR, find_harmonizer, install_harmonizer, load_harmonizer
from facestyle.train.harmonizer import HarmonizerTrainer, resolve_configs, train_harmonizer

TINY = DOVENET_PRESETS["tiny"]
SYNTHETIC = ["train.pairs=synthetic"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_dovenet(seed: int = 0) -> DoveNet:
    torch.manual_seed(seed)
    net = DoveNet(TINY)
    for p in net.parameters():  # a visible effect: PyTorch's default init leaves the output near 0
        p.data.normal_(0, 0.2)
    return net.eval()


def _batch(size: int = 64, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    masks = torch.zeros(n, 1, size, size)
    masks[:, :, size // 4:size // 2, size // 4:3 * size // 4] = 1
    return images, masks


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------------------------- networks


def test_paper_size_parameter_counts():
    """baselines.md section 11: DoveNet's s2ad generator (instance norm) 54.76 M, its discriminator 17.79 M."""
    with torch.device("meta"):
        g = DoveNet(DOVENET_PRESETS["paper"])
    # the discriminator on the CPU (1 s): spectral norm's power iteration at construction runs through
    # PyTorch's Python decompositions on the meta device (5-15 s)
    d = DomainVerificationDiscriminator.from_config(DOVENET_PRESETS["paper"])
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    assert abs(n_g / 54.76e6 - 1) < 0.02, n_g
    assert abs(n_d / 17.79e6 - 1) < 0.02, n_d
    assert len(g.gates) == 3 and len(g.down) == 8  # attention in the three blocks next to the outermost


def test_shapes_and_resizing():
    net, d = _tiny_dovenet(), DomainVerificationDiscriminator.from_config(TINY)
    images, masks = _batch()
    out = net(dovenet_input(images, masks))
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1
    score, verification = d(out, masks)
    assert score.shape == verification.shape == (2, 1, 1, 1)
    with torch.no_grad():  # another size: resized in and back; paste keeps the composite outside the mask
        small, small_masks = _batch(size=48, n=1)
        assert net.harmonize(small, small_masks[:, 0]).shape == (1, 3, 48, 48)
        pasted = net.harmonize(small, small_masks, paste=True)
        assert torch.equal(pasted[small_masks.expand_as(pasted) == 0], small[small_masks.expand_as(small) == 0])
        assert not torch.equal(pasted, small)


def test_foreground_features_do_not_see_the_background():
    """The partial convolutions: the foreground pass ignores pixels outside the mask, the background pass
    those inside, and the global pass sees both."""
    torch.manual_seed(0)
    d = DomainVerificationDiscriminator.from_config(TINY).eval()
    images, masks = _batch(n=1)
    changed = torch.where(masks.bool(), images, -images)  # the background changed, the foreground kept
    with torch.no_grad():
        assert torch.allclose(d.region(images, masks), d.region(changed, masks), atol=1e-6)
        assert not torch.allclose(d.region(images, 1 - masks), d.region(changed, 1 - masks), atol=1e-4)
        assert not torch.allclose(d.whole(images), d.whole(changed), atol=1e-4)


def test_save_and_load_round_trip(tmp_path):
    net = _tiny_dovenet()
    net.save_pretrained(tmp_path / "h")
    loaded = DoveNet.from_pretrained(tmp_path / "h")
    images, masks = _batch()
    with torch.no_grad():
        assert torch.equal(net.harmonize(images, masks), loaded.harmonize(images, masks))
    assert json.loads((tmp_path / "h" / "config.json").read_text())["kind"] == "harmonizer"
    generator = tiny_checkpoint(tmp_path / "g")
    with pytest.raises(CheckpointError, match="no harmonizer"):
        find_harmonizer(generator)
    installed = install_harmonizer(tmp_path / "h", generator)  # beside a generator: found from it
    assert installed == generator / HARMONIZER_DIR and find_harmonizer(generator) == installed
    assert isinstance(load_harmonizer(generator), DoveNet)


# ---------------------------------------------------------------------------------------------- training


def test_training_steps_lower_the_l1_on_a_fixed_batch(tmp_path):
    model, train = resolve_configs("tiny", [*SYNTHETIC, "train.lr=1e-3"])
    trainer = HarmonizerTrainer(model, train, None, tmp_path / "run")
    composite, mask, truth = trainer.probe_batch  # pairs outside the training pool

    def l1() -> float:
        trainer.model.eval()
        with torch.no_grad():
            return float(F.l1_loss(trainer.model(dovenet_input(composite, mask)), truth))

    before = l1()
    trainer.start_training()
    losses = [trainer.train_step(composite, mask, truth) for _ in range(10)]
    assert all(np.isfinite(list(step.values())).all() for step in losses)
    assert {"l1", "g_global", "g_verification", "d_global", "d_verification", "d_gp"} <= set(losses[0])
    assert l1() < 0.9 * before


def test_resume_matches_an_uninterrupted_run_and_installs(tmp_path):
    overrides = [*SYNTHETIC, "train.deterministic=true"]
    whole = train_harmonizer(None, tmp_path / "whole", preset="tiny", overrides=overrides, steps=4)
    part = train_harmonizer(None, tmp_path / "part", preset="tiny", overrides=overrides, steps=4, stop_at=2)
    assert not (part / "final").exists()
    generator = tiny_checkpoint(tmp_path / "g")
    train_harmonizer(None, part, resume=True, install_to=generator)  # the run's own data and config
    a = DoveNet.from_pretrained(whole / "final").state_dict()
    b = DoveNet.from_pretrained(part / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert DoveNet.from_pretrained(generator / HARMONIZER_DIR).state_dict().keys() == a.keys()
    logged = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert any("probe/l1" in entry for entry in logged)


def test_relit_pairs_from_photos(tmp_path):
    """--data photos give relit pairs: the ground truth is the photo, the composite differs inside the mask."""
    model, train = resolve_configs("tiny", ["train.pairs=relit"])
    trainer = HarmonizerTrainer(model, train, "synthetic:4", tmp_path / "run", data_seed=3)
    composite, mask, truth = trainer.pool[(0, 11)]
    image, _, _ = trainer.pool.photos[0]
    assert torch.equal(truth, image) and mask.sum() > 0
    assert torch.equal(composite * (1 - mask), truth * (1 - mask)) and not torch.equal(composite, truth)


# ------------------------------------------------------------------------------------------ command line


@pytest.mark.parametrize("argv, message", [
    (["--preset", "tiny"], "needs photos: give --data"),
    (["--preset", "tiny", "--set", "train.pairs=all"], "train.pairs must be one of"),
    (["--preset", "tiny", "--set", "train.pairs=synthetic", "--data", "synthetic:4"], "--data is not used"),
    (["--preset", "huge"], "invalid choice"),
])
def test_train_harmonizer_refuses_bad_input(tmp_path, capsys, argv, message):
    try:
        code, _, err = _run(capsys, "train-harmonizer", "--out", tmp_path / "run", *argv)
    except SystemExit as exc:  # argparse's own refusals
        code, err = exc.code, capsys.readouterr().err
    assert code == 2 and message in err
    assert "Traceback" not in err and not (tmp_path / "run" / "checkpoints").exists()


def test_transfer_with_a_harmonizer(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "g")
    _tiny_dovenet().save_pretrained(tmp_path / "h")
    editor = Editor.from_pretrained(checkpoint)
    (target, t_labels), (reference, r_labels) = drawn_face(1, 80), drawn_face(2, 80)
    plain = editor.transfer(target, t_labels, reference, r_labels, regions="skin", harmonize=False,
                            return_tensors=True)
    after = editor.transfer(target, t_labels, reference, r_labels, regions="skin", harmonize=False,
                            return_tensors=True, harmonizer=tmp_path / "h")
    assert after.shape == plain.shape == (3, 80, 80) and after.abs().max() <= 1
    assert (after - plain).abs().mean() > 0.01
    again = editor.transfer(target, t_labels, reference, r_labels, regions="skin", harmonize=False,
                            return_tensors=True, harmonizer=DoveNet.from_pretrained(tmp_path / "h"))
    assert torch.allclose(after, again, atol=1e-5)

    from facestyle.io import save_image, save_labels

    for name, (photo, labels) in {"t": (target, t_labels), "r": (reference, r_labels)}.items():
        save_image(photo, tmp_path / f"{name}.png")
        save_labels(labels, tmp_path / f"{name}_labels.png")
    args = ["transfer", "--checkpoint", checkpoint, "--target", tmp_path / "t.png", "--target-labels",
            tmp_path / "t_labels.png", "--reference", tmp_path / "r.png", "--reference-labels",
            tmp_path / "r_labels.png", "--regions", "skin", "--out", tmp_path / "out.png"]
    code, _, err = _run(capsys, *args, "--harmonizer", tmp_path / "h")
    assert code == 0, err
    assert (tmp_path / "out.png").is_file()
    code, _, err = _run(capsys, *args, "--harmonizer", tmp_path / "nowhere")
    assert code == 2 and "harmonizer not found" in err and len(err.strip().splitlines()) == 1
    if not (demo_dir() / HARMONIZER_DIR / "config.json").is_file():
        code, _, err = _run(capsys, *args, "--harmonizer", "demo")
        assert code == 2 and "the bundled demo has no harmonizer" in err


def test_evaluate_transfer_adds_the_sean_dovenet_row(real_faces, tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "g")
    _tiny_dovenet().save_pretrained(tmp_path / "h")
    out = tmp_path / "report"
    base = ["evaluate", "--checkpoint", checkpoint, "--task", "transfer", "--data", f"folder:{real_faces}",
            "--limit", 4, "--regions", "skin", "--weights-dir", tmp_path / "no-weights"]
    code, _, err = _run(capsys, *base, "--harmonizer", tmp_path / "h", "--out", out)
    assert code == 0, err
    rows = json.loads((out / "results.json").read_text())["tables"][0]["rows"]
    assert [r["method"] for r in rows[:2]] == ["this checkpoint", "SEAN+DoveNet"]
    per_pair = (out / "per_image.csv").read_text().splitlines()
    assert len(per_pair) == 1 + 2 * 2 and sum(line.startswith("SEAN+DoveNet,") for line in per_pair) == 2
    code, _, err = _run(capsys, "evaluate", "--checkpoint", checkpoint, "--task", "reconstruction", "--data",
                        f"folder:{real_faces}", "--harmonizer", tmp_path / "h", "--out", tmp_path / "r2")
    assert code == 2 and "--harmonizer adds the SEAN+DoveNet row of the transfer task" in err
