"""Every architecture of ``facestyle train --arch`` (issue 12) through the one trainer, a checkpoint, the
Editor and ``evaluate``: what each supports works, what it does not is one clear line. Tiny presets at
64 px, a couple of steps each."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from facestyle import Editor
from facestyle.arch import ARCHS, arch_of, load_arch_config, load_network
from facestyle.cli import main
from facestyle.errors import CheckpointError, InputError
from facestyle.evaluation.evaluate import EvaluateOptions, evaluate
from facestyle.model import FaceStyleNet
from facestyle.nn.synthesis import RANDOM_GLOBAL, RANDOM_REGIONAL, TRANSFER
from facestyle.train.common import latest_checkpoint, learning_rate_factor
from facestyle.train.generator import GeneratorTrainer, train_generator

FAST = ["train.sample_every=0", "train.log_every=1000", "train.save_every=1000", "train.lr_g=1e-3"]
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(arch: str, *overrides: str):
    return load_arch_config(preset="tiny", arch=arch, overrides=[*FAST, *overrides])


def l1(net, image, labels) -> float:
    net.eval()
    torch.manual_seed(0)  # SEAN adds noise in eval mode too
    with torch.no_grad():
        value = F.l1_loss(net(image, labels), image).item()
    net.train()
    return value


@pytest.mark.parametrize("arch", list(ARCHS))
def test_arch_trains_saves_loads_and_does_its_tasks(arch, tmp_path):
    """Build, shapes, three trainer steps on a fixed batch lower the reconstruction error, save and load,
    then every task through the Editor: the supported ones run, the others are one line naming what the
    architecture can do."""
    trainer = GeneratorTrainer(tiny(arch), "synthetic:4", tmp_path / "run")
    assert arch_of(trainer.model) == arch
    image, labels = trainer.sample_batch[0][:2], trainer.sample_batch[1][:2]
    trainer.start_training()
    before = l1(trainer.model, image, labels)
    for _ in range(3):
        losses = trainer.train_step(image, labels)
    assert ("kl" in losses) == ARCHS[arch].vae
    after = l1(trainer.model, image, labels)
    assert after < before, (before, after)

    trainer.model.eval()
    trainer.save_network(tmp_path / "ck")
    net = load_network(tmp_path / "ck")
    assert type(net) is type(trainer.model) and arch_of(net) == arch
    with torch.no_grad():
        torch.manual_seed(0)
        out = net(image, labels)
        assert out.shape == (2, 3, 64, 64)
        torch.manual_seed(0)
        torch.testing.assert_close(out, trainer.model(image, labels))

    editor = Editor.from_pretrained(tmp_path / "ck", device="cpu", parser="none")
    assert editor.arch == arch
    torch.manual_seed(0)
    rec = editor.reconstruct(image[0], labels[0], return_tensors=True)
    assert rec.shape == (3, 64, 64)
    tasks = ARCHS[arch].tasks
    if TRANSFER in tasks:
        moved = editor.transfer(image[0], labels[0], image[1], labels[1], regions="skin", return_tensors=True)
        assert moved.shape == (3, 64, 64)
        torch.manual_seed(0)
        none = editor.transfer(image[0], labels[0], image[1], labels[1], regions="skin", strength=0.0,
                               return_tensors=True)
        torch.testing.assert_close(none, rec, atol=1e-5, rtol=0)  # nothing moved: the reconstruction
    else:
        with pytest.raises(InputError, match=rf"^{arch} cannot do regional transfer; it supports reconstruction"):
            editor.transfer(image[0], labels[0], image[1], labels[1], regions="skin")
    if isinstance(net, FaceStyleNet):  # random styles come from mapping networks trained beside it
        with pytest.raises(CheckpointError, match="mapping network"):
            editor.sample(image[0], labels[0], "skin", n=2, seed=0)
    elif tasks & {RANDOM_GLOBAL, RANDOM_REGIONAL}:
        region = "skin" if RANDOM_REGIONAL in tasks else None
        styles = editor.sample(image[0], labels[0], region, n=2, seed=0, return_tensors=True)
        again = editor.sample(image[0], labels[0], region, n=2, seed=0, return_tensors=True)
        assert styles.shape == (2, 3, 64, 64) and torch.equal(styles, again)
        assert not torch.allclose(styles[0], styles[1])
        if RANDOM_REGIONAL in tasks:  # the region chooses which classes take the random codes
            hair = editor.sample(image[0], labels[0], "hair", n=2, seed=0, return_tensors=True)
            assert not torch.allclose(hair, styles)
        else:
            with pytest.raises(InputError, match="whole image only"):
                editor.sample(image[0], labels[0], "skin", n=2, seed=0)
    else:
        with pytest.raises(InputError, match=rf"^{arch} cannot draw random styles; it supports"):
            editor.sample(image[0], labels[0], "skin", n=2, seed=0)
    if not isinstance(net, FaceStyleNet):
        with pytest.raises(InputError, match=rf"^{arch} cannot do shape edits"):
            editor.edit_shape(image[0], labels[0], labels[1])
        from facestyle.app.server import build_app  # Gradio: imported only where it is needed

        with pytest.raises(InputError, match=rf"^{arch} cannot do editing in the web editor \(it needs the facestyle"):
            build_app(editor)


@pytest.mark.parametrize("arch", ["spade", "pix2pixhd", "groupdnet", "sean-stargan"])
def test_evaluate_runs_the_supported_tasks(arch, tmp_path):
    trainer = GeneratorTrainer(tiny(arch), "synthetic:4", tmp_path / "run")
    trainer.model.eval()
    trainer.save_network(tmp_path / "ck")
    empty = tmp_path / "no-weights"
    empty.mkdir()
    common = dict(checkpoint=str(tmp_path / "ck"), data="synthetic:4", split="train", limit=2, weights_dir=str(empty),
                  progress=False, regions=["skin"], styles=2)
    report = evaluate(EvaluateOptions(task="reconstruction", out=tmp_path / "rec", **common))
    assert math.isfinite(report.tables[0].rows[0].values["psnr"])
    assert arch in dict(report.info)["model"]
    if TRANSFER in ARCHS[arch].tasks:
        evaluate(EvaluateOptions(task="transfer", out=tmp_path / "transfer", **common))
        assert (tmp_path / "transfer" / "results.json").is_file()
    else:
        with pytest.raises(InputError, match=rf"^{arch} cannot do regional transfer; it supports"):
            evaluate(EvaluateOptions(task="transfer", out=tmp_path / "transfer", **common))
        assert not (tmp_path / "transfer").exists()
    if ARCHS[arch].tasks & {RANDOM_GLOBAL, RANDOM_REGIONAL}:
        report = evaluate(EvaluateOptions(task="multimodal", out=tmp_path / "multi", **common))
        assert report.per_image[0]["styles"] == 2
    else:
        with pytest.raises(InputError, match=rf"^{arch} cannot draw random styles"):
            evaluate(EvaluateOptions(task="multimodal", out=tmp_path / "multi", **common))


def test_train_command_records_the_arch_and_resumes_exactly(tmp_path, capsys):
    """``facestyle train --arch spade``: the run's config.yaml and checkpoints name the architecture, a
    resumed run (which reads it back without --arch) ends bit-identical to a straight one (the VAE's
    sampling included), and a conflicting --arch or a facestyle-only setting is one line, exit 2."""
    args = ["train", "--arch", "spade", "--preset", "tiny", "--data", "synthetic:4", "--steps", "2",
            "--set", "train.sample_every=0", "--set", "train.decay_start=1"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    assert main([*args, "--out", str(tmp_path / "resumed"), "--stop-at", "1"]) == 0
    assert yaml.safe_load((tmp_path / "resumed" / "config.yaml").read_text())["arch"] == "spade"
    assert main(["train", "--resume", str(tmp_path / "resumed")]) == 0
    a, b = (load_network(tmp_path / run / "final") for run in ("straight", "resumed"))
    assert arch_of(a) == "spade"
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--arch", "clade", "--steps", "3"]) == 2
    assert "config of the spade architecture, not clade" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "h"), "--set", "train.harmony=synthetic"]) == 2
    err = capsys.readouterr().err
    assert "--arch spade cannot do" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "h").exists()
    assert main([*args[:4], "demo", *args[5:], "--out", str(tmp_path / "d")]) == 2
    assert "--arch spade has the presets paper, tiny" in capsys.readouterr().err


def test_sean_stargan_trains_its_mapping_networks_through_images(tmp_path):
    """StarGAN-v2's terms join the reconstruction losses; the mapping networks learn from the images alone
    (the reconstruction never uses them) at their own rate, which follows the schedule; with that rate 0
    they stay as they were. Random styles exist for the mapping networks' regions only."""
    def run(mapping_lr: str):
        trainer = GeneratorTrainer(tiny("sean-stargan", f"train.stargan_mapping_lr={mapping_lr}",
                                        "train.stargan_ds_steps=4", "train.decay_start=1", "train.steps=3"),
                                   "synthetic:4", tmp_path / mapping_lr)
        image, labels = trainer.sample_batch[0][:2], trainer.sample_batch[1][:2]
        before = [p.detach().clone() for p in trainer.model.mapping.parameters()]
        trainer.start_training()
        losses = [trainer.train_step(image, labels) for _ in range(2)]
        moved = max((p - q).abs().max().item() for p, q in zip(trainer.model.mapping.parameters(), before))
        return trainer, losses, moved

    trainer, losses, moved = run("1e-4")
    assert {"stargan_adv", "stargan_sty", "stargan_ds", "l1"} <= set(losses[0])
    assert losses[0]["stargan_sty"] > 0 and losses[0]["stargan_ds"] < 0
    assert moved > 0
    trainer.step = 2  # of 3, decaying from step 1
    trainer.set_learning_rates()
    factor = learning_rate_factor(2, trainer.config.train)
    assert 0 < factor < 1
    assert [group["lr"] for group in trainer.opt_g.param_groups] == [1e-3 * factor, 1e-4 * factor]
    _, _, still = run("0")
    assert still == 0

    trainer.model.eval()
    trainer.save_network(tmp_path / "ck")
    editor = Editor.from_pretrained(tmp_path / "ck", device="cpu", parser="none")
    image, labels = trainer.sample_batch[0][0], trainer.sample_batch[1][0]
    hair = editor.sample(image, labels, "hair", n=2, seed=1, return_tensors=True)
    assert hair.shape == (2, 3, 64, 64)
    with pytest.raises(InputError, match="sean-stargan draws random styles of skin, hair only"):
        editor.sample(image, labels, "eyes", n=2, seed=1)


