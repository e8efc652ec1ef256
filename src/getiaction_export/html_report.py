"""``report.html``: a page people look at, beside a job's ``result.json`` and at a sweep's root.

Self-contained: the figures are matplotlib SVG inlined in the page, the style is inline, there is
no script and nothing is fetched (a Content-Security-Policy forbids it), so the file opens from
disk, offline, anywhere. Everything on it is read from ``result.json`` (a job) or the summary rows
and the jobs' results (a sweep); nothing is measured again. Torch-free and Hydra-free (the
sweep's columns are imported from :mod:`getiaction_export.summary` only when a sweep report is
written): the job and the sweep callback both call it.

A job's page (:func:`write_job_report`), each part in an element with a stable id:

- ``job-header``: policy, status, and on failure ``failure`` (the stage and the one-line error);
- ``formats-table``: per format and output the parity figures against the bound, the batch-1
  latency and speed-up, the size and the sha256 prefix;
- ``fig-parity``: every verification case's max abs diff, per output, format and batch (log axis;
  the bound each format is held to drawn as a line; failed cases in red);
- ``fig-latency``: batch-1 latency of PyTorch eager and of each format's runtime;
- ``rollout`` with ``fig-rollout-<format>``: only when the result has a ``rollout`` record
  (see :func:`rollout_section` for its shape).

A sweep's page (:func:`write_sweep_report`): ``summary-table`` (summary.md's columns, each job
linked to its own page), ``fig-parity`` (every case of every job and format, by precision) and
``fig-latency`` (per job and format, the runtime against PyTorch eager).

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
    >>> [f'id="{name}"' in page for name in ("formats-table", "fig-parity", "fig-latency", "rollout")]
    [True, True, True, False]
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from getiaction.export.atomic import atomic_write_text
from getiaction_export.files import human_size
from getiaction_export.stages.report import RESULT_FILE
from getiaction_export.tolerance import Tolerance

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
"""Series colours (matplotlib's tab10 without red and grey: red marks a failure, grey PyTorch eager)."""
FAILED, EAGER = "#d62728", "#7f7f7f"

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

    ``rows`` are :func:`getiaction_export.summary.summarize`'s; ``results`` maps a row's ``job`` to
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
    cases = _cases(result)
    parts.append("<h2>Parity: every verification case against PyTorch</h2>")
    parts.append(_figure("fig-parity", _job_parity_figure(result, cases),
                         f"{len(cases)} cases (inputs × batch sizes). Max abs diff on a log axis, one point per "
                         "case; red: the case failed its bound. The dashed line is atol (the elementwise bound is "
                         "atol + rtol·|PyTorch output|, so a point above it may still pass) or, for a bound by "
                         "scale, its share of the largest |output|."
                         if cases else "no verification case was recorded (the job stopped before verify)"))
    parts.append("<h2>Latency (batch 1)</h2>")
    bars = _latency_bars(result)
    parts.append(_figure("fig-latency", _latency_figure(bars) if bars else None,
                         _latency_caption(result) if bars else "no latency was measured (format.latency=false, or "
                                                                "the job stopped before the latency stage)"))
    if result.get("rollout"):
        parts.append(rollout_section(result["rollout"]))
    return _page(f"{policy}: export report", "\n".join(parts))


def sweep_report_html(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                      links: dict[str, str] | None = None, title: str = "Export sweep") -> str:
    """The whole page of a sweep: the summary table, the parity and latency comparisons."""
    jobs: dict[str, bool] = {}
    for row in rows:
        jobs[str(row["job"])] = jobs.get(str(row["job"]), True) and row["status"] == "ok"
    ok = sum(jobs.values())
    status = "ok" if ok == len(jobs) else "failed"
    labels = _short_labels(list(jobs))
    parts = [f'<header id="sweep-header"><h1>{_e(title)}</h1>',
             f'<p><span class="badge {status}">{ok}/{len(jobs)} jobs ok</span></p></header>',
             "<h2>Summary</h2>", _summary_table(rows, links or {})]
    parts.append("<h2>Parity: every verification case, per job and format</h2>")
    parity = _sweep_parity_figure(rows, results, labels)
    parts.append(_figure("fig-parity", parity,
                         "Max abs diff of each case (inputs × batch sizes) on a log axis, coloured by precision; "
                         "| marks the bound each job and format is held to (atol, or a share of the largest "
                         "|output|); red: the case failed its bound."
                         if parity else "no job recorded a verification case"))
    parts.append("<h2>Latency (batch 1)</h2>")
    latency = _sweep_latency_figure(rows, results, labels)
    parts.append(_figure("fig-latency", latency,
                         "Median batch-1 latency of each job's runtime (bar) and of PyTorch eager measured in the "
                         "same job (|); the speed-up is eager / runtime." if latency else "no job measured latency"))
    return _page(title, "\n".join(parts))


# -- rollout: the hook


def rollout_section(rollout: dict[str, Any]) -> str:
    """The ``rollout`` section of a job's page: per format, trajectories and the per-step action gap.

    Rendered when ``result["rollout"]`` exists. The shape it reads (every key but ``formats`` optional)::

        {"task": "pusht",                       # shown in the heading
         "plane": ["x", "y"],                   # axis labels of the task plane
         "formats": {"onnx": {"episodes": [     # one entry per format rolled out
             {"seed": 0,                        # how the episode is named in the legend
              "torch_xy":    [[x, y], ...],     # PyTorch eager's trajectory on the task plane, one point per step
              "artifact_xy": [[x, y], ...],     # the artifact's, from the same initial state and seed
              "action_gap":  [g0, g1, ...],     # per step: max |artifact action - PyTorch action|
              "success": {"torch": True, "artifact": True}},
             ...]}}}

    Each format gives ``fig-rollout-<format>``: the trajectories (PyTorch solid, artifact dashed,
    one colour per episode, start ○ and end ×) and the action gap per step on a log axis.

    Example:
        >>> episode = {"torch_xy": [[0, 0], [1, 1]], "artifact_xy": [[0, 0], [1, 1.01]], "action_gap": [1e-6, 2e-6]}
        >>> 'id="fig-rollout-onnx"' in rollout_section({"formats": {"onnx": {"episodes": [episode]}}})
        True
    """
    task = rollout.get("task")
    plane = list(rollout.get("plane") or ["x", "y"])
    parts = [f'<section id="rollout"><h2>Rollout{": " + _e(task) if task else ""}</h2>']
    for name, record in (rollout.get("formats") or {}).items():
        episodes = list((record or {}).get("episodes") or [])
        parts.append(f"<h3>{_e(name)}</h3>")
        parts.append(_figure(f"fig-rollout-{_slug(name)}", _rollout_figure(episodes, plane) if episodes else None,
                             _rollout_caption(name, episodes)))
    parts.append("</section>")
    return "\n".join(parts)


def _rollout_figure(episodes: list[dict[str, Any]], plane: list[str]) -> Figure:
    figure = _new_figure(10.0, 4.0)
    path_axes, gap_axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    for index, episode in enumerate(episodes):
        color = COLORS[index % len(COLORS)]
        label = f"seed {episode['seed']}" if "seed" in episode else f"episode {index}"
        for key, style in (("torch_xy", "-"), ("artifact_xy", "--")):
            points = [p for p in episode.get(key) or [] if len(p) >= 2]
            if points:
                xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
                path_axes.plot(xs, ys, style, color=color, lw=1.4, label=label if key == "torch_xy" else None)
                path_axes.plot(xs[:1], ys[:1], "o", mfc="none", color=color, ms=6)
                path_axes.plot(xs[-1:], ys[-1:], "x", color=color, ms=6)
        gaps = [_number(g) for g in episode.get("action_gap") or []]
        steps = [i for i, g in enumerate(gaps) if g is not None and g > 0]
        if steps:
            gap_axes.plot(steps, [gaps[i] for i in steps], color=color, lw=1.2, label=label)
    path_axes.plot([], [], "-", color="#444", label="PyTorch")
    path_axes.plot([], [], "--", color="#444", label="artifact")
    path_axes.set(xlabel=plane[0], ylabel=plane[1] if len(plane) > 1 else "", title="trajectories")
    path_axes.set_aspect("equal", adjustable="datalim")
    path_axes.legend(fontsize=7, loc="best")
    gap_axes.set(xlabel="step", ylabel="max |action gap|", title="action gap per step")
    if gap_axes.lines:
        gap_axes.set_yscale("log")
    return figure


def _rollout_caption(name: str, episodes: list[dict[str, Any]]) -> str:
    if not episodes:
        return f"no episode recorded for {name}"
    gaps = [g for e in episodes for g in map(_number, e.get("action_gap") or []) if g is not None]
    text = f"{len(episodes)} episode(s) of PyTorch and of the {name} artifact from the same initial states"
    if gaps:
        text += f"; largest action gap {max(gaps):.2e}"
    outcomes: list[dict[str, Any]] = [e["success"] for e in episodes if isinstance(e.get("success"), dict)]
    if outcomes:
        text += (f"; success PyTorch {sum(bool(o.get('torch')) for o in outcomes)}/{len(outcomes)}, "
                 f"artifact {sum(bool(o.get('artifact')) for o in outcomes)}/{len(outcomes)}")
    return text


# -- the job's parts


def _job_header(result: dict[str, Any], policy: str, status: str) -> str:
    info = result.get("policy") or {}
    opset = result.get("opset") or {}
    total = _number((result.get("timings") or {}).get("total"))
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
        "versions": ", ".join(f"{k} {v}" for k, v in (result.get("versions") or {}).items() if v) or None,
    }
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta.items() if v not in (None, ""))
    parts = [f'<header id="job-header"><h1>{_e(policy)} <span class="badge {_e(status)}">{_e(status)}</span></h1>',
             f'<dl class="meta">{rows}</dl>']
    if status != "ok" or result.get("error"):
        stage = result.get("stage_failed") or result.get("stage") or "?"
        error_kind = str(result.get("error_kind") or "")
        kind = f" ({error_kind})" if error_kind and not str(result.get("error") or "").startswith(error_kind) else ""
        exit_code = f", exit code {result['exit_code']}" if result.get("exit_code") else ""
        parts.append(f'<p id="failure">✗ [{_e(stage)}]{_e(kind)} {_e(result.get("error") or "failed")}'
                     f'{_e(exit_code)}</p>')
    parts.append("</header>")
    return "\n".join(parts)


