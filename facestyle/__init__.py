"""facestyle: harmonized regional style transfer and manipulation of face images."""

from .editor.editor import Editor
from .editor.parser import FaceParser
from .model import FaceStyleNet

__version__ = "0.1.0"
__all__ = ["Editor", "FaceParser", "FaceStyleNet", "__version__"]
