"""User-facing errors: the command line prints their message as one line and exits non-zero."""


class FacestyleError(Exception):
    """An error caused by the user's input (a file, a value, a checkpoint), not by a bug."""


class InputError(FacestyleError, ValueError):
    """A file or value handed in by the user is missing, unreadable or invalid."""


class CheckpointError(FacestyleError):
    """A directory is not a facestyle checkpoint, or was made for another label set."""


class WeightsError(FacestyleError, FileNotFoundError):
    """A pretrained weight file (VGG19, InceptionV3, ...) is missing or does not match."""
