"""Stage ``promote``: a verified format's staged files get their final names.

OpenVINO's ``.bin`` is renamed before its ``.xml``:

A reader that sees the main file therefore always finds the rest beside it.
"""

from __future__ import annotations

import os

from getiaction_export.files import sha256_of
from getiaction_export.state import FormatOutcome


def promote(outcome: FormatOutcome) -> None:
    """Rename ``outcome``'s staged files to their final names and record their hashes (main file first)."""
    for staged, final in reversed(list(zip(outcome.staged, outcome.final, strict=True))):
        os.replace(staged, final)
    outcome.files = {str(path): sha256_of(path) for path in outcome.final}