def test_sean_stargan_resumes_exactly(tmp_path):
    """Its mapped codes, noise and two learning rates come back on resume: bit-identical to a straight run."""
    cfg = tiny("sean-stargan", "train.steps=2", "train.decay_start=1", "train.stargan_mapping_lr=1e-3")
    train_generator(cfg, "synthetic:4", tmp_path / "straight")
    train_generator(cfg, "synthetic:4", tmp_path / "resumed", stop_at=1)
    train_generator(cfg, None, tmp_path / "resumed", resume=True)
    a, b = (load_network(tmp_path / run / "final") for run in ("straight", "resumed"))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_sean_stargan_with_harmony_supervision(tmp_path):
    """Its latent-guided images and the harmony composites both go to the discriminator."""
    trainer = GeneratorTrainer(tiny("sean-stargan", "train.harmony=synthetic"), "synthetic:4", tmp_path / "run")
    image, labels = trainer.sample_batch[0][:2], trainer.sample_batch[1][:2]
    trainer.start_training()
    losses = trainer.train_step(image, labels)
    assert "harmony_l1" in losses and "stargan_sty" in losses and math.isfinite(losses["D"])


def test_a_resumed_run_takes_new_learning_rates(tmp_path):
    """The schedule reads the rates from the run's config at every step: --set on resume takes effect."""
    cfg = tiny("sean-stargan", "train.steps=4", "train.decay_start=4", "train.stargan_mapping_lr=1e-4")
    train_generator(cfg, "synthetic:4", tmp_path / "run", stop_at=1)
    changed = load_arch_config(tmp_path / "run" / "config.yaml",
                               overrides=["train.lr_g=5e-5", "train.stargan_mapping_lr=2e-5"])
    trainer = GeneratorTrainer(changed, "synthetic:4", tmp_path / "run",
                               resume_from=latest_checkpoint(tmp_path / "run"))
    trainer.set_learning_rates()
    assert [group["lr"] for group in trainer.opt_g.param_groups] == [5e-5, 2e-5]


