"""Warm start: the paper's model (multi-scale encoder, MRSA) initialised from SEAN's published generator.

``facestyle train --init sean:PATH`` (PATH: SEAN's ``latest_net_G.pth``, or a folder written by
``facestyle import-sean``) starts a run from SEAN, so that at step 0 the model computes SEAN's codes and,
in eval mode, SEAN's output:

- the generator and the encoder's five convolutions take SEAN's weights (and batch-norm statistics);
- the fusion (eq. 1-2) gives SEAN's code exactly. The encoder pools every layer's map before projecting,
  ``s = sum_i alpha_i (P_i pool(F_i) + b_i)``; SEAN's code is ``pool(F_last)`` itself (no projection).
  So the other layers' projections ``P_i, b_i`` start at zero and the last one at ``I / alpha_last`` (with
  the paper's uniform start, alpha_last = 1/5: ``5 I``); the fusion logits keep their initialisation, so
  every layer's projection learns from the first step;
- MRSA's ``alpha`` is 0 (eq. 5: ``s_out = s_c``); its query, key and value keep their initialisation;
- a spectral-normed layer of the model (``model.generator_spectral_norm`` / ``encoder_spectral_norm``)
  takes SEAN's effective weight as its ``original`` and stored vectors for which ``u . W v = 1``, ``u``
  SEAN's top singular direction: eval mode gives SEAN's weight exactly, and training's power iteration
  continues from there (the weight is then divided by its spectral norm, as SEAN's own training does).
  SEAN's encoder has no spectral norm: with ``encoder_spectral_norm`` on, the first training step divides
  its last convolution by its spectral norm (the other four are followed by instance norm, which undoes
  their scale); ``--set model.encoder_spectral_norm=false`` keeps SEAN's encoder as it is;
- the discriminator starts from its own initialisation.

It needs the model's sizes to be SEAN's (the paper preset's: label set, image size, ngf, style length,
SPADE width, norm, encoder width and output), and a fresh run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import CheckpointError, InputError
from ..model import FaceStyleNet
from .sean import convert_sean_state_dict, load_sean_checkpoint

INIT_USAGE = "sean:PATH (SEAN's latest_net_G.pth or a folder made by facestyle import-sean)"
# Model settings that must be SEAN's for its weights to mean the same thing.
MATCHING = ("label_set", "image_size", "ngf", "style_dim", "spade_hidden", "norm", "encoder_ngf", "encoder_out")
_ENCODER_CONVS = tuple(f"encoder.conv{i}." for i in range(5))
POWER_ITERATIONS = 30  # for the stored spectral-norm vectors; training's power iteration continues from them


@dataclass
class WarmStart:
    """What :func:`init_from_sean` set, for the run's log."""

    source: str
    tensors: int = 0
    last_projection_scale: float | None = None  # 1 / alpha_last (None: no projection)
    zeroed_projections: int = 0
    mrsa: bool = False
    spectral: dict[str, float] = field(default_factory=dict)  # spectral-normed layer -> SEAN weight's norm
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        parts = [f"init from SEAN ({self.source}): generator and encoder conv0-conv4 ({self.tensors} tensors)"]
        if self.last_projection_scale is not None:
            parts.append(f"fusion: {self.zeroed_projections} projection(s) zero, the last "
                         f"{self.last_projection_scale:g} x SEAN's (fused code = SEAN's)")
        if self.mrsa:
            parts.append("MRSA alpha 0")
        parts.append("discriminator fresh")
        lines = ["; ".join(parts)]
        if self.spectral:
            name, sigma = max(self.spectral.items(), key=lambda kv: abs(kv[1] - 1))
            lines.append(f"note: {len(self.spectral)} spectral-normed layer(s) hold SEAN's weights exactly in eval "
                         f"mode; training's power iteration divides each by its spectral norm (furthest from 1: "
                         f"{name} {sigma:.3f})")
        return lines + [f"note: {n}" for n in self.notes]


def parse_init(spec: str) -> Path:
    """The path of an ``--init`` value (only ``sean:PATH`` so far)."""
    kind, sep, path = spec.partition(":")
    if not sep or kind != "sean" or not path:
        raise InputError(f"--init {spec!r}: expected {INIT_USAGE}")
    return Path(path)


def read_sean(path: str | Path) -> tuple[ModelConfig, dict[str, Tensor]]:
    """SEAN's config and its weights as eval mode uses them (spectral norm folded), from SEAN's
    ``latest_net_G.pth`` (or a ``.safetensors`` of that state dict) or an imported checkpoint folder."""
    path = Path(path)
    if not path.is_dir():
        return convert_sean_state_dict(load_sean_checkpoint(path))
    source = FaceStyleNet.from_pretrained(path)
    cfg = source.config
    if cfg.fusion != "last" or cfg.attention != "off":
        raise CheckpointError(f"{path} is not a SEAN checkpoint (fusion {cfg.fusion}, attention {cfg.attention}); "
                              f"--init takes {INIT_USAGE}")
    return cfg, effective_state(source)


