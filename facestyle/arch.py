"""The generator architectures ``facestyle train --arch NAME`` builds and every task loads (issue 12).

An architecture is a network class on :class:`~facestyle.checkpoint.Pretrained` with a ``paper`` and a
``tiny`` model config; a checkpoint's ``config.json`` stores its ``kind`` (``generator`` for
:class:`~facestyle.model.FaceStyleNet`, else the compared system's name) and the config, so
:func:`load_network` rebuilds the right class. ``facestyle`` and ``sean`` are both a FaceStyleNet (SEAN is
its configuration with SEAN's encoder and no MRSA, :data:`~facestyle.config.SEAN_MODEL`, what
``import-sean`` builds); the others are the compared systems of ``facestyle/nn`` on the interface of
:mod:`facestyle.nn.synthesis`.

``tasks_of`` says what each can do (the README's matrix); :func:`require` is the one-line refusal of a
task an architecture cannot do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .checkpoint import Pretrained, read_config, resolve
from .config import PRESETS, SEAN_MODEL, Config, ModelConfig, apply_overrides, get_preset, load_sections, read_yaml
from .errors import CheckpointError, InputError
from .model import FaceStyleNet
from .nn.clade import CLADE_PRESETS, CLADENet
from .nn.groupdnet import GROUPDNET_PRESETS, SEAN_GROUPDNET_PRESETS, GroupDNet, SEANGroupDNet
from .nn.pix2pixhd import PIX2PIXHD_PRESETS, Pix2PixHDNet
from .nn.sean_stargan import SEAN_STARGAN_PRESETS, SEANStarGAN
from .nn.spade import SPADE_PRESETS, SPADENet
from .nn.synthesis import RANDOM_GLOBAL, RANDOM_REGIONAL, RECONSTRUCTION, TRANSFER

DEFAULT_ARCH = "facestyle"

# SEAN's own generator and encoder at the tiny preset's widths (the encoder's output is the style code)
SEAN_TINY = replace(PRESETS["tiny"].model, fusion="last", encoder_projection=False,
                    encoder_out=PRESETS["tiny"].model.style_dim, attention="off", noise="always",
                    generator_spectral_norm=False, encoder_spectral_norm=False)

TASK_WORDS = {RECONSTRUCTION: "reconstruction", TRANSFER: "regional transfer",
              RANDOM_GLOBAL: "random styles of the whole image", RANDOM_REGIONAL: "random styles per region"}


@dataclass(frozen=True)
class Arch:
    """One architecture: its network class, model configs per preset, what it can do, whether its
    encoder is a VAE (a KL term in training) and whether it trains with StarGAN-v2's terms."""

    name: str
    network: type[Pretrained]
    presets: dict[str, Any]
    tasks: frozenset[str]
    vae: bool = False
    stargan: bool = False  # mapping networks trained through images (StarGAN-v2's terms, facestyle.train.stargan)
    about: str = ""

    def model_config(self, preset: str) -> Any:
        if self.name == DEFAULT_ARCH:
            return get_preset(preset).model
        if preset not in self.presets:
            raise InputError(f"--arch {self.name} has the presets {', '.join(self.presets)}, not {preset!r}")
        return self.presets[preset]

    def build(self, config: Any) -> Any:
        return self.network.from_config(config)

    @property
    def harmony(self) -> bool:
        """Whether harmony supervision can train it: it needs a regional transfer."""
        return TRANSFER in self.tasks


_REGIONAL_TASKS = frozenset({RECONSTRUCTION, TRANSFER, RANDOM_REGIONAL})
ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("facestyle", FaceStyleNet, {}, _REGIONAL_TASKS,
         about="the paper's model: multi-scale encoder, MRSA, SEAN generator (random styles from mapping networks)"),
    Arch("sean", FaceStyleNet, {"paper": SEAN_MODEL, "tiny": SEAN_TINY}, frozenset({RECONSTRUCTION, TRANSFER}),
         about="SEAN's encoder and generator, what import-sean builds"),
    Arch("spade", SPADENet, {"paper": SPADE_PRESETS["paper"], "tiny": SPADE_PRESETS["tiny"]},
         frozenset({RECONSTRUCTION, RANDOM_GLOBAL}), vae=True, about="SPADE with its VAE encoder"),
    Arch("clade", CLADENet, {"paper": CLADE_PRESETS["paper"], "tiny": CLADE_PRESETS["tiny"]},
         frozenset({RECONSTRUCTION, RANDOM_GLOBAL}), vae=True, about="CLADE with SPADE's VAE encoder"),
    Arch("clade-icpe", CLADENet, {"paper": CLADE_PRESETS["paper-icpe"], "tiny": CLADE_PRESETS["tiny-icpe"]},
         frozenset({RECONSTRUCTION, RANDOM_GLOBAL}), vae=True,
         about="CLADE with the intra-class positional map (computed from the augmented label map)"),
    Arch("pix2pixhd", Pix2PixHDNet, {"paper": PIX2PIXHD_PRESETS["paper"], "tiny": PIX2PIXHD_PRESETS["tiny"]},
         frozenset({RECONSTRUCTION, TRANSFER}), about="pix2pixHD's global generator with per-class features"),
    Arch("groupdnet", GroupDNet, {"paper": GROUPDNET_PRESETS["paper"], "tiny": GROUPDNET_PRESETS["tiny"]},
         _REGIONAL_TASKS, vae=True, about="GroupDNet: grouped per-class VAE encoder, group-decreasing generator"),
    Arch("sean-groupdnet", SEANGroupDNet,
         {"paper": SEAN_GROUPDNET_PRESETS["paper"], "tiny": SEAN_GROUPDNET_PRESETS["tiny"]}, _REGIONAL_TASKS,
         vae=True, about="SEAN's generator fed by GroupDNet's per-class VAE encoder"),
    Arch("sean-stargan", SEANStarGAN, {"paper": SEAN_STARGAN_PRESETS["paper"], "tiny": SEAN_STARGAN_PRESETS["tiny"]},
         _REGIONAL_TASKS, stargan=True,
         about="SEAN with StarGAN-v2 mapping networks (skin, hair) trained through images, StarGAN-v2's way"),
)}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise InputError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHS)}") from None


