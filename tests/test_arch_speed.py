"""benchmarks/arch_speed.py: the compared systems' speed table (issue 12). No timing assertions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "arch_speed.py"


@pytest.fixture(scope="module")
def arch_speed():
    spec = importlib.util.spec_from_file_location("arch_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["arch_speed"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["arch_speed"]


def test_quick_run_has_a_row_per_arch_and_the_headline(arch_speed, capsys):
    """The quick form for facestyle and SEAN, at the tiny preset and 64 px so that it takes seconds (one thread:
    two OpenMP threads on a busy two-core machine wait on each other far longer than they compute)."""
    from facestyle.config import get_preset
    from facestyle.model import FaceStyleNet

    arch_speed.main(["--quick", "--archs", "facestyle,sean", "--size", "64", "--preset", "tiny", "--threads", "1",
                     "--clock", "cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    rows = {cells[0]: cells for cells in (line.strip("|").split("|") for line in lines if line.startswith("| "))}
    rows = {k.strip(): [c.strip() for c in v] for k, v in rows.items()}
    assert set(rows) == {"architecture", "facestyle", "sean"}
    assert rows["architecture"][:3] == ["architecture", "params (M)", "forward s/image, batch 1"]
    # the parameter column is the built network's count (tiny facestyle: multi-scale encoder + MRSA + SEAN)
    counted = sum(p.numel() for p in FaceStyleNet(get_preset("tiny").model).parameters())
    assert rows["facestyle"][1] == f"{counted / 1e6:.2f}"
    assert rows["facestyle"][1] != rows["sean"][1]  # SEAN has no MRSA and no projection
    assert "MRSA" in rows["facestyle"][-1] and "MRSA" not in rows["sean"][-1]
    for cells in (rows["facestyle"], rows["sean"]):
        assert float(cells[2]) > 0
    pairs = dict(pair.split("=") for pair in lines[-1].split())
    assert set(pairs) == {"fastest_arch", "slowest_arch", "slowest_over_fastest", "fastest_train_arch",
                          "facestyle_vs_sean_forward", "facestyle_vs_sean_train"}
    assert {pairs["fastest_arch"], pairs["slowest_arch"]} == {"facestyle", "sean"}
    assert float(pairs["slowest_over_fastest"]) >= 1
    assert rows["architecture"][3] == "vs sean, batch 1" and rows["sean"][3] == "1.00x"
    assert pairs["facestyle_vs_sean_forward"] + "x" == rows["facestyle"][3]  # the headline is the table's ratio


def test_headline_without_sean_or_training(arch_speed):
    rows = {"spade": {"forward_b4": 0.5}, "clade": {"forward_b4": 0.25}}
    assert arch_speed.headline(rows, 4) == {"fastest_arch": "clade", "slowest_arch": "spade",
                                            "slowest_over_fastest": "2.00"}


@pytest.mark.parametrize("argv, message", [
    (["--archs", "spade,stylegan"], "unknown architecture(s) stylegan"),
    (["--archs", "spade", "--size", "96"], "--size 96 does not suit spade"),
    (["--batches", "0"], "--batches must be positive"),
    (["--threads", "0"], "--threads at least 1"),
    (["--clock", "cpu", "--threads", "2"], "--clock cpu needs --threads 1"),
])
def test_bad_input_is_one_line_and_exit_2(arch_speed, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        arch_speed.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
