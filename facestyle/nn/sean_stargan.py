"""SEAN + StarGAN-v2 (the paper's RSM ablation, section 4.8, Table 5): SEAN's encoder and generator, and one
StarGAN-v2 mapping network per region group trained *through images*, StarGAN-v2's way.

The networks are SEAN's (:class:`~facestyle.nn.encoder.MultiScaleEncoder` with ``fusion = last``, no
projection: SEAN's Zencoder; :class:`~facestyle.nn.sean.SEANGenerator`) and, for each group of ``groups``
(the paper's: ``skin``, which is skin + nose, and ``hair``), a :class:`~facestyle.nn.mapping.MappingNetwork`
of StarGAN-v2's shape (4 shared Linear + ReLU, per class 3 Linear + ReLU and a Linear to D) from its own
z ~ N(0, I) to the group's codes. Unlike the paper's RSM (a code-space GAN, :mod:`facestyle.train.mapping`,
trained after the generator), these are trained with the generator: the trainer
(:mod:`facestyle.train.generator`) puts mapped codes in place of the groups' encoded ones, draws the image,
and adds StarGAN-v2's image-level terms to SEAN's reconstruction losses (:mod:`facestyle.train.stargan`).

Random styles of a region are the mapping networks' codes for its classes, so only the groups' regions
can be sampled (:attr:`SEANStarGAN.sample_classes`); transfer and reconstruction are SEAN's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..checkpoint import Pretrained
from ..config import MAX_DEPTH, MAX_WIDTH, check_image_size, check_size
from ..errors import InputError
from ..labels import get_label_set
from .encoder import MultiScaleEncoder
from .mapping import MappingConfig, MappingNetwork
from .sean import NormOptions, SEANGenerator
from .synthesis import RANDOM_REGIONAL, RECONSTRUCTION, TRANSFER, Reconstruction, RegionalCodes

__all__ = ["SEANStarGANConfig", "SEAN_STARGAN_PRESETS", "SEANStarGAN"]


@dataclass(frozen=True)
class SEANStarGANConfig:
    """SEAN's generator (``ngf``, ``style_dim``, ``hidden``, ``norm``, ``noise``, ``spectral``) and encoder
    (``encoder_ngf``, ``encoder_spectral``), and the mapping networks: one per region of ``groups``, of
    StarGAN-v2's shape (``latent_dim``, ``mapping_hidden``, ``shared_layers``, ``head_layers``)."""

    label_set: str = "celebamask-hq"
    image_size: int = 256
    ngf: int = 64
    style_dim: int = 512
    hidden: int = 128
    norm: str = "batch"
    noise: str = "always"  # SEAN adds its noise at inference too
    spectral: bool = False  # SEAN's face generator has none (import-sean's configuration)
    encoder_ngf: int = 32
    encoder_spectral: bool = False
    groups: tuple[str, ...] = ("skin", "hair")
    latent_dim: int = 16
    mapping_hidden: int = 512
    shared_layers: int = 4
    head_layers: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        get_label_set(self.label_set)
        for name in ("ngf", "style_dim", "hidden", "encoder_ngf", "latent_dim", "mapping_hidden"):
            check_size(f"model.{name}", getattr(self, name), 1, MAX_WIDTH)
        check_image_size(self.image_size)
        if self.norm not in ("batch", "instance"):
            raise InputError(f"model.norm must be batch or instance, got {self.norm!r}")
        if self.noise not in ("train", "always", "off"):
            raise InputError(f"model.noise must be train, always or off, got {self.noise!r}")
        check_size("model.shared_layers", self.shared_layers, 1, MAX_DEPTH)
        check_size("model.head_layers", self.head_layers, 0, MAX_DEPTH)
        if not self.groups:
            raise InputError("model.groups names at least one region (the paper's: skin, hair)")
        seen: set[int] = set()
        for region in self.groups:
            classes = set(self.label_set_classes(region))
            if classes & seen:
                raise InputError(f"model.groups: {region} shares classes with an earlier group")
            seen |= classes

    def label_set_classes(self, region: str) -> tuple[int, ...]:
        return get_label_set(self.label_set).region_classes(region)

    @property
    def num_classes(self) -> int:
        return get_label_set(self.label_set).num_classes

    def mapping_config(self, region: str) -> MappingConfig:
        return MappingConfig(label_set=self.label_set, region=region, classes=self.label_set_classes(region),
                             style_dim=self.style_dim, latent_dim=self.latent_dim, hidden_dim=self.mapping_hidden,
                             shared_layers=self.shared_layers, head_layers=self.head_layers)


