"""The figures of ``report.html``: drawings of a job's or a sweep's parity and latency.

Each returns a :class:`~getiaction_export.report.plot.Figure` (SVG written directly, no plotting
library) built from ``result.json`` data, or None when there is nothing to draw;
:mod:`getiaction_export.report.html` lays them into the page. Also the drawing helpers the rollout
figures (:mod:`getiaction_export.report.rollout_figures`) share: the colours, :func:`new_figure`,
:func:`log_limits`, :func:`number`, :func:`row_label`. No torch here (the sweep callback runs in the
CLI process).

Example:
    >>> figure = latency_figure([("PyTorch eager", 2.0, "#7f7f7f", None), ("onnx", 1.0, COLORS[0], 2.0)])
    >>> type(figure).__name__, "1 ms  (2.00x)" in figure.svg("fig-latency")
    ('Figure', True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from getiaction_export.report.plot import Axes, Figure, Handle

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
"""Series colours (matplotlib's tab10 without red and grey: red marks a failure, grey PyTorch eager)."""
FAILED, EAGER = "#d62728", "#7f7f7f"


def cases_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """``parity_cases`` with each case's format (a one-format job's cases carry none)."""
    default = str(result.get("format") or "")
    return [{**case, "format": str(case.get("format") or default)} for case in result.get("parity_cases") or []]


def bound_of(result: dict[str, Any], format_name: str, output: str) -> tuple[float, str] | None:
    """The largest max abs diff a format's output may reach, and how it is named; ``None`` when unbounded by it."""
    record = (result.get("formats") or {}).get(format_name) or {}
    figures = {**((record.get("parity") or {}).get(output) or {}), **((record.get("tolerances") or {}).get(output)
                                                                        or {})}
    atol, share, scale = (number(figures.get(k)) for k in ("atol", "max_share", "max_abs_expected"))
    if atol is not None and atol > 0:
        return atol, "atol"
    if share is not None and scale:
        return share * scale, f"{share:.0%} of max |output|"
    return None


def job_parity_figure(result: dict[str, Any], cases: list[dict[str, Any]]) -> Figure | None:
    if not cases:
        return None
    order = list(result.get("formats") or {})
    formats = [*order, *sorted({c["format"] for c in cases} - set(order))]
    outputs = list(dict.fromkeys(str(c.get("output")) for c in cases))
    groups = [(f, b) for f in formats for b in sorted({as_int(c.get("batch")) for c in cases if c["format"] == f})]
    figure = new_figure(max(5.0, 0.7 * len(groups) + 2.0), 2.9 * len(outputs) + 0.4)
    axes_list = figure.subplots(len(outputs))
    kinds: set[str] = set()
    for axes, output in zip(axes_list, outputs, strict=True):
        mine = [c for c in cases if str(c.get("output")) == output]
        bounds = {f: bound_of(result, f, output) for f in formats}
        points = [(groups.index((c["format"], as_int(c.get("batch")))), number(c.get("max_abs_diff")),
                   c.get("passed") is not False, formats.index(c["format"])) for c in mine]
        floor, ceiling = log_limits([p[1] for p in points] + [b[0] for b in bounds.values() if b])
        kinds |= _strips(axes, points, floor, ceiling, vertical=True)
        kinds |= {"bound"} if any(bounds.values()) else set()
        for f, bound in bounds.items():
            span = [i for i, g in enumerate(groups) if g[0] == f]
            if bound and span:
                axes.hlines(bound[0], span[0] - 0.4, span[-1] + 0.4, color="#333", ls="--", lw=1.1)
                axes.text(span[-1] + 0.4, bound[0], bound[1], size=7, ha="right", va="bottom", color="#333")
        axes.set_xticks(range(len(groups)), [f"{f}\nb={b}" for f, b in groups],
                        [COLORS[formats.index(f) % len(COLORS)] for f, _ in groups], size=8)
        axes.set_xlim(-0.6, len(groups) - 0.4)
        axes.set_ylabel(f"{output}: max abs diff")
    _legend(axes_list[0], kinds)
    return figure


def latency_figure(bars: list[tuple[str, float, str, float | None]]) -> Figure:
    """Horizontal bars, one per :func:`_latency_bars` entry, each labelled with its ms and speed-up."""
    figure = new_figure(9.0, 0.34 * len(bars) + 1.0)
    axes = figure.add_axes()
    positions = list(range(len(bars)))[::-1]
    values = [ms for _, ms, _, _ in bars]
    for y, (_, ms, color, speedup) in zip(positions, bars, strict=True):
        axes.barh(y, ms, height=0.7, color=color)
        note = f"{ms:.3g} ms" + (f"  ({speedup:.2f}x)" if speedup is not None else "")
        axes.text(ms, y, note, offset=(3, 0), va="center", size=8)
    if min(values) > 0 and max(values) / min(values) > 100:
        axes.set_xscale("log")
        axes.set_xlim(min(values) / 2)
    axes.set_yticks(positions, [label for label, _, _, _ in bars], size=8)
    axes.set_xlabel("ms per call (batch 1, median)")
    axes.set_xlim(right=max(values) * (8 if axes.xscale == "log" else 1.25))
    return figure


# -- the sweep's parts


def sweep_parity_figure(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                         labels: dict[str, str]) -> Figure | None:
    entries = []
    for row in rows:
        result = results.get(str(row["job"]))
        if not result:
            continue
        cases = [c for c in cases_of(result) if c["format"] == row["format"]]
        if cases:
            outputs = dict.fromkeys(str(c.get("output")) for c in cases)
            found = [bound_of(result, str(row["format"]), output) for output in outputs]
            entries.append((row, cases, [bound[0] for bound in found if bound]))
    if not entries:
        return None
    precisions = list(dict.fromkeys(str(row.get("precision") or "?") for row, _, _ in entries))
    figure = new_figure(9.0, 0.36 * len(entries) + 1.3)
    axes = figure.add_axes()
    points = [(len(entries) - 1 - i, number(c.get("max_abs_diff")), c.get("passed") is not False,
               precisions.index(str(row.get("precision") or "?")))
              for i, (row, cases, _) in enumerate(entries) for c in cases]
    floor, ceiling = log_limits([p[1] for p in points] + [b for _, _, bs in entries for b in bs])
    kinds = _strips(axes, points, floor, ceiling, vertical=False) | ({"bound"} if any(e[2] for e in entries) else set())
    for i, (_, _, bounds) in enumerate(entries):
        for bound in bounds:
            axes.plot([bound], [len(entries) - 1 - i], ls="", marker="|", color="#333", ms=13, mew=1.6)
    axes.set_yticks(range(len(entries))[::-1], [row_label(row, labels) for row, _, _ in entries], size=8)
    axes.set_ylim(-0.6, len(entries) - 0.4)
    axes.set_xlabel("max abs diff against PyTorch (per case)")
    handles = [Handle(precision, COLORS[index % len(COLORS)], ls="", marker="o")
               for index, precision in enumerate(precisions)]
    _legend(axes, kinds, bound_marker="|", handles=handles)
    return figure


def sweep_latency_figure(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                          labels: dict[str, str]) -> Figure | None:
    entries = []
    for row in rows:
        record = ((results.get(str(row["job"])) or {}).get("formats") or {}).get(str(row["format"])) or {}
        latency = record.get("latency") or {}
        runtime_ms, eager_ms = number(latency.get("runtime_ms")), number(latency.get("torch_ms"))
        if runtime_ms is not None:
            entries.append((row, runtime_ms, eager_ms, number(latency.get("speedup")), record.get("runtime")))
    if not entries:
        return None
    formats = list(dict.fromkeys(str(row["format"]) for row, *_ in entries))
    figure = new_figure(9.0, 0.36 * len(entries) + 1.3)
    axes = figure.add_axes()
    positions = list(range(len(entries)))[::-1]
    for y, (row, runtime_ms, eager_ms, speedup, runtime) in zip(positions, entries, strict=True):
        axes.barh(y, runtime_ms, height=0.65, color=COLORS[formats.index(str(row["format"])) % len(COLORS)])
        note = f"{runtime_ms:.3g} ms" + (f" ({speedup:.2f}x)" if speedup is not None else "")
        axes.text(max(runtime_ms, eager_ms or 0), y, f"{note}  {runtime or ''}", offset=(6, 0), va="center", size=8)
        if eager_ms is not None:
            axes.plot([eager_ms], [y], ls="", marker="|", color="#222", ms=14, mew=2)
    values = [v for _, runtime_ms, eager_ms, _, _ in entries for v in (runtime_ms, eager_ms) if v]
    if min(values) > 0 and max(values) / min(values) > 100:
        axes.set_xscale("log")
        axes.set_xlim(min(values) / 2)
    axes.set_xlim(right=max(values) * (8 if axes.xscale == "log" else 1.35))
    axes.set_yticks(positions, [row_label(row, labels) for row, *_ in entries], size=8)
    axes.set_xlabel("ms per call (batch 1, median)")
    handles = [Handle(name, COLORS[i % len(COLORS)], patch=True) for i, name in enumerate(formats)]
    handles.append(Handle("PyTorch eager (same job)", "#222", ls="", marker="|", ms=10, mew=2))
    axes.legend(handles, size=7)
    return figure


def row_label(row: dict[str, Any], labels: dict[str, str]) -> str:
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
        mfc: str | None = None
        if value is None or not math.isfinite(value):
            kind, where, marker, color = "nonfinite", ceiling, "^", FAILED
        elif value <= 0:
            kind, where, marker, mfc = "zero", floor, "v", "none"
        else:
            kind, where, marker = ("ok", value, "o") if passed else ("failed", value, "X")
        kinds.add(kind)
        x, y = (group + offset, where) if vertical else (where, group + offset)
        axes.plot([x], [y], ls="", marker=marker, ms=5.5 if passed else 7, alpha=0.85, color=color, mfc=mfc)
    if vertical:
        axes.set_yscale("log")
        axes.set_ylim(floor / 2, ceiling * 2)
    else:
        axes.set_xscale("log")
        axes.set_xlim(floor / 2, ceiling * 2)
    return kinds


_KINDS: dict[str, Handle] = {"ok": Handle("within the bound", "#555", ls="", marker="o"),
                             "zero": Handle("0 (bit-identical)", "#555", ls="", marker="v", mfc="none"),
                             "failed": Handle("over the bound", FAILED, ls="", marker="X", ms=7),
                             "nonfinite": Handle("inf / nan", FAILED, ls="", marker="^")}


def _legend(axes: Axes, kinds: set[str], bound_marker: str = "--", handles: list[Handle] | None = None) -> None:
    """The legend beside ``axes``: ``handles`` first, the kinds of point drawn, and the bound's mark if drawn."""
    entries = list(handles or [])
    entries += [handle for kind, handle in _KINDS.items() if kind in kinds]
    if "bound" in kinds:
        entries.append(Handle("bound", "#333", ls="--") if bound_marker == "--" else
                       Handle("bound", "#333", ls="", marker=bound_marker, ms=10, mew=1.6))
    axes.legend(entries, size=7)


def log_limits(values: Iterable[float | None]) -> tuple[float, float]:
    """Where 0 (``floor``) and inf/nan (``ceiling``) are drawn on a log axis holding ``values``."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not positive:
        return 1e-9, 1.0
    low, high = min(positive), max(positive)
    return 10 ** (math.floor(math.log10(low)) - 1), 10 ** (math.ceil(math.log10(high)) + (1 if high == low else 0))


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1,
               width_ratios: list[float] | None = None) -> Figure:
    """A figure of ``width`` × ``height`` inches, rendered by :func:`getiaction_export.report.parts.svg`."""
    return Figure(width, height, rows, cols, width_ratios)


def number(value: Any) -> float | None:
    """A float from result.json (which writes inf/nan as strings); ``None`` when there is none."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_int(value: Any) -> int:
    parsed = number(value)
    return int(parsed) if parsed is not None and math.isfinite(parsed) else 0