def arch_of(network: Any) -> str:
    """The architecture of a built network: a FaceStyleNet with SEAN's encoder output as its codes and no
    attention is ``sean`` (what import-sean builds), any other ``facestyle``; a compared system names itself."""
    if isinstance(network, FaceStyleNet):
        cfg = network.config
        return "sean" if cfg.attention == "off" and cfg.fusion == "last" else DEFAULT_ARCH
    return str(network.arch)


def tasks_of(network: Any) -> frozenset[str]:
    return ARCHS[arch_of(network)].tasks


def describe_tasks(arch: str) -> str:
    tasks = ARCHS[arch].tasks
    return ", ".join(TASK_WORDS[t] for t in (RECONSTRUCTION, TRANSFER, RANDOM_GLOBAL, RANDOM_REGIONAL) if t in tasks)


def require(network: Any, task: str, what: str | None = None) -> None:
    """An InputError, one line naming what the architecture can do, unless it supports ``task``."""
    arch = arch_of(network)
    if task not in ARCHS[arch].tasks:
        raise InputError(f"{arch} cannot do {what or TASK_WORDS[task]}; it supports {describe_tasks(arch)}")


def is_facestyle_net(network: Any) -> bool:
    """A FaceStyleNet (the ``facestyle`` and ``sean`` architectures): MRSA, mapping networks, flows and the
    Editor's shape and colour edits work on it."""
    return isinstance(network, FaceStyleNet)


# --------------------------------------------------------------------------------------------- loading

_BY_KIND: dict[str, type[Pretrained]] = {arch.network.kind: arch.network for arch in ARCHS.values()}


def checkpoint_class(path: str | os.PathLike) -> type[Pretrained]:
    """The network class of a generator checkpoint directory of any architecture (from its ``kind``)."""
    kind = read_config(path, kind=None).get("kind", "generator")
    if kind not in _BY_KIND:
        raise CheckpointError(f"{resolve(path)} holds a {kind} checkpoint, not a generator of one of the architectures "
                              f"{', '.join(ARCHS)}")
    return _BY_KIND[kind]


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 label_set: str | None = None) -> Any:
    """The generator saved in ``path`` (``demo``: the bundled model), of whichever architecture, in eval mode."""
    return checkpoint_class(path).from_pretrained(path, device=device, dtype=dtype, label_set=label_set)


# --------------------------------------------------------------------------------------------- configs

def load_arch_config(path: str | Path | None = None, preset: str | None = None, overrides: list[str] | None = None,
                     arch: str | None = None) -> Config:
    """:func:`facestyle.config.load_config` for any architecture: the preset's train settings and the
    architecture's model config of that preset, then a YAML file's sections (its ``arch:`` names the
    architecture when ``arch`` is None; a different one is an InputError), then ``--set`` overrides."""
    file_arch = None
    if path is not None:
        file_arch = read_yaml(path).get("arch")
        if file_arch is not None and not isinstance(file_arch, str):
            raise InputError(f"{path}: arch must be a name, got {file_arch!r}")
    if arch is not None and file_arch is not None and arch != file_arch:
        raise InputError(f"{path} is a config of the {file_arch} architecture, not {arch} (drop --arch, or give "
                         "another config)")
    spec = get_arch(arch or file_arch or DEFAULT_ARCH)
    base = get_preset(preset or "paper")
    sections: dict[str, Any] = {"model": spec.model_config(preset or "paper"), "train": base.train}
    if path is not None:
        sections = load_sections(path, sections, scalars=("arch",))
    sections = apply_overrides(sections, overrides)
    return Config(model=sections["model"], train=sections["train"], arch=spec.name)


def check_model_config(config: Config) -> None:
    """The model section is the architecture's config dataclass."""
    spec = get_arch(config.arch)
    expected = spec.network.config_class
    if not isinstance(config.model, expected):
        raise InputError(f"--arch {spec.name} takes a {expected.__name__} model config, got "
                         f"{type(config.model).__name__}")


__all__ = ["ARCHS", "Arch", "DEFAULT_ARCH", "arch_of", "tasks_of", "require", "load_network", "load_arch_config",
           "get_arch", "describe_tasks", "is_facestyle_net", "checkpoint_class", "ModelConfig"]
