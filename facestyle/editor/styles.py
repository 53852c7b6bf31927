"""Random regional styles and style fine-tuning for the :class:`~facestyle.editor.editor.Editor`.

>>> editor = Editor.from_pretrained("demo")
>>> faces = editor.sample("me.png", "me_labels.png", region="skin", n=10, seed=0)    # 10 skin styles
>>> steps = editor.finetune("me.png", "me_labels.png", region="skin", step=[0.5, 1, 2], seed=0)

- **Sampling** (paper sections 3.1 and 4.6): the codes of the region group's classes are replaced by
  ``M_g(z)``, z ~ N(0, I) (eq. 3), the other classes keep the target's; the composite is harmonized by
  MRSA against the target's own codes (eq. 4-5) and decoded on the target's label map. The n results
  differ only in that region's style.
- **Fine-tuning** (sections 3.5 and 4.7): the group's codes go to the flow's latent space (eq. 7),
  move by ``step * d`` along a unit direction d (given, or drawn from ``seed``), come back (eq. 8) and
  are harmonized and decoded the same way. ``space="style"`` is the paper's baseline of Fig. 9, which
  moves the codes themselves: ``s + step * d``.

The mapping networks and flows live beside the generator checkpoint (``CHECKPOINT/mapping/REGION``,
``CHECKPOINT/flow/REGION``, see :mod:`facestyle.styles.networks`), found through the editor's
``checkpoint_dir``; networks held in memory can be attached with :func:`add_style_network`.

Everything here uses only the editor's ``model``, ``label_set``, ``image_size``, ``device`` and its
input helpers (``_prepare_images``, ``_prepare_labels``, ``_postprocess``); :class:`StyleEditingMixin`
adds the functions to the Editor as methods.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from ..errors import CheckpointError, InputError
from ..nn.flow import ContinuousNormalizingFlow, Solver
from ..nn.mapping import MappingNetwork
from ..styles.bank import checkpoint_identity
from ..styles.networks import STYLE_KINDS, available_style_networks, load_style_network

__all__ = ["StyleEditingMixin", "sample", "finetune", "finetune_codes", "unit_direction", "add_style_network",
           "get_style_network", "style_regions", "parse_steps"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_CACHE = "_style_networks"  # the editor attribute that holds loaded networks: {(kind, region): module}
Space = Literal["z", "style"]


# ------------------------------------------------------------------------------------------- networks


def _cache(editor: Any) -> dict[tuple[str, str], nn.Module]:
    cache = editor.__dict__.get(_CACHE)
    if cache is None:
        cache = editor.__dict__[_CACHE] = {}
    return cache


def _root(editor: Any) -> Path | None:
    root = getattr(editor, "checkpoint_dir", None)
    return None if root is None else Path(root)


def _dtype(editor: Any) -> torch.dtype:
    return next(editor.model.parameters()).dtype


def style_regions(editor: Any, kind: str = "mapping") -> list[str]:
    """The regions with a ``kind`` network (``mapping`` or ``flow``): attached ones and those installed
    beside the editor's checkpoint."""
    if kind not in STYLE_KINDS:
        raise InputError(f"unknown style network kind {kind!r}; choose one of: {', '.join(STYLE_KINDS)}")
    found = {region for k, region in _cache(editor) if k == kind}
    root = _root(editor)
    if root is not None:
        found.update(available_style_networks(root, kind))
    return sorted(found)


def _check_fits(editor: Any, network: nn.Module, source: str) -> None:
    cfg = network.config
    label_set, style_dim = editor.label_set.name, editor.model.config.style_dim
    if cfg.label_set != label_set:
        raise CheckpointError(f"{source} was trained for the {cfg.label_set} label set; this model uses {label_set}")
    if cfg.style_dim != style_dim:
        raise CheckpointError(f"{source} makes codes of length {cfg.style_dim}; this model's are {style_dim}")
    if max(cfg.classes) >= editor.label_set.num_classes:
        raise CheckpointError(f"{source}: class {max(cfg.classes)} is outside the {label_set} label set")


