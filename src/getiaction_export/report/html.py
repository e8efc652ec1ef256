"""``report.html``: a page people look at, beside a job's ``result.json`` and at a sweep's root.

Self-contained: the figures are matplotlib SVG inlined in the page, the style is inline, there is
no script and nothing is fetched (a Content-Security-Policy forbids it), so the file opens from
disk, offline, anywhere. Everything on it is read from ``result.json`` (a job) or the summary rows
and the jobs' results (a sweep); nothing is measured again. Torch-free and Hydra-free (the
sweep's columns are imported from :mod:`getiaction_export.report.table` only when a sweep report is
written): the job and the sweep callback both call it. This module lays out the page; the drawings
are :mod:`getiaction_export.report.figures`, the rollout sections :mod:`getiaction_export.report.rollout`
(with their figures, :mod:`getiaction_export.report.rollout_figures`) and the small pieces of HTML
(escaping, badges, inline SVG figures) :mod:`getiaction_export.report.parts`.

A job's page (:func:`write_job_report`), each part in an element with a stable id:

- ``job-header``: policy, status, ``machine`` (the CPU the figures were taken on: model, cores, the ISA
  features that change numerics or speed, the ``ONEDNN_MAX_CPU_ISA`` cap; then ``runtimes``, their
  versions), and on failure ``failure`` (the stage and the one-line error);
- ``formats-table``: per format and output the parity figures against the bound, the batch-1
  latency and speed-up, the size and the sha256 prefix;
- ``fig-parity``: every verification case's max abs diff, per output, format and batch (log axis;
  the bound each format is held to drawn as a line; failed cases in red);
- ``fig-latency``: batch-1 latency of PyTorch eager and of each format's runtime;
- ``rollout`` (only when the result has a ``rollout`` record, see
  :func:`getiaction_export.report.rollout.rollout_section`):
  ``rollout-table`` (per format the driver, the largest tracked-state gap against its bound and
  where the bound came from, passed/failed, action gap, success and reward of PyTorch and the
  artifact) and per format ``fig-rollout-<format>`` (trajectories on the task plane; per step the
  state gap against the bound and the action gap, log axes).

A sweep's page (:func:`write_sweep_report`): ``machine`` (the machine every job ran on) or, when they
differ, ``machines`` (per job), ``summary-table`` (summary.md's columns, each job
linked to its own page), ``fig-parity`` (every case of every job and format, by precision),
``fig-latency`` (per job and format, the runtime against PyTorch eager) and, when a job rolled
out, ``sweep-rollout`` (:func:`getiaction_export.report.rollout.sweep_rollout_section`):
``fig-sweep-rollout`` (per job and format the state gap per step, its bound in the same colour: how
far each precision drifts) and ``rollout-table``.

Example:
    >>> import tempfile, pathlib
    >>> result = {"status": "ok", "policy": {"name": "dummy"}, "format": "onnx", "precision": "fp32",
    ...           "formats": {"onnx": {"status": "ok", "precision": "fp32", "runtime": "onnxruntime",
    ...                                "parity": {"action": {"max_abs_diff": 2e-7, "share": 3e-7, "cosine": 1.0,
    ...                                                      "atol": 1e-5, "rtol": 1e-4, "passed": True}},
    ...                                "latency": {"torch_ms": 0.05, "runtime_ms": 0.01, "speedup": 5.0}}},
    ...           "parity_cases": [{"case": "sample b=1", "batch": 1, "output": "action",
    ...                             "max_abs_diff": 2e-7, "passed": True}]}
    >>> page = write_job_report(pathlib.Path(tempfile.mkdtemp()), result).read_text()
    >>> [f'id="{name}"' in page for name in ("formats-table", "fig-parity", "fig-latency", "rollout", "machine")]
    [True, True, True, False, False]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from getiaction.export.atomic import atomic_write_text
from getiaction_export.files import human_size
from getiaction_export.machine import runtimes_line
from getiaction_export.parity.tolerance import Tolerance
from getiaction_export.report.figures import (
    COLORS,
    EAGER,
    cases_of,
    job_parity_figure,
    latency_figure,
    number,
    sweep_latency_figure,
    sweep_parity_figure,
)
from getiaction_export.report.parts import badge, cpu_text, escape, figure_html, fmt, machines_html
from getiaction_export.report.result import RESULT_FILE
from getiaction_export.report.rollout import rollout_section, sweep_rollout_section
from getiaction_export.report.table import short_labels

REPORT_FILE = "report.html"
_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;
  padding:0 16px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td,tr.parity td,tr.crashed td{background:#fdecea}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-weight:600}
.badge.ok{background:#2e7d32}.badge.failed,.badge.parity,.badge.crashed{background:#c62828}
#failure{background:#fdecea;border-left:4px solid #c62828;padding:6px 10px;white-space:pre-wrap}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}
dl.meta dt{color:#666}dl.meta dd{margin:0;word-break:break-all}
figure{margin:8px 0 20px}figure svg{max-width:100%;height:auto}
figcaption{color:#555;font-size:13px}.scroll{overflow-x:auto}td.job{overflow-wrap:anywhere;min-width:14em}code{font-size:12.5px}.muted{color:#777}
.nowrap,#rollout-table td.num{white-space:nowrap}
"""


