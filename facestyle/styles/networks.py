"""The style networks that live beside a generator checkpoint, found by region name.

One facestyle checkpoint directory per region group and kind (``config.json`` with the group's classes,
and what the network was trained on, + ``model.safetensors``)::

    CHECKPOINT/config.json, model.safetensors      the generator
    CHECKPOINT/mapping/skin/, mapping/hair/         mapping networks M_g (kind "mapping")
    CHECKPOINT/flow/skin/, flow/hair/               flows (kind "flow")
    CHECKPOINT/harmonizer/                          a post-hoc harmonizer, DoveNet (kind "harmonizer")

Each is saved and loaded as any network is (``net.save_pretrained(dir, bank=...)``,
``Net.from_pretrained(dir)``); here is only the lookup beside a generator and the check that a network
was trained on that generator's codes (``bank.checkpoint_sha256`` in its ``config.json``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, check_writable, demo_dir, read_config, read_json, resolve
from ..errors import CheckpointError, InputError
from ..nn.dovenet import DoveNet
from ..nn.flow import ContinuousNormalizingFlow
from ..nn.mapping import MappingNetwork
from .bank import checkpoint_identity

__all__ = ["STYLE_NETWORKS", "STYLE_KINDS", "style_network_class", "style_network_dir", "available_style_networks",
           "load_style_network", "install_style_network", "check_install_target", "HARMONIZER_DIR",
           "harmonizer_beside", "find_harmonizer", "load_harmonizer", "install_harmonizer"]

STYLE_NETWORKS: dict[str, type[MappingNetwork] | type[ContinuousNormalizingFlow]] = {
    "mapping": MappingNetwork, "flow": ContinuousNormalizingFlow}
STYLE_KINDS = tuple(STYLE_NETWORKS)


def style_network_class(kind: str) -> type[MappingNetwork] | type[ContinuousNormalizingFlow]:
    """The network class of a style network kind (``mapping`` or ``flow``)."""
    try:
        return STYLE_NETWORKS[kind]
    except KeyError:
        raise InputError(f"unknown style network kind {kind!r}; choose one of: {', '.join(STYLE_KINDS)}") from None


def style_network_dir(checkpoint: str | os.PathLike, kind: str, region: str) -> Path:
    """Where the ``kind`` network of ``region`` lives beside a generator: ``CHECKPOINT/kind/region``."""
    style_network_class(kind)
    return resolve(checkpoint) / kind / region


def available_style_networks(checkpoint: str | os.PathLike, kind: str) -> list[str]:
    """The regions with a trained ``kind`` network beside a generator checkpoint, sorted."""
    root = style_network_dir(checkpoint, kind, "")
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file())


def trained_on(data: dict[str, Any]) -> str | None:
    """The SHA-256 of the generator whose codes a style network was trained on (its ``config.json``)."""
    return (data.get("bank") or {}).get("checkpoint_sha256")


def load_style_network(path: str | os.PathLike, kind: str, region: str | None = None,
                       device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                       generator_sha256: str | None = None,
                       label_set: str | None = None) -> MappingNetwork | ContinuousNormalizingFlow:
    """A mapping network or flow, in eval mode.

    ``path`` is the network's own directory (``region`` None), or a generator checkpoint beside which
    ``kind/region`` is looked up; a region with no trained network is a :class:`CheckpointError` listing
    those available. ``generator_sha256`` / ``label_set``: refuse a network trained on another
    generator's codes or for another label set.
    """
    cls = style_network_class(kind)
    directory = resolve(path)
    if region is not None:
        directory = style_network_dir(path, kind, region)
        if not (directory / CONFIG_NAME).is_file():
            found = available_style_networks(path, kind)
            have = f"available: {', '.join(found)}" if found else f"none is installed (train one with facestyle " \
                   f"train-{kind} --region {region} --checkpoint {path})"
            raise CheckpointError(f"no {kind} network for region {region!r} beside {resolve(path)}; {have}")
    sha = trained_on(cls.pretrained_config(directory)[1])
    if generator_sha256 is not None and sha is not None and sha != generator_sha256:
        raise CheckpointError(f"{directory} was trained on the codes of another generator (sha256 {sha[:12]}, "
                              f"this one is {generator_sha256[:12]}); retrain it on a bank of this checkpoint")
    return cls.from_pretrained(directory, device=device, dtype=dtype, label_set=label_set)


def check_install_target(checkpoint: str | os.PathLike, kind: str, region: str, overwrite: bool = False) -> Path:
    """Where :func:`install_style_network` would write (``CHECKPOINT/kind/region``), checked before any
    training: never inside the installed package (``demo`` is read-only), and never over an installed
    network unless ``overwrite``. A refusal is a CheckpointError saying what to do."""
    check_writable(checkpoint, f"a {kind} network")
    target = style_network_dir(checkpoint, kind, region)
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} already holds a {kind} network for {region}; pass --overwrite to "
                              "replace it, or give --checkpoint a copy of the checkpoint")
    return target


def install_style_network(source: str | os.PathLike, checkpoint: str | os.PathLike, kind: str,
                          region: str, overwrite: bool = False) -> Path:
    """Copy a trained network's ``config.json`` + ``model.safetensors`` to ``CHECKPOINT/kind/region``
    (in one rename), after checking it was trained on that generator's codes. A network already there is
    replaced only with ``overwrite``; nothing is written inside the installed package."""
    check_install_target(checkpoint, kind, region, overwrite)
    source = Path(source)
    sha, generator = trained_on(style_network_class(kind).pretrained_config(source)[1]), checkpoint_identity(checkpoint)
    if sha is not None and sha != generator:
        raise CheckpointError(f"{source} was trained on the codes of another generator (sha256 {sha[:12]}) "
                              f"than {checkpoint} (sha256 {generator[:12]}); not installing it there")
    return copy_checkpoint(source, style_network_dir(checkpoint, kind, region))


def copy_checkpoint(source: Path, target: Path) -> Path:
    """Copy ``config.json`` + ``model.safetensors`` from ``source`` to ``target``, replacing it in one rename;
    a failed write is a CheckpointError."""
    from ..train.common import atomic_directory

    try:
        with atomic_directory(target) as tmp:
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                shutil.copyfile(source / name, tmp / name)
    except OSError as exc:
        raise CheckpointError(f"cannot install {source} in {target}: {exc.strerror or exc}") from None
    return target


# ---------------------------------------------------------------------------------------------------------
# The post-hoc harmonizer (DoveNet), CHECKPOINT/harmonizer

HARMONIZER_DIR = "harmonizer"


def harmonizer_beside(checkpoint: str | os.PathLike) -> Path | None:
    """``CHECKPOINT/harmonizer`` when the generator checkpoint (``demo``: the bundled one) holds a harmonizer,
    else None (bench-harmony adds DoveNet's row whenever it does)."""
    directory = resolve(checkpoint) / HARMONIZER_DIR
    return directory if (directory / CONFIG_NAME).is_file() else None


def find_harmonizer(path: str | os.PathLike) -> Path:
    """The harmonizer checkpoint that ``path`` names: a harmonizer folder itself (a ``train-harmonizer`` run
    folder or its ``final``), a generator checkpoint with one in ``harmonizer/``, or ``demo`` (the bundled
    demo's). A CheckpointError says what is missing."""
    if str(path) == "demo":
        directory = demo_dir() / HARMONIZER_DIR
        if not (directory / CONFIG_NAME).is_file():
            raise CheckpointError(f"the bundled demo has no harmonizer ({directory} is missing); train one with "
                                  "facestyle train-harmonizer and pass its folder")
        return directory
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"harmonizer not found: {directory}")
    if (directory / CONFIG_NAME).is_file():
        data = read_json(directory / CONFIG_NAME)
        if isinstance(data, dict) and data.get("kind") == DoveNet.kind:
            return directory
    if (directory / HARMONIZER_DIR / CONFIG_NAME).is_file():
        return directory / HARMONIZER_DIR
    raise CheckpointError(f"{directory} holds no harmonizer (neither a harmonizer checkpoint nor "
                          f"{HARMONIZER_DIR}/ beside a generator); train one with facestyle train-harmonizer")


def load_harmonizer(path: str | os.PathLike | DoveNet, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> DoveNet:
    """A DoveNet in eval mode: one given (moved to ``device``/``dtype``) or the one :func:`find_harmonizer`
    finds from ``path``."""
    if isinstance(path, DoveNet):
        return path.to(device=device, dtype=dtype).eval()
    return DoveNet.from_pretrained(find_harmonizer(path), device=device, dtype=dtype)


def install_harmonizer(source: str | os.PathLike, checkpoint: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy a harmonizer checkpoint to ``CHECKPOINT/harmonizer``; ``checkpoint`` must be a generator checkpoint
    outside the installed package, and a harmonizer already there is replaced only with ``overwrite``."""
    source = find_harmonizer(source)
    DoveNet.pretrained_config(source)  # a readable harmonizer config, or a CheckpointError
    read_config(checkpoint)  # a generator checkpoint, or a CheckpointError
    check_writable(checkpoint, "a harmonizer")
    target = resolve(checkpoint) / HARMONIZER_DIR
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} already holds a harmonizer; pass --overwrite to replace it")
    return copy_checkpoint(source, target)