def add_style_network(editor: Any, network: MappingNetwork | ContinuousNormalizingFlow,
                      region: str | None = None) -> None:
    """Attach a mapping network or flow held in memory (under ``region``, default its config's);
    it takes precedence over the one installed beside the checkpoint."""
    if isinstance(network, MappingNetwork):
        kind = "mapping"
    elif isinstance(network, ContinuousNormalizingFlow):
        kind = "flow"
    else:
        raise InputError(f"expected a MappingNetwork or ContinuousNormalizingFlow, got {type(network).__name__}")
    _check_fits(editor, network, f"the {kind} network")
    dtype = _dtype(editor) if kind == "mapping" else _flow_dtype(editor)
    _cache(editor)[(kind, region or network.config.region)] = network.to(device=editor.device, dtype=dtype).eval()


def _flow_dtype(editor: Any) -> torch.dtype:
    """ODE solves run in float32 at least (half precision breaks adaptive step control)."""
    dtype = _dtype(editor)
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def get_style_network(editor: Any, kind: str, region: str) -> nn.Module:
    """The ``kind`` network of ``region``: an attached one, else the one beside the checkpoint (loaded
    once). A region without one is a :class:`CheckpointError` listing the regions that have one."""
    if kind not in STYLE_KINDS:
        raise InputError(f"unknown style network kind {kind!r}; choose one of: {', '.join(STYLE_KINDS)}")
    cache = _cache(editor)
    if (kind, region) in cache:
        return cache[(kind, region)]
    root = _root(editor)
    if root is None or not (root / kind / region).is_dir():
        available = style_regions(editor, kind)
        where = f"beside {root}" if root is not None else "attached to this editor (it has no checkpoint_dir)"
        have = f"available: {', '.join(available)}" if available else "none is available"
        hint = f"; train one with facestyle train-{kind} --region {region}" if not available else ""
        raise CheckpointError(f"no {kind} network for region {region!r} {where}; {have}{hint}")
    sha = checkpoint_identity(root) if (root / "model.safetensors").is_file() else None
    dtype = _dtype(editor) if kind == "mapping" else _flow_dtype(editor)
    network = load_style_network(root, kind, region, device=editor.device, dtype=dtype, generator_sha256=sha,
                                 label_set=editor.label_set.name)
    _check_fits(editor, network, str(root / kind / region))
    cache[(kind, region)] = network
    return network


# ------------------------------------------------------------------------------------------ helpers


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


def _replace_group(codes: Tensor, classes: Tensor, group: Tensor) -> Tensor:
    """``codes`` (B, R, D) with the rows ``classes`` (K,) replaced by ``group`` (B, K, D)."""
    return codes.index_copy(1, classes, group.to(codes.dtype))


def _warn_if_absent(editor: Any, region: str, classes: Sequence[int], presence: Tensor) -> None:
    from .editor import RegionAbsentWarning

    missing = [c for c, present in zip(classes, presence[0, list(classes)].tolist()) if not present]
    if not missing:
        return
    names = ", ".join(editor.label_set.classes[c] for c in missing)
    if len(missing) == len(classes):
        msg = f"region {region!r} is absent from the target: every result looks the same"
    else:
        msg = f"region {region!r} is only partly present in the target (no {names})"
    logger.warning(msg)
    warnings.warn(msg, RegionAbsentWarning, stacklevel=3)


def _encode_one(editor: Any, target: Any, labels: Any) -> tuple[Any, Tensor, Tensor, Tensor]:
    """One target photo: (prepared photo, label map (1, S, S), codes (1, R, D), presence (1, R))."""
    photos = editor._prepare_images(target, "target")
    if len(photos) != 1:
        raise InputError(f"{len(photos)} target photos given: this takes one (call it once per photo)")
    if labels is None:  # an editor with a face parser labels the photo itself
        parse = getattr(editor, "_labels_or_parse", None)
        if parse is None:
            raise InputError("no target labels given: give the photo's label map")
        labels = parse(target, None, "target labels")
    label_maps = editor._prepare_labels(labels, photos, "target labels")
    codes, presence = editor.model.encode(photos.images, label_maps)
    return photos, label_maps, codes, presence


