"""Stage ``package``: after a format was promoted, (re)write the folder's ``manifest.json``.

The manifest covers every ONNX/OpenVINO artifact the job promoted so far (``format=all`` adds
OpenVINO to the ONNX package), with the runtime checks they passed. The ``[package]`` line says
what ``InferenceModel(dir)`` computes in and how far that is from PyTorch; a ``!`` line when the
OpenVINO model loads in bf16 without the f32 hint (on a CPU with bfloat16). What goes into the
manifest, and why, is :mod:`getiaction_export.physicalai.manifest`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from getiaction_export.files import sha256_of
from getiaction_export.physicalai.manifest import (
    MANIFEST_FILE,
    PACKAGE_FORMATS,
    SECTION,
    package_files,
    package_manifest,
    write_manifest,
)
from getiaction_export.physicalai.precision import F32_CALL
from getiaction_export.physicalai.reference_set import REFERENCE_FILE, select, write_reference
from getiaction_export.physicalai.task import numpy_feed, promote_extras, task_feed
from getiaction_export.state import FormatOutcome, JobState


def write_package(state: JobState, outcome: FormatOutcome, echo: Callable[[str], None]) -> None:
    """Write ``manifest.json`` for the promoted package formats; warn once about what the runtime cannot do."""
    if outcome.name not in PACKAGE_FORMATS:
        return
    promote_extras(state)  # a task's tokenizer, beside the model from the first package on
    if state.reference_set is None:
        state.reference_set = write_reference_set(state, outcome)
    files = package_files(state)
    manifest = package_manifest(state, files)
    path = write_manifest(state.out_dir, manifest)
    names = list(files)
    loop = manifest[SECTION].get("robot_loop") or {}
    first = state.package is None  # format=all: say the warnings once
    state.package = {"manifest": str(path), "backends": names, "default_backend": names[0],
                     "default_backend_reason": manifest[SECTION].get("default_backend_reason"),
                     "policy_name": manifest["policy"].get("name"), "robot_loop": loop,
                     "reference": state.reference_set, "task": manifest[SECTION].get("task"),
                     "noise": manifest[SECTION].get("noise")}
    backends = manifest[SECTION]["backends"]
    echo(f"[package] ✓ {MANIFEST_FILE}: a physicalai policy package, backends {', '.join(names)} "
         f"(default {names[0]}); {_default_load(names[0], backends[names[0]]['default_load'])}")
    loaded = backends.get("openvino", {}).get("default_load") or {}
    if outcome.name == "openvino" and loaded.get("precision", "f32") != "f32":
        echo(f"[package] ! {loaded['call']} computes in {loaded['precision']} on this CPU (OpenVINO's default where "
             f"the CPU has bfloat16), not the f32 the parity gate verified; for f32: {F32_CALL}")
    play = manifest[SECTION].get("play_warning")
    if first and play:
        echo(f"[package] ! {play}")
    task = manifest[SECTION].get("task")
    if first and task:
        check = task.get("check") or {}
        echo(f"[package] ✓ task: the package tokenizes it itself ({', '.join(s['type'] for s in task['preprocessors'])}"
             f": {', '.join(task['files'])}); its ids equal the policy's tokenizer's on {len(check.get('tasks', {}))} "
             f"task strings (short, truncated at {check.get('max_length')}, non-ASCII, empty, ...)")
    noise = manifest[SECTION].get("noise")
    if first and noise:
        echo(f"[package] ✓ noise: the graph draws fresh {', '.join(noise['drawn_by_graph'])} every call and returns "
             "it; verified as the reference given that noise")
    if first and not manifest["policy"].get("name"):
        echo(f"[package] ! policy.name left out: {state.config.policy_name!r} is not a name the runtime accepts "
             "([a-zA-Z0-9][a-zA-Z0-9_.-]*); it loads the folder's only model file of each backend")
    if first and not loop.get("ok", True):
        echo(f"[package] ! robot loop: {loop['reason']}")


def write_reference_set(state: JobState, outcome: FormatOutcome) -> dict[str, Any]:
    """``reference.npz`` beside the model: the gate's first inputs and PyTorch's outputs (:mod:`.reference_set`)."""
    verification, graph = outcome.verification, state.graph
    assert verification is not None and graph is not None
    feed = task_feed(state)
    cases = feed.with_tasks(verification.cases) if feed else verification.cases
    drawn = dict(getattr(verification.reference, "conditioned_on", None) or {})
    inputs, outputs = [], []
    for _, case in cases:
        given = {name: tensor for name, tensor in case.items() if name in graph.input_names}
        row = feed(given) if feed else numpy_feed(given)
        out = dict(zip(graph.output_names, verification.reference(case), strict=True))
        # what the graph draws itself is stored as the input the reference was given (deploy_check pins it)
        inputs.append({**{name: np.asarray(value) for name, value in row.items()},
                       **{name: out[output] for output, name in drawn.items()}})
        outputs.append(out)
    chosen = select(inputs, outputs, [label for label, _ in cases])
    path = write_reference(state.out_dir / REFERENCE_FILE, chosen)
    record = {"file": REFERENCE_FILE, "sha256": sha256_of(path), "cases": chosen.cases, "labels": chosen.labels,
              "inputs": list(chosen.inputs), "outputs": list(chosen.outputs), "bytes": path.stat().st_size}
    return {**record, "conditioned_on": drawn} if drawn else record


def _default_load(backend: str, record: Mapping[str, Any]) -> str:
    """``InferenceModel(dir) computes in bf16 on this CPU, 0.95% of the largest |action| off PyTorch (...)``."""
    text = f"{record['call']} computes in {record['precision']}"
    if backend == "openvino" and record["precision"] != "f32":
        text += " on this CPU"
    if not record.get("checked"):
        return text + " (not checked: no runtime check)"
    tolerance = record["tolerance"]
    bound = (f"{record['precision']} tolerance {tolerance['relative']:.0%}" if "relative" in tolerance
             else f"atol {tolerance['atol']:.0e}" if tolerance.get("atol") is not None else "the format's bound")
    if "relative" in tolerance:
        return f"{text}, {record['relative']:.2%} of the largest |action| off PyTorch ({bound})"
    return f"{text}, {record['max_abs_diff']:.1e} off PyTorch ({bound})"
