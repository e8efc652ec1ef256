"""Ctrl-C and SIGTERM, remembered: some C extensions turn an interrupt during their import into
``ImportError: initialization failed``; the pipeline asks here whether the user stopped the run.

Example:
    >>> received  # nothing arrived yet
    False
"""

from __future__ import annotations

import signal
from typing import Any

received = False
"""True once SIGINT or SIGTERM arrived in this process.

The project's only module global that carries control flow, on purpose: a signal handler can
reach nothing but module state, and the job must tell "the user stopped the run" apart from the
``ImportError`` a C extension raises when Ctrl-C lands inside its import."""


def on_signal(signum: int, frame: Any) -> None:
    """Remember the interrupt, then raise it the way Python does for Ctrl-C."""
    global received
    received = True
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT and SIGTERM (Slurm's timeout, ``kill``) like Ctrl-C.

    A shell starts background jobs with SIGINT ignored and Python keeps an inherited SIG_IGN, so
    the handler is installed explicitly.
    """
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
