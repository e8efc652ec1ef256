"""Stage ``promote``: a verified format's staged files get their final names.

OpenVINO's ``.bin`` is renamed before its ``.xml``, a large ONNX model's ``.onnx.data`` before its
``.onnx``: a reader that sees the main file therefore always finds the rest beside it. A data file
left by an earlier export (``overwrite=true``) that this model does not use is removed.
"""

from __future__ import annotations

import contextlib
import os

from getiaction_export.files import onnx_data_file, sha256_of
from getiaction_export.state import FormatOutcome


def promote(outcome: FormatOutcome) -> None:
    """Rename ``outcome``'s staged files to their final names and record their hashes (main file first)."""
    for staged, final in reversed(list(zip(outcome.staged, outcome.final, strict=True))):
        os.replace(staged, final)
    if outcome.name == "onnx" and onnx_data_file(outcome.final[0]) not in outcome.final:
        onnx_data_file(outcome.final[0]).unlink(missing_ok=True)
    for folder in {path.parent for path in outcome.staged} - {path.parent for path in outcome.final}:
        with contextlib.suppress(OSError):
            folder.rmdir()  # ONNX's hidden staging folder, now empty
    outcome.files = {str(path): sha256_of(path) for path in outcome.final}
