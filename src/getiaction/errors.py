"""The project's exceptions: raised where a problem is detected, turned into one line at the edge.

Every error knows three things, so no caller has to classify it again:

- its ``kind`` (``config``, ``export``, ``parity``, ...), recorded in ``result.json``;
- its ``exit_code`` (:class:`ExitCode`), what the command line exits with;
- its :meth:`~GetiActionError.one_line` text: a single line naming the argument or config key at
  fault and what would be valid.

Example:
    >>> from getiaction.errors import OpsetError, ExportError, ExitCode
    >>> issubclass(OpsetError, ExportError), OpsetError.kind, int(OpsetError.exit_code)
    (True, 'export', 3)
    >>> MissingSampleError("input_sample: no sample").exit_code is ExitCode.CONFIG
    True
    >>> first_line(RuntimeError("shape mismatch\\n  long traceback ..."))
    'shape mismatch'
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """Process exit codes of every command of this project (one table, no copies)."""

    OK = 0
    INTERNAL = 1
    """A bug or an unexpected exception (its type is named in the one-line error)."""
    CONFIG = 2
    """Bad config, argument, input sample or checkpoint."""
    EXPORT = 3
    """An artifact could not be written."""
    PARITY = 4
    """An artifact was written but differs from PyTorch beyond its tolerance."""
    NOT_REPRODUCED = 5
    """``reproduce``: a re-run gave different bytes."""
    NOT_DEPLOYABLE = 6
    """``deploy_check``: the folder is not a package the runtime runs as intended."""
    PARTIAL = 7
    """``format=all``: the float32 artifacts were verified and packaged, but a reduced-precision one the user
    did not ask for by name (``openvino_int8``) failed its gate and was left out."""
    INTERRUPTED = 130
    """Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)."""


class GetiActionError(Exception):
    """Base class of every error this project raises on purpose."""

    kind: ClassVar[str] = "internal"
    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL

    def one_line(self) -> str:
        """The message on one line (whitespace runs, newlines included, become one space)."""
        return " ".join(str(self).split())


class ConfigError(GetiActionError, ValueError):
    """A config value, argument or input sample is invalid."""

    kind = "config"
    exit_code = ExitCode.CONFIG


class MissingSampleError(ConfigError, RuntimeError):
    """No input sample: the model has no ``sample_input`` and none was given.

    Also a ``RuntimeError``: code written against the API this one follows catches that.
    """


class SerializationError(ConfigError):
    """A config cannot be turned into plain data, or plain data back into a config."""


class CheckpointError(GetiActionError):
    """A checkpoint is missing, unreadable, not ours, or names a class that may not be loaded."""

    kind = "config"
    exit_code = ExitCode.CONFIG


class ExportError(GetiActionError):
    """An artifact could not be written."""

    kind = "export"
    exit_code = ExitCode.EXPORT


class ForwardError(ExportError):
    """The model's forward raised on the input sample."""


class OpsetError(ExportError):
    """The requested ONNX opset cannot be produced for this model."""


class VerificationError(GetiActionError):
    """An artifact was written but its outputs differ from PyTorch beyond tolerance."""

    kind = "parity"
    exit_code = ExitCode.PARITY


def first_line(error: BaseException) -> str:
    """The first line of a foreign exception's message (at most 300 characters), else its type's name.

    For quoting another library's error inside one of ours, which must stay one line.
    """
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