def test_seeded_samples_repeat_with_seans_inference_noise(tmp_path):
    """SEAN adds noise at inference too (model.noise=always): a seed still gives the same images, and the
    caller's random state is left as it was."""
    trainer = GeneratorTrainer(tiny("sean-stargan", "model.noise=always"), "synthetic:4", tmp_path / "run")
    trainer.model.eval()
    trainer.save_network(tmp_path / "ck")
    editor = Editor.from_pretrained(tmp_path / "ck", device="cpu", parser="none")
    image, labels = trainer.sample_batch[0][0], trainer.sample_batch[1][0]
    torch.manual_seed(5)
    first = editor.sample(image, labels, "skin", n=2, seed=3, return_tensors=True)
    after = torch.rand(1)
    torch.manual_seed(5)
    again = editor.sample(image, labels, "skin", n=2, seed=3, return_tensors=True)
    assert torch.equal(first, again) and torch.equal(torch.rand(1), after)
    assert not torch.equal(editor.sample(image, labels, "skin", n=2, seed=4, return_tensors=True), first)


def test_diversity_weight_decays_linearly_to_zero():
    from facestyle.train.stargan import diversity_weight

    cfg = tiny("sean-stargan", "train.stargan_ds_weight=2", "train.stargan_ds_steps=10").train
    assert [diversity_weight(cfg, s) for s in (0, 5, 10, 20)] == [2.0, 1.0, 0.0, 0.0]


