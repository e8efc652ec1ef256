"""How any exception becomes what the user sees: a kind, an exit code and one line.

The project's own errors (:mod:`getiaction.errors`) know their kind and exit code; anything else
is ``internal`` (exit 1) and keeps its type name in the line. :func:`failure_of` is the one place
that turns an exception into a :class:`Failure`; the CLI and the job both use it.

Example:
    >>> from getiaction.errors import VerificationError
    >>> failure_of(VerificationError("parity failed:\\n action: max abs diff 0.1"))
    Failure(message='parity failed: action: max abs diff 0.1', kind='parity', exit_code=<ExitCode.PARITY: 4>)
    >>> failure_of(KeyError("step")).message
    "KeyError: 'step'"
"""

from __future__ import annotations

from dataclasses import dataclass

from getiaction.errors import ExitCode, GetiActionError


@dataclass(frozen=True)
class Failure:
    """Why a job (or one format of it) stopped."""

    message: str
    kind: str
    """``config``, ``export``, ``parity``, ``internal`` or ``interrupted``."""
    exit_code: ExitCode


INTERRUPTED = Failure("interrupted (Ctrl-C or SIGTERM)", "interrupted", ExitCode.INTERRUPTED)


def one_line(error: BaseException) -> str:
    """The error as one line (project errors are written that way; others get their type)."""
    if isinstance(error, GetiActionError):
        return error.one_line()
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def first_line(error: BaseException) -> str:
    """A foreign exception's first line with its type, to quote inside one of ours.

    Runtimes (physicalai, onnxruntime) raise multi-line errors and bare ``KeyError``s, which quote
    themselves; :func:`one_line` keeps every line, this only the first.
    """
    message = error.args[0] if isinstance(error, KeyError) and error.args else error  # KeyError quotes itself
    text = " ".join(str(message).strip().split("\n")[0].split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def failure_of(error: BaseException) -> Failure:
    """Classify ``error``: a project error's own kind and exit code, else ``internal`` (1)."""
    if isinstance(error, GetiActionError):
        return Failure(error.one_line(), error.kind, error.exit_code)
    return Failure(one_line(error), "internal", ExitCode.INTERNAL)
