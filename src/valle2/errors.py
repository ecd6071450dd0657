"""User-facing errors.

Everything that is the caller's fault (bad audio, bad text, missing model, missing
consent) raises a subclass of :class:`Valle2Error` with a message that names the
problem and the offending value. The CLI prints that message on one line and exits
non-zero; the server turns it into a 4xx JSON error.
"""


class Valle2Error(ValueError):
    """Base class of errors caused by the caller's input or environment."""


class AudioError(Valle2Error):
    """Audio that cannot be used: unreadable, empty, silent, too short or too long."""


class TextError(Valle2Error):
    """Text that cannot be synthesised: empty, too long, or unknown symbols."""


class ModelFileError(Valle2Error):
    """A model folder or file that is missing, corrupt, or of an unknown format version."""


class MissingDependencyError(Valle2Error):
    """An optional backend is not installed; the message says what to install."""
