"""Style banks: a dataset's style codes, as one generator encodes them.

A **style bank** holds the trained encoder's style codes (N, R, D) and presence (N, R) for a dataset: the
mapping networks (paper eq. 3, 6) and the flows (eq. 7-8) train on banks, not on images. It is one
safetensors file whose metadata records the label set, the generator it was encoded with (the SHA-256 of
its ``model.safetensors``), the data and the sample names, so that a bank made by another checkpoint or
for another label set is refused rather than silently mixed::

    facestyle encode-styles --checkpoint DIR --data celebamask-hq:ROOT --out bank.safetensors

The networks trained on banks live beside the generator (:mod:`facestyle.styles.networks`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ..checkpoint import WEIGHTS_NAME, resolve, save_tensors
from ..errors import CheckpointError, InputError
from ..labels import LabelSet, get_label_set
from ..model import FaceStyleNet
from ..weights import sha256_file

__all__ = ["StyleBank", "BANK_FORMAT", "checkpoint_identity", "file_sha256", "encode_styles", "encode_bank"]

BANK_FORMAT = "facestyle-style-bank"
BANK_VERSION = 1


# ---------------------------------------------------------------------------------------------- identity

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, cached by (path, size, modification time)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def checkpoint_identity(checkpoint: str | os.PathLike) -> str:
    """A generator checkpoint's identity: the SHA-256 of its ``model.safetensors`` (``demo`` allowed)."""
    directory = resolve(checkpoint)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint not found: {directory}" if not directory.exists()
                              else f"{directory} is not a checkpoint directory")
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory}: {WEIGHTS_NAME} is missing (not a facestyle checkpoint)")
    return file_sha256(weights)


# ------------------------------------------------------------------------------------------------- bank


