"""A sweep's folders: each job's folder name, and the summary table at the root (``summary.md``, ``summary.json``).

``summary.json`` also holds the sweep's exit code, which the CLI exits with.

One row per job and format (a ``format=all`` job gives one row per format it reached): status,
opset, precision, parity (max abs diff, its share of the largest |output|, cosine), the physicalai
check, the closed-loop rollout (``rollout=pusht``: the tracked state's largest gap from PyTorch's
against its bound, ``4.20 px ≤ 16``), batch-1 latency of the runtime and its speed-up over PyTorch
eager, size. A format beyond its rollout bound failed its verification: status ``parity``.

Above the table, the machine the figures were taken on (``result.json`` → ``machine``: CPU, ISA
features, runtime versions): one line when every job ran on the same one (``summary.json`` →
``machine``), else one line per job (``summary.json`` → ``machine`` null, ``machines`` per job).

It reads each job's ``result.json``, so it works the same whichever Hydra launcher ran the jobs
(in-process, joblib, Ray, Slurm); a job folder without a result is reported as crashed.
``SweepSummary`` is the Hydra callback that writes it when a multirun ends.

Job folders are named after their overrides (``format.opset_version=14,policy=act``), bounded by
:func:`short_folder_name` whatever the values: conf/config.yaml's ``hydra.sweep.subdir`` calls the
``job_folder`` resolver, which :func:`register_resolvers` registers when the CLI module is imported.

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

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from getiaction.export.atomic import atomic_write_text
from getiaction_export.files import human_size
from getiaction_export.html_rollout_figures import rollout_gap_text
from getiaction_export.machine import machine_line, shared_machine
from getiaction_export.stages.report import RESULT_FILE

log = logging.getLogger("getiaction_export")

COLUMNS = ["job", "policy", "format", "opset", "precision", "exporter", "max_abs_diff", "share", "cosine",
           "runtime_check", "rollout", "latency_ms", "speedup", "status", "export_s", "size", "sha256", "error"]
HEADERS = ["job", "policy", "format", "opset req/saved", "precision", "exporter", "max abs diff",
           "of max \\|output\\|", "cosine", "physicalai check", "rollout gap", "latency ms (b=1)",
           "speed-up vs eager", "status", "export s", "size", "sha256", "error"]
STATUS_MARK = {"ok": "✅ ok", "parity": "❎ parity failed", "failed": "❌ failed", "crashed": "❌ crashed"}

SUMMARY_FILE = "summary.json"
JOB_FOLDER_RESOLVER = "job_folder"
"""``hydra.sweep.subdir: ${job_folder:${hydra.job}}`` (conf/config.yaml): a sweep job's folder name."""
FOLDER_NAME_BYTES = 120
"""Longest job folder name (file systems refuse names over 255 bytes; the paths below it add more)."""


def register_resolvers() -> None:
    """Register :func:`job_folder` with OmegaConf (idempotent).

    Called when :mod:`getiaction_export.cli` is imported, so every process that resolves a job's
    folder has it: the CLI's, and a launcher's workers (joblib, Ray and submitit unpickle the task
    function, which imports the CLI module).
    """
    if not OmegaConf.has_resolver(JOB_FOLDER_RESOLVER):
        OmegaConf.register_new_resolver(JOB_FOLDER_RESOLVER, job_folder)


def job_folder(job: DictConfig) -> str:
    """A sweep job's folder name from Hydra's ``hydra.job`` node: :func:`short_folder_name` of its overrides."""
    separators = job.config.override_dirname
    return short_folder_name(str(job.override_dirname), str(separators.item_sep), str(separators.kv_sep))


def short_folder_name(name: str, item_sep: str = ",", kv_sep: str = "=", limit: int = FOLDER_NAME_BYTES) -> str:
    """Hydra's ``override_dirname``, bounded: one folder per job whatever the override values.

    A name whose every ``/``-part fits in ``limit`` bytes (and none is ``..``) is kept as it is.
    Otherwise it becomes one folder: values holding a ``/`` and then the longest values become
    ``sha256-<8 hex>`` (of the value) until the name fits; a name of too many overrides even then
    is cut, with the hash of the whole name appended. The same overrides always give the same name.

    Example:
        >>> short_folder_name("format.opset_version=14,policy=act")
        'format.opset_version=14,policy=act'
        >>> short_folder_name("format.opset_version=17,input_sample.inputs={" + "a: {shape: [1,6]}, " * 9 + "}")
        'format.opset_version=17,input_sample.inputs=sha256-10ef4044'
    """
    parts = name.split("/")
    if all(len(part.encode()) <= limit and part != ".." for part in parts):
        return name
    items = _split_items(name, item_sep)
    slashed = {index for index, item in enumerate(items) if "/" in item}
    short = [_hashed(item, kv_sep) if index in slashed else item for index, item in enumerate(items)]
    for index in sorted(set(range(len(items))) - slashed, key=lambda i: -len(items[i].encode())):
        if len(item_sep.join(short).encode()) <= limit:
            break
        hashed = _hashed(items[index], kv_sep)
        short[index] = hashed if len(hashed) < len(items[index]) else items[index]
    joined = item_sep.join(short)
    if len(joined.encode()) <= limit and "/" not in joined:
        return joined
    tail = f"--{_digest(name)}"
    return joined.encode()[: limit - len(tail)].decode(errors="ignore").replace("/", "_") + tail


