"""The project's exceptions: raised where a problem is detected, turned into one line at the edge.

Every message is a single line that names the argument or config key at fault and what would be
valid, so the CLI can print ``str(error)`` as is.

Example:
    >>> from getiaction.errors import OpsetError, ExportError
    >>> issubclass(OpsetError, ExportError)
    True
"""


class GetiActionError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(GetiActionError, ValueError):
    """A config value, argument or input sample is invalid."""


class SerializationError(ConfigError):
    """A config cannot be turned into plain data, or plain data back into a config."""


class CheckpointError(GetiActionError):
    """A checkpoint is missing, unreadable, not ours, or names a class that may not be loaded."""


class ExportError(GetiActionError):
    """An artifact could not be written."""


class ForwardError(ExportError):
    """The model's forward raised on the input sample."""


class OpsetError(ExportError):
    """The requested ONNX opset cannot be produced for this model."""


class VerificationError(GetiActionError):
    """An artifact was written but its outputs differ from PyTorch beyond tolerance."""