@dataclass
class StyleBank:
    """Style codes of a dataset, as the generator ``checkpoint_sha256`` encodes them.

    ``codes``: (N, R, D) float32, zero for absent classes; ``presence``: (N, R) bool; ``names``: one per
    sample; ``info``: how the bank was made (checkpoint path, data spec...).
    """

    codes: Tensor
    presence: Tensor
    label_set: str
    checkpoint_sha256: str
    names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.codes.ndim != 3 or self.presence.shape != self.codes.shape[:2]:
            raise InputError(f"a style bank needs codes (N, R, D) and presence (N, R), got "
                             f"{tuple(self.codes.shape)} and {tuple(self.presence.shape)}")
        self.presence = self.presence.to(torch.bool)
        if self.names and len(self.names) != len(self.codes):
            raise InputError(f"{len(self.names)} names for {len(self.codes)} codes")
        classes = get_label_set(self.label_set).num_classes
        if self.codes.shape[1] != classes:
            raise InputError(f"codes have {self.codes.shape[1]} classes; the {self.label_set} label set has "
                             f"{classes}")

    def __len__(self) -> int:
        return self.codes.shape[0]

    @property
    def style_dim(self) -> int:
        return self.codes.shape[2]

    @property
    def labels(self) -> LabelSet:
        return get_label_set(self.label_set)

    def __repr__(self) -> str:
        return (f"StyleBank({len(self)} samples, {self.codes.shape[1]} {self.label_set} classes, D={self.style_dim}, "
                f"checkpoint {self.checkpoint_sha256[:12]})")

    def group(self, classes: tuple[int, ...] | list[int], min_samples: int = 1) -> Tensor:
        """Codes (M, K, D) of the samples in which every class of the group is present."""
        idx = torch.as_tensor(list(classes), dtype=torch.long)
        rows = self.presence[:, idx].all(dim=1)
        count = int(rows.sum())
        if count < min_samples:
            names = ", ".join(self.labels.classes[c] for c in classes)
            raise InputError(f"the bank has {count} sample(s) with every class of the group present ({names}); "
                             f"at least {min_samples} needed")
        return self.codes[rows][:, idx]

    def region(self, region: str, min_samples: int = 1) -> tuple[tuple[int, ...], Tensor]:
        """The class indices of a named region (``skin`` = skin + nose...) and their codes (M, K, D)."""
        classes = self.labels.region_classes(region)
        return classes, self.group(classes, min_samples)

    # --------------------------------------------------------------------------------------- files

    def save(self, path: str | os.PathLike) -> Path:
        """One safetensors file (written atomically); the metadata records label set and checkpoint."""
        path = Path(path)
        metadata = {"format": BANK_FORMAT, "version": str(BANK_VERSION), "label_set": self.label_set,
                    "checkpoint_sha256": self.checkpoint_sha256, "names": json.dumps(self.names),
                    "info": json.dumps(self.info)}
        try:
            save_tensors({"codes": self.codes.float(), "presence": self.presence.to(torch.uint8)}, path,
                         metadata=metadata)
        except OSError as exc:
            raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, label_set: str | None = None,
             checkpoint: str | os.PathLike | None = None) -> StyleBank:
        """Read a bank; with ``label_set`` or ``checkpoint`` (a generator directory), refuse a bank that
        was made for another label set or encoded by another generator."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"style bank not found: {path}" if not path.exists() else f"{path} is not a file")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                if metadata.get("format") != BANK_FORMAT:
                    raise CheckpointError(f"{path} is not a facestyle style bank (make one with "
                                          "facestyle encode-styles)")
                codes, presence = f.get_tensor("codes"), f.get_tensor("presence")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable style bank ({exc})") from None
        try:
            bank = cls(codes.float(), presence.bool(), metadata["label_set"], metadata["checkpoint_sha256"],
                       json.loads(metadata.get("names", "[]")), json.loads(metadata.get("info", "{}")))
        except (KeyError, ValueError, InputError) as exc:
            raise CheckpointError(f"{path}: invalid style bank ({exc})") from None
        bank.info.setdefault("path", str(path))
        bank.check(label_set=label_set, checkpoint=checkpoint, source=str(path))
        return bank

    def check(self, label_set: str | None = None, checkpoint: str | os.PathLike | None = None,
              source: str = "the style bank") -> None:
        """Raise a :class:`CheckpointError` when the bank was made for another label set or generator."""
        if label_set is not None and label_set != self.label_set:
            raise CheckpointError(f"{source} holds {self.label_set} codes, not {label_set}; encode the data "
                                  "again with a checkpoint for that label set")
        if checkpoint is not None:
            sha = checkpoint_identity(checkpoint)
            if sha != self.checkpoint_sha256:
                made = self.info.get("checkpoint", "another checkpoint")
                raise CheckpointError(f"{source} was encoded by another generator ({made}, sha256 "
                                      f"{self.checkpoint_sha256[:12]}) than {checkpoint} (sha256 {sha[:12]}); "
                                      f"run facestyle encode-styles --checkpoint {checkpoint} again")


@torch.no_grad()
def encode_styles(model: nn.Module, dataset, batch_size: int = 16,
                  progress: Callable[[int], None] | None = None) -> tuple[Tensor, Tensor, list[str]]:
    """Style codes (N, R, D) and presence (N, R) of every item of ``dataset`` (items: image (3, S, S) in
    [-1, 1] at the model's size, labels (S, S), name), on the CPU in float32."""
    from torch.utils.data import DataLoader

    param = next(model.parameters())
    model.eval()
    codes, presence, names = [], [], []
    for image, labels, name in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
        s, p = model.encode(image.to(param.device, param.dtype), labels.to(param.device))
        codes.append(s.float().cpu())
        presence.append(p.cpu())
        names.extend(name)
        if progress is not None:
            progress(len(name))
    return torch.cat(codes), torch.cat(presence), names


def encode_bank(checkpoint: str | os.PathLike, data_spec: str, split: str = "all", seed: int = 0,
                batch_size: int = 16, device: str | torch.device = "cpu", limit: int | None = None,
                resolution: int | None = None, progress: Callable[[int], None] | None = None) -> StyleBank:
    """Load a generator checkpoint and encode a dataset spec (``folder:PATH``, ``synthetic:N``, ...)
    into a :class:`StyleBank`; images are read (synthetic faces rendered) at ``resolution`` (default:
    the model's image size) and resized to the model's image size."""
    from torch.utils.data import Subset

    from ..data.spec import parse_data_spec
    from ..data.transforms import eval_transform

    model = FaceStyleNet.from_pretrained(checkpoint, device=device)
    cfg = model.config
    resize = eval_transform(cfg.image_size) if resolution not in (None, cfg.image_size) else None
    dataset = parse_data_spec(data_spec, split=split, resolution=resolution or cfg.image_size, seed=seed,
                              transform=resize, label_set=cfg.label_set)
    data_labels = getattr(dataset, "label_set", cfg.label_set)
    data_labels = data_labels if isinstance(data_labels, str) else data_labels.name
    if data_labels != cfg.label_set:
        raise InputError(f"{data_spec} has {data_labels} labels but {checkpoint} was made for {cfg.label_set}")
    if limit is not None:
        if limit < 1:
            raise InputError(f"limit must be positive, got {limit}")
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    if len(dataset) == 0:
        raise InputError(f"{data_spec}: no images in split {split!r}")
    codes, presence, names = encode_styles(model, dataset, batch_size=batch_size, progress=progress)
    info = {"checkpoint": str(checkpoint), "data": data_spec, "split": split, "seed": seed,
            "resolution": resolution or cfg.image_size, "image_size": cfg.image_size}
    return StyleBank(codes, presence, cfg.label_set, checkpoint_identity(checkpoint), names, info)
