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
"""True once SIGINT or SIGTERM arrived in this process."""


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
