"""Re-run a finished export from its folder and check that every artifact comes out byte-identical.

``python -m getiaction_export.reproduce RESULT_DIR`` composes ``RESULT_DIR/.hydra/config.yaml``
(the resolved config Hydra recorded), runs the same pipeline into a scratch folder, and compares
each artifact's sha256 with ``RESULT_DIR/result.json``. When a hash differs it names the first
cause it can find: a changed package version, a changed config value, or (neither) the bytes.

Exit codes: 0 reproduced; 5 not reproduced; 2 the folder is not a result folder.

The plain CLI re-creates the export too (``--config-path`` must be absolute; ``--config-dir``
would only add a search path and silently use the app's own config.yaml)::

    python -m getiaction_export --config-path "$PWD/RESULT_DIR/.hydra" --config-name config
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from getiaction.errors import ExitCode
from getiaction_export.report.result import RESULT_FILE


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def differences(before: dict[str, Any], after: dict[str, Any], prefix: str) -> list[str]:
    """``prefix.key old -> new`` for every leaf that differs."""
    old, new = _flatten(before), _flatten(after)
    return [f"{prefix}.{key}: {old.get(key)!r} -> {new.get(key)!r}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def verify_reproduction(result_dir: Path, scratch: Path) -> tuple[bool, list[str], dict[str, Any]]:
    """Re-run ``result_dir`` into ``scratch``; return (reproduced, report lines, new result)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from getiaction_export.job import run_config

    original = json.loads((result_dir / RESULT_FILE).read_text())
    GlobalHydra.instance().clear()
    with initialize_config_dir(str((result_dir / ".hydra").resolve()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"output_dir={scratch}", "overwrite=true"])
    GlobalHydra.instance().clear()
    new = run_config(cfg, scratch).report
    lines: list[str] = []
    old_hashes, new_hashes = original.get("artifact_sha256") or {}, new.get("artifact_sha256") or {}
    reproduced = bool(old_hashes) and new.get("status") == "ok"
    for name, old_hash in old_hashes.items():
        new_hash = new_hashes.get(name)
        if new_hash == old_hash:
            lines.append(f"✓ {name}: sha256 {old_hash[:12]} matches")
        else:
            reproduced = False
            lines.append(f"✗ {name}: sha256 {old_hash[:12]} -> {str(new_hash)[:12]}")
    if not reproduced:
        causes = differences(original.get("versions") or {}, new.get("versions") or {}, "versions")
        causes += differences((original.get("provenance") or {}).get("config") or {},
                              (new.get("provenance") or {}).get("config") or {}, "config")
        if new.get("status") != "ok":
            causes.insert(0, f"the re-run failed: {new.get('error')}")
        lines.append("first difference: " + (causes[0] if causes else "same config and versions; the bytes differ"))
    return reproduced, lines, new


def main(argv: list[str] | None = None) -> None:
    """Command line of ``python -m getiaction_export.reproduce``."""
    parser = argparse.ArgumentParser(prog="python -m getiaction_export.reproduce", description=__doc__.split("\n")[0])
    parser.add_argument("result_dir", type=Path, help="a job folder holding result.json and .hydra/")
    parser.add_argument("--keep", type=Path, default=None, help="write the re-run here instead of a temp folder")
    args = parser.parse_args(argv)
    result_dir: Path = args.result_dir
    if not (result_dir / RESULT_FILE).is_file() or not (result_dir / ".hydra" / "config.yaml").is_file():
        print(f"error: result_dir: {result_dir} holds no result.json and .hydra/config.yaml", file=sys.stderr)
        sys.exit(ExitCode.CONFIG)
    with tempfile.TemporaryDirectory(prefix="reproduce-") as temp:
        scratch = args.keep or Path(temp)
        reproduced, lines, _ = verify_reproduction(result_dir, scratch)
    for line in lines:
        print(line)
    print("reproduced" if reproduced else "NOT reproduced")
    sys.exit(ExitCode.OK if reproduced else ExitCode.NOT_REPRODUCED)


if __name__ == "__main__":
    main()
