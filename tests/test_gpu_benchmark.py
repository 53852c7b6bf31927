"""benchmarks/gpu.py in its quick form: every measurement runs, on the CPU, with the optional packages absent."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quick_form_measures_every_path_precision_and_batch():
    bench = load_benchmark()
    setting = bench.Setting(64, (1,), (1,), "tiny", 1, 1)
    lines = []
    headline = bench.run(setting, torch.device("cpu"), log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    table = "\n".join(lines)
    for path in ("naive", "factorized", "sparse"):
        assert f"| {path} | fp32 |" in table and f"| {path} | bf16 |" in table
    assert headline["forward_bf16_ms_per_image_b1"] > 0 and headline["train_bf16_images_per_s_b1"] > 0
    assert headline["fastest_path_bf16"] in ("naive", "factorized", "sparse")
    assert lines[-1].startswith("forward_bf16_ms_per_image_b1=")  # the headline comes last


def test_face_labels_need_no_numpy():
    """The GPU machine may lack numpy: the benchmark's label maps are drawn with torch."""
    bench = load_benchmark()
    labels = bench.face_labels(32, 2)
    assert labels.shape == (2, 32, 32) and labels.dtype == torch.long
    assert len(labels.unique()) >= 8 and not torch.equal(labels[0], labels[1])


def test_placeholders_stand_in_for_absent_packages(monkeypatch):
    bench = load_benchmark()
    finder = bench._PlaceholderFinder({"surely_not_installed_pkg"})
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    monkeypatch.delitem(sys.modules, "surely_not_installed_pkg", raising=False)
    from surely_not_installed_pkg.sub import Thing  # noqa: F401  (an inert class)

    assert isinstance(Thing, type)
    monkeypatch.delitem(sys.modules, "surely_not_installed_pkg", raising=False)
    monkeypatch.delitem(sys.modules, "surely_not_installed_pkg.sub", raising=False)
