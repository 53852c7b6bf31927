"""Datasets of (image, label map, name) items, joint transforms, synthetic faces, the ``--data`` grammar.

Every dataset yields ``(image (3, H, W) float32 in [-1, 1], labels (H, W) int64, name)`` and has
``label_set`` and ``names``.
"""

from .celebamask import CelebAMaskHQ, prepare_celebamask_hq
from .folder import FolderDataset, LaPa
from .spec import DATA_FORMS, add_data_arguments, dataset_from_args, parse_data_spec
from .synthetic import (
    SKIN_CLASSES,
    Appearance,
    FaceParams,
    Geometry,
    Illumination,
    SyntheticFaces,
    render,
    render_labels,
    sample_face,
)
from .transforms import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    eval_transform,
    hflip,
    resize_image,
    resize_labels_centered,
    train_transform,
)

__all__ = [
    "DATA_FORMS", "SKIN_CLASSES", "Appearance", "CelebAMaskHQ", "Compose", "FaceParams", "FolderDataset",
    "Geometry", "Illumination", "LaPa", "RandomCrop", "RandomHorizontalFlip", "Resize", "SyntheticFaces",
    "add_data_arguments", "dataset_from_args", "eval_transform", "hflip", "parse_data_spec",
    "prepare_celebamask_hq", "render", "render_labels", "resize_image", "resize_labels_centered", "sample_face",
    "train_transform",
]
