"""Never lose a user's files (issue 15): every trainer's --out is checked before any write, installed
networks are replaced only on request and never inside the package, one trainer per run folder, failed
writes and absurd sizes are one line, SIGTERM exits 143 after saving, copies instead of hard links, the
umask, and what a crash in a rotation leaves behind. Tiny networks and banks: seconds."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import drawn_face, tiny_checkpoint

from facestyle.checkpoint import demo_dir
from facestyle.cli import main
from facestyle.nn.mapping import MAPPING_PRESETS, MappingNetwork
from facestyle.styles.bank import StyleBank, checkpoint_identity
from facestyle.train import common
from facestyle.train.common import (
    LOCK_FILE,
    RunLock,
    latest_checkpoint,
    list_checkpoints,
    load_trainer_state,
    remove_stale_temporaries,
)
from facestyle.train.mapping import train_mapping

MAP = ["--preset", "tiny", "--steps", "2", "--batch-size", "8", "--set", "train.log_every=1"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "ck")


def make_bank(path: Path, checkpoint: Path | None, n: int = 64) -> Path:
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(n, 19, 16, generator=g)
    presence = torch.zeros(n, 19, dtype=torch.bool)
    presence[:, [1, 2]] = True
    sha = checkpoint_identity(checkpoint) if checkpoint is not None else "0" * 64
    return StyleBank(codes, presence, "celebamask-hq", sha, [f"s{i}" for i in range(n)], {"data": "t"}).save(path)


@pytest.fixture(scope="module")
def bank(ckpt, tmp_path_factory) -> Path:
    return make_bank(tmp_path_factory.mktemp("bank") / "bank.safetensors", ckpt)


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative names), to show nothing changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(capsys, *args) -> tuple[int, list[str]]:
    code = main([str(a) for a in args])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    return code, err


def copy_checkpoint(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------- --out: refused before any write


def test_every_trainer_refuses_a_checkpoint_folder_as_out(capsys, ckpt, bank, tmp_path):
    target = copy_checkpoint(ckpt, tmp_path / "ck")
    before = digest(target)
    commands = [
        ["train", "--preset", "tiny", "--data", "synthetic:4", "--out", target, "--steps", "1"],
        ["train-parser", "--preset", "tiny", "--data", "synthetic:4", "--out", target, "--steps", "1"],
        ["train-mapping", "--bank", bank, "--out", target, *MAP],
        ["train-flow", "--bank", bank, "--out", target, *MAP],
        ["train-harmony", "--data", tmp_path, "--out", target, "--steps", "1"],
        # the generator is also the --checkpoint the network would be installed in
        ["train-mapping", "--bank", bank, "--checkpoint", target, "--out", target, *MAP],
    ]
    for args in commands:
        code, err = run(capsys, *args)
        assert code == 2 and len(err) == 1 and "is a checkpoint folder" in err[0], (args[0], err)
    assert digest(target) == before and not (target / LOCK_FILE).exists()


def test_a_non_empty_folder_and_a_file_are_refused_and_kept(capsys, bank, tmp_path):
    folder = tmp_path / "mine"
    (folder / ".tmp-important").mkdir(parents=True)
    (folder / ".tmp-important" / "thesis.tex").write_text("chapter 1")
    (folder / ".old-notes").mkdir()
    (folder / "config.yaml").write_text("mine: 1\n")
    before = digest(folder)
    code, err = run(capsys, "train", "--preset", "tiny", "--data", "synthetic:4", "--out", folder, "--steps", "1")
    assert code == 2 and len(err) == 1 and "is not empty" in err[0]
    code, err = run(capsys, "train-mapping", "--bank", bank, "--out", folder, *MAP)
    assert code == 2 and "is not empty" in err[0]
    assert digest(folder) == before and sorted(p.name for p in folder.iterdir()) == [
        ".old-notes", ".tmp-important", "config.yaml"]

    file = tmp_path / "notes.txt"
    file.write_text("keep")
    for args in (["train", "--preset", "tiny", "--data", "synthetic:4"], ["train-mapping", "--bank", bank, *MAP]):
        code, err = run(capsys, *args, "--out", file)
        assert code == 2 and len(err) == 1 and "is a file, not a folder" in err[0]
    assert file.read_text() == "keep"


def test_only_facestyle_made_temporaries_are_cleaned_up(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step_0000002" / "trainer").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_0000002" / "trainer" / "state.json").write_text("{}")
    users = [run_dir / ".tmp-important", run_dir / ".old-x", run_dir / ".facestyle-tmp-mine"]
    for path in users:
        path.mkdir()
        (path / "keep.txt").write_text("keep")
    ours = [run_dir / ".facestyle-tmp-final-123-0a1b2c3d",
            run_dir / "checkpoints" / ".facestyle-old-step_0000001-9-deadbeef",
            run_dir / "checkpoints" / "step_0000001"]  # the last: a rotation killed half-way (no trainer state)
    for path in ours:
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"x")
    removed = remove_stale_temporaries(run_dir)
    assert sorted(removed) == sorted(ours)
    assert all((p / "keep.txt").is_file() for p in users)
    assert (run_dir / "checkpoints" / "step_0000002").is_dir()


def test_resume_and_overwrite_of_a_run_of_the_same_trainer(capsys, bank, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, "train-mapping", "--bank", bank, "--out", out, *MAP)[0] == 0
    (out / "my-notes.txt").write_text("mine")
    code, err = run(capsys, "train-mapping", "--bank", bank, "--out", out, *MAP)
    assert code == 2 and "already holds a run; continue it with --resume" in err[0]
    code, err = run(capsys, "train-flow", "--bank", bank, "--out", out, "--overwrite", *MAP)
    assert code == 2 and "holds a run of another trainer" in err[0]
    code, err = run(capsys, "train-parser", "--preset", "tiny", "--data", "synthetic:4", "--out", out, "--overwrite")
    assert code == 2 and "holds a run of another trainer" in err[0]
    assert run(capsys, "train-mapping", "--resume", out, "--steps", "3")[0] == 0
    assert [s for s, _ in list_checkpoints(out)][-1] == 3

    assert run(capsys, "train-mapping", "--bank", bank, "--out", out, "--overwrite", *MAP)[0] == 0
    assert [s for s, _ in list_checkpoints(out)] == [2]  # the old run's checkpoints went, not the notes
    assert (out / "my-notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["trainer"] == "train-mapping"


# ---------------------------------------------------------------------------- installing beside a checkpoint


def test_installing_never_replaces_without_overwrite(capsys, ckpt, tmp_path):
    target = copy_checkpoint(ckpt, tmp_path / "ck")
    bank = make_bank(tmp_path / "bank.safetensors", target)
    net = MappingNetwork(replace(MAPPING_PRESETS["tiny"], style_dim=16, classes=(1, 2)))
    net.save_pretrained(target / "mapping" / "skin", bank={"checkpoint_sha256": checkpoint_identity(target)})
    before = digest(target)
    code, err = run(capsys, "train-mapping", "--bank", bank, "--checkpoint", target, "--out", tmp_path / "run", *MAP)
    assert code == 2 and len(err) == 1 and "already holds a mapping network" in err[0] and "--overwrite" in err[0]
    assert digest(target) == before and not (tmp_path / "run").exists()

    code, _ = run(capsys, "train-mapping", "--bank", bank, "--checkpoint", target, "--out", tmp_path / "run",
                  "--overwrite", *MAP)
    assert code == 0
    assert digest(target)["mapping/skin/model.safetensors"] != before["mapping/skin/model.safetensors"]
    assert digest(target)["model.safetensors"] == before["model.safetensors"]


def test_the_bundled_demo_is_read_only(capsys, tmp_path):
    if not (demo_dir() / "config.json").is_file():
        pytest.skip("the demo model is not installed")
    before = digest(demo_dir())
    bank = tmp_path / "bank.safetensors"
    g = torch.Generator().manual_seed(0)
    presence = torch.zeros(64, 19, dtype=torch.bool)
    presence[:, [1, 2]] = True
    StyleBank(torch.randn(64, 19, 32, generator=g), presence, "celebamask-hq", checkpoint_identity("demo"),
              [str(i) for i in range(64)], {}).save(bank)
    for args in (["train-mapping", "--bank", bank, "--checkpoint", "demo", "--out", tmp_path / "a", "--overwrite",
                  *MAP],
                 ["train-flow", "--bank", bank, "--checkpoint", demo_dir(), "--out", tmp_path / "b", *MAP],
                 ["style-mean", "--checkpoint", "demo", "--bank", bank, "--overwrite"]):
        code, err = run(capsys, *args)
        assert code == 2 and len(err) == 1 and "read-only" in err[0] and "cp -r" in err[0], err
    assert digest(demo_dir()) == before
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------------------ the lock


def test_a_second_trainer_is_refused_and_a_stale_lock_recovered(capsys, bank, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, "train-mapping", "--bank", bank, "--out", out, *MAP)[0] == 0
    assert not (out / LOCK_FILE).exists()  # given back at the end

    # another process holds the run folder (a lock in this process behaves as another's would)
    lock = RunLock.acquire(out, "train-mapping")
    RunLock._held.pop(common._key(out))  # forget it here, as if another process held it
    try:
        before = digest(out)
        code, err = run(capsys, "train-mapping", "--resume", out, "--steps", "3")
        assert code == 2 and len(err) == 1 and "is in use by facestyle train-mapping (pid" in err[0]
        assert f"on {os.uname().nodename}" in err[0] and "started" in err[0]
        assert digest(out) == before
    finally:
        os.close(lock.fd)  # the holder dies: its lock file stays, the flock goes

    assert (out / LOCK_FILE).exists()
    assert run(capsys, "train-mapping", "--resume", out, "--steps", "3")[0] == 0  # the stale lock is recovered
    assert load_trainer_state(latest_checkpoint(out) / "trainer")["step"] == 3


def test_only_rank_0_checks_and_locks(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    common.check_run_folder(file, dist_env=common.Distributed(rank=1, world_size=2))  # rank 1 follows rank 0
    with pytest.raises(common.InputError):
        common.check_run_folder(file, dist_env=common.Distributed(rank=0, world_size=2))


# ------------------------------------------------------------------------------------------ failed writes


def test_a_full_disk_while_saving_is_one_line(capsys, bank, tmp_path, monkeypatch):
    real = os.replace

    def full(src, dst, *args, **kwargs):
        if "checkpoints" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    code, err = run(capsys, "train-mapping", "--bank", bank, "--out", tmp_path / "run", *MAP)
    assert code == 2 and len(err) == 1 and "cannot write" in err[0] and "No space left on device" in err[0]
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_read_only_run_folder_is_one_line(capsys, bank, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, "train-mapping", "--bank", bank, "--out", out, *MAP)[0] == 0
    for path in [out, *out.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        probe = out / "probe"
        try:
            probe.write_text("x")
            probe.unlink()
            pytest.skip("chmod does not stop this user from writing (root)")
        except OSError:
            pass
        code, err = run(capsys, "train-mapping", "--resume", out, "--steps", "3")
        assert code == 2 and len(err) == 1 and ("cannot write" in err[0] or "Permission denied" in err[0])
    finally:
        for path in [out, *out.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_absurd_sizes_are_one_line(capsys, ckpt, bank, tmp_path):
    for args, what in (
        (["train", "--preset", "tiny", "--data", "synthetic:4", "--out", tmp_path / "a", "--set", "model.ngf=-4"],
         "model.ngf must be an integer from 1"),
        (["train-mapping", "--bank", bank, "--out", tmp_path / "b", *MAP, "--set", "model.hidden_dim=10000000"],
         "hidden_dim must be an integer from 1"),
        (["train-parser", "--preset", "tiny", "--data", "synthetic:4", "--out", tmp_path / "c",
          "--set", "model.width=-8"], "width must be at least 4"),
    ):
        code, err = run(capsys, *args)
        assert code == 2 and len(err) == 1 and what in err[0], err
    bad = copy_checkpoint(ckpt, tmp_path / "bad")
    config = json.loads((bad / "config.json").read_text())
    config["model"]["style_dim"] = -16
    (bad / "config.json").write_text(json.dumps(config))
    code, err = run(capsys, "encode-styles", "--checkpoint", bad, "--data", "synthetic:2", "--out",
                    tmp_path / "x.safetensors")
    assert code == 2 and len(err) == 1 and "style_dim must be an integer from 1" in err[0]
    assert not any(p.name != "bad" for p in tmp_path.iterdir())


# ------------------------------------------------------------------------------- SIGTERM, copies, the umask


def test_sigterm_saves_and_exits_143(capsys, bank, tmp_path, monkeypatch, request):
    from facestyle.train.mapping import MappingTrainer

    original = MappingTrainer.train_step
    calls = {"n": 0}

    def step_then_term(self, codes):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered to GracefulStop's handler in this thread
        return original(self, codes)

    monkeypatch.setattr(MappingTrainer, "train_step", step_then_term)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(["train-mapping", "--bank", str(bank), "--out", str(out), "--preset", "tiny", "--batch-size", "8"])
    assert stopped.value.code == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM at step 2" in err and f"--resume {out}" in err
    assert [s for s, _ in list_checkpoints(out)] == [2] and not (out / LOCK_FILE).exists()
    assert signal.getsignal(signal.SIGTERM) is not None


def test_copies_not_links_and_a_changed_checkpoint_is_refused_on_resume(capsys, bank, tmp_path):
    old = os.umask(0o027)
    try:
        out = train_mapping(bank, tmp_path / "run", "skin", preset="tiny", overrides=["train.steps=2"])
    finally:
        os.umask(old)
    step = latest_checkpoint(out)
    files = [out / "model.safetensors", out / "final" / "model.safetensors", step / "model.safetensors"]
    assert len({os.stat(f).st_ino for f in files}) == 3 and all(os.stat(f).st_nlink == 1 for f in files)
    assert {os.stat(f).st_mode & 0o777 for f in [*files, step / "trainer" / "state.safetensors"]} == {0o640}

    (out / "final" / "model.safetensors").write_bytes(b"edited")  # editing one leaves the others alone
    assert (step / "model.safetensors").read_bytes() != b"edited"
    with open(step / "model.safetensors", "r+b") as f:  # the resume point's weights changed in place
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    code, err = run(capsys, "train-mapping", "--resume", out, "--steps", "3")
    assert code == 2 and len(err) == 1 and "has changed since it was saved" in err[0]


def test_overwrite_approved_on_the_command_line_reaches_the_trainer(tmp_path):
    """``facestyle train --overwrite`` (the generator trainer checks --out through ``run_folder``)."""
    import argparse

    out = tmp_path / "run"
    step = out / "checkpoints" / "step_0000001"
    (step / "trainer").mkdir(parents=True)
    (step / "trainer" / "state.json").write_text("{}")
    (step / "config.json").write_text(json.dumps({"format": "facestyle", "kind": "generator"}))
    (out / "run.json").write_text(json.dumps({"spec": "synthetic:4", "trainer": "train"}))
    args = argparse.Namespace(out=str(out), resume=None, overwrite=False, command="train")
    with pytest.raises(common.TrainingError, match="--overwrite"):
        common.run_folder(args)
    with pytest.raises(common.InputError, match="another trainer"):
        common.run_folder(argparse.Namespace(out=str(out), resume=None, overwrite=True, command="train-parser"))
    assert common.run_folder(argparse.Namespace(out=str(out), resume=None, overwrite=True, command="train")) == out
    # the trainer's own check (train_generator -> resumed_data) follows the command line's approval
    assert common.resumed_data(out, False, {"spec": "synthetic:4"})[0] is None
    # --resume naming a step folder alone writes to its run
    assert common.run_folder(argparse.Namespace(out=None, resume=str(step), overwrite=False, command="train")) == out
    common._OVERWRITE_APPROVED.clear()


def test_import_sean_refuses_empty_and_pickled_files_without_unsafe_advice(tmp_path, capsys):
    import pickle

    from facestyle.cli import main

    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": object()}))
    for path in (empty, evil):
        code = main(["import-sean", str(path), str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "weights_only" not in err and not (tmp_path / "out").exists()


def test_a_report_is_written_all_or_nothing(tmp_path, monkeypatch):
    from facestyle.errors import InputError
    from facestyle.evaluation.report import Report, write_report

    report = Report(title="t", tables=[], notes=[], info=[], per_image=[{"name": "a", "psnr": 1.0}])
    written = write_report(report, tmp_path / "ok")
    assert written.is_file() and (tmp_path / "ok" / "results.json").is_file()
    calls = []
    real_write = Path.write_bytes

    def failing_write(self, data):
        calls.append(self)
        if len(calls) == 3:  # the third of four files cannot be written (a full disk)
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(InputError, match="No space left on device"):
        write_report(report, tmp_path / "full")
    assert list((tmp_path / "full").iterdir()) == []  # nothing written, no temporary left behind


# ------------------------------------------------------------------------- Ctrl-C: saved, then exit 130


def harmony_folder(root: Path, n: int = 4, size: int = 24) -> Path:
    """An iHarmony4-style folder in the short layout (composite/, mask/, real/) of drawn faces."""
    import numpy as np

    from facestyle.io import save_image

    for sub in ("composite", "mask", "real"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        photo, labels = drawn_face(i, size)
        save_image(photo, root / "real" / f"{i}.png")
        save_image(np.clip(photo.astype(int) + 40, 0, 255).astype(np.uint8), root / "composite" / f"{i}.png")
        save_image(np.repeat((labels == 1)[..., None] * 255, 3, -1).astype(np.uint8), root / "mask" / f"{i}.png")
    return root


def trainer_commands(bank: Path, tmp_path: Path) -> dict[str, list]:
    """Each trainer's command, tiny and a few steps, without --out."""
    gen = ["--preset", "tiny", "--data", "synthetic:4", "--batch-size", "2", "--set", "train.log_every=1"]
    return {
        "train": ["train", *gen, "--set", "train.sample_every=1000", "--steps", "5"],
        "train-parser": ["train-parser", *gen, "--steps", "5"],
        "train-mapping": ["train-mapping", "--bank", bank, *MAP[:2], "--batch-size", "8", "--steps", "5"],
        "train-flow": ["train-flow", "--bank", bank, *MAP[:2], "--batch-size", "8", "--steps", "5"],
        "train-harmony": ["train-harmony", "--data", harmony_folder(tmp_path / "hdata"), "--batch-size", "2",
                          "--image-size", "32", "--steps", "5"],
        "train-harmonizer": ["train-harmonizer", "--preset", "tiny", "--set", "train.pairs=synthetic",
                             "--batch-size", "2", "--steps", "5"],
    }


