"""The harmonized style-transfer network: multi-scale encoder -> region pooling -> MRSA -> SEAN generator."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .checkpoint import Pretrained
from .config import ModelConfig
from .nn.encoder import MultiScaleEncoder
from .nn.mrsa import MRSA
from .nn.sean import SEANGenerator


class FaceStyleNet(Pretrained, nn.Module):
    """Encoder, MRSA and SEAN generator; ``config`` rebuilds it.

    ``FaceStyleNet.from_pretrained("demo")`` loads the bundled model (or any checkpoint directory);
    ``model.save_pretrained(dir)`` writes one.
    """

    kind = "generator"
    config_class = ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = MultiScaleEncoder.from_config(config)
        self.mrsa = MRSA.from_config(config)
        self.generator = SEANGenerator.from_config(config)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def encode(self, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Style codes (B, R, D) and presence (B, R) of an image (B, 3, H, W) with its labels (B, H, W).

        Pixels labelled :data:`~facestyle.nn.pooling.IGNORE` (-1) are left out of region pooling.
        """
        return self.encoder.region_codes(image, labels, self.num_classes)

    @staticmethod
    def moved_classes(classes: Tensor, target_presence: Tensor, reference_presence: Tensor) -> Tensor:
        """(B, R) bool: the classes a transfer of ``classes`` moves, those present in both faces."""
        return classes.to(torch.bool) & reference_presence & target_presence

    @staticmethod
    def compose(target: Tensor, target_presence: Tensor, reference: Tensor, reference_presence: Tensor,
                classes: Tensor, strength: float | Tensor = 1.0) -> Tensor:
        """The composite codes s_c: the target's, with ``classes`` ((R,) or (B, R) bool) from the reference
        where the reference has them (a class absent from the reference keeps the target's style).
        ``strength`` (a number, or (R,) / (B, R) per class, in 0..1) interpolates each moved class's code
        from the target's (0) to the reference's (1, the default)."""
        take = FaceStyleNet.moved_classes(classes, target_presence, reference_presence)
        weight = take.to(target.dtype) * torch.as_tensor(strength, dtype=target.dtype, device=target.device)
        return torch.lerp(target, reference, weight[..., None])

    def harmonize(self, composite: Tensor, target: Tensor, presence: Tensor, enabled: bool = True) -> Tensor:
        """MRSA (eq. 4-5); the identity when attention is off or ``enabled`` is False."""
        if self.mrsa is None or not enabled:
            return composite
        return self.mrsa(composite, target, presence)

    def decode(self, labels: Tensor, codes: Tensor) -> Tensor:
        """SEAN generator: labels (B, S, S) at the model's image size and codes (B, R, D) -> (B, 3, S, S)."""
        return self.generator(labels, codes)

    def restyle(self, labels: Tensor, codes: Tensor, target: Tensor, presence: Tensor,
                harmonize: bool = True) -> Tensor:
        """Draw ``labels`` (B, S, S) with new ``codes`` (B, R, D): MRSA against the ``target`` codes over the
        classes of ``presence`` (eq. 4-5; skipped when ``harmonize`` is False), then the SEAN generator."""
        return self.decode(labels, self.harmonize(codes, target, presence, enabled=harmonize))

    def forward(self, image: Tensor, labels: Tensor) -> Tensor:
        """Reconstruction, the training task (reference = target, so s_c = s_t)."""
        codes, presence = self.encode(image, labels)
        return self.restyle(labels, codes, codes, presence)

    def transfer(self, target: Tensor, target_labels: Tensor, reference: Tensor, reference_labels: Tensor,
                 classes: Tensor, harmonize: bool = True, decode_labels: Tensor | None = None) -> Tensor:
        """Move the style of ``classes`` from the reference to the target, harmonized through MRSA.

        ``decode_labels`` is the map the generator draws (default ``target_labels``); give it when
        ``target_labels`` holds :data:`~facestyle.nn.pooling.IGNORE` pixels, which only pooling can skip.
        """
        composite, s_t, p_t, _ = self.transfer_codes(target, target_labels, reference, reference_labels, classes)
        labels = target_labels if decode_labels is None else decode_labels
        return self.restyle(labels, composite, s_t, p_t, harmonize)

    def transfer_codes(self, target: Tensor, target_labels: Tensor, reference: Tensor, reference_labels: Tensor,
                       classes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A transfer's codes before MRSA: (composite s_c, target s_t, target presence, the moved classes
        (:meth:`moved_classes`))."""
        s_t, p_t = self.encode(target, target_labels)
        s_r, p_r = self.encode(reference, reference_labels)
        return self.compose(s_t, p_t, s_r, p_r, classes), s_t, p_t, self.moved_classes(classes, p_t, p_r)
