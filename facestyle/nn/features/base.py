"""Loading published weight files into the project's own feature networks, key for key.

The feature networks (AlexNet, VGG16, the FID InceptionV3) are defined in the project with the module
names of the networks the weight files were saved from, so a published state dict loads without any
renaming. :func:`load_published_state_dict` checks that it does: a missing, unexpected or wrongly shaped
key raises :class:`~facestyle.errors.WeightsError` naming the file and the first bad key, so a wrong or
truncated file is never half-loaded.

:class:`TorchvisionFeatures` is the shared frozen feature extractor behind AlexNet, VGG16 and VGG19
(:mod:`facestyle.nn.features.alexnet`, :mod:`~facestyle.nn.features.vgg16`, :mod:`~facestyle.nn.features.vgg19`):
a torchvision
``features`` module whose selected ReLU outputs the forward pass returns.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar, TypeVar

from torch import Tensor, nn

from ...errors import WeightsError
from ...weights import find_weight, load_state_dict_file

_T = TypeVar("_T", bound="TorchvisionFeatures")


def load_published_state_dict(module: nn.Module, state: Mapping[str, Tensor], *, source: str, network: str,
                              ignore_prefixes: tuple[str, ...] = (),
                              optional_suffixes: tuple[str, ...] = ("num_batches_tracked",),
                              count_unexpected: bool = True) -> None:
    """Load ``state`` into ``module`` strictly, after dropping the keys under ``ignore_prefixes``.

    Keys ending in one of ``optional_suffixes`` (BatchNorm's ``num_batches_tracked``, which older files
    lack and which does not affect inference) may be absent. Tensors are converted to the module's dtype,
    so a float16 copy of a file loads as well. ``source`` (the file) and ``network`` (what the file should
    hold, e.g. "torchvision AlexNet") go into the error messages; ``count_unexpected`` adds the number of
    unexpected keys to that message.
    """
    kept = {k: v for k, v in state.items() if not (ignore_prefixes and k.startswith(ignore_prefixes))}
    expected = module.state_dict()
    for key, current in expected.items():
        if key not in kept:
            if key.endswith(optional_suffixes):
                kept[key] = current
                continue
            raise WeightsError(f"{source}: missing key {key!r}; is it a {network} file?")
        if tuple(kept[key].shape) != tuple(current.shape):
            raise WeightsError(f"{source}: {key} has shape {tuple(kept[key].shape)}, expected "
                               f"{tuple(current.shape)}; is it a {network} file?")
    unexpected = [k for k in kept if k not in expected]
    if unexpected:
        count = f" ({len(unexpected)} in all)" if count_unexpected else ""
        raise WeightsError(f"{source}: unexpected key {unexpected[0]!r}{count}; is it a {network} file?")
    module.load_state_dict(kept)


class TorchvisionFeatures(nn.Module):
    """Frozen torchvision ``features`` network returning the outputs at :attr:`layer_indices`.

    Subclasses set the class attributes and :meth:`make_features`; :meth:`prepare` is the hook for input
    normalisation (identity here). Build one with :meth:`load_weights`; the plain constructor gives
    random weights (tests only). The network is frozen and always in eval mode.
    """

    weight_file: ClassVar[str]  # name in the weights folder (see :mod:`facestyle.weights`)
    network: ClassVar[str]  # what the weight file holds, for error messages, e.g. "torchvision AlexNet"
    layer_names: ClassVar[tuple[str, ...]]
    layer_indices: ClassVar[tuple[int, ...]]  # positions of those layers in ``features``
    channels: ClassVar[tuple[int, ...]]
    count_unexpected: ClassVar[bool] = True  # see :func:`load_published_state_dict`

    @staticmethod
    def make_features() -> nn.Sequential:
        """The torchvision ``features`` module, with random weights."""
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.features = self.make_features()
        self.requires_grad_(False)
        self.eval()

    def train(self: _T, mode: bool = True) -> _T:
        """Always stays in eval mode: a fixed feature extractor."""
        return super().train(False)

    def prepare(self, x: Tensor) -> Tensor:
        """Input normalisation before ``features``; the identity unless a subclass overrides it."""
        return x

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) images -> the feature maps at :attr:`layer_indices`; stops after the last one."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects (B, 3, H, W) images, got shape {tuple(x.shape)}")
        x = self.prepare(x)
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layer_indices:
                outputs.append(x)
                if len(outputs) == len(self.layer_indices):
                    break
        return outputs

    def load_torchvision_state_dict(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """Load a torchvision state dict of :attr:`network`; ``classifier.*`` entries are ignored.

        A missing, unexpected or wrongly shaped key raises :class:`~facestyle.errors.WeightsError` naming
        ``source`` and the first bad key.
        """
        load_published_state_dict(self, state, source=source, network=self.network,
                                  ignore_prefixes=("classifier.",), count_unexpected=self.count_unexpected)

    @classmethod
    def from_file(cls: type[_T], path: str | os.PathLike[str]) -> _T:
        """Load a torchvision weight file (``.pth`` or ``.safetensors``)."""
        model = cls()
        model.load_torchvision_state_dict(load_state_dict_file(path), source=str(path))
        return model

    @classmethod
    def load_weights(cls: type[_T], weights_dir: str | os.PathLike[str] | None = None) -> _T:
        """Load :attr:`weight_file` from the weights folder (``--weights-dir`` / ``FACESTYLE_WEIGHTS`` /
        torch's hub cache); a missing file raises :class:`~facestyle.errors.WeightsError` saying where
        to get it."""
        return cls.from_file(find_weight(cls.weight_file, weights_dir))
