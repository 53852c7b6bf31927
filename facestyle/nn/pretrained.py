"""Loading published weight files into the project's own feature networks, key for key.

The feature networks (AlexNet, VGG16, the FID InceptionV3) are defined in the project with the module
names of the networks the weight files were saved from, so a published state dict loads without any
renaming. :func:`load_published_state_dict` checks that it does: a missing, unexpected or wrongly shaped
key raises :class:`~facestyle.errors.WeightsError` naming the file and the first bad key, so a wrong or
truncated file is never half-loaded.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ..errors import WeightsError


def load_published_state_dict(module: nn.Module, state: Mapping[str, Tensor], *, source: str, network: str,
                              ignore_prefixes: tuple[str, ...] = (),
                              optional_suffixes: tuple[str, ...] = ("num_batches_tracked",)) -> None:
    """Load ``state`` into ``module`` strictly, after dropping the keys under ``ignore_prefixes``.

    Keys ending in one of ``optional_suffixes`` (BatchNorm's ``num_batches_tracked``, which older files
    lack and which does not affect inference) may be absent. Tensors are converted to the module's dtype,
    so a float16 copy of a file loads as well. ``source`` (the file) and ``network`` (what the file should
    hold, e.g. "torchvision AlexNet") go into the error messages.
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
        raise WeightsError(f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} in all); "
                           f"is it a {network} file?")
    module.load_state_dict(kept)
