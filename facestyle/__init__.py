"""facestyle: harmonized regional style transfer and manipulation of face images."""

__version__ = "0.1.0"

from .editor.editor import Editor  # noqa: E402

__all__ = ["Editor", "__version__"]
