"""Import an official SEAN generator checkpoint (``latest_net_G.pth``) as a facestyle checkpoint.

The imported model is SEAN's own architecture (:data:`facestyle.config.SEAN_MODEL`): its 512-channel
encoder output is the style code, no MRSA, batch norm with running statistics, per-channel noise.
Spectral norm is folded into plain weights from the stored u and v (``W / (u . W v)``, what the
reference computes in eval mode, without power iteration); the 19 ``fc_mu{j}`` layers are stacked.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from ..config import SEAN_MODEL, ModelConfig
from ..errors import CheckpointError, InputError, WeightsError
from ..weights import load_state_dict_file

# SEAN's Zencoder.model indices of its five convolutions -> our encoder's names.
_ENCODER = {"1": "conv0", "4": "conv1", "7": "conv2", "10": "conv3", "14": "conv4"}
_SPADE = {"mlp_shared.0": "spade_shared", "mlp_gamma": "spade_gamma", "mlp_beta": "spade_beta"}
_BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")


def fold_spectral_norm(weight_orig: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """The effective weight of a spectral-normed layer in eval mode: W / (u . (W_flat v))."""
    sigma = torch.dot(u, weight_orig.flatten(1).mv(v))
    return weight_orig / sigma


def _strip_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def convert_sean_state_dict(state: dict[str, Tensor]) -> tuple[ModelConfig, dict[str, Tensor]]:
    """Map SEAN's ``SPADEGenerator`` state dict to (config, facestyle ``FaceStyleNet`` state dict)."""
    state = _strip_prefix(dict(state))
    required = ("fc.weight", "conv_img.weight", "Zencoder.model.14.weight", "head_0.ace_0.fc_mu0.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"not a SEAN generator state dict (no {missing[0]})")
    num_classes = state["fc.weight"].shape[1]
    ngf = state["conv_img.weight"].shape[1]
    style_dim = state["head_0.ace_0.fc_mu0.weight"].shape[0]
    if num_classes != 19:
        raise CheckpointError(f"SEAN checkpoint has {num_classes} classes; only the 19 CelebAMask-HQ classes "
                              "are supported")
    cfg = replace(SEAN_MODEL, ngf=ngf, style_dim=style_dim, encoder_out=style_dim,
                  encoder_ngf=state["Zencoder.model.1.weight"].shape[0],
                  spade_hidden=state["head_0.ace_0.Spade.mlp_shared.0.weight"].shape[0])
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str) -> None:
        out[dst] = state[src].float() if state[src].is_floating_point() else state[src]
        used.add(src)

    for idx, name in _ENCODER.items():
        for p in ("weight", "bias"):
            take(f"Zencoder.model.{idx}.{p}", f"encoder.{name}.{p}")
    for p in ("weight", "bias"):
        take(f"fc.{p}", f"generator.fc.{p}")
        take(f"conv_img.{p}", f"generator.conv_img.{p}")
    fc_mu = re.compile(r"^(.*)\.fc_mu(\d+)\.(weight|bias)$")
    stacks: dict[str, dict[int, Tensor]] = {}
    for key, value in state.items():
        block = key.split(".", 1)[0]
        if block not in _BLOCKS:
            continue
        dst = f"generator.{key}"
        if key.endswith(".weight_orig"):
            base = key[: -len(".weight_orig")]
            out[f"generator.{base}.weight"] = fold_spectral_norm(
                value.float(), state[f"{base}.weight_u"].float(), state[f"{base}.weight_v"].float())
            used.update({key, f"{base}.weight_u", f"{base}.weight_v"})
        elif key.endswith((".weight_u", ".weight_v")) or ".Spade.param_free_norm." in key:
            used.add(key)  # folded above / SPADE's own norm is never used by SEAN
        elif m := fc_mu.match(key):
            stacks.setdefault(f"generator.{m[1]}.fc_mu.{m[3]}", {})[int(m[2])] = value.float()
            used.add(key)
        elif ".Spade." in key:
            head, tail = key.split(".Spade.", 1)
            sub, param = tail.rsplit(".", 1)
            out[f"generator.{head}.{_SPADE[sub]}.{param}"] = value.float()
            used.add(key)
        elif key.startswith("up_3.") and ".blending_" in key:
            used.add(key)  # the last block has no style branch: its blending scalars are unused
        else:
            take(key, dst)
    for dst, parts in stacks.items():
        out[dst] = torch.stack([parts[j] for j in range(len(parts))])
    unused = sorted(set(state) - used)
    if unused:
        raise CheckpointError(f"not a SEAN face generator state dict: unexpected key {unused[0]}"
                              f"{f' (and {len(unused) - 1} more)' if len(unused) > 1 else ''}")
    return cfg, out


def load_sean_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read SEAN's ``latest_net_G.pth`` (a plain state dict) without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"SEAN checkpoint not found: {path}")
    try:
        return load_state_dict_file(path)
    except WeightsError as exc:
        raise CheckpointError(f"{exc} (SEAN's latest_net_G.pth is a state dict of tensors)") from None


def import_sean(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Convert SEAN's generator checkpoint into a facestyle checkpoint directory."""
    from ..model import FaceStyleNet

    cfg, state = convert_sean_state_dict(load_sean_checkpoint(checkpoint))
    model = FaceStyleNet(cfg)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise CheckpointError(f"{checkpoint}: could not map SEAN's weights onto the generator ({bad})")
    return model.save_pretrained(out_dir, source=f"SEAN import of {Path(checkpoint).name}")
