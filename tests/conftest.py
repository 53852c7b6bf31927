"""Shared fixtures. The shared sample data lives in ``$FACESTYLE_SHARED`` (default ``<repo>/../shared``)
and holds ``data/`` and ``golden/``; tests that need it skip cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facestyle.io import shared_root as find_shared_root


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny
    networks gain little from a second thread, and on a small shared CPU OpenMP's barriers stall whenever a
    worker thread is descheduled (the 299x299 InceptionV3 ran ten times slower with two)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The shared data folder (holds ``data/`` and ``golden/``); skips the test when it is absent."""
    root = find_shared_root()
    if root is None:
        pytest.skip("shared data not found (set FACESTYLE_SHARED)")
    return root


def _shared_dir(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_dir():
        pytest.skip(f"shared data {relative} not found under {root}")
    return path


@pytest.fixture(scope="session")
def real_faces(shared_root) -> Path:
    """``data/faces``: 256x256 CelebA-HQ faces in ``images/`` with class-index maps in ``labels/``."""
    return _shared_dir(shared_root, "data/faces")


@pytest.fixture(scope="session")
def real_faces_raw(shared_root) -> Path:
    """``data/faces-raw``: original-size faces whose label maps are smaller than the images."""
    return _shared_dir(shared_root, "data/faces-raw")
