"""Regional style helpers of the Editor: finding the mapping networks and flows beside a checkpoint,
fine-tuning codes (paper 3.5, eq. 7-8), step and direction parsing, and the absent-region warnings.

The mapping networks and flows live beside the generator checkpoint (``CHECKPOINT/mapping/REGION``,
``CHECKPOINT/flow/REGION``, see :mod:`facestyle.styles.networks`); the Editor keeps the ones it has loaded
or been given in its ``style_networks`` dict, which these functions take explicitly.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor

from ..errors import CheckpointError, InputError
from ..labels import LabelSet
from ..nn.flow import ContinuousNormalizingFlow, Solver
from ..nn.mapping import MappingNetwork
from ..styles.bank import checkpoint_identity
from ..styles.networks import STYLE_KINDS, available_style_networks, load_style_network

__all__ = ["RegionAbsentWarning", "StyleNetwork", "Space", "style_regions", "find_style_network", "check_fits",
           "style_kind", "style_dtype", "parse_steps", "unit_direction", "finetune_codes", "warn_absent_regions",
           "warn_region_absent"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

StyleNetwork = MappingNetwork | ContinuousNormalizingFlow
StyleNetworks = MutableMapping[tuple[str, str], StyleNetwork]  # (kind, region) -> network
Space = Literal["z", "style"]


class RegionAbsentWarning(UserWarning):
    """A region asked for is missing from the reference: the target keeps its own style there."""


# ------------------------------------------------------------------------------------------- networks


def _check_kind(kind: str) -> None:
    if kind not in STYLE_KINDS:
        raise InputError(f"unknown style network kind {kind!r}; choose one of: {', '.join(STYLE_KINDS)}")


def style_regions(networks: Mapping[tuple[str, str], StyleNetwork], checkpoint_dir: Path | None,
                  kind: str = "mapping") -> list[str]:
    """The regions with a ``kind`` network (``mapping`` or ``flow``): those in ``networks`` and those
    installed beside ``checkpoint_dir``."""
    _check_kind(kind)
    found = {region for k, region in networks if k == kind}
    if checkpoint_dir is not None:
        found.update(available_style_networks(checkpoint_dir, kind))
    return sorted(found)


def style_kind(network: StyleNetwork) -> str:
    """``mapping`` or ``flow``; anything else is an InputError."""
    if isinstance(network, MappingNetwork):
        return "mapping"
    if isinstance(network, ContinuousNormalizingFlow):
        return "flow"
    raise InputError(f"expected a MappingNetwork or ContinuousNormalizingFlow, got {type(network).__name__}")


def style_dtype(kind: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype a ``kind`` network runs in beside a model of ``dtype``: ODE solves run in float32 at
    least (half precision breaks adaptive step control)."""
    return dtype if kind == "mapping" or dtype in (torch.float32, torch.float64) else torch.float32


def check_fits(network: StyleNetwork, label_set: LabelSet, style_dim: int, source: str) -> None:
    """A CheckpointError when ``network`` was made for another label set or code length."""
    cfg = network.config
    if cfg.label_set != label_set.name:
        raise CheckpointError(f"{source} was trained for the {cfg.label_set} label set; "
                              f"this model uses {label_set.name}")
    if cfg.style_dim != style_dim:
        raise CheckpointError(f"{source} makes codes of length {cfg.style_dim}; this model's are {style_dim}")
    if max(cfg.classes) >= label_set.num_classes:
        raise CheckpointError(f"{source}: class {max(cfg.classes)} is outside the {label_set.name} label set")


def find_style_network(networks: StyleNetworks, checkpoint_dir: Path | None, kind: str, region: str,
                       label_set: LabelSet, style_dim: int, device: torch.device,
                       dtype: torch.dtype) -> StyleNetwork:
    """The ``kind`` network of ``region``: the one in ``networks``, else the one beside ``checkpoint_dir``
    (loaded and added to ``networks``). A region without one is a :class:`CheckpointError` listing the
    regions that have one."""
    _check_kind(kind)
    if (kind, region) in networks:
        return networks[(kind, region)]
    if checkpoint_dir is None or not (checkpoint_dir / kind / region).is_dir():
        available = style_regions(networks, checkpoint_dir, kind)
        where = f"beside {checkpoint_dir}" if checkpoint_dir is not None else \
            "attached to this editor (it has no checkpoint_dir)"
        have = f"available: {', '.join(available)}" if available else "none is available"
        hint = f"; train one with facestyle train-{kind} --region {region}" if not available else ""
        raise CheckpointError(f"no {kind} network for region {region!r} {where}; {have}{hint}")
    sha = checkpoint_identity(checkpoint_dir) if (checkpoint_dir / "model.safetensors").is_file() else None
    network = load_style_network(checkpoint_dir, kind, region, device=device, dtype=style_dtype(kind, dtype),
                                 generator_sha256=sha, label_set=label_set.name)
    check_fits(network, label_set, style_dim, str(checkpoint_dir / kind / region))
    networks[(kind, region)] = network
    return network


# ---------------------------------------------------------------------------------------- fine-tuning


