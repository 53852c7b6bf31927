"""Typed configuration: dataclasses, named presets, YAML files and ``key=value`` overrides.

A checkpoint's ``config.json`` holds a :class:`ModelConfig` and is enough to rebuild the network.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import InputError

T = TypeVar("T")
Fusion = Literal["softmax", "sum", "last"]
Harmony = Literal["off", "synthetic", "relit", "both"]
# Bounds of the networks' sizes: far above any published setting, far below what would exhaust a machine's
# memory before a clear message (a negative or absurd size from --set or a checkpoint's config.json).
MAX_IMAGE_SIZE = 4096
MAX_WIDTH = 16384  # channels, code lengths, hidden widths
MAX_DEPTH = 256  # layers, blocks


def check_size(name: str, value: Any, low: int, high: int) -> None:
    """An integer size in [low, high], or an InputError naming it and the bounds."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def check_image_size(value: int, name: str = "model.image_size") -> None:
    """A generator's image size: a multiple of 32 (SEAN's five upsamplings) up to MAX_IMAGE_SIZE."""
    if value < 32 or value % 32 or value > MAX_IMAGE_SIZE:
        raise InputError(f"{name} must be a multiple of 32 from 32 to {MAX_IMAGE_SIZE}, got {value}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (encoder + MRSA + SEAN generator + discriminator)."""

    label_set: str = "celebamask-hq"
    image_size: int = 256
    # SEAN generator
    ngf: int = 64
    style_dim: int = 512  # D, the style length
    spade_hidden: int = 128
    norm: Literal["batch", "instance"] = "batch"  # the parameter-free norm (SEAN: batch norm)
    noise: Literal["train", "always", "off"] = "train"  # per-channel noise; SEAN adds it always
    generator_spectral_norm: bool = True
    style_branch: Literal["sparse", "factorized", "naive"] = "sparse"  # all exact; see facestyle.nn.sean
    # multi-scale encoder (paper eq. 1-2); fusion = last is SEAN's encoder
    encoder_ngf: int = 32
    encoder_out: int = 512
    fusion: Fusion = "softmax"
    encoder_projection: bool = True  # False only when fusion = last and encoder_out == style_dim
    encoder_spectral_norm: bool = True
    # instance: SEAN's (each layer's maps normalised per image, which discards the image's overall brightness and
    # colour cast); none: no norm, so the codes keep the light (the demo's choice; beyond the paper)
    encoder_norm: Literal["instance", "none"] = "instance"
    # multi-region style attention (paper eq. 4-5)
    attention: Literal["on", "off"] = "on"
    attention_scale: Literal["sqrt_d", "none"] = "sqrt_d"  # "none" is the paper's eq. 4
    # linear: eq. 5's correction, a mix of the target's value vectors; mlp: that mix and the composite code
    # itself through a small residual MLP, so that a correction can scale with the moved region's own
    # colour (relighting is multiplicative; the demo's choice, beyond the paper)
    attention_mix: Literal["linear", "mlp"] = "linear"
    # multi-scale PatchGAN discriminator
    ndf: int = 64
    num_discriminators: int = 2
    discriminator_layers: int = 3

    def __post_init__(self) -> None:
        from .labels import get_label_set

        get_label_set(self.label_set)  # raises on an unknown name
        check_image_size(self.image_size, "image_size")
        for name, high in (("ngf", MAX_WIDTH), ("style_dim", MAX_WIDTH), ("spade_hidden", MAX_WIDTH),
                           ("encoder_ngf", MAX_WIDTH), ("encoder_out", MAX_WIDTH), ("ndf", MAX_WIDTH),
                           ("num_discriminators", 8), ("discriminator_layers", 8)):
            check_size(f"model.{name}", getattr(self, name), 1, high)
        if self.fusion not in ("softmax", "sum", "last"):
            raise InputError(f"fusion must be softmax, sum or last, got {self.fusion!r}")
        if self.attention not in ("on", "off"):
            raise InputError(f"attention must be on or off, got {self.attention!r}")
        if not self.encoder_projection and (self.fusion != "last" or self.encoder_out != self.style_dim):
            raise InputError("encoder_projection = false needs fusion = last and encoder_out == style_dim")

    @property
    def num_classes(self) -> int:
        from .labels import get_label_set

        return get_label_set(self.label_set).num_classes


@dataclass(frozen=True)
class TrainConfig:
    """Generator training (paper section 3.4, SEAN's losses)."""

    batch_size: int = 8
    steps: int = 200_000
    decay_start: int = 100_000  # constant lr until here, then linear decay to 0 at `steps`
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    use_vgg: bool = True  # False: pixel L1 of the same weight instead (a documented deviation)
    load_size: int = 286  # resize, then random crop of image_size (scaled with image_size)
    flip: bool = True
    num_workers: int = 2
    log_every: int = 50
    sample_every: int = 1000
    save_every: int = 5000
    keep_last: int = 3
    seed: int = 0
    deterministic: bool = False
    # Harmony supervision (beyond the paper): besides each reconstruction batch, composites whose moved
    # regions disagree with the target, trained against their ground truth (facestyle.data.composites).
    # off: the paper's objective; synthetic: the renderer's faces (whatever --data is); relit: the data's own
    # photos after a photometric change; both: the composites split between the two.
    harmony: Harmony = "off"
    harmony_weight: float = 1.0  # the composite losses' weight relative to the reconstruction losses
    harmony_share: float = 0.5  # composites per step as a share of batch_size (0.5 with batch 4: 2 pairs)
    # With MRSA: the mean squared error between MRSA's output for the moved classes and the codes the
    # generator draws the ground truth from (MRSA of the ground truth's own codes, held fixed), training MRSA
    # alone (its inputs detached) with this weight: a direct signal besides the pixels' (0: none)
    harmony_code_weight: float = 0.0
    # The compared systems (--arch other than facestyle and sean, facestyle.arch): the VAE encoders' KL weight
    # (SPADE's lambda_kld, on its KL summed over the batch) and their discriminator, SPADE's multi-scale
    # PatchGAN (facestyle and sean read theirs from model.ndf, model.discriminator_layers, ...).
    kl_weight: float = 0.05
    baseline_ndf: int = 64
    baseline_d_layers: int = 4
    baseline_num_d: int = 2
    # sean-stargan (SEAN + StarGAN-v2's strategy, facestyle.train.stargan): StarGAN-v2's weights for the style
    # reconstruction and the diversity-sensitive term (decayed linearly to 0 over stargan_ds_steps) and its
    # mapping networks' learning rate (f_lr), all from its CelebA-HQ recipe.
    stargan_sty_weight: float = 1.0
    stargan_ds_weight: float = 1.0
    stargan_ds_steps: int = 100_000
    stargan_mapping_lr: float = 1e-6


@dataclass(frozen=True)
class Config:
    """A run's settings: the model (a :class:`ModelConfig` for the ``facestyle`` and ``sean`` architectures,
    the compared system's config dataclass for the others, :mod:`facestyle.arch`) and the training."""

    model: Any = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    arch: str = "facestyle"  # facestyle.arch.ARCHS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """A ``facestyle`` or ``sean`` run's config (other architectures: :func:`facestyle.arch.load_arch_config`)."""
        return cls(model=config_from_dict(ModelConfig, data.get("model", {}), "model."),
                   train=config_from_dict(TrainConfig, data.get("train", {}), "train."))


PRESETS: dict[str, Config] = {
    # The paper's 256x256 settings (SEAN's generator, multi-scale encoder, MRSA).
    "paper": Config(ModelConfig(), TrainConfig()),
    # Seconds-long tests.
    "tiny": Config(
        ModelConfig(
            image_size=64, ngf=8, style_dim=16, spade_hidden=16, encoder_ngf=8, encoder_out=32, ndf=8,
            norm="instance", num_discriminators=2, discriminator_layers=2,
        ),
        TrainConfig(batch_size=2, steps=20, decay_start=10, use_vgg=False, load_size=72, num_workers=0,
                    log_every=5, sample_every=10, save_every=10, keep_last=2, baseline_ndf=8, baseline_d_layers=2),
    ),
    # The bundled default model, trained on synthetic faces on a 2-core CPU.
    "demo": Config(
        ModelConfig(
            image_size=128, ngf=8, style_dim=32, spade_hidden=32, encoder_ngf=16, encoder_out=64, ndf=16,
            norm="instance", discriminator_layers=3, encoder_norm="none", attention_mix="mlp",
        ),
        # 3.2 M parameters (6.4 MB in float16, the bundled copy). The generator's lr is twice the paper's and the
        # pixel L1 five times the VGG weight it replaces, for this short run's reconstructions; the encoder keeps
        # the light (encoder_norm). Harmony supervision on synthetic and relit composites (README, Configs).
        TrainConfig(batch_size=4, steps=2500, decay_start=1700, lr_g=2e-4, use_vgg=False, lambda_vgg=50.0,
                    load_size=144, num_workers=0, log_every=25, sample_every=250, save_every=250, keep_last=2,
                    harmony="both", harmony_code_weight=10.0),
    ),
}

# SEAN's published face generator, as `facestyle import-sean` rebuilds it.
SEAN_MODEL = ModelConfig(
    fusion="last", encoder_projection=False, attention="off", norm="batch", noise="always",
    generator_spectral_norm=False, encoder_spectral_norm=False,
)


def get_preset(name: str) -> Config:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def coerce(tp: Any, value: Any, key: str) -> Any:
    """``value`` (from JSON, YAML or a ``key=value`` string) as the dataclass field type ``tp``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:  # "8" from the command line is the Literal[8, 16] value 8
            if value == choice or (isinstance(value, str) and not isinstance(choice, str) and value == str(choice)):
                return choice
        raise InputError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if typing.get_args(tp)[:1] == (str,):  # tuple[str, ...]: names
            if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
                raise InputError(f"{key} must be a list of names, got {value!r}")
            return tuple(v.strip() for v in items)
        try:
            return tuple(int(v) for v in items)
        except (TypeError, ValueError):
            raise InputError(f"{key} must be a list of integers, got {value!r}") from None
    if tp is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise InputError(f"{key} must be true or false, got {value!r}")
        return bool(value)
    if tp in (int, float, str):
        if tp is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
            raise InputError(f"{key} must be a whole number, got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise InputError(f"{key} must be {tp.__name__}, got {value!r}") from None
    return value


def config_from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """A config dataclass from a JSON/YAML mapping: unknown keys and badly typed values are InputErrors.

    ``where`` names the source in messages: a key prefix ending in a dot (``model.``) or a place (a file).
    """
    prefix, place = (where, "") if not where or where.endswith(".") else ("", f"{where}: ")
    if not isinstance(data, dict):
        raise InputError(f"{place or prefix + ': '}expected a mapping of config values")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise InputError(f"{place}unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
                         f"valid: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce(hints[k], v, f"{place}{prefix}{k}") for k, v in data.items()})


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON- and YAML-ready mapping (tuples become lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(asdict(config))


def apply_overrides(sections: dict[str, Any], items: list[str] | None) -> dict[str, Any]:
    """``section.key=value`` overrides (``model.style_dim=64``, ``train.steps=10``) on named config
    dataclasses; returns the mapping with the changed sections replaced."""
    sections = dict(sections)
    names = " or ".join(sections)
    for item in items or []:
        path, sep, value = item.partition("=")
        section, dot, key = path.partition(".")
        if not sep or not dot:
            raise InputError(f"override {item!r} is not of the form section.key=value (e.g. train.steps=100)")
        if section not in sections:
            raise InputError(f"override {item!r}: section must be {names}")
        sub = sections[section]
        hints = typing.get_type_hints(type(sub))
        if key not in hints or key not in {f.name for f in fields(sub)}:
            valid = ", ".join(f.name for f in fields(sub))
            raise InputError(f"unknown config key {path!r}; {section} keys: {valid}")
        sections[section] = replace(sub, **{key: coerce(hints[key], value, path)})
    return sections


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping; a missing, unreadable or malformed file is an InputError."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a mapping of sections")
    return data


def load_sections(path: str | Path, base: dict[str, Any], scalars: tuple[str, ...] = ()) -> dict[str, Any]:
    """The config dataclasses of ``base`` (section name -> dataclass) with a YAML file's sections laid
    over them, key by key; unknown sections and keys are InputErrors (``scalars``: top-level keys read
    elsewhere, such as a run's ``arch``)."""
    data = read_yaml(path)
    unknown = sorted(set(data) - set(base) - set(scalars))
    if unknown:
        raise InputError(f"{path}: unknown section(s) {', '.join(unknown)}; expected {' and '.join(base)}")
    out = {}
    for name, config in base.items():
        merged = {**config_to_dict(config), **(data.get(name) or {})}
        out[name] = config_from_dict(type(config), merged, f"{name}.")
    return out


def override(config: Config, items: list[str] | None) -> Config:
    """Apply ``section.key=value`` overrides (``model.style_dim=64``, ``train.steps=10``)."""
    return Config(**apply_overrides({"model": config.model, "train": config.train}, items))


def load_config(path: str | Path | None = None, preset: str | None = None,
                overrides: list[str] | None = None) -> Config:
    """A preset, then a YAML file's values, then command-line overrides, each on top of the last."""
    config = get_preset(preset or "paper")
    if path is not None:
        if read_yaml(path).get("arch", "facestyle") != "facestyle":
            raise InputError(f"{path} is a config of the {read_yaml(path)['arch']} architecture; "
                             "load it with facestyle.arch.load_arch_config")
        config = Config(**load_sections(path, {"model": config.model, "train": config.train}, scalars=("arch",)))
    return override(config, overrides)