SEAN_STARGAN_PRESETS: dict[str, SEANStarGANConfig] = {
    # SEAN's face model at 256 x 256 and StarGAN-v2's mapping network (latent 16, width 512) per group.
    "paper": SEANStarGANConfig(),
    # Seconds-long tests (noise in training only, so that eval mode is deterministic).
    "tiny": SEANStarGANConfig(image_size=64, ngf=8, style_dim=16, hidden=16, norm="instance", noise="train",
                              encoder_ngf=8, mapping_hidden=32, shared_layers=2, head_layers=1),
}


class SEANStarGAN(RegionalCodes, Pretrained, nn.Module):
    """SEAN's encoder and generator with a StarGAN-v2 mapping network per region group."""

    kind = "sean-stargan"
    arch: ClassVar[str] = "sean-stargan"
    config_class = SEANStarGANConfig
    tasks: ClassVar[frozenset[str]] = frozenset({RECONSTRUCTION, TRANSFER, RANDOM_REGIONAL})

    def __init__(self, config: SEANStarGANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SEANStarGANConfig()
        self.encoder = MultiScaleEncoder(cfg.style_dim, cfg.encoder_ngf, cfg.style_dim, "last", projection=False,
                                         spectral=cfg.encoder_spectral)
        options = NormOptions(cfg.num_classes, cfg.style_dim, cfg.hidden, cfg.norm, cfg.noise)  # type: ignore[arg-type]
        self.generator = SEANGenerator(options, cfg.image_size, cfg.ngf, cfg.spectral)
        self.mapping = nn.ModuleDict({region: MappingNetwork(cfg.mapping_config(region)) for region in cfg.groups})
        mask = torch.zeros(cfg.num_classes, dtype=torch.bool)
        for network in self.mapping.values():
            mask[list(network.config.classes)] = True
        self.register_buffer("sampled", mask, persistent=False)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def sample_classes(self) -> tuple[int, ...]:
        """The classes the mapping networks draw codes for (the groups' classes)."""
        return tuple(int(c) for c in self.sampled.nonzero()[:, 0])

    def encode(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """SEAN's region codes (B, C, D) and the classes present (B, C)."""
        return self.encoder.region_codes(image, labels, self.num_classes)

    def decode(self, labels: Tensor, codes: Tensor) -> Tensor:
        return self.generator(labels, codes)

    def reconstruct(self, image: Tensor, labels: Tensor, sample: bool | None = None) -> Reconstruction:
        """SEAN's reconstruction (no VAE: the KL term is 0; ``sample`` is accepted and unused)."""
        codes, _ = self.encode(image, labels)
        return Reconstruction(self.decode(labels, codes), image.new_zeros(()))

    def forward(self, image: Tensor, labels: Tensor) -> Tensor:
        return self.reconstruct(image, labels).image

    def sample_codes(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """Codes (B, C, D): each group's classes from its mapping network (its own z, drawn on the CPU from
        ``generator``), the other classes zero (compose them into an image's codes for the groups' classes)."""
        param = self.generator.conv_img.weight
        codes = param.new_zeros(batch, self.num_classes, self.config.style_dim)
        for network in self.mapping.values():  # a few groups, each its own network
            classes = torch.as_tensor(network.config.classes, device=param.device)
            codes = codes.index_copy(1, classes, network.sample(batch, generator).to(codes.dtype))
        return codes

    def mapped_into(self, codes: Tensor, presence: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``codes`` (B, C, D) with the groups' classes present in the image replaced by mapped codes (a
        latent-guided style, StarGAN-v2's ``s = F(z)``)."""
        take = (self.sampled & presence)[..., None]
        return torch.where(take, self.sample_codes(codes.shape[0], generator).to(codes.dtype), codes)
