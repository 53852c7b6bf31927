"""Checkpoint directories: ``config.json`` (rebuilds the model, label set included) + ``model.safetensors``.

The bundled demo model lives in the package (``facestyle/assets/demo``) and is named ``demo`` wherever
a checkpoint is asked for. Files are written under a temporary name and renamed, so a checkpoint is
never left half-written. Nothing here unpickles.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import config_from_dict, config_to_dict
from .errors import CheckpointError, FacestyleError
from .io import atomic_path, atomic_write_bytes, first_line

FORMAT = "facestyle"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def demo_dir() -> Path:
    return Path(str(resources.files("facestyle") / "assets" / "demo"))


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint directory: ``demo`` names the bundled model."""
    return demo_dir() if str(path) == "demo" else Path(path)


def package_dir() -> Path:
    return Path(str(resources.files("facestyle")))


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """The checkpoint directory ``path`` resolves to, unless it lies inside the installed package (the
    bundled ``demo`` is read-only): then a CheckpointError saying how to make a copy of one's own."""
    directory = resolve(path)
    try:
        inside = directory.resolve().is_relative_to(package_dir().resolve())
    except OSError:
        inside = False
    if inside:
        name = "demo" if str(path) == "demo" or directory.resolve() == demo_dir().resolve() else str(directory)
        raise CheckpointError(f"{name} is part of the installed facestyle package and read-only; not writing "
                              f"{what} there. Copy it to a folder of your own (cp -r {demo_dir()} my-demo) and "
                              "give that folder instead")
    return directory


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors file written atomically (tensors made contiguous and moved to the CPU). A failed write
    (a full disk, a read-only folder) is an OSError naming ``path``, as any other writer's, so that the
    callers' one-line messages catch it (safetensors raises its own error type for them)."""
    with atomic_path(path) as tmp:
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        except SafetensorError as exc:
            raise write_error(exc, path) from None


def write_error(exc: BaseException, path: Path) -> OSError:
    """safetensors' error of a failed write as the OSError it wraps (``... (os error 28)``: ENOSPC)."""
    text = str(exc)
    match = re.search(r"\(os error (\d+)\)", text)
    if match is None:
        error = OSError(first_line(exc))
        error.filename = str(path)
        return error
    number = int(match.group(1))
    return OSError(number, os.strerror(number), str(path))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def read_json(path: Path) -> Any:
    """A JSON file of a checkpoint or trainer state; unparsable content is a CheckpointError naming it."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None


def read_tagged_json(path: Path, fmt: str, missing: str, wrong: str) -> dict[str, Any]:
    """A JSON mapping whose ``format`` is ``fmt``; a missing file, bad JSON or another format is a
    CheckpointError (``missing`` / ``wrong`` say which)."""
    if not path.is_file():
        raise CheckpointError(missing)
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise CheckpointError(wrong)
    return data


def read_config(path: str | os.PathLike, kind: str | None = "generator") -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint directory, checked for format and (unless ``kind`` is None)
    kind."""
    directory = resolve(path)
    if not directory.exists():
        raise CheckpointError(f"checkpoint not found: {directory}")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a checkpoint directory (expected {CONFIG_NAME} + {WEIGHTS_NAME})")
    data = read_tagged_json(directory / CONFIG_NAME, FORMAT,
                            f"{directory} is not a facestyle checkpoint: {CONFIG_NAME} is missing",
                            f"{directory} is not a facestyle checkpoint ({CONFIG_NAME} has no format: {FORMAT})")
    if kind is not None and data.get("kind", "generator") != kind:
        raise CheckpointError(f"{directory} holds a {data.get('kind')} checkpoint, not a {kind}")
    return data


def save_pretrained(model: nn.Module, directory: str | os.PathLike, kind: str, config: dict[str, Any],
                    **meta: Any) -> Path:
    """Write ``model``'s weights and the config that rebuilds it into ``directory`` (atomically, file by file)."""
    directory = Path(directory)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, "model": config, **meta}
    save_tensors(model.state_dict(), directory / WEIGHTS_NAME)
    atomic_write_bytes(directory / CONFIG_NAME, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
    return directory


def load_state(model: nn.Module, directory: Path) -> None:
    """Load ``directory/model.safetensors`` into ``model``; missing, extra or misshapen tensors are a
    CheckpointError."""
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory}: {WEIGHTS_NAME} is missing")
    state = load_tensors(weights)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape mismatch
        raise CheckpointError(f"{weights} does not match its config.json: "
                              f"{str(exc).splitlines()[-1].strip()}") from None
    problems = [*(f"missing {k}" for k in result.missing_keys), *(f"unexpected {k}" for k in result.unexpected_keys)]
    if problems:
        raise CheckpointError(f"{weights} does not match its config.json ({len(problems)} key(s): "
                              f"{', '.join(problems[:3])}{', ...' if len(problems) > 3 else ''})")


class Pretrained:
    """Save and load for every network of the project: ``net.save_pretrained(dir)`` writes ``config.json``
    (format, ``kind``, the config dataclass under ``model``, any metadata) and ``model.safetensors``;
    ``Net.from_pretrained(dir)`` rebuilds the network from them, in eval mode. Nothing is unpickled.

    A network class sets ``kind`` and ``config_class`` and keeps its config dataclass in ``self.config``;
    :meth:`from_config` builds it (``cls(config)`` unless the class says otherwise).
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]
    config: Any

    @classmethod
    def from_config(cls, config: Any) -> Any:
        return cls(config)

    def save_pretrained(self, directory: str | os.PathLike, **meta: Any) -> Path:
        """Write the network to ``directory`` (``meta``: JSON values stored beside the config)."""
        return save_pretrained(self, directory, kind=self.kind, config=config_to_dict(self.config), **meta)

    @classmethod
    def pretrained_config(cls, path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
        """The config dataclass of a checkpoint directory of this kind, and its whole ``config.json``."""
        directory = resolve(path)
        data = read_config(directory, kind=cls.kind)
        try:
            config = config_from_dict(cls.config_class, data["model"], str(directory / CONFIG_NAME))
        except (KeyError, TypeError, FacestyleError) as exc:
            raise CheckpointError(f"{directory / CONFIG_NAME}: invalid {cls.kind} config ({exc})") from None
        return config, data

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, label_set: str | None = None) -> Any:
        """Rebuild the network saved in ``path`` (``"demo"`` names the bundled model), in eval mode.
        ``label_set`` (when given) must be the one it was made for."""
        directory = resolve(path)
        config, _ = cls.pretrained_config(directory)
        if label_set is not None and config.label_set != label_set:
            raise CheckpointError(f"{directory} was made for the {config.label_set} label set, not {label_set}")
        network = cls.from_config(config)
        load_state(network, directory)
        return network.to(device=device, dtype=dtype).eval()
