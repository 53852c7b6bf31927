"""The Editor: the user-facing Python API: reconstruct faces, transfer regional styles between them, draw
and fine-tune random regional styles, and edit shapes and colours.

>>> from facestyle import Editor
>>> editor = Editor.from_pretrained("demo")                      # or a checkpoint directory
>>> out = editor.transfer("me.png", "me_labels.png", "ref.png", "ref_labels.png", regions=["hair", "lips"])
>>> out.save("me_with_ref_hair_and_lips.png")
>>> faces = editor.sample("me.png", "me_labels.png", region="skin", n=10, seed=0)    # 10 skin styles
>>> out = editor.edit_shape("me.png", "me_labels.png", "me_labels_longer_hair.png")

Inputs may be file paths, PIL images, numpy arrays or torch tensors, alone or batched:

- images: a path; a PIL image; an (H, W, 3) numpy array, ``uint8`` or float in [0, 1] ((H, W) gray and
  (H, W, 4) RGBA also work; an (B, H, W, 3) array is a batch); a (3, H, W) tensor in [-1, 1] (a
  ``uint8`` tensor in 0..255 also works; a (B, 3, H, W) tensor is a batch); or a list of any of these;
- label maps: a path to a class-index PNG (or to an image drawn in the label set's palette colours); a
  single-channel PIL image (or an RGB one in the palette colours); an (H, W) integer array or tensor of
  class indices ((B, H, W) is a batch); or a list of any of these. Every value must be a class of the
  checkpoint's label set. ``None`` parses the photos with the editor's face parser (by default the
  landmark parser, :mod:`facestyle.editor.landmarks`, or ``CHECKPOINT/parser/``).

Images are resized to the model's image size (bicubic), label maps with nearest neighbour (a label map
at a different size from its photo is first resized to the photo's size), and every result is resized
back to its photo's own size.

Any photo, any size, the face anywhere in it: :meth:`Editor.align` finds the face (the landmark parser's
face mesh; ``face=N`` picks one when there are several, 0 the largest), aligns and crops it at the model's
size as FFHQ does, and labels the crop with the editor's parser. Give the :class:`~facestyle.editor.align.
AlignedFace` it returns to any method in place of the photo: the edit runs on the crop, and the result is
the whole photo at its own size with the edited regions pasted back, feathered; the rest of the photo is
untouched (see :mod:`facestyle.editor.align`)::

    face = editor.align("group_photo.jpg", face=1)   # the second largest face
    out = editor.transfer(face, None, editor.align("ref.jpg"), None, regions="hair")

Results are PIL images, or (3, H, W) tensors in [-1, 1] on the editor's
device with ``return_tensors=True``; batched input gives a list (or a (B, 3, H, W) tensor when the
input was one stacked array or tensor).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..accel import DEFAULT_PRECISION, Precision
from ..arch import arch_of, describe_tasks, is_facestyle_net, load_network, require
from ..checkpoint import demo_dir, resolve
from ..data.transforms import resize_image, resize_labels_centered
from ..errors import CheckpointError, InputError
from ..labels import LabelSet, get_label_set
from ..nn.dovenet import DoveNet
from ..nn.flow import ContinuousNormalizingFlow, Solver
from ..nn.mapping import MappingNetwork
from ..nn.pooling import one_hot
from ..nn.synthesis import RANDOM_GLOBAL, RANDOM_REGIONAL, TRANSFER
from ..runtime import keep_freed_memory
from .align import AlignedFace, Alignment, FaceBox, choose_face, face_boxes
from .edits import (
    Pool,
    Strokes,
    StyleMean,
    as_label_input,
    checkpoint_style_mean,
    new_class_codes,
    recoloured_codes,
    resize_alpha,
    stroke_layers,
    stroked_classes,
)
from .inputs import (
    ImageInput,
    Output,
    Prepared,
    item_name,
    photo_tensor,
    postprocess,
    prepare_images,
    prepare_labels,
    resolve_device,
    split_batch,
)
from .landmarks import FaceLandmarks, LandmarkParser, rgb_uint8
from .parser import LANDMARKS, AnyParser, Crop, find_parser, load_parser
from .styles import (
    RegionAbsentWarning,
    Space,
    StyleNetwork,
    check_fits,
    find_style_network,
    finetune_codes,
    parse_steps,
    style_dtype,
    style_kind,
    style_regions,
    warn_absent_regions,
    warn_region_absent,
)

__all__ = ["Editor", "RegionAbsentWarning", "resolve_device", "AlignedFace"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())  # a library does not print; configure logging to see these

Regions = str | Iterable[str]
PARSE_SIZE = 256  # an aligned face is labelled at this size (or the model's, when larger)
DEFAULT_REGIONS = ("skin", "hair")


class Editor:
    """Reconstruct faces and transfer regional styles between them with a :class:`FaceStyleNet`.

    It loads the generators of every architecture (``facestyle train --arch``, :mod:`facestyle.arch`) and
    does with each what it can: reconstruction with all, :meth:`transfer` with those that have per-class
    codes (facestyle, sean, pix2pixhd, groupdnet, sean-groupdnet, sean-stargan), :meth:`sample` from the prior
    of a VAE (spade, clade, clade-icpe: a style of the whole image; groupdnet, sean-groupdnet: per region), from
    sean-stargan's mapping networks (skin, hair) or
    through the mapping networks of a FaceStyleNet; fine-tuning and shape and colour edits need a
    FaceStyleNet. Anything else is an InputError naming what the architecture can do.

    Build one with :meth:`from_pretrained`, or wrap a model you already have: ``Editor(model)`` (the
    editor puts it in eval mode and runs on the model's device and dtype).

    ``precision``: ``fp32`` (default), or ``bf16`` / ``fp16`` to run the networks under autocast
    (mixed precision, :mod:`facestyle.accel`: for GPUs; measured far slower than float32 on this project's CPU;
    results close to float32's); the weights stay as they are. ``compile=True`` compiles the SEAN
    generator's forward pass with ``torch.compile`` (in place; the first call of each batch size compiles,
    tens of seconds).

    With a model on the CPU, the editor calls :func:`facestyle.runtime.keep_freed_memory`: glibc then
    keeps the process's freed memory for reuse (a forward pass is faster; the process no
    longer returns its peak memory to the system). ``FACESTYLE_SYSTEM_ALLOCATOR=1`` opts out.
    """

    def __init__(self, model: Any, checkpoint_dir: str | os.PathLike | None = None,
                 parser: AnyParser | str | os.PathLike | None = None, precision: str = DEFAULT_PRECISION,
                 compile: bool = False) -> None:
        self.model = model.eval()
        self.arch: str = arch_of(model)  # facestyle.arch.ARCHS
        self.precision = Precision(precision)
        if compile:  # in place: the model's weights and state dict keys stay as they are
            self.model.generator.compile(dynamic=False)
        param = next(model.parameters())
        if param.device.type == "cpu":
            keep_freed_memory()  # large activations reused rather than re-mapped: see facestyle.runtime
        self.device = param.device
        self.dtype = param.dtype
        self.label_set: LabelSet = get_label_set(model.config.label_set)
        self.image_size: int = model.config.image_size
        # where the networks stored beside the generator (mapping networks, flows, style mean) are found
        self.checkpoint_dir: Path | None = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.parser: AnyParser | None = None  # labels photos given without a label map
        self.style_networks: dict[tuple[str, str], StyleNetwork] = {}  # (kind, region) -> loaded or attached
        self._style_mean: StyleMean | None = None  # the dataset mean for new classes of a shape edit...
        self._style_mean_loaded = False  # ...read from checkpoint_dir on first use
        self._harmonizers: dict[str, DoveNet] = {}  # post-hoc harmonizers loaded by path
        self._face_finder: LandmarkParser | None = None  # finds faces when the parser is not the landmark parser
        self.set_parser(parser)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike = "demo", device: str | torch.device = "auto",
                        dtype: torch.dtype = torch.float32, label_set: str | None = None,
                        parser: AnyParser | str | os.PathLike | None = None,
                        precision: str = DEFAULT_PRECISION, compile: bool = False) -> Editor:
        """Load a checkpoint directory (``"demo"`` is the bundled model) onto ``device`` (``auto``: CUDA
        when torch sees it, else the CPU; the choice is logged at INFO level).

        ``label_set`` (optional) is the label set your label maps use; a checkpoint made for another
        one is a :class:`~facestyle.errors.CheckpointError`. ``parser`` labels photos given without a
        label map: a face-parser checkpoint, ``"landmarks"`` (MediaPipe's face mesh, the photo extra:
        ``pip install 'facestyle[photo]'``), ``"bisenet:PATH"`` (face-parsing.PyTorch's ``79999_iter.pth``;
        ``"bisenet"`` alone: the one in the weights folder) or ``"none"``; default ``CHECKPOINT/parser``
        when there is one, else ``"landmarks"``.
        """
        dev = resolve_device(device)
        if str(path) == "demo" and not (demo_dir() / "config.json").is_file():
            raise CheckpointError(f"the bundled demo model is not installed ({demo_dir()} is missing); "
                                  "pass a checkpoint directory instead")
        if label_set is not None:
            get_label_set(label_set)  # an unknown name is an InputError listing the valid ones
        model = load_network(path, device=dev, dtype=dtype, label_set=label_set)  # any architecture
        directory = resolve(path)
        return cls(model, directory, parser if parser is not None else (find_parser(directory) or LANDMARKS),
                   precision, compile)

    def __repr__(self) -> str:
        return (f"Editor(label_set={self.label_set.name!r}, image_size={self.image_size}, "
                f"device={str(self.device)!r}, dtype={self.dtype}, precision={self.precision.name!r})")

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Inference mode, under autocast in the editor's precision."""
        with torch.inference_mode(), self.precision.autocast(self.device):
            yield

    # ------------------------------------------------------------------------------ reconstruct, transfer

    def reconstruct(self, image: ImageInput, labels: ImageInput | None = None, return_tensors: bool = False) -> Output:
        """Encode a face and decode it again with its own style (the training task)."""
        with self._inference():
            photos = self._prepare_images(image, "image")
            label_maps = self._prepare_labels(self._labels_or_parse(image, labels, "labels"), photos, "labels")
            changed = label_maps != 0  # an aligned face: all but its background is redrawn
            return postprocess(self.model(photos.images, label_maps), photos, return_tensors, changed)

    def transfer(self, target: ImageInput, target_labels: ImageInput | None, reference: ImageInput,
                 reference_labels: ImageInput | None, regions: Regions = DEFAULT_REGIONS,
                 harmonize: bool = True, return_tensors: bool = False,
                 harmonizer: str | os.PathLike | DoveNet | None = None,
                 strength: float | dict[str, float] = 1.0) -> Output:
        """Give the target the reference's style in ``regions``, harmonized by MRSA (paper eq. 4-5).

        ``regions`` are names of the label set's regions (``skin`` (skin + nose), ``hair``, ``eyes``,
        ``brows``, ``lips``, ``mouth``, ``nose``, ``ears``, ``neck``, ``cloth``, ``background``...) or
        class names, as a list or a comma-separated string. A region missing from the reference keeps
        the target's style and gives a :class:`RegionAbsentWarning`. ``harmonize=False`` skips MRSA.

        Batches pair target i with reference i; a single target or reference is paired with every
        member of the other batch. The result has the target photo's size.

        ``harmonizer``: a post-hoc harmonizer (DoveNet, ``facestyle train-harmonizer``) applied to the
        transfer's output with the moved regions of the target's label map as its mask: a
        :class:`~facestyle.nn.dovenet.DoveNet`, its folder, a generator checkpoint with one in
        ``harmonizer/``, or ``"demo"``. MRSA still runs as ``harmonize`` says (the paper's SEAN+DoveNet row
        is ``harmonize=False`` with a harmonizer). DoveNet redraws the whole image, as it is scored.

        ``strength``: how far each moved region's code goes from the target's (0) to the reference's (1,
        the default), a number for every region or ``{region: value}`` (regions left out: 1).
        """
        require(self.model, TRANSFER)
        classes = self.resolve_regions(regions)
        weights = self.region_strengths(classes, strength)
        post = None if harmonizer is None else self.harmonizer(harmonizer)
        with self._inference():
            targets = self._prepare_images(target, "target")
            target_labels = self._labels_or_parse(target, target_labels, "target labels")
            target_maps = self._prepare_labels(target_labels, targets, "target labels")
            references = self._prepare_images(reference, "reference")
            reference_labels = self._labels_or_parse(reference, reference_labels, "reference labels")
            reference_maps = self._prepare_labels(reference_labels, references, "reference labels")
            n_t, n_r = len(targets), len(references)
            if n_t != n_r and 1 not in (n_t, n_r):
                raise InputError(f"{n_t} targets and {n_r} references: give as many of each, "
                                 "or one of either")
            n = max(n_t, n_r)
            s_t, p_t = self.model.encode(targets.images, target_maps)
            s_r, p_r = self.model.encode(references.images, reference_maps)
            warn_absent_regions(self.label_set, classes, p_t, p_r, references.names)
            s_t, p_t, s_r, p_r = (x.expand(n, *x.shape[1:]) for x in (s_t, p_t, s_r, p_r))
            mask = torch.from_numpy(self.label_set.regions_mask(list(classes))).to(self.device)
            s_c = self.model.compose(s_t, p_t, s_r, p_r, mask, weights.to(self.device))
            out = self.model.restyle(target_maps.expand(n, -1, -1), s_c, s_t, p_t, harmonize)
            if post is not None:
                out = post.harmonize(out, mask[target_maps.expand(n, -1, -1)][:, None].to(out.dtype))
            if n_t == 1 and n_r > 1:
                targets = targets.expand(n)
                targets.form = references.form
            return postprocess(out, targets, return_tensors, mask[target_maps.expand(n, -1, -1)])

    def harmonizer(self, harmonizer: str | os.PathLike | DoveNet) -> DoveNet:
        """A post-hoc harmonizer on the editor's device and dtype: one given, or loaded from a folder (a
        harmonizer, or a generator checkpoint with ``harmonizer/``; ``"demo"``: the bundled demo's), loaded
        once per path."""
        from ..styles.networks import load_harmonizer

        if isinstance(harmonizer, DoveNet):
            return load_harmonizer(harmonizer, self.device, self.dtype)
        key = str(harmonizer)
        if key not in self._harmonizers:
            self._harmonizers[key] = load_harmonizer(harmonizer, self.device, self.dtype)
        return self._harmonizers[key]

    def region_strengths(self, regions: dict[str, tuple[int, ...]], strength: float | dict[str, float]) -> Tensor:
        """(R,) float32 per-class strengths for :meth:`transfer`'s moved ``regions`` (1 elsewhere); values
        outside 0..1 or regions not moved are InputErrors."""
        values = strength if isinstance(strength, dict) else dict.fromkeys(regions, strength)
        out = torch.ones(self.label_set.num_classes)
        for region, value in values.items():
            if region not in regions:
                raise InputError(f"strength given for {region!r}, which is not among the moved regions "
                                 f"({', '.join(regions)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InputError(f"strength must be a number from 0 to 1, got {value!r} for {region}")
            out[list(regions[region])] = float(value)
        return out

    def resolve_regions(self, regions: Regions) -> dict[str, tuple[int, ...]]:
        """Region name -> class indices; an unknown name is an InputError listing the valid ones."""
        if isinstance(regions, str):
            regions = [r for r in (part.strip() for part in regions.split(",")) if r]
        out: dict[str, tuple[int, ...]] = {}
        for region in regions:
            if not isinstance(region, str):
                raise InputError(f"regions must be names (strings), got {region!r}")
            out[region] = self.label_set.region_classes(region)
        return out

    # --------------------------------------------------------------------------- random styles, fine-tuning

    def sample(self, target: ImageInput, labels: ImageInput | None, region: str | None = None, n: int = 10,
               seed: int | None = None, harmonize: bool = True, return_tensors: bool = False) -> list | Tensor:
        """``n`` versions of one target face that differ only in ``region``'s style (paper 3.1, 4.6);
        ``region`` None is ``skin``, or for an architecture with one code per image (spade, clade,
        clade-icpe) the whole image, the only region it can restyle.

        The group's codes come from its mapping network, ``M_g(z)`` with z ~ N(0, I) drawn from ``seed``
        (eq. 3); the other classes keep the target's codes; MRSA harmonizes the composite against the
        target's codes (eq. 4-5, off with ``harmonize=False``) and the generator decodes it on the target's
        label map (``labels=None`` parses the photo when the editor has a face parser). Returns n PIL
        images at the photo's size (a (n, 3, H, W) tensor in [-1, 1] with
        ``return_tensors=True``). A region with no mapping network is a :class:`CheckpointError` listing
        the regions that have one.

        The compared systems draw from their VAE's prior instead (z ~ N(0, I) from ``seed``): per class for
        groupdnet and sean-groupdnet (the region's classes take the random codes, the others keep the
        target's), one code of the whole image for spade and clade; sean-stargan from its mapping networks
        (skin and hair only).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"n must be a positive whole number, got {n!r}")
        with self._seeded_noise(seed):
            if not is_facestyle_net(self.model):
                return self._sample_prior(target, labels, region, n, seed, return_tensors)
            return self._sample_mapped(target, labels, region, n, seed, harmonize, return_tensors)

    def _sample_mapped(self, target: ImageInput, labels: ImageInput | None, region: str | None, n: int,
                       seed: int | None, harmonize: bool, return_tensors: bool) -> list | Tensor:
        """:meth:`sample` for a FaceStyleNet: codes from the region's mapping network."""
        region = region or "skin"
        mapping = self.style_network("mapping", region)
        with self._inference():
            photos, label_maps, s_t, p_t = self._encode_one(target, labels, "sample")
            warn_region_absent(self.label_set, region, mapping.config.classes, p_t)
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            group = mapping.sample(n, generator=generator)
            return self._render(photos, label_maps, s_t, p_t, mapping.config.classes, group, harmonize,
                                return_tensors)

    def finetune(self, target: ImageInput, labels: ImageInput | None, region: str = "skin",
                 step: float | Sequence[float] = 1.0, direction: Tensor | Sequence[float] | None = None,
                 seed: int | None = None, n_steps: int | None = None, space: Space = "z", harmonize: bool = True,
                 solver: Solver | None = None, return_tensors: bool = False) -> list | Tensor:
        """A fine-tuning sequence of one target face's ``region`` style (paper 3.5, 4.7, Fig. 9).

        The group's codes go to the flow's latent space (eq. 7), move by ``step * d`` along a unit
        direction d, come back (eq. 8) and are harmonized and decoded as in :meth:`sample`.
        ``step``: the step size eta, or a sequence of them (one result each); with ``n_steps``, the sequence
        eta, 2 eta, ..., n_steps * eta. ``direction``: the unit direction d (any non-zero vector of the
        group's K x D values, normalised), or None to draw one from ``seed`` (the same seed gives the same
        direction in both spaces). ``space``: ``z`` moves in the flow's latent space (eq. 7-8; needs the
        region's flow), ``style`` moves the codes directly (the paper's baseline of Fig. 9). ``solver``
        overrides the flow's default ODE solver. Returns one image per step, like :meth:`sample`.
        """
        self.require_facestyle_net("style fine-tuning")
        steps = parse_steps(step)
        if n_steps is not None:
            if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1 or len(steps) != 1:
                raise InputError("n_steps must be a positive whole number, with one step size")
            steps = [steps[0] * (i + 1) for i in range(n_steps)]
        if space == "z":
            classes = self.style_network("flow", region).config.classes
        elif space == "style":
            classes = self.label_set.region_classes(region)
        else:
            raise InputError(f"space must be z or style, got {space!r}")
        with self._inference():
            photos, label_maps, s_t, p_t = self._encode_one(target, labels, "finetune")
            warn_region_absent(self.label_set, region, classes, p_t)
            group = s_t[:, torch.as_tensor(classes, device=self.device)]
            tuned = self.finetune_codes(group, region, steps, direction, seed, space, solver)
            return self._render(photos, label_maps, s_t, p_t, classes, tuned, harmonize, return_tensors)

    @contextlib.contextmanager
    def _seeded_noise(self, seed: int | None) -> Iterator[None]:
        """With a ``seed``, the random state of the CPU and of the editor's device (SEAN's per-channel noise,
        which the sean family adds at inference too) seeded from it and restored afterwards, so that a seed
        gives the same images; other devices are left alone."""
        if seed is None:
            yield
            return
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            torch.default_generator.manual_seed(seed)
            if cuda:
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(seed)
            yield

    def _sample_prior(self, target: ImageInput, labels: ImageInput | None, region: str | None, n: int,
                      seed: int | None, return_tensors: bool) -> list | Tensor:
        """:meth:`sample` for a compared system: codes from its VAE's prior."""
        tasks = self.model.tasks
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if RANDOM_REGIONAL in tasks:
            region = region or "skin"
            classes = self.label_set.region_classes(region)
            drawn = getattr(self.model, "sample_classes", None)  # sean-stargan: its mapping networks' groups
            if drawn is not None and not set(classes) <= set(drawn):
                raise InputError(f"{self.arch} draws random styles of {', '.join(self.model.config.groups)} only "
                                 f"(its mapping networks), not {region!r}")
            with self._inference():
                photos, label_maps, s_t, p_t = self._encode_one(target, labels, "sample")
                warn_region_absent(self.label_set, region, classes, p_t)
                codes = self.model.sample_codes(n, generator=generator).to(self.device)
                group = codes[:, torch.as_tensor(classes, device=self.device)]
                return self._render(photos, label_maps, s_t, p_t, classes, group, False, return_tensors)
        if RANDOM_GLOBAL in tasks:
            if region not in (None, "all"):
                raise InputError(f"{self.arch} draws random styles of the whole image only (one code per image): "
                                 f"region None or 'all' (--region all), not {region!r}")
            with self._inference():
                photos = self._prepare_images(target, "target")
                if len(photos) != 1:
                    raise InputError(f"sample takes one photo, got {len(photos)}; call it once per photo")
                given = self._labels_or_parse(target, labels, "target labels")
                label_maps = self._prepare_labels(given, photos, "target labels")
                codes = self.model.sample_codes(n, generator=generator).to(self.device)
                out = self.model.decode(label_maps.expand(n, -1, -1), codes)
                batch = photos.expand(n)
                batch.form = "stacked" if return_tensors else "list"
                return postprocess(out, batch, return_tensors)
        raise InputError(f"{self.arch} cannot draw random styles; it supports {describe_tasks(self.arch)}")

    def require_facestyle_net(self, what: str) -> None:
        """The editing operations written on FaceStyleNet's codes (fine-tuning, shape and colour edits)."""
        if not is_facestyle_net(self.model):
            raise InputError(f"{self.arch} cannot do {what} (it needs the facestyle or sean architecture); it "
                             f"supports {describe_tasks(self.arch)}")

    def finetune_codes(self, codes: Tensor, region: str, steps: Sequence[float] | Tensor,
                       direction: Tensor | Sequence[float] | None = None, seed: int | None = None,
                       space: Space = "z", solver: Solver | None = None) -> Tensor:
        """Fine-tuned group codes (S, K, D) of ``region`` for one group code ``codes`` ((K, D) or (1, K, D))
        and S steps: through the region's flow (eq. 7-8) or, with ``space="style"``, in the code space
        itself (see :func:`facestyle.editor.styles.finetune_codes`)."""
        flow = self.style_network("flow", region) if space == "z" else None
        return finetune_codes(codes, steps, flow, direction, seed, space, solver)

    def style_regions(self, kind: str = "mapping") -> list[str]:
        """The regions with a ``kind`` network (``mapping`` or ``flow``): attached ones and those installed
        beside the editor's checkpoint."""
        return style_regions(self.style_networks, self.checkpoint_dir, kind)

    def add_style_network(self, network: MappingNetwork | ContinuousNormalizingFlow,
                          region: str | None = None) -> None:
        """Attach a mapping network or flow held in memory (under ``region``, default its config's);
        it takes precedence over the one installed beside the checkpoint."""
        kind = style_kind(network)
        check_fits(network, self.label_set, self.model.config.style_dim, f"the {kind} network")
        network = network.to(device=self.device, dtype=style_dtype(kind, self.dtype)).eval()
        self.style_networks[(kind, region or network.config.region)] = network

    def style_network(self, kind: str, region: str) -> StyleNetwork:
        """The ``kind`` network of ``region``: an attached one, else the one beside the checkpoint (loaded
        once). A region without one is a :class:`CheckpointError` listing the regions that have one."""
        return find_style_network(self.style_networks, self.checkpoint_dir, kind, region, self.label_set,
                                  self.model.config.style_dim, self.device, self.dtype)

    # ------------------------------------------------------------------------------ shape and colour edits

    def edit_shape(self, target: ImageInput, labels: ImageInput | None, new_labels: ImageInput,
                   reference: ImageInput | None = None, reference_labels: ImageInput | None = None,
                   seed: int | None = 0, harmonize: bool = True, return_details: bool = False,
                   return_tensors: bool = False) -> Output | tuple[Output, dict[str, dict[str, str]]]:
        """Redraw one target face on an edited label map ``new_labels``, with the target's styles (Fig. 10a).

        Classes present in both maps keep the target's codes. A class that only the new map has takes
        its style from ``reference`` (with ``reference_labels``, parsed when None and a parser is
        configured) when the reference has it, else from the region's mapping network (``M_g(z)``, z
        drawn from ``seed``), else from the dataset mean kept with the checkpoint; with none of these it
        gets a zero code and a :class:`~facestyle.editor.edits.NewClassWarning`. MRSA harmonizes the
        codes over the new map's classes (``harmonize=False`` skips it) and the generator decodes them on
        the new map.

        ``labels`` may be None when a parser is configured. ``new_labels`` is a class-index map like
        ``labels`` (or a palette-coloured image, see :func:`~facestyle.editor.edits.load_label_map`). The
        result has the photo's size; with ``return_details`` it comes with ``{"sources": {class name:
        source}}`` for the new classes.
        """
        self.require_facestyle_net("shape edits")
        with self._inference():
            photos, old_maps, s_t, p_t = self._encode_one(target, labels, "edit_shape", palette=True)
            new_maps = self._prepare_labels(as_label_input(new_labels, self.label_set, "new labels"), photos,
                                            "new labels")
            p_new = one_hot(new_maps, self.label_set.num_classes, torch.float32).flatten(2).amax(2) > 0
            s_r = p_r = None
            if reference is not None:
                _, _, s_r, p_r = self._encode_one(reference, reference_labels, "edit_shape (reference)",
                                                  palette=True, role="reference")
            elif reference_labels is not None:
                raise InputError("reference_labels given without a reference photo")
            s_c, sources = self._new_class_codes(s_t, p_t, p_new, s_r, p_r, seed)
            result = postprocess(self.model.restyle(new_maps, s_c, s_c, p_new, harmonize), photos, return_tensors,
                                 new_maps != old_maps)
        return (result, {"sources": sources}) if return_details else result

    def edit_color(self, target: ImageInput, labels: ImageInput | None, strokes: Strokes,
                   regions: Regions | None = None, pool: Pool = "strokes", harmonize: bool = True,
                   return_details: bool = False,
                   return_tensors: bool = False) -> Output | tuple[Output, dict[str, list[str]]]:
        """Recolour the regions of one target face that colour strokes cover (paper Fig. 10b).

        ``strokes``: an RGBA image (a path, PIL image or (H, W, 4) array) painted where alpha > 0, or an
        ``(image, mask)`` pair (the colours, and where they are painted: a mask in [0, 1], 0..255 or bool),
        at the photo's size or another of the same aspect ratio. The strokes are composited onto the
        photo (alpha-blended) and the composite is encoded again. The classes that get at least 10% of
        the painted area (or those of ``regions``, names such as ``"hair"`` or ``"lips"``) take their codes
        from it: pooled over their painted pixels (``pool="strokes"``, the default; a class whose painted
        part vanishes at the encoder's resolution falls back to the whole region) or over the whole
        region (``pool="region"``). MRSA harmonizes them against the target's codes (``harmonize=False``
        skips it) and the generator redraws the face on its own label map. ``labels`` may be None when a
        parser is configured. With ``return_details`` the result comes with ``{"classes": [names]}``.
        """
        self.require_facestyle_net("colour edits")
        if pool not in ("strokes", "region"):
            raise InputError(f"pool must be 'strokes' or 'region', got {pool!r}")
        with self._inference():
            photos, label_maps, s_t, p_t = self._encode_one(target, labels, "edit_color", palette=True)
            colour, alpha = stroke_layers(strokes, photos.sizes[0], photos.names[0])
            face = photos.face(0)
            if face is not None:  # strokes painted on the whole photo: aligned as the photo was
                colour, alpha = face.crop_image(colour), face.crop_image(alpha[None])[0].clamp(0, 1)
            colour = resize_image(colour.to(self.device), self.image_size)
            alpha = resize_alpha(alpha.to(self.device), self.image_size)
            composite = (photos.images.float() * (1 - alpha) + colour * alpha).to(photos.images.dtype)
            chosen = stroked_classes(label_maps[0], alpha, regions, self.label_set) & p_t[0]
            if not bool(chosen.any()):
                raise InputError("the strokes cover none of the target's regions asked for; paint over the "
                                 "region to recolour")
            s_c = recoloured_codes(self.model, composite, label_maps, alpha, chosen, s_t, pool)
            result = postprocess(self.model.restyle(label_maps, s_c, s_t, p_t, harmonize), photos, return_tensors,
                                 chosen[label_maps])
        names = [self.label_set.classes[c] for c in chosen.nonzero().flatten().tolist()]
        logger.info("colour edit: recoloured %s", ", ".join(names))
        return (result, {"classes": names}) if return_details else result

    def set_style_mean(self, mean: Tensor | None, count: Tensor | None = None) -> None:
        """Use this dataset mean (R, D) (with per-class counts (R,), default all 1) for new classes, instead
        of the one kept with the checkpoint; None turns the fallback off."""
        self._style_mean_loaded = True
        if mean is None:
            self._style_mean = None
            return
        expected = (self.label_set.num_classes, self.model.config.style_dim)
        if tuple(mean.shape) != expected:
            raise InputError(f"the style mean must have shape {expected}, got {tuple(mean.shape)}")
        count = torch.ones(expected[0], dtype=torch.int64) if count is None else count.to(torch.int64).cpu()
        self._style_mean = (mean.to(self.device, torch.float32), count)

    # ------------------------------------------------------------------------------------------- parsing

    def set_parser(self, parser: AnyParser | str | os.PathLike | None) -> None:
        """Configure the face parser used when a label map is not given: a :class:`FaceParser` or
        :class:`~facestyle.editor.landmarks.LandmarkParser`, a parser checkpoint directory, ``"landmarks"``
        (the landmark parser), ``"bisenet:PATH"`` (:class:`~facestyle.editor.parser.BiSeNetParser`), or None
        (or ``"none"``) to turn parsing off. It must label the classes of
        this editor's label set."""
        parser = load_parser(parser, self.label_set, self.device)
        if parser is not None and parser.label_set.name != self.label_set.name:
            raise CheckpointError(f"the parser labels {parser.label_set.name} classes; this model uses "
                                  f"{self.label_set.name}")
        self.parser = parser

    @property
    def can_parse(self) -> bool:
        """Whether label maps may be left out: a parser is configured and can run (the landmark parser needs
        the ``mediapipe`` package)."""
        return self.parser is not None and getattr(self.parser, "available", lambda: True)()

    @property
    def finds_faces(self) -> bool:
        """Whether photos given without a label map are found and aligned by default: the landmark parser
        labels them (and can run), so the faces and their landmarks come with the labels."""
        return isinstance(self.parser, LandmarkParser) and self.can_parse

    def parse(self, images: ImageInput, crop: Crop | Sequence[Crop] = "center") -> Tensor | list[Tensor]:
        """Label maps of photos from the configured parser (see :meth:`facestyle.FaceParser.parse`)."""
        if self.parser is None:
            raise InputError("no face parser is configured: load one with editor.set_parser('landmarks' or DIR) "
                             "(or Editor.from_pretrained(..., parser=...), or put one in CHECKPOINT/parser/)")
        return self.parser.parse(images, crop=crop)

    # ------------------------------------------------------------------------------- faces in photos

    @property
    def face_finder(self) -> LandmarkParser:
        """What finds faces in photos: the landmark parser (the editor's own, when it is its parser)."""
        if isinstance(self.parser, LandmarkParser):
            return self.parser
        if self._face_finder is None:
            self._face_finder = LandmarkParser(self.label_set)
        return self._face_finder

    def faces(self, image: ImageInput) -> list[FaceBox]:
        """The faces of one photo, largest first: each with its index (what ``face=`` takes), its box in
        the photo's pixels and its size."""
        photo = self._one_photo(image, "faces")[1]
        return face_boxes(self.face_finder.detect(rgb_uint8(photo))[0])

    def align(self, image: ImageInput, face: int = 0) -> AlignedFace | list[AlignedFace]:
        """Find face ``face`` of a photo (0 the largest, then by size; see :meth:`faces`), align and crop it
        at the model's size as FFHQ does (:mod:`facestyle.editor.align`), and label the crop with the
        editor's parser (when it has one). Give the result to any method in place of the photo: the result
        is then the whole photo at its own size, the edited regions pasted back. A list of photos gives a
        list. Needs the landmark parser's MediaPipe (the photo extra) to find faces."""
        items, form = split_batch(image, image=True)
        if not items:
            raise InputError("no photo given (an empty list)")
        out = []
        for i, item in enumerate(items):
            name, photo = self._one_photo(item, "align", i, len(items))
            faces, person = self.face_finder.detect(rgb_uint8(photo))
            index = choose_face(faces, face, name)
            alignment = Alignment.from_landmarks(faces[index], self.image_size, tuple(photo.shape[-2:]))
            aligned = AlignedFace(photo, alignment.crop(photo), alignment, index, name,
                                  box=face_boxes(faces)[index])
            if self.can_parse:
                aligned.labels = self._parse_aligned(aligned, faces[index], person)
            out.append(aligned)
        return out[0] if form == "single" else out

    def _parse_aligned(self, face: AlignedFace, landmarks: FaceLandmarks, person: np.ndarray) -> Tensor:
        """The label map (S, S) of an aligned face, drawn at 256 pixels or more: by the landmark parser from
        the landmarks already found (no second detection), else by the editor's parser on the crop."""
        view = face.alignment.resized(max(self.image_size, PARSE_SIZE))
        crop = view.crop(face.photo)
        if isinstance(self.parser, LandmarkParser):
            person_crop = view.crop(torch.tensor(person, dtype=torch.float32)[None])[0].clamp(0, 1)
            labels = self.parser.labels_of(rgb_uint8(crop), FaceLandmarks(view.to_crop(landmarks.points)),
                                           person_crop.numpy())
        else:
            labels = self.parser.parse(crop, crop="none")
        logger.info("%s: face %d aligned and parsed with %s", face.name, face.index, self.parser)
        return resize_labels_centered(labels.cpu(), self.image_size)

    def _face_labels(self, face: AlignedFace, role: str) -> Tensor:
        if face.labels is not None:
            return face.labels
        raise InputError(f"no {role} given and the aligned face of {face.name} has none (the editor had no "
                         "face parser when it was aligned): give a label map")

    def _one_photo(self, image: ImageInput, what: str, index: int = 0, count: int = 1) -> tuple[str, Tensor]:
        if isinstance(image, AlignedFace):
            return image.name, image.photo
        items, _ = split_batch(image, image=True)
        if len(items) != 1:
            raise InputError(f"{what} takes one photo at a time, got {len(items)}")
        name = item_name(items[0], "image", index, count)
        return name, photo_tensor(items[0], name).cpu()

    # ----------------------------------------------------------------------------------------- plumbing

    def _prepare_images(self, images: ImageInput, role: str = "image") -> Prepared:
        return prepare_images(images, self.image_size, self.device, self.dtype, role)

    def _prepare_labels(self, labels: ImageInput, photos: Prepared, role: str = "labels") -> Tensor:
        return prepare_labels(labels, photos, self.label_set, self.image_size, self.device, role)

    def _labels_or_parse(self, images: ImageInput, labels: ImageInput | None,
                         role: str = "labels") -> ImageInput:
        """``labels`` when given (a file or image drawn in the palette colours read as its classes); else
        the parser's label maps of ``images`` (at each photo's size); an InputError when there is neither a
        label map nor a parser."""
        if isinstance(labels, list):
            return [as_label_input(item, self.label_set, role) for item in labels]
        if labels is not None:
            return as_label_input(labels, self.label_set, role)
        items, form = split_batch(images, image=True)
        if any(isinstance(item, AlignedFace) for item in items):
            maps = [self._face_labels(item, role) if isinstance(item, AlignedFace) else
                    self._labels_or_parse(item, None, role) for item in items]
            return maps[0] if form == "single" else maps
        if self.parser is None:
            raise InputError(f"no {role} given and no face parser is configured: give a label map, or load "
                             "a parser (Editor.from_pretrained(..., parser='landmarks' or DIR), or CHECKPOINT/parser/)")
        maps = self.parser.parse(images)
        logger.info("no %s given: parsed the photo(s) with %s", role, self.parser)
        return maps

    def _encode_one(self, image: ImageInput, labels: ImageInput | None, what: str, palette: bool = False,
                    role: str = "target") -> tuple[Prepared, Tensor, Tensor, Tensor]:
        """One photo: (prepared photo, label map (1, S, S), codes (1, R, D), presence (1, R)). ``labels``
        None is parsed; with ``palette``, a label map may be drawn in the palette colours."""
        photos = self._prepare_images(image, role)
        if len(photos) != 1:
            raise InputError(f"{what} takes one photo, got {len(photos)}; call it once per photo")
        given = self._labels_or_parse(image, labels, f"{role} labels")
        if palette:
            given = as_label_input(given, self.label_set, f"{role} labels")
        label_maps = self._prepare_labels(given, photos, f"{role} labels")
        return (photos, label_maps, *self.model.encode(photos.images, label_maps))

    def _render(self, photos: Prepared, label_maps: Tensor, s_t: Tensor, p_t: Tensor, classes: Sequence[int],
                group: Tensor, harmonize: bool, return_tensors: bool) -> list | Tensor:
        """The target with the codes of ``classes`` (K,) replaced by each row of ``group`` (n, K, D)."""
        n = group.shape[0]
        s_t, p_t = s_t.expand(n, -1, -1), p_t.expand(n, -1)
        s_c = s_t.index_copy(1, torch.as_tensor(classes, device=self.device), group.to(s_t.dtype))
        out = self.model.restyle(label_maps.expand(n, -1, -1), s_c, s_t, p_t, harmonize)
        batch = photos.expand(n)
        batch.form = "stacked" if return_tensors else "list"
        changed = torch.isin(label_maps, torch.as_tensor(classes, device=label_maps.device)).expand(n, -1, -1)
        return postprocess(out, batch, return_tensors, changed)

    def _new_class_codes(self, s_t: Tensor, p_t: Tensor, p_new: Tensor, s_r: Tensor | None = None,
                         p_r: Tensor | None = None, seed: int | None = 0) -> tuple[Tensor, dict[str, str]]:
        """:func:`~facestyle.editor.edits.new_class_codes` with this editor's mapping networks and mean."""
        return new_class_codes(s_t, p_t, p_new, self.label_set, self._mapping_networks, self._checkpoint_mean,
                               s_r, p_r, seed)

    def _mapping_networks(self) -> Iterator[tuple[str, MappingNetwork]]:
        """(region, network) for every usable mapping network (one that cannot be loaded is logged)."""
        try:
            regions = self.style_regions("mapping")
        except (CheckpointError, InputError, OSError):
            return
        for region in regions:
            try:
                yield region, self.style_network("mapping", region)
            except (CheckpointError, InputError) as exc:
                logger.warning("the mapping network of %s cannot be used: %s", region, exc)

    def _checkpoint_mean(self) -> StyleMean | None:
        """The dataset mean kept with the checkpoint (read once), or the one given to :meth:`set_style_mean`."""
        if not self._style_mean_loaded:
            self._style_mean = checkpoint_style_mean(self.checkpoint_dir, self.label_set.num_classes,
                                                     self.model.config.style_dim, self.device)
            self._style_mean_loaded = True
        return self._style_mean

