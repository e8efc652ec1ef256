"""Stage ``report``: ``result.json``, the one file a script reads to know what a job did.

The schema is versioned (``schema_version``); later features add keys and never change these:
``status`` ("ok"/"failed"), ``error`` (one line or null), ``error_kind``, ``exit_code``,
``stage`` (the last stage reached), ``policy``, ``format``, ``artifacts`` (name -> path),
``artifact_sizes``, ``opset`` (``requested``/``saved``), ``exporter``, ``parity``
(``{output: {max_abs_diff, max_rel_diff, atol, rtol, passed, ...}}`` worst case over all inputs and
batches; per-case figures under ``parity_cases``), ``timings`` (seconds per stage), ``versions``.

Example:
    >>> import tempfile, pathlib, json
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> path = write_result(folder, {"status": "ok"})
    >>> json.loads(path.read_text())["schema_version"]
    1
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from getiaction.export.atomic import atomic_write_text

RESULT_FILE = "result.json"
SCHEMA_VERSION = 1


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: write them as strings so any JSON reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_result(out_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``result.json`` atomically into ``out_dir``."""
    data = {"schema_version": SCHEMA_VERSION, **result}
    path = Path(out_dir) / RESULT_FILE
    atomic_write_text(path, json.dumps(_finite(data), indent=2, sort_keys=False) + "\n")
    return path


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


OUTPUT_KEYS = ("output_dir", "overwrite")
"""Config keys that say where artifacts go, not what they are: left out of the config hash."""


def provenance(config: dict[str, Any], checkpoint_sha256: str | None = None) -> dict[str, Any]:
    """The reproducible identity of a job: its resolved config without output paths, and its hash.

    A checkpoint is identified by its sha256 rather than its path, so the same checkpoint copied
    elsewhere gives the same hash.

    Example:
        >>> a = provenance({"policy": {"seed": 0}, "output_dir": "/tmp/a"})
        >>> b = provenance({"policy": {"seed": 0}, "output_dir": "/tmp/b"})
        >>> a["config_sha256"] == b["config_sha256"], len(a["config_sha256"])
        (True, 64)
    """
    import hashlib

    clean = {k: v for k, v in config.items() if k not in OUTPUT_KEYS and k != "hydra"}
    if clean.get("checkpoint"):
        clean["checkpoint"] = {"sha256": checkpoint_sha256}
    digest = hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()
    return {"config": clean, "config_sha256": digest}
