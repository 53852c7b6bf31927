"""facestyle: harmonized regional style transfer and manipulation of face images.

The public classes are imported on first use (``from facestyle import Editor``), so that
``import facestyle.model`` loads the network alone, without the editor's image and style dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .editor.editor import Editor
    from .editor.parser import FaceParser
    from .model import FaceStyleNet

__version__ = "0.1.0"
__all__ = ["Editor", "FaceParser", "FaceStyleNet", "__version__"]

_EXPORTS = {"Editor": ".editor.editor", "FaceParser": ".editor.parser", "FaceStyleNet": ".model"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