TRAINERS = ["train", "train-parser", "train-mapping", "train-flow", "train-harmony", "train-harmonizer"]


@pytest.mark.parametrize("command", TRAINERS)
def test_ctrl_c_saves_and_exits_130_with_the_resume_hint(command, capsys, bank, tmp_path, monkeypatch):
    enter = common.GracefulStop.__enter__
    before = signal.getsignal(signal.SIGINT)  # Python's handler, or SIG_IGN when the suite runs in the background

    def enter_then_ctrl_c(self):  # a Ctrl-C during the first step: GracefulStop's handler gets it
        stop = enter(self)
        os.kill(os.getpid(), signal.SIGINT)
        return stop

    monkeypatch.setattr(common.GracefulStop, "__enter__", enter_then_ctrl_c)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main([str(a) for a in [*trainer_commands(bank, tmp_path)[command], "--out", out]])
    assert stopped.value.code == 130
    said = "".join(capsys.readouterr())  # train-harmony writes its lines to stdout
    assert "stopped by Ctrl-C (SIGINT) at step 1 (exit status 130)" in said, said
    assert f"--resume {out}" in said or f"--resume --out {out}" in said, said
    assert [s for s, _ in list_checkpoints(out)] == [1] and not (out / LOCK_FILE).exists()
    assert not (out / "final").exists()
    assert signal.getsignal(signal.SIGINT) is before  # the handler was restored


