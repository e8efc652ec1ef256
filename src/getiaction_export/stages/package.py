"""Stage ``package``: after a format was promoted, (re)write the folder's ``manifest.json``.

The manifest covers every ONNX/OpenVINO artifact the job promoted so far (``format=all`` adds
OpenVINO to the ONNX package), with the runtime checks they passed. What goes into it, and why,
is :mod:`getiaction_export.physicalai.manifest`.
"""

from __future__ import annotations

from collections.abc import Callable

from getiaction_export.physicalai.manifest import (
    MANIFEST_FILE,
    PACKAGE_FORMATS,
    SECTION,
    package_files,
    package_manifest,
    write_manifest,
)
from getiaction_export.state import FormatOutcome, JobState


def write_package(state: JobState, outcome: FormatOutcome, echo: Callable[[str], None]) -> None:
    """Write ``manifest.json`` for the promoted package formats; warn once about what the runtime cannot do."""
    if outcome.name not in PACKAGE_FORMATS:
        return
    files = package_files(state)
    manifest = package_manifest(state, files)
    path = write_manifest(state.out_dir, manifest)
    names = list(files)
    loop = manifest[SECTION].get("robot_loop") or {}
    first = state.package is None  # format=all: say the warnings once
    state.package = {"manifest": str(path), "backends": names, "default_backend": names[0],
                     "policy_name": manifest["policy"].get("name"), "robot_loop": loop}
    echo(f"[package] ✓ {MANIFEST_FILE}: a physicalai policy package, backends {', '.join(names)} "
         f"(default {names[0]})")
    if first and not manifest["policy"].get("name"):
        echo(f"[package] ! policy.name left out: {state.config.policy_name!r} is not a name the runtime accepts "
             "([a-zA-Z0-9][a-zA-Z0-9_.-]*); it loads the folder's only model file of each backend")
    if first and not loop.get("ok", True):
        echo(f"[package] ! robot loop: {loop['reason']}")
