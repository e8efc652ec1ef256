"""A job's reproducible identity: its resolved config without output paths, and that config's sha256.

A checkpoint is identified by its sha256 rather than its path, so the same checkpoint copied
elsewhere gives the same hash. Recorded in ``result.json`` (``provenance``), the model file's
metadata and the manifest; ``reproduce`` re-runs a job from it.

Example:
    >>> a = config_identity({"policy": {"seed": 0}, "output_dir": "/tmp/a"})
    >>> b = config_identity({"policy": {"seed": 0}, "output_dir": "/tmp/b"})
    >>> a["config_sha256"] == b["config_sha256"], len(a["config_sha256"])
    (True, 64)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

OUTPUT_KEYS = ("output_dir", "overwrite")
"""Config keys that say where artifacts go, not what they are: left out of the config hash."""


def config_identity(config: dict[str, Any], checkpoint_sha256: str | None = None) -> dict[str, Any]:
    """``{"config": ..., "config_sha256": ...}`` of a resolved job config (see the module doc)."""
    clean = {k: v for k, v in config.items() if k not in OUTPUT_KEYS and k != "hydra"}
    if clean.get("checkpoint"):
        clean["checkpoint"] = {"sha256": checkpoint_sha256}
    digest = hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()
    return {"config": clean, "config_sha256": digest}
