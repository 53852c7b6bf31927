"""facestyle: harmonized regional style transfer and manipulation of face images."""

__version__ = "0.1.0"