def test_harmony_supervision_trains_a_regional_arch(tmp_path):
    """pix2pixHD has regional transfer: harmony composites add their loss terms."""
    trainer = GeneratorTrainer(tiny("pix2pixhd", "train.harmony=synthetic"), "synthetic:4", tmp_path / "run")
    image, labels = trainer.sample_batch[0][:2], trainer.sample_batch[1][:2]
    trainer.start_training()
    losses = trainer.train_step(image, labels)
    assert "harmony_l1" in losses and math.isfinite(losses["G"])


def test_train_generator_api_with_an_arch(tmp_path):
    run = train_generator(tiny("groupdnet", "train.steps=1"), "synthetic:4", tmp_path / "run")
    assert arch_of(load_network(run / "final")) == "groupdnet"
    assert load_arch_config(run / "config.yaml").arch == "groupdnet"


def test_compare_writes_one_table_with_a_row_per_checkpoint(tmp_path, capsys):
    checkpoints = []
    for arch in ("pix2pixhd", "spade"):
        trainer = GeneratorTrainer(tiny(arch), "synthetic:4", tmp_path / f"run-{arch}")
        trainer.model.eval()
        trainer.save_network(tmp_path / arch)
        checkpoints.append(str(tmp_path / arch))
    empty = tmp_path / "no-weights"
    empty.mkdir()
    args = ["compare", "--checkpoints", ",".join(checkpoints), "--data", "synthetic:4", "--split", "train",
            "--limit", "2", "--weights-dir", str(empty), "--regions", "skin", "--sheet-images", "2"]
    assert main([*args, "--task", "reconstruction", "--paper-rows", "celebamask-hq", "--out",
                 str(tmp_path / "rec")]) == 0
    results = json.loads((tmp_path / "rec" / "results.json").read_text())
    rows = results["tables"][0]["rows"]
    measured = [r["method"] for r in rows if r["source"] == "measured"]
    assert measured == ["pix2pixhd (pix2pixhd)", "spade (spade)"]
    assert [r for r in rows if r["source"].startswith("published")]
    assert (tmp_path / "rec" / "contact_sheet.png").is_file()
    sheet = Image.open(tmp_path / "rec" / "contact_sheet.png")
    assert sheet.width > 3 * sheet.height / 2  # 4 columns (input, labels, 2 systems) of 2 rows
    capsys.readouterr()
    assert main([*args, "--task", "transfer", "--out", str(tmp_path / "transfer")]) == 2
    assert "spade cannot do regional transfer" in capsys.readouterr().err
    assert not (tmp_path / "transfer").exists()