def _digest(text: str) -> str:
    return "sha256-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _hashed(item: str, kv_sep: str) -> str:
    """``key=sha256-<8 hex of the value>`` (the whole item hashed when its key is no plain key)."""
    key, sep, value = item.partition(kv_sep)
    if sep and key and "/" not in key and len(key.encode()) <= FOLDER_NAME_BYTES // 2:
        return f"{key}{kv_sep}{_digest(value)}"
    return _digest(item)


def _split_items(name: str, item_sep: str) -> list[str]:
    """``override_dirname`` back into its overrides: ``item_sep`` splits only outside brackets and quotes."""
    items, depth, quote, start, index = [], 0, "", 0, 0
    while index < len(name):
        char = name[index]
        if quote:
            quote = "" if char == quote else quote
            index += 2 if char == "\\" else 1
            continue
        if char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(depth - 1, 0)
        elif depth == 0 and name.startswith(item_sep, index):
            items.append(name[start:index])
            start = index + len(item_sep)
            index = start
            continue
        index += 1
    return [*items, name[start:]]


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


def _cell(column: str, value: Any) -> str:
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
    """Rows as a Markdown table."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(_cell(c, row.get(c)) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def summarize(sweep_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """Write ``summary.md``/``summary.json`` for every job under ``sweep_dir``; return rows and exit code."""
    sweep_dir = Path(sweep_dir)
    job_dirs = sorted({p.parent for p in sweep_dir.rglob(".hydra") if p.parent != sweep_dir})
    collected = [job_rows(job_dir, sweep_dir) for job_dir in job_dirs]
    collected.sort(key=lambda item: (item[2], item[0][0]["job"]))
    rows = [row for job, _, _ in collected for row in job]
    failures = [code for job, code, _ in collected if any(row["status"] != "ok" for row in job)]
    exit_code = (failures[0] or 1) if failures else 0
    jobs = len(collected)
    ok = jobs - len(failures)
    machines = job_machines(sweep_dir, [job[0]["job"] for job, _, _ in collected])
    shared = shared_machine(machines)
    summary = {"sweep_dir": str(sweep_dir), "jobs": jobs, "ok": ok, "failed": jobs - ok,
               "exit_code": exit_code, "machine": shared, **({} if shared or not machines else {"machines": machines}),
               "rows": rows}
    atomic_write_text(sweep_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    title = f"# Export sweep: {ok}/{jobs} ok\n\n"
    machine = "".join(f"{line}\n" for line in machine_lines(machines))
    table = markdown_table(rows) + "\n"
    atomic_write_text(sweep_dir / "summary.md", title + (f"{machine}\n" if machine else "") + table)
    return rows, exit_code


class SweepSummary(Callback):
    """Hydra callback: after a multirun, write and print the summary (``summary.json`` holds the exit code)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        rows, _ = summarize(sweep_dir)
        try:
            from getiaction_export.html_report import sweep_results, write_sweep_report

            write_sweep_report(sweep_dir, rows, sweep_results(sweep_dir, rows))
        except Exception as error:  # summary.json holds the exit code; the page only shows it
            log.warning("report.html not written at the sweep root: %s", error)
        jobs = {row["job"]: row["status"] == "ok" for row in rows}
        for row in rows:
            jobs[row["job"]] = jobs[row["job"]] and row["status"] == "ok"
        ok = sum(jobs.values())
        machine = "".join(line + "\n" for line in machine_lines(job_machines(sweep_dir, list(jobs))))
        print(f"\n{ok}/{len(jobs)} jobs ok — {sweep_dir / 'summary.md'}\n{machine}{markdown_table(rows)}", flush=True)