def effective_state(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s state dict with every parametrized weight as eval mode computes it (spectral norm:
    ``original / (u . W v)`` from the stored vectors), under the plain name ``MODULE.weight``."""
    was_training = model.training
    model.eval()
    out: dict[str, Tensor] = {}
    try:
        with torch.no_grad():
            for key, value in model.state_dict().items():
                if ".parametrizations." not in key:
                    out[key] = value
                    continue
                owner, rest = key.split(".parametrizations.", 1)
                name, tail = rest.split(".", 1)
                if tail == "original":
                    out[f"{owner}.{name}"] = getattr(model.get_submodule(owner), name).detach().clone()
    finally:
        model.train(was_training)
    return out


def check_matches_sean(model_config: ModelConfig, sean_config: ModelConfig) -> None:
    """One InputError naming every size of the model that is not SEAN's."""
    wrong = [f"model.{k}={getattr(model_config, k)} (SEAN: {getattr(sean_config, k)})"
             for k in MATCHING if getattr(model_config, k) != getattr(sean_config, k)]
    if wrong:
        raise InputError(f"--init sean: the model's sizes are not SEAN's: {', '.join(wrong)}; use the paper "
                         "preset (or --set those values)")


def init_from_sean(model: FaceStyleNet, sean_config: ModelConfig, sean_state: dict[str, Tensor],
                   source: str = "SEAN") -> WarmStart:
    """Initialise ``model`` from SEAN's config and eval-mode weights (:func:`read_sean`) so that at step 0
    its codes are SEAN's and, in eval mode, its output is SEAN's. See the module docstring."""
    check_matches_sean(model.config, sean_config)
    report = WarmStart(source)
    own = model.state_dict()
    targets = sorted({_plain_name(k) for k in own if k.startswith(("generator.", *_ENCODER_CONVS))} - {None})
    source_keys = {k for k in sean_state if k.startswith(("generator.", *_ENCODER_CONVS))}
    missing, extra = sorted(set(targets) - source_keys), sorted(source_keys - set(targets))
    if missing or extra:
        what = f"has no {missing[0]}" if missing else f"has an unexpected {extra[0]}"
        raise CheckpointError(f"{source}: SEAN's weights do not fit this model ({what})")
    with torch.no_grad():
        for key in targets:
            value = sean_state[key]
            owner, name = key.rsplit(".", 1)
            module = model.get_submodule(owner)
            if key in own:
                dest = own[key]
            else:  # a parametrized (spectral-normed) weight
                dest = module.parametrizations[name].original
            if dest.shape != value.shape:
                raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, the model "
                                      f"{tuple(dest.shape)}")
            dest.copy_(value)
            if key not in own:
                report.spectral[key] = fit_spectral_norm(module.parametrizations[name][0], dest)
        report.tensors = len(targets)
        _init_fusion(model, sean_config, sean_state, report)
        if model.mrsa is not None:
            model.mrsa.alpha.zero_()
            report.mrsa = True
    if model.config.noise != sean_config.noise:
        report.notes.append(f"SEAN adds its learned noise with model.noise={sean_config.noise}, this model "
                            f"with model.noise={model.config.noise}")
    return report


def _plain_name(state_key: str) -> str | None:
    """A state-dict key under its eval-mode name (None for a spectral norm's stored vectors)."""
    if ".parametrizations." not in state_key:
        return state_key
    owner, rest = state_key.split(".parametrizations.", 1)
    name, tail = rest.split(".", 1)
    return f"{owner}.{name}" if tail == "original" else None


def _init_fusion(model: FaceStyleNet, sean_config: ModelConfig, sean_state: dict[str, Tensor],
                 report: WarmStart) -> None:
    """Projections so that the fused, pooled code is SEAN's: the others zero, the last SEAN's own (or the
    identity, SEAN having none) divided by the last layer's fusion weight."""
    encoder = model.encoder
    projections = encoder.projections
    if projections is None:  # fusion = last without projection: the last map is the code, as in SEAN
        return
    style_dim = model.config.style_dim
    if sean_config.encoder_projection:
        weight = sean_state["encoder.projections.0.weight"][:, :, 0, 0]
        bias = sean_state["encoder.projections.0.bias"]
    else:
        weight = torch.eye(style_dim, dtype=projections[-1].weight.dtype)
        bias = torch.zeros(style_dim, dtype=projections[-1].bias.dtype)
    weights = encoder.fusion_weights()
    last = 1.0 if weights is None else float(weights[-1])
    if abs(last) < 1e-6:
        raise InputError(f"--init sean: the last encoder layer's fusion weight is {last:g}; SEAN's code cannot "
                         "be reproduced")
    for proj in projections[:-1]:
        proj.weight.zero_()
        proj.bias.zero_()
    projections[-1].weight.copy_((weight / last)[:, :, None, None])
    projections[-1].bias.copy_(bias / last)
    report.zeroed_projections, report.last_projection_scale = len(projections) - 1, 1.0 / last


def fit_spectral_norm(sn: nn.Module, weight: Tensor, iterations: int = POWER_ITERATIONS) -> float:
    """Set a spectral-norm parametrization's stored ``u``, ``v`` so that ``u . (W v) = 1``: eval mode
    then uses ``weight`` unchanged. ``u`` is the top left singular vector found by power iteration (where
    training's own iteration continues from); returns the singular value found."""
    mat = weight.movedim(sn.dim, 0).flatten(1)
    u = F.normalize(sn._u, dim=0, eps=sn.eps)
    v = F.normalize(mat.T @ u, dim=0, eps=sn.eps)
    for _ in range(iterations):
        u = F.normalize(mat @ v, dim=0, eps=sn.eps)
        v = F.normalize(mat.T @ u, dim=0, eps=sn.eps)
    sigma = torch.dot(u, mat @ v)
    sn._u.copy_(u)
    sn._v.copy_(v / sigma)
    return float(sigma)


def warm_start(model: FaceStyleNet, spec: str) -> list[str]:
    """Initialise ``model`` from ``--init`` ``spec`` (``sean:PATH``); returns the lines to log."""
    path = parse_init(spec)
    sean_config, sean_state = read_sean(path)
    return init_from_sean(model, sean_config, sean_state, source=str(path)).lines()