# -- the two pages


def write_job_report(out_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``report.html`` into ``out_dir`` (atomically) from the job's ``result.json`` dict; return its path.

    A failed job gets one too: its failure line, and whatever figures the stages it reached recorded.
    """
    path = Path(out_dir) / REPORT_FILE
    atomic_write_text(path, job_report_html(result))
    return path


def write_sweep_report(sweep_dir: Path, rows: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> Path:
    """Write ``report.html`` at a sweep's root; return its path.

    ``rows`` are :func:`getiaction_export.report.summary.summarize`'s; ``results`` maps a row's ``job`` to
    that job's ``result.json`` dict (:func:`sweep_results` reads them). A job whose folder holds a
    ``report.html`` is linked from the table.
    """
    sweep_dir = Path(sweep_dir)
    links = {row["job"]: quote(str(row["job"])) + "/" + REPORT_FILE for row in rows
             if (sweep_dir / str(row["job"]) / REPORT_FILE).is_file()}
    path = sweep_dir / REPORT_FILE
    atomic_write_text(path, sweep_report_html(rows, results, links, title=f"Export sweep: {sweep_dir.name}"))
    return path


def sweep_results(sweep_dir: Path, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each row's job's ``result.json`` (jobs without a readable one are left out)."""
    results: dict[str, dict[str, Any]] = {}
    for job in dict.fromkeys(str(row["job"]) for row in rows):
        try:
            results[job] = json.loads((Path(sweep_dir) / job / RESULT_FILE).read_text())
        except (OSError, ValueError):
            continue
    return results


def job_report_html(result: dict[str, Any]) -> str:
    """The whole page of one job (see the module doc)."""
    policy = (result.get("policy") or {}).get("name") or "policy"
    status = str(result.get("status") or "failed")
    parts = [_job_header(result, policy, status), "<h2>Formats</h2>", _formats_table(result)]
    cases = cases_of(result)
    parts.append("<h2>Parity: every verification case against PyTorch</h2>")
    parts.append(figure_html("fig-parity", job_parity_figure(result, cases),
                             f"{len(cases)} cases (inputs × batch sizes). Max abs diff on a log axis, one point per "
                             "case; red: the case failed its bound. The dashed line is atol (the elementwise bound is "
                             "atol + rtol·|PyTorch output|, so a point above it may still pass) or, for a bound by "
                             "scale, its share of the largest |output|."
                             if cases else "no verification case was recorded (the job stopped before verify)"))
    parts.append("<h2>Latency (batch 1)</h2>")
    bars = _latency_bars(result)
    parts.append(figure_html("fig-latency", latency_figure(bars) if bars else None,
                             _latency_caption(result) if bars else "no latency was measured (format.latency=false, "
                                                                   "or the job stopped before the latency stage)"))
    task = task_section(result)
    if task:
        parts.append(task)
    if result.get("rollout"):
        parts.append(rollout_section(result["rollout"]))
    return _page(f"{policy}: export report", "\n".join(parts))


def task_section(result: dict[str, Any]) -> str | None:
    """A vision-language-action package: the task strings its tokenizer was checked on, and how noise is handled.

    >>> html = task_section({"package": {"task": {"files": {"tok.xml": "ab"}, "preprocessors": [{"type": "new_line"}],
    ...     "check": {"max_length": 4, "ids_equal_lerobot": True, "tasks": {"empty": ""}}}, "noise": None}})
    >>> "<h2>Task and noise</h2>" in html and "empty" in html and "tok.xml" in html
    True
    """
    package = result.get("package") or {}
    task, noise = package.get("task"), package.get("noise")
    rollout_task = (result.get("rollout") or {}).get("task_string")
    if not task and not noise and not rollout_task:
        return None
    parts = ['<section id="task"><h2>Task and noise</h2>']
    if task:
        check = task.get("check") or {}
        same = "✓ the same ids and mask as the policy's own tokenizer" if check.get("ids_equal_lerobot") else "✗"
        rows = "".join(f"<tr><td>{escape(str(name))}</td><td><code>{escape(repr(text))}</code></td><td>{same}</td>"
                       "</tr>" for name, text in (check.get("tasks") or {}).items())
        steps = " → ".join(str(step.get("type")) for step in task.get("preprocessors") or [])
        parts.append(f"<p>The package reads its task as a string: {escape(steps)} ({escape(', '.join(task['files']))}"
                     f"), padded and truncated to {escape(str(check.get('max_length')))} tokens. Checked at export, "
                     f"one string at a time and all in one batch:</p><table><tr><th>task</th><th>string</th>"
                     f"<th>ids</th></tr>{rows}</table>")
    if noise:
        parts.append(f"<p>Noise: the graph draws {escape(', '.join(noise['drawn_by_graph']))} itself, fresh every "
                     "call, and returns it; every check (parity gate, runtime check, rollout) ran the PyTorch "
                     "reference on the noise the graph returned. <code>deploy_check</code> re-checks the package "
                     "with the draw pinned to the stored noise.</p>")
    if rollout_task:
        parts.append(f"<p>Rollout task: <code>{escape(str(rollout_task))}</code>.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def sweep_report_html(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                      links: dict[str, str] | None = None, title: str = "Export sweep") -> str:
    """The whole page of a sweep: the summary table, the parity and latency comparisons."""
    jobs: dict[str, bool] = {}
    for row in rows:
        jobs[str(row["job"])] = jobs.get(str(row["job"]), True) and row["status"] == "ok"
    ok = sum(jobs.values())
    status = "ok" if ok == len(jobs) else "failed"
    labels = short_labels(list(jobs))
    machines = {job: result["machine"] for job, result in results.items() if isinstance(result.get("machine"), dict)}
    parts = [f'<header id="sweep-header"><h1>{escape(title)}</h1>',
             f"<p>{badge(status, f'{ok}/{len(jobs)} jobs ok')}</p>", machines_html(machines), "</header>",
             "<h2>Summary</h2>", _summary_table(rows, links or {})]
    parts.append("<h2>Parity: every verification case, per job and format</h2>")
    parity = sweep_parity_figure(rows, results, labels)
    parts.append(figure_html("fig-parity", parity,
                             "Max abs diff of each case (inputs × batch sizes) on a log axis, coloured by precision; "
                             "| marks the bound each job and format is held to (atol, or a share of the largest "
                             "|output|); red: the case failed its bound."
                             if parity else "no job recorded a verification case"))
    parts.append("<h2>Latency (batch 1)</h2>")
    latency = sweep_latency_figure(rows, results, labels)
    parts.append(figure_html("fig-latency", latency,
                             "Median batch-1 latency of each job's runtime (bar) and of PyTorch eager measured in "
                             "the same job (|); the speed-up is eager / runtime." if latency
                             else "no job measured latency"))
    if any(result.get("rollout") for result in results.values()):
        parts.append(sweep_rollout_section(rows, results, labels, links or {}))
    return _page(title, "\n".join(parts))


# -- the job's parts


def _job_header(result: dict[str, Any], policy: str, status: str) -> str:
    info = result.get("policy") or {}
    opset = result.get("opset") or {}
    machine: dict[str, Any] = result["machine"] if isinstance(result.get("machine"), dict) else {}
    total = number((result.get("timings") or {}).get("total"))
    meta = {
        "policy": " · ".join(str(v) for v in (policy, info.get("class_path"), info.get("source")) if v),
        "parameters": f"{info['parameters']:,}" if isinstance(info.get("parameters"), int) else None,
        "checkpoint": info.get("checkpoint"),
        "format": f"{result.get('format', '')} ({', '.join(result.get('formats') or {})})"
                  if len(result.get("formats") or {}) > 1 else result.get("format"),
        "precision": result.get("precision"),
        "opset (requested/saved)": f"{opset.get('requested', '')}/{opset.get('saved', '')}" if opset else None,
        "exporter": result.get("exporter"),
        "inputs": ", ".join(f"{k} {v.get('shape')} {v.get('dtype', '')}"
                            for k, v in (result.get("input_sample") or {}).items()) or None,
        "physicalai check": (result.get("runtime_check") or {}).get("status"),
        "overrides": " ".join((result.get("job") or {}).get("overrides") or []) or None,
        "output folder": result.get("output_dir"),
        "total time": f"{total:.1f} s" if total is not None else None,
        "machine": cpu_text(machine["cpu"]) if isinstance(machine.get("cpu"), dict) else None,
        "runtimes": runtimes_line(machine.get("runtimes") or {}) or None,
        "versions": ", ".join(f"{k} {v}" for k, v in (result.get("versions") or {}).items() if v) or None,
    }
    ids = {"machine": ' id="machine"', "runtimes": ' id="runtimes"'}
    rows = "".join(f"<dt>{escape(k)}</dt><dd{ids.get(k, '')}>{escape(v)}</dd>" for k, v in meta.items()
                   if v not in (None, ""))
    parts = [f'<header id="job-header"><h1>{escape(policy)} {badge(status, status)}</h1>',
             f'<dl class="meta">{rows}</dl>']
    if status != "ok" or result.get("error"):
        stage = result.get("stage_failed") or result.get("stage") or "?"
        error_kind = str(result.get("error_kind") or "")
        kind = f" ({error_kind})" if error_kind and not str(result.get("error") or "").startswith(error_kind) else ""
        exit_code = f", exit code {result['exit_code']}" if result.get("exit_code") else ""
        parts.append(f'<p id="failure">✗ [{escape(stage)}]{escape(kind)} {escape(result.get("error") or "failed")}'
                     f'{escape(exit_code)}</p>')
    parts.append("</header>")
    return "\n".join(parts)


def _formats_table(result: dict[str, Any]) -> str:
    formats = result.get("formats") or {}
    head = ["format", "status", "precision", "runtime", "output", "max abs diff", "of max |output|", "cosine",
            "bound", "latency ms (b=1)", "speed-up vs eager", "size", "sha256"]
    lines = ['<table id="formats-table"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead>"]
    lines.append("<tbody>")
    for name, record in formats.items():
        parity = record.get("parity") or {}
        tolerances = record.get("tolerances") or {}
        latency = record.get("latency") or {}
        status = str(record.get("status") or "")
        common = [name, status, record.get("precision", ""), record.get("runtime", "")]
        tail = [fmt(latency.get("runtime_ms"), "{:.3g}"), fmt(latency.get("speedup"), "{:.2f}x"),
                human_size(int(record["size"])) if record.get("size") else "",
                str((result.get("artifact_sha256") or {}).get(name) or "")[:12]]
        for index, (output, figures) in enumerate(parity.items() or [("", {})]):
            cells = [*(common if index == 0 else [""] * 4), output,
                     fmt(figures.get("max_abs_diff"), "{:.1e}"), _share(figures.get("share")),
                     fmt(figures.get("cosine"), "{:.6f}"), _bound_text({**figures, **tolerances.get(output, {})}),
                     *(tail if index == 0 else [""] * 4)]
            numeric = {5, 6, 7, 9, 10, 11}
            row_class = "failed" if status == "failed" or figures.get("passed") is False else ""
            lines.append(f'<tr class="{row_class}">' + "".join(
                f'<td{" class=num" if i in numeric else ""}>{escape(c)}</td>' for i, c in enumerate(cells)) + "</tr>")
            if record.get("error") and index == len(parity or {"": 0}) - 1:
                lines.append(f'<tr class="failed"><td colspan="{len(head)}">✗ [{escape(record.get("stage"))}] '
                             f"{escape(record['error'])}</td></tr>")
    if not formats:
        lines.append(f'<tr><td colspan="{len(head)}" class="muted">no format was reached</td></tr>')
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _bound_text(figures: dict[str, Any]) -> str:
    tolerance = Tolerance(*(number(figures.get(k)) for k in ("atol", "rtol", "max_share", "min_cosine")))
    if tolerance.atol == 0 and not tolerance.rtol and tolerance.max_share is None:
        return "exact (atol 0)"
    return tolerance.describe()


def _latency_bars(result: dict[str, Any]) -> list[tuple[str, float, str, float | None]]:
    """``(label, ms, colour, speed-up)``: PyTorch eager first, then each format's runtime."""
    bars: list[tuple[str, float, str, float | None]] = []
    eager: float | None = None
    for index, (name, record) in enumerate((result.get("formats") or {}).items()):
        latency = record.get("latency") or {}
        runtime_ms = number(latency.get("runtime_ms"))
        if runtime_ms is None:
            continue
        eager = eager if eager is not None else number(latency.get("torch_ms"))
        runtime = record.get("runtime") or latency.get("runtime") or name
        bars.append((f"{name} ({runtime})", runtime_ms, COLORS[index % len(COLORS)], number(latency.get("speedup"))))
    return [("PyTorch eager", eager, EAGER, None), *bars] if bars and eager is not None else bars


def _latency_caption(result: dict[str, Any]) -> str:
    records = (result.get("formats") or {}).values()
    latency: dict[str, Any] = next((r["latency"] for r in records if r.get("latency")), {})
    threads, runs = latency.get("threads"), latency.get("runs")
    return ("Median batch-1 latency" + (f" of {runs} runs" if runs else "") + (f" on {threads} threads" if threads
                                                                                 else "")
            + "; PyTorch eager measured in the same job; the label gives the speed-up over it.")


def _summary_table(rows: list[dict[str, Any]], links: dict[str, str]) -> str:
    from getiaction_export.report.table import COLUMNS, HEADERS, STATUS_MARK, cell, shown

    numeric = {"max_abs_diff", "share", "cosine", "latency_ms", "speedup", "export_s", "size"}
    lines = ['<div class="scroll"><table id="summary-table"><thead><tr>'
             + "".join(f"<th>{escape(h.replace(chr(92) + '|', '|'))}</th>" for h in HEADERS) + "</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for column in COLUMNS:
            text = escape(cell(column, shown(row, column)).replace("\\|", "|"))
            if column == "status":  # a badge, not summary.md's emoji (a headless or minimal system may lack the font)
                status = str(row.get("status", ""))
                label = STATUS_MARK.get(status, status).split(" ", 1)[-1]
                text = badge(status, label)
            if column == "job" and row.get("job") in links:
                text = f'<a href="{escape(links[row["job"]])}">{text}</a>'
            kind = "num" if column in numeric else "job" if column == "job" else ""
            cells.append(f'<td{f" class={kind}" if kind else ""}>{text}</td>')
        lines.append(f'<tr class="{escape(row.get("status", ""))}">' + "".join(cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def _share(value: Any) -> str:
    parsed = number(value)
    return "<0.01%" if parsed is not None and 0 < parsed < 5e-5 else fmt(parsed, "{:.2%}")
