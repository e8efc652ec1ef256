"""The sweep table: one row per job and format, read from each job's ``result.json``.

One row per job and format (a ``format=all`` job gives one row per format it reached): status,
opset, precision, parity (max abs diff, its share of the largest |output|, cosine), the physicalai
check, the closed-loop rollout (``rollout=pusht``: the tracked state's largest gap from PyTorch's
against its bound, ``4.20 px ≤ 16``), batch-1 latency of the runtime and its speed-up over PyTorch
eager, size. A format beyond its rollout bound failed its verification: status ``parity``. Above the
table, the machine the figures were taken on (:func:`machine_lines`). A job folder without a result
is a crashed job. ``summary.md`` (:mod:`.summary`) and the sweep's ``report.html`` (:mod:`.html`) both
show it.

Example:
    >>> rows = [{"job": "opset=14", "policy": "dummy", "format": "onnx",
    ...          "opset": "14/14", "precision": "fp32", "exporter": "torchscript", "max_abs_diff": 1e-7,
    ...          "share": 1e-7, "cosine": 1.0, "rollout": "4.20 px ≤ 16", "latency_ms": 0.012, "speedup": 3.52,
    ...          "status": "ok", "export_s": 0.1, "size": "4.4 kB", "error": ""}]
    >>> cells = markdown_table(rows).splitlines()[2].split(" | ")
    >>> cells[:3], cells[6:9], cells[10:14]
    (['| opset=14', 'dummy', 'onnx'], ['1.0e-07', '0.00%', '1.000000'], ['4.20 px ≤ 16', '0.012', '3.52x', '✅ ok'])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from getiaction_export.config.folders import split_overrides
from getiaction_export.files import human_size
from getiaction_export.machine import machine_line, shared_machine
from getiaction_export.report.result import RESULT_FILE
from getiaction_export.report.rollout_figures import rollout_gap_text

COLUMNS = ["job", "policy", "format", "opset", "precision", "exporter", "max_abs_diff", "share", "cosine",
           "runtime_check", "rollout", "latency_ms", "speedup", "status", "export_s", "size", "sha256", "error"]
HEADERS = ["job", "policy", "format", "opset req/saved", "precision", "exporter", "max abs diff",
           "of max \\|output\\|", "cosine", "physicalai check", "rollout gap", "latency ms (b=1)",
           "speed-up vs eager", "status", "export s", "size", "sha256", "error"]
STATUS_MARK = {"ok": "✅ ok", "parity": "❎ parity failed", "failed": "❌ failed", "crashed": "❌ crashed"}


def _human_size(size: int | None) -> str:
    return human_size(size) if size else ""


def job_rows(job_dir: Path, sweep_dir: Path) -> tuple[list[dict[str, Any]], int, int]:
    """The summary rows of one job folder (one per format reached), its exit code and job number."""
    name = str(job_dir.relative_to(sweep_dir))
    result_path = job_dir / RESULT_FILE
    if not result_path.is_file():
        crashed: dict[str, Any] = dict.fromkeys(COLUMNS, "")
        crashed.update(job=name, status="crashed", error="no result.json: the job died before it finished")
        return [crashed], 1, _job_num(job_dir)
    result = json.loads(result_path.read_text())
    opset = result.get("opset") or {}
    status = _status(result.get("status", "failed"), result.get("error_kind"))
    common: dict[str, Any] = {
        "job": name,
        "policy": (result.get("policy") or {}).get("name", ""),
        "opset": f"{opset.get('requested', '')}/{opset.get('saved', '')}" if opset else "",
        "exporter": result.get("exporter") or "",
    }
    # Every format the job reached has a record; a job that failed before any has only its own status.
    formats = result.get("formats") or {result.get("format", ""): {**result, "status": status}}
    rollouts = {name: record for name, record in ((result.get("rollout") or {}).get("formats") or {}).items()
                if isinstance(record, dict)}
    rows = []
    for format_name, record in formats.items():
        latency = record.get("latency") or {}
        torch_only = format_name == "torch"
        rows.append({
            **common,
            "format": format_name,
            "opset": "" if torch_only else common["opset"],
            "exporter": "" if torch_only else common["exporter"],
            "precision": record.get("precision", result.get("precision", "")),
            "max_abs_diff": _worst(record.get("parity") or {}),
            "share": _worst(record.get("parity") or {}, "share"),
            "cosine": _worst(record.get("parity") or {}, "cosine", min),
            "runtime_check": _runtime_cell(result.get("runtime_check") or {}, format_name),
            "rollout": rollout_gap_text(rollouts[format_name]) if format_name in rollouts else "",
            "latency_ms": latency.get("runtime_ms"),
            "speedup": latency.get("speedup"),
            "status": _status(record.get("status", status), record.get("error_kind", result.get("error_kind"))),
            "export_s": (record.get("timings") or result.get("timings") or {}).get("export"),
            "size": _human_size((result.get("artifact_sizes") or {}).get(format_name)),
            "sha256": str((result.get("artifact_sha256") or {}).get(format_name, ""))[:12],
            "error": record.get("error") or ("" if record.get("status") == "ok" else result.get("error") or ""),
        })
    return rows, int(result.get("exit_code") or 0), int((result.get("job") or {}).get("num", _job_num(job_dir)))


def job_machines(sweep_dir: Path, jobs: list[str]) -> dict[str, dict[str, Any]]:
    """``{job: its result.json's machine record}`` of the jobs that recorded one (:mod:`getiaction_export.machine`)."""
    machines = {}
    for job in jobs:
        try:
            record = json.loads((Path(sweep_dir) / job / RESULT_FILE).read_text()).get("machine")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(record, dict):
            machines[job] = record
    return machines


def machine_lines(machines: dict[str, dict[str, Any]]) -> list[str]:
    """The machine the sweep ran on, in Markdown: one line if every job shares it, else one per job.

    Example:
        >>> epyc = {"cpu": {"model": "AMD EPYC", "arch": "x86_64", "cores": 2, "isa": ["avx2"]},
        ...         "runtimes": {"openvino": "2026.4.1"}}
        >>> machine_lines({"a": epyc, "b": epyc})
        ['Machine: AMD EPYC, x86_64, 2 cores, AVX2; openvino 2026.4.1']
        >>> for line in machine_lines({"a": epyc, "b": {**epyc, "cpu": {**epyc["cpu"], "isa_cap": "AVX2"}}}):
        ...     print(line)
        Machines (the jobs did not all run on the same one):
        - `a`: AMD EPYC, x86_64, 2 cores, AVX2; openvino 2026.4.1
        - `b`: AMD EPYC, x86_64, 2 cores, AVX2 (ISA capped at AVX2 by ONEDNN_MAX_CPU_ISA); openvino 2026.4.1
    """
    shared = shared_machine(machines)
    if shared is not None:
        return [f"Machine: {machine_line(shared)}"]
    if not machines:
        return []
    return ["Machines (the jobs did not all run on the same one):",
            *(f"- `{job}`: {machine_line(record)}" for job, record in machines.items())]


def _status(status: str, error_kind: str | None) -> str:
    """``ok``, ``parity`` (exported, parity failed) or ``failed`` (export failed)."""
    if status == "ok":
        return "ok"
    return "parity" if error_kind == "parity" or status == "parity" else "failed"


def _runtime_cell(checks: dict[str, Any], format_name: str) -> str:
    """The physicalai runtime check of one format: ``ok 9.5e-07`` (its worst difference), ``failed`` or ``skipped``."""
    figures = (checks.get("backends") or {}).get(format_name)
    if figures is None:
        return "skipped" if checks.get("status") == "skipped" and format_name != "torch" else ""
    if not figures.get("passed"):
        return "failed"
    worst = _worst(figures.get("parity") or {})
    return f"ok {worst:.1e}" if worst is not None else "ok"


def _worst(parity: dict[str, Any], key: str = "max_abs_diff", pick: Any = max) -> float | None:
    """The worst of one parity figure over the outputs (``pick``: max for differences, min for cosine)."""
    values = [o.get(key) for o in parity.values() if isinstance(o.get(key), float | int)]
    return pick(values) if values else None


def _job_num(job_dir: Path) -> int:
    try:
        text = (job_dir / ".hydra" / "hydra.yaml").read_text()
    except OSError:
        return 10**6
    for line in text.splitlines():
        if line.strip().startswith("num:"):
            try:
                return int(line.split(":", 1)[1])
            except ValueError:
                break
    return 10**6


def cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "max_abs_diff" and isinstance(value, float | int):
        return f"{value:.1e}"
    if column == "share" and isinstance(value, float | int):
        return f"{value:.2%}"
    if column == "cosine" and isinstance(value, float | int):
        return f"{value:.6f}"
    if column == "export_s" and isinstance(value, float | int):
        return f"{value:.2f}"
    if column == "latency_ms" and isinstance(value, float | int):
        return f"{value:.3g}"
    if column == "speedup" and isinstance(value, float | int):
        return f"{value:.2f}x"
    if column == "status":
        return STATUS_MARK.get(str(value), str(value))
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a Markdown table (a row's ``label``, when it has one, names its job)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(cell(c, shown(row, c)) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def shown(row: dict[str, Any], column: str) -> Any:
    """What a table shows in ``column``: the job's ``label`` for the job column, else the value."""
    return row.get("label") or row.get("job") if column == "job" else row.get(column)


def short_labels(jobs: list[str]) -> dict[str, str]:
    """Each job's folder name without the overrides every job shares: what varies, as the sweep's label.

    Example:
        >>> list(short_labels(["format.latency=False,format.opset_version=11,format=onnx,policy=act",
        ...                    "format.latency=False,format.opset_version=17,format=onnx,policy=act"]).values())
        ['format.opset_version=11', 'format.opset_version=17']
        >>> list(short_labels(["+input_sample.inputs={a: {shape: [1,2]}},policy=x",
        ...                    "+input_sample.inputs={a: {shape: [1,3]}},policy=x"]).values())
        ['+input_sample.inputs={a: {shape: [1,2]}}', '+input_sample.inputs={a: {shape: [1,3]}}']
    """
    parts = {job: split_overrides(job, ",") for job in jobs}
    common = set.intersection(*(set(items) for items in parts.values())) if len(jobs) > 1 else set()
    return {job: ",".join(item for item in items if item not in common) or job for job, items in parts.items()}
