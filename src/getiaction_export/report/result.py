"""Stage ``report``: ``result.json``, rendered once from the job's state, the one file a script reads.

The schema is versioned (``schema_version``); later features add keys and never change these:
``status`` ("ok"/"failed"), ``error`` (one line or null), ``error_kind``, ``exit_code``,
``stage`` (the last stage reached), ``policy``, ``format``, ``artifacts`` (name -> path),
``artifact_sizes``, ``opset`` (``requested``/``saved``), ``exporter``, ``parity``
(``{output: {max_abs_diff, max_rel_diff, atol, rtol, passed, ...}}`` worst case over all inputs and
batches; per-case figures under ``parity_cases``), ``timings`` (seconds per stage), ``versions``,
``machine`` (the CPU and runtimes the figures were taken on: :func:`getiaction_export.machine.describe_machine`).

Example:
    >>> import tempfile, pathlib, json
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> path = write_result(folder, {"status": "ok"})
    >>> json.loads(path.read_text())["schema_version"]
    1
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from getiaction.export.atomic import atomic_write_text
from getiaction_export.state import FormatOutcome, JobState

RESULT_FILE = "result.json"
SCHEMA_VERSION = 1


def write_result(out_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``result.json`` atomically into ``out_dir``."""
    data = {"schema_version": SCHEMA_VERSION, **result}
    path = Path(out_dir) / RESULT_FILE
    atomic_write_text(path, json.dumps(_finite(data), indent=2, sort_keys=False) + "\n")
    return path


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: write them as strings so any JSON reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def render_result(state: JobState) -> dict[str, Any]:
    """The whole ``result.json`` of a job (finished or failed) from its state."""
    from getiaction_export.stages.rollout import rollout_record  # here: the CLI imports this module, keep it light

    failure, reached = state.failure, [o for o in state.formats.values() if o.status != "pending"]
    promoted = state.promoted()
    fmt = state.config.format
    result: dict[str, Any] = {
        "status": state.status, "error": failure.message if failure else _left_out(state),
        "error_kind": failure.kind if failure else ("partial" if state.left_out() else None),
        "exit_code": int(state.exit_code),
        "stage": state.stage, "stage_failed": state.stage if failure else None,
        "policy": _policy(state), "format": fmt.name, "output_dir": str(state.out_dir),
        "artifacts": {o.name: str(o.final[0]) for o in promoted},
        "artifact_sizes": {o.name: o.size for o in promoted},
        "artifact_sha256": {o.name: o.files[str(o.final[0])] for o in promoted},
        "opset": state.opset, "exporter": state.source.exporter if state.source else None,
        "parity": _merged_parity(state, reached), "timings": dict(state.timings), "versions": state.versions,
        "machine": state.machine,
        "provenance": state.identity, "precision": str(getattr(fmt, "precision", "fp32")),
        "latency": max((o.latency for o in reached if o.latency), key=lambda f: f["speedup"], default=None),
        "formats": {o.name: _format_record(o) for o in reached},
        "job": state.job,
    }
    if state.sample is not None:
        result["input_sample"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                                  for k, v in state.sample.items()}
    if state.source is not None and state.source.fallback:
        result["exporter_fallback"] = {"from": "dynamo", "to": state.source.exporter, "reason": state.source.fallback}
    if state.graph is not None:
        result["onnx"] = {"inputs": state.graph.inputs, "outputs": state.graph.outputs,
                          "dynamic_axes": state.graph.dynamic_axes, "nodes": state.graph.nodes}
    for name in ("openvino", "openvino_int8", "executorch"):
        if name in state.formats and state.formats[name].details:
            result[name] = state.formats[name].details
    if any(o.parity for o in reached):
        tag = len(state.formats) > 1
        result["parity_cases"] = [{**case, **({"format": o.name} if tag else {})}
                                  for o in reached if o.parity for case in o.parity.cases]
    optional = {"simplify": state.simplify, "runtime_check": _runtime_checks(state, reached), "package": state.package,
                "rollout": rollout_record(state)}
    result.update({key: value for key, value in optional.items() if value is not None})
    return result


def _left_out(state: JobState) -> str | None:
    """The one line of a ``partial`` job: which best-effort formats were left out, and why."""
    left = state.left_out()
    if not left:
        return None
    reasons = "; ".join(f"{o.name} ({o.failure.message if o.failure else 'failed'})" for o in left)
    return f"format=all left out {reasons}; the other formats were verified and promoted"


def _policy(state: JobState) -> dict[str, Any]:
    policy: dict[str, Any] = {"name": state.config.policy_name}
    built = state.built
    if built is not None:
        policy.update(class_path=built.class_path, source=built.source, seed=built.seed,
                      checkpoint=built.checkpoint, checkpoint_sha256=built.checkpoint_sha256,
                      parameters=built.parameters)
    return policy


def _format_record(outcome: FormatOutcome) -> dict[str, Any]:
    record: dict[str, Any] = {"status": outcome.status, "timings": dict(outcome.timings),
                              "precision": outcome.precision, "runtime": outcome.runtime}
    if outcome.verification is not None:
        record["tolerances"] = outcome.verification.tolerances
    if outcome.parity is not None:
        record["parity"] = outcome.parity.outputs
    if outcome.latency is not None:
        record["latency"] = outcome.latency
    if outcome.files:
        record["files"] = dict(outcome.files)
        record["size"] = outcome.size
    for key in ("int8", "batch_range"):  # how an INT8 IR was calibrated; what batch a program accepts
        if key in outcome.details:
            record[key] = outcome.details[key]
    if outcome.failure is not None:
        record.update(error=outcome.failure.message, error_kind=outcome.failure.kind, stage=outcome.stage)
    return record


def _merged_parity(state: JobState, reached: list[FormatOutcome]) -> dict[str, Any]:
    """One format's own parity, or per output the worst over the formats (a failing one wins, then the larger diff)."""
    reports = [(o.name, o.parity.outputs) for o in reached if o.parity is not None]
    if len(state.formats) == 1:
        return reports[0][1] if reports else {}
    merged: dict[str, dict[str, Any]] = {}
    for name, parity in reports:
        for output, figures in parity.items():
            worst = merged.get(output)
            passed = figures["passed"] and (worst is None or worst["passed"])
            if worst is None or (not figures["passed"], figures["max_abs_diff"]) > (
                not worst["passed"], worst["max_abs_diff"]
            ):
                merged[output] = {**figures, "format": name}
            merged[output]["passed"] = passed
    return merged


def _runtime_checks(state: JobState, reached: list[FormatOutcome]) -> dict[str, Any] | None:
    """``runtime_check``: ``status`` ok/failed/skipped, and per backend the physicalai figures."""
    checked = {o.name: o.runtime_check for o in reached if o.runtime_check is not None}
    if not checked:
        if state.runtime_check_skipped is None:
            return None
        return {"status": "skipped", "backends": {}, "reason": state.runtime_check_skipped}
    failed = [figures for figures in checked.values() if not figures.get("passed")]
    last = list(checked.values())[-1]
    record: dict[str, Any] = {"status": "failed" if failed else "ok", "backends": checked,
                              "physicalai": last.get("physicalai"),
                              "error": failed[0].get("error") if failed else None}
    if not failed:
        record["default_backend"] = last.get("default_backend")
    return record