def _render(editor: Any, photos: Any, label_maps: Tensor, s_t: Tensor, p_t: Tensor, classes: Tensor,
            group: Tensor, harmonize: bool, return_tensors: bool) -> Any:
    """Decode the target with the group's codes replaced by each row of ``group`` (n, K, D)."""
    n = group.shape[0]
    s_t, p_t = s_t.expand(n, -1, -1), p_t.expand(n, -1)
    s_c = _replace_group(s_t, classes, group)
    out = editor.model.decode(label_maps.expand(n, -1, -1), editor.model.harmonize(s_c, s_t, p_t, enabled=harmonize))
    batch = photos.expand(n)
    batch.form = "stacked" if return_tensors else "list"
    return editor._postprocess(out, batch, return_tensors)


# --------------------------------------------------------------------------------------- public API


def sample(editor: Any, target: Any, labels: Any, region: str = "skin", n: int = 10, seed: int | None = None,
           harmonize: bool = True, return_tensors: bool = False) -> list | Tensor:
    """``n`` versions of one target face that differ only in ``region``'s style (paper 3.1, 4.6).

    The group's codes come from its mapping network, ``M_g(z)`` with z ~ N(0, I) drawn from ``seed``
    (eq. 3); the other classes keep the target's codes; MRSA harmonizes the composite against the
    target's codes (eq. 4-5, off with ``harmonize=False``) and the generator decodes it on the target's
    label map (``labels=None`` parses the photo when the editor has a face parser). Returns n PIL
    images at the photo's size (a (n, 3, H, W) tensor in [-1, 1] with
    ``return_tensors=True``). A region with no mapping network is a :class:`CheckpointError` listing
    the regions that have one.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n must be a positive whole number, got {n!r}")
    mapping = get_style_network(editor, "mapping", region)
    classes = torch.as_tensor(mapping.config.classes, device=editor.device)
    with torch.inference_mode():
        photos, label_maps, s_t, p_t = _encode_one(editor, target, labels)
        _warn_if_absent(editor, region, mapping.config.classes, p_t)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        group = mapping.sample(n, generator=generator)
        return _render(editor, photos, label_maps, s_t, p_t, classes, group, harmonize, return_tensors)


def finetune_codes(editor: Any, codes: Tensor, region: str, steps: Sequence[float] | Tensor,
                   direction: Tensor | Sequence[float] | None = None, seed: int | None = None,
                   space: Space = "z", solver: Solver | None = None) -> Tensor:
    """Fine-tuned group codes (S, K, D) for one group code ``codes`` ((K, D) or (1, K, D)) and S steps.

    ``space="z"`` (paper 3.5): z = CNF(s) (eq. 7), z' = z + step * d, s' = CNF^-1(z') (eq. 8), d a unit
    vector of the flow's latent space (the normalised code space's dimension K*D). ``space="style"``:
    the baseline s' = s + step * d in the code space itself.
    """
    if space not in ("z", "style"):
        raise InputError(f"space must be z or style, got {space!r}")
    codes = codes.reshape(1, *codes.shape[-2:])
    k, d_model = codes.shape[1:]
    d = unit_direction(k * d_model, direction, seed)
    if space == "style":
        eta = torch.as_tensor(steps, dtype=codes.dtype, device=codes.device).reshape(-1, 1, 1)
        return codes + eta * rearrange(d.to(codes), "(k d) -> k d", k=k)
    flow = get_style_network(editor, "flow", region)
    param = next(flow.parameters())
    eta = torch.as_tensor(steps, dtype=param.dtype, device=param.device).reshape(-1, 1)
    z = flow(codes.to(param), solver)  # eq. 7
    return flow.reverse(z + eta * d.to(param), solver).to(codes.dtype)  # eq. 8


def finetune(editor: Any, target: Any, labels: Any, region: str = "skin",
             step: float | Sequence[float] = 1.0, direction: Tensor | Sequence[float] | None = None,
             seed: int | None = None, n_steps: int | None = None, space: Space = "z", harmonize: bool = True,
             solver: Solver | None = None, return_tensors: bool = False) -> list | Tensor:
    """A fine-tuning sequence of one target face's ``region`` style (paper 3.5, 4.7, Fig. 9).

    ``step``: the step size eta, or a sequence of them (one result each); with ``n_steps``, the sequence
    eta, 2 eta, ..., n_steps * eta. ``direction``: the unit direction d (any non-zero vector of the
    group's K x D values, normalised), or None to draw one from ``seed`` (the same seed gives the same
    direction in both spaces). ``space``: ``z`` moves in the flow's latent space (eq. 7-8; needs the
    region's flow), ``style`` moves the codes directly (the baseline). ``solver`` overrides the flow's
    default ODE solver. Returns one image per step, like :func:`sample`.
    """
    steps = parse_steps(step)
    if n_steps is not None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1 or len(steps) != 1:
            raise InputError("n_steps must be a positive whole number, with one step size")
        steps = [steps[0] * (i + 1) for i in range(n_steps)]
    classes_t = _group_classes(editor, region, space)
    with torch.inference_mode():
        photos, label_maps, s_t, p_t = _encode_one(editor, target, labels)
        _warn_if_absent(editor, region, classes_t.tolist(), p_t)
        group = s_t[:, classes_t]
        tuned = finetune_codes(editor, group, region, steps, direction, seed, space, solver)
        return _render(editor, photos, label_maps, s_t, p_t, classes_t, tuned, harmonize, return_tensors)


def _group_classes(editor: Any, region: str, space: Space) -> Tensor:
    """The classes a region's fine-tuning moves: its flow's (z space), else the label set's region."""
    if space == "z":
        classes = get_style_network(editor, "flow", region).config.classes
    elif space == "style":
        classes = editor.label_set.region_classes(region)
    else:
        raise InputError(f"space must be z or style, got {space!r}")
    return torch.as_tensor(classes, device=editor.device)