@pytest.mark.parametrize("command", TRAINERS)
def test_every_trainer_refuses_another_run_and_overwrites_its_own_on_request(command, capsys, bank, tmp_path):
    argv = [*trainer_commands(bank, tmp_path)[command], "--steps", "1"]
    out = tmp_path / "run"
    assert run(capsys, *argv, "--out", out)[0] == 0
    (out / "my-notes.txt").write_text("mine")
    before = digest(out)
    code, err = run(capsys, *argv, "--out", out)
    assert code == 2 and len(err) == 1 and "already holds a run" in err[0] and "--overwrite" in err[0], err
    assert digest(out) == before
    other = "train-mapping" if command != "train-mapping" else "train-flow"
    code, err = run(capsys, *trainer_commands(bank, tmp_path / "o")[other], "--steps", "1", "--out", out,
                    "--overwrite")
    assert code == 2 and len(err) == 1 and "holds a run of another trainer" in err[0], err
    assert digest(out) == before
    assert run(capsys, *argv, "--out", out, "--overwrite")[0] == 0
    assert [s for s, _ in list_checkpoints(out)] == [1] and (out / "my-notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------- the style bank's writer


def test_a_full_disk_while_writing_a_bank_is_one_line_and_leaves_nothing(capsys, ckpt, tmp_path, monkeypatch):
    """safetensors reports a full disk as its own error (``... (os error 28)``), not an OSError: it must still
    be one line and exit 2, with no half-written bank, and an existing bank kept whole on --overwrite."""
    from safetensors import SafetensorError

    import facestyle.checkpoint as checkpoint

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a bank")  # what a write cut short leaves
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    existing = make_bank(tmp_path / "kept" / "bank.safetensors", ckpt)
    before = existing.read_bytes()
    monkeypatch.setattr(checkpoint, "save_file", full)
    out = tmp_path / "banks" / "bank.safetensors"
    args = ["encode-styles", "--checkpoint", ckpt, "--data", "synthetic:2", "--out", out]
    code, err = run(capsys, *args)
    assert code == 2 and len(err) == 1, err
    assert err[0] == f"facestyle encode-styles: error: {out}: cannot write (No space left on device)"
    assert list((tmp_path / "banks").iterdir()) == []  # no bank, no temporary file

    code, err = run(capsys, *args[:-1], existing, "--overwrite")
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0], err
    assert existing.read_bytes() == before and [p.name for p in existing.parent.iterdir()] == ["bank.safetensors"]