def parse_steps(text: str | float | Sequence[float]) -> list[float]:
    """Step sizes from ``"0.5,1,2"``, a number or a sequence; each finite."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [float(p) for p in parts if p]
        except ValueError:
            raise InputError(f"steps: expected comma-separated numbers such as 0.5,1,2, got {text!r}") from None
        if not values or len(values) != len(parts):
            raise InputError(f"steps: expected comma-separated numbers such as 0.5,1,2, got {text!r}")
    elif isinstance(text, (int, float)):
        values = [float(text)]
    else:
        try:
            values = [float(v) for v in text]
        except (TypeError, ValueError):
            raise InputError(f"steps: expected numbers, got {text!r}") from None
        if not values:
            raise InputError("steps: give at least one step size")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise InputError(f"steps must be finite numbers, got {bad[0]}")
    return values


def unit_direction(dim: int, direction: Tensor | Sequence[float] | None = None, seed: int | None = None) -> Tensor:
    """A unit vector d (dim,) in float32 on the CPU: ``direction`` normalised ((dim,) or (K, D)), or drawn
    uniformly on the sphere from ``seed`` (the global RNG when None)."""
    if direction is not None:
        d = torch.as_tensor(direction, dtype=torch.float32).detach().cpu().reshape(-1)
        if d.numel() != dim:
            raise InputError(f"the direction has {d.numel()} values; the group's code space has {dim}")
        if not torch.isfinite(d).all() or float(d.norm()) == 0:
            raise InputError("the direction must be a finite, non-zero vector")
    else:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        d = torch.randn(dim, generator=generator)
    return d / d.norm()


def finetune_codes(codes: Tensor, steps: Sequence[float] | Tensor, flow: ContinuousNormalizingFlow | None,
                   direction: Tensor | Sequence[float] | None = None, seed: int | None = None,
                   space: Space = "z", solver: Solver | None = None) -> Tensor:
    """Fine-tuned group codes (S, K, D) for one group code ``codes`` ((K, D) or (1, K, D)) and S steps.

    ``space="z"`` (paper 3.5): z = CNF(s) (eq. 7), z' = z + step * d, s' = CNF^-1(z') (eq. 8), d a unit
    vector of the flow's latent space (the normalised code space's dimension K*D). ``space="style"``:
    the baseline s' = s + step * d in the code space itself (``flow`` unused).
    """
    if space not in ("z", "style"):
        raise InputError(f"space must be z or style, got {space!r}")
    codes = codes.reshape(1, *codes.shape[-2:])
    k, d_model = codes.shape[1:]
    d = unit_direction(k * d_model, direction, seed)
    if space == "style":
        eta = torch.as_tensor(steps, dtype=codes.dtype, device=codes.device).reshape(-1, 1, 1)
        return codes + eta * rearrange(d.to(codes), "(k d) -> k d", k=k)
    if flow is None:
        raise InputError("fine-tuning in z space needs the region's flow")
    param = next(flow.parameters())
    eta = torch.as_tensor(steps, dtype=param.dtype, device=param.device).reshape(-1, 1)
    z = flow(codes.to(param), solver)  # eq. 7
    return flow.reverse(z + eta * d.to(param), solver).to(codes.dtype)  # eq. 8


# -------------------------------------------------------------------------------------------- warnings


def _warn(msg: str) -> None:
    logger.warning(msg)
    warnings.warn(msg, RegionAbsentWarning, stacklevel=4)  # the caller of the Editor's method


def warn_region_absent(label_set: LabelSet, region: str, classes: Sequence[int], presence: Tensor) -> None:
    """Warn when the target (presence (1, R)) lacks some of a region's ``classes``."""
    missing = [c for c, present in zip(classes, presence[0, list(classes)].tolist()) if not present]
    if not missing:
        return
    names = ", ".join(label_set.classes[c] for c in missing)
    if len(missing) == len(classes):
        _warn(f"region {region!r} is absent from the target: every result looks the same")
    else:
        _warn(f"region {region!r} is only partly present in the target (no {names})")


def warn_absent_regions(label_set: LabelSet, regions: Mapping[str, tuple[int, ...]], target_presence: Tensor,
                        reference_presence: Tensor, reference_names: Sequence[str]) -> None:
    """Warn for every region the target has but a reference lacks (the target keeps its style there)."""
    p_t = target_presence.any(0) if len(target_presence) != len(reference_presence) else target_presence
    messages: list[str] = []
    for i, name in enumerate(reference_names):
        has_t = (p_t if p_t.ndim == 1 else p_t[i]).tolist()
        has_r = reference_presence[i].tolist()
        for region, idx in regions.items():
            missing = [c for c in idx if has_t[c] and not has_r[c]]
            if not missing:
                continue
            if all(not has_r[c] for c in idx):
                msg = f"region {region!r} is absent from {name}; the target keeps its own {region} style"
            else:
                absent = ", ".join(label_set.classes[c] for c in missing)
                msg = (f"region {region!r} is only partly present in {name} (no {absent}); "
                       "those classes keep the target's style")
            if msg not in messages:
                messages.append(msg)
    for msg in messages:
        _warn(msg)