class StyleEditingMixin:
    """Adds :meth:`sample` and :meth:`finetune` (and the style networks' bookkeeping) to the Editor."""

    def sample(self, target: Any, labels: Any, region: str = "skin", n: int = 10, seed: int | None = None,
               harmonize: bool = True, return_tensors: bool = False) -> list | Tensor:
        return sample(self, target, labels, region, n, seed, harmonize, return_tensors)

    def finetune(self, target: Any, labels: Any, region: str = "skin", step: float | Sequence[float] = 1.0,
                 direction: Tensor | Sequence[float] | None = None, seed: int | None = None,
                 n_steps: int | None = None, space: Space = "z", harmonize: bool = True,
                 solver: Solver | None = None, return_tensors: bool = False) -> list | Tensor:
        return finetune(self, target, labels, region, step, direction, seed, n_steps, space, harmonize, solver,
                        return_tensors)

    def style_regions(self, kind: str = "mapping") -> list[str]:
        return style_regions(self, kind)

    def add_style_network(self, network: MappingNetwork | ContinuousNormalizingFlow,
                          region: str | None = None) -> None:
        add_style_network(self, network, region)

    def style_network(self, kind: str, region: str) -> nn.Module:
        return get_style_network(self, kind, region)



for _method, _function in (("sample", sample), ("finetune", finetune), ("style_regions", style_regions),
                           ("add_style_network", add_style_network), ("style_network", get_style_network)):
    getattr(StyleEditingMixin, _method).__doc__ = _function.__doc__