def _formats_table(result: dict[str, Any]) -> str:
    formats = result.get("formats") or {}
    head = ["format", "status", "precision", "runtime", "output", "max abs diff", "of max |output|", "cosine",
            "bound", "latency ms (b=1)", "speed-up vs eager", "size", "sha256"]
    lines = ['<table id="formats-table"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead>"]
    lines.append("<tbody>")
    for name, record in formats.items():
        parity = record.get("parity") or {}
        tolerances = record.get("tolerances") or {}
        latency = record.get("latency") or {}
        status = str(record.get("status") or "")
        common = [name, status, record.get("precision", ""), record.get("runtime", "")]
        tail = [_fmt(latency.get("runtime_ms"), "{:.3g}"), _fmt(latency.get("speedup"), "{:.2f}x"),
                human_size(int(record["size"])) if record.get("size") else "",
                str((result.get("artifact_sha256") or {}).get(name) or "")[:12]]
        for index, (output, figures) in enumerate(parity.items() or [("", {})]):
            cells = [*(common if index == 0 else [""] * 4), output,
                     _fmt(figures.get("max_abs_diff"), "{:.1e}"), _share(figures.get("share")),
                     _fmt(figures.get("cosine"), "{:.6f}"), _bound_text({**figures, **tolerances.get(output, {})}),
                     *(tail if index == 0 else [""] * 4)]
            numeric = {5, 6, 7, 9, 10, 11}
            row_class = "failed" if status == "failed" or figures.get("passed") is False else ""
            lines.append(f'<tr class="{row_class}">' + "".join(
                f'<td{" class=num" if i in numeric else ""}>{_e(c)}</td>' for i, c in enumerate(cells)) + "</tr>")
            if record.get("error") and index == len(parity or {"": 0}) - 1:
                lines.append(f'<tr class="failed"><td colspan="{len(head)}">✗ [{_e(record.get("stage"))}] '
                             f"{_e(record['error'])}</td></tr>")
    if not formats:
        lines.append(f'<tr><td colspan="{len(head)}" class="muted">no format was reached</td></tr>')
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _bound_text(figures: dict[str, Any]) -> str:
    tolerance = Tolerance(*(_number(figures.get(k)) for k in ("atol", "rtol", "max_share", "min_cosine")))
    if tolerance.atol == 0 and not tolerance.rtol and tolerance.max_share is None:
        return "exact (atol 0)"
    return tolerance.describe()


def _cases(result: dict[str, Any]) -> list[dict[str, Any]]:
    """``parity_cases`` with each case's format (a one-format job's cases carry none)."""
    default = str(result.get("format") or "")
    return [{**case, "format": str(case.get("format") or default)} for case in result.get("parity_cases") or []]


def _bound(result: dict[str, Any], format_name: str, output: str) -> tuple[float, str] | None:
    """The largest max abs diff a format's output may reach, and how it is named; ``None`` when unbounded by it."""
    record = (result.get("formats") or {}).get(format_name) or {}
    figures = {**((record.get("parity") or {}).get(output) or {}), **((record.get("tolerances") or {}).get(output)
                                                                        or {})}
    atol, share, scale = (_number(figures.get(k)) for k in ("atol", "max_share", "max_abs_expected"))
    if atol is not None and atol > 0:
        return atol, "atol"
    if share is not None and scale:
        return share * scale, f"{share:.0%} of max |output|"
    return None


def _job_parity_figure(result: dict[str, Any], cases: list[dict[str, Any]]) -> Figure | None:
    if not cases:
        return None
    order = list(result.get("formats") or {})
    formats = [*order, *sorted({c["format"] for c in cases} - set(order))]
    outputs = list(dict.fromkeys(str(c.get("output")) for c in cases))
    groups = [(f, b) for f in formats for b in sorted({_int(c.get("batch")) for c in cases if c["format"] == f})]
    figure = _new_figure(max(5.0, 0.7 * len(groups) + 2.0), 2.9 * len(outputs) + 0.4)
    axes_list = figure.subplots(len(outputs), 1, squeeze=False)[:, 0]
    kinds: set[str] = set()
    for axes, output in zip(axes_list, outputs, strict=True):
        mine = [c for c in cases if str(c.get("output")) == output]
        bounds = {f: _bound(result, f, output) for f in formats}
        points = [(groups.index((c["format"], _int(c.get("batch")))), _number(c.get("max_abs_diff")),
                   c.get("passed") is not False, formats.index(c["format"])) for c in mine]
        floor, ceiling = _log_limits([p[1] for p in points] + [b[0] for b in bounds.values() if b])
        kinds |= _strips(axes, points, floor, ceiling, vertical=True)
        kinds |= {"bound"} if any(bounds.values()) else set()
        for f, bound in bounds.items():
            span = [i for i, g in enumerate(groups) if g[0] == f]
            if bound and span:
                axes.hlines(bound[0], span[0] - 0.4, span[-1] + 0.4, colors="#333", linestyles="--", lw=1.1)
                axes.annotate(bound[1], (span[-1] + 0.4, bound[0]), fontsize=7, ha="right", va="bottom",
                              color="#333")
        axes.set_xticks(range(len(groups)), [f"{f}\nb={b}" for f, b in groups], fontsize=8)
        for tick, (f, _) in zip(axes.get_xticklabels(), groups, strict=True):
            tick.set_color(COLORS[formats.index(f) % len(COLORS)])
        axes.set_xlim(-0.6, len(groups) - 0.4)
        axes.set_ylabel(f"{output}: max abs diff")
    _legend(axes_list[0], kinds)
    return figure


def _latency_bars(result: dict[str, Any]) -> list[tuple[str, float, str, float | None]]:
    """``(label, ms, colour, speed-up)``: PyTorch eager first, then each format's runtime."""
    bars: list[tuple[str, float, str, float | None]] = []
    eager: float | None = None
    for index, (name, record) in enumerate((result.get("formats") or {}).items()):
        latency = record.get("latency") or {}
        runtime_ms = _number(latency.get("runtime_ms"))
        if runtime_ms is None:
            continue
        eager = eager if eager is not None else _number(latency.get("torch_ms"))
        runtime = record.get("runtime") or latency.get("runtime") or name
        bars.append((f"{name} ({runtime})", runtime_ms, COLORS[index % len(COLORS)], _number(latency.get("speedup"))))
    return [("PyTorch eager", eager, EAGER, None), *bars] if bars and eager is not None else bars


def _latency_caption(result: dict[str, Any]) -> str:
    records = (result.get("formats") or {}).values()
    latency: dict[str, Any] = next((r["latency"] for r in records if r.get("latency")), {})
    threads, runs = latency.get("threads"), latency.get("runs")
    return ("Median batch-1 latency" + (f" of {runs} runs" if runs else "") + (f" on {threads} threads" if threads
                                                                                 else "")
            + "; PyTorch eager measured in the same job; the label gives the speed-up over it.")


def _latency_figure(bars: list[tuple[str, float, str, float | None]]) -> Figure:
    """Horizontal bars, one per :func:`_latency_bars` entry, each labelled with its ms and speed-up."""
    figure = _new_figure(9.0, 0.34 * len(bars) + 1.0)
    axes = figure.subplots()
    positions = list(range(len(bars)))[::-1]
    values = [ms for _, ms, _, _ in bars]
    axes.barh(positions, values, color=[color for _, _, color, _ in bars], height=0.7)
    if min(values) > 0 and max(values) / min(values) > 100:
        axes.set_xscale("log")
    for y, (_, ms, _, speedup) in zip(positions, bars, strict=True):
        note = f"{ms:.3g} ms" + (f"  ({speedup:.2f}x)" if speedup is not None else "")
        axes.annotate(note, (ms, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    axes.set_yticks(positions, [label for label, _, _, _ in bars], fontsize=8)
    axes.set_xlabel("ms per call (batch 1, median)")
    axes.set_xlim(right=max(values) * (8 if axes.get_xscale() == "log" else 1.25))
    return figure


# -- the sweep's parts


def _summary_table(rows: list[dict[str, Any]], links: dict[str, str]) -> str:
    from getiaction_export.summary import COLUMNS, HEADERS, STATUS_MARK, _cell  # imports Hydra: the sweep's only

    numeric = {"max_abs_diff", "share", "cosine", "latency_ms", "speedup", "export_s", "size"}
    lines = ['<div class="scroll"><table id="summary-table"><thead><tr>'
             + "".join(f"<th>{_e(h.replace(chr(92) + '|', '|'))}</th>" for h in HEADERS) + "</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for column in COLUMNS:
            text = _e(_cell(column, row.get(column)).replace("\\|", "|"))
            if column == "status":  # a badge, not summary.md's emoji (a headless or minimal system may lack the font)
                status = str(row.get("status", ""))
                label = STATUS_MARK.get(status, status).split(" ", 1)[-1]
                text = f'<span class="badge {_e(status)}">{_e(label)}</span>'
            if column == "job" and row.get("job") in links:
                text = f'<a href="{_e(links[row["job"]])}">{text}</a>'
            kind = "num" if column in numeric else "job" if column == "job" else ""
            cells.append(f'<td{f" class={kind}" if kind else ""}>{text}</td>')
        lines.append(f'<tr class="{_e(row.get("status", ""))}">' + "".join(cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _sweep_parity_figure(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                         labels: dict[str, str]) -> Figure | None:
    entries = []
    for row in rows:
        result = results.get(str(row["job"]))
        if not result:
            continue
        cases = [c for c in _cases(result) if c["format"] == row["format"]]
        if cases:
            outputs = dict.fromkeys(str(c.get("output")) for c in cases)
            found = [_bound(result, str(row["format"]), output) for output in outputs]
            entries.append((row, cases, [bound[0] for bound in found if bound]))
    if not entries:
        return None
    precisions = list(dict.fromkeys(str(row.get("precision") or "?") for row, _, _ in entries))
    figure = _new_figure(9.0, 0.36 * len(entries) + 1.3)
    axes = figure.subplots()
    points = [(len(entries) - 1 - i, _number(c.get("max_abs_diff")), c.get("passed") is not False,
               precisions.index(str(row.get("precision") or "?")))
              for i, (row, cases, _) in enumerate(entries) for c in cases]
    floor, ceiling = _log_limits([p[1] for p in points] + [b for _, _, bs in entries for b in bs])
    kinds = _strips(axes, points, floor, ceiling, vertical=False) | ({"bound"} if any(e[2] for e in entries) else set())
    for i, (_, _, bounds) in enumerate(entries):
        for bound in bounds:
            axes.plot([bound], [len(entries) - 1 - i], "|", color="#333", ms=13, mew=1.6)
    axes.set_yticks(range(len(entries))[::-1], [_row_label(row, labels) for row, _, _ in entries], fontsize=8)
    axes.set_ylim(-0.6, len(entries) - 0.4)
    axes.set_xlabel("max abs diff against PyTorch (per case)")
    for index, precision in enumerate(precisions):
        axes.plot([], [], "o", color=COLORS[index % len(COLORS)], label=precision)
    _legend(axes, kinds, bound_marker="|")
    return figure


def _sweep_latency_figure(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                          labels: dict[str, str]) -> Figure | None:
    entries = []
    for row in rows:
        record = ((results.get(str(row["job"])) or {}).get("formats") or {}).get(str(row["format"])) or {}
        latency = record.get("latency") or {}
        runtime_ms, eager_ms = _number(latency.get("runtime_ms")), _number(latency.get("torch_ms"))
        if runtime_ms is not None:
            entries.append((row, runtime_ms, eager_ms, _number(latency.get("speedup")), record.get("runtime")))
    if not entries:
        return None
    formats = list(dict.fromkeys(str(row["format"]) for row, *_ in entries))
    figure = _new_figure(9.0, 0.36 * len(entries) + 1.3)
    axes = figure.subplots()
    positions = list(range(len(entries)))[::-1]
    for y, (row, runtime_ms, eager_ms, speedup, runtime) in zip(positions, entries, strict=True):
        axes.barh(y, runtime_ms, height=0.65, color=COLORS[formats.index(str(row["format"])) % len(COLORS)])
        note = f"{runtime_ms:.3g} ms" + (f" ({speedup:.2f}x)" if speedup is not None else "")
        axes.annotate(f"{note}  {runtime or ''}", (max(runtime_ms, eager_ms or 0), y), xytext=(6, 0),
                      textcoords="offset points", va="center", fontsize=8)
        if eager_ms is not None:
            axes.plot([eager_ms], [y], "|", color="#222", ms=14, mew=2)
    values = [v for _, runtime_ms, eager_ms, _, _ in entries for v in (runtime_ms, eager_ms) if v]
    if min(values) > 0 and max(values) / min(values) > 100:
        axes.set_xscale("log")
    axes.set_xlim(right=max(values) * (8 if axes.get_xscale() == "log" else 1.35))
    axes.set_yticks(positions, [_row_label(row, labels) for row, *_ in entries], fontsize=8)
    axes.set_xlabel("ms per call (batch 1, median)")
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(color=COLORS[i % len(COLORS)], label=name) for i, name in enumerate(formats)]
    handles.extend(axes.plot([], [], "|", color="#222", ms=10, mew=2, ls="none", label="PyTorch eager (same job)"))
    axes.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return figure


def _short_labels(jobs: list[str]) -> dict[str, str]:
    """Each job's name without the overrides every job shares (the figure's row labels)."""
    parts = {job: job.split(",") for job in jobs}
    common = set.intersection(*(set(p) for p in parts.values())) if len(jobs) > 1 else set()
    return {job: ",".join(p for p in items if p not in common) or job for job, items in parts.items()}


def _row_label(row: dict[str, Any], labels: dict[str, str]) -> str:
    label = labels.get(str(row["job"]), str(row["job"]))
    fmt = f"format={row['format']}"
    return label if fmt in label.split(",") else f"{label} · {row['format']}"


# -- drawing helpers


def _strips(axes: Axes, points: list[tuple[int, float | None, bool, int]], floor: float, ceiling: float,
            vertical: bool) -> set[str]:
    """A strip plot on a log axis of ``(group, value, passed, colour index)``; return the kinds of point drawn.

    A difference of 0 is drawn at ``floor`` (hollow ▽), a non-finite one at ``ceiling`` (red ▲), a failed case as
    a red ✕; a group's points are spread across its slot.
    """
    seen: dict[int, int] = {}
    kinds: set[str] = set()
    for group, value, passed, color_index in points:
        slot = seen.get(group, 0)
        seen[group] = slot + 1
        offset = ((slot * 0.61803) % 1 - 0.5) * 0.5  # golden-ratio spread: deterministic, rarely overlapping
        color = COLORS[color_index % len(COLORS)] if passed else FAILED
        if value is None or not math.isfinite(value):
            style: dict[str, Any] = {"color": FAILED}
            kind, where, marker = "nonfinite", ceiling, "^"
        elif value <= 0:
            kind, where, marker, style = "zero", floor, "v", {"mfc": "none", "color": color}
        else:
            kind, where, marker, style = ("ok", value, "o", {"color": color}) if passed else (
                "failed", value, "X", {"color": FAILED})
        kinds.add(kind)
        xy = (group + offset, where) if vertical else (where, group + offset)
        axes.plot(*xy, marker, ms=5.5 if passed else 7, alpha=0.85, **style)
    if vertical:
        axes.set_yscale("log")
        axes.set_ylim(floor / 2, ceiling * 2)
    else:
        axes.set_xscale("log")
        axes.set_xlim(floor / 2, ceiling * 2)
    return kinds


_KINDS: dict[str, tuple[str, dict[str, Any], str]] = {"ok": ("o", {"color": "#555"}, "within the bound"),
          "zero": ("v", {"color": "#555", "mfc": "none"}, "0 (bit-identical)"),
          "failed": ("X", {"color": FAILED}, "over the bound"),
          "nonfinite": ("^", {"color": FAILED}, "inf / nan")}


def _legend(axes: Axes, kinds: set[str], bound_marker: str = "--") -> None:
    """The legend beside ``axes``: its labelled series, the kinds of point drawn, and the bound's mark if drawn."""
    handles = [line for line in axes.lines if not str(line.get_label()).startswith("_")]
    for kind, (marker, style, label) in _KINDS.items():
        if kind in kinds:
            handles.extend(axes.plot([], [], marker, ls="none", label=label, **style))
    if "bound" in kinds:
        line = {"ls": "--"} if bound_marker == "--" else {"ls": "none", "marker": bound_marker, "ms": 10}
        mark: dict[str, Any] = line
        handles.extend(axes.plot([], [], color="#333", label="bound", **mark))
    axes.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _log_limits(values: Iterable[float | None]) -> tuple[float, float]:
    """Where 0 (``floor``) and inf/nan (``ceiling``) are drawn on a log axis holding ``values``."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not positive:
        return 1e-9, 1.0
    low, high = min(positive), max(positive)
    return 10 ** (math.floor(math.log10(low)) - 1), 10 ** (math.ceil(math.log10(high)) + (1 if high == low else 0))


def _new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot (no global state, no GUI backend): rendered only by :func:`_svg`."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure


def _svg(figure: Figure, element_id: str) -> str:
    """The figure as inline SVG: text kept as text, no metadata, ids prefixed by ``element_id`` (unique per page)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": element_id}):
        figure.savefig(buffer, format="svg", metadata=dict.fromkeys(("Date", "Creator", "Format", "Type")))
    text = buffer.getvalue()
    text = re.sub(r'(\sid="|url\(#|href="#)', lambda m: f"{m.group(1)}{element_id}-", text[text.index("<svg"):])
    return text.replace("<svg ", f'<svg role="img" aria-label="{_e(element_id)}" ', 1)


def _figure(element_id: str, figure: Figure | None, caption: str) -> str:
    if figure is None:
        return f'<p id="{_e(element_id)}-missing" class="muted">{_e(caption)}</p>'
    return f'<figure id="{_e(element_id)}">{_svg(figure, element_id)}<figcaption>{_e(caption)}</figcaption></figure>'


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def _number(value: Any) -> float | None:
    """A float from result.json (which writes inf/nan as strings); ``None`` when there is none."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None and math.isfinite(number) else 0


def _fmt(value: Any, pattern: str) -> str:
    number = _number(value)
    return "" if number is None else pattern.format(number)


def _share(value: Any) -> str:
    number = _number(value)
    return "<0.01%" if number is not None and 0 < number < 5e-5 else _fmt(number, "{:.2%}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "format"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)
