"""The figures of ``report.html``: matplotlib drawings of a job's or a sweep's parity and latency.

Each returns a matplotlib ``Figure`` (Agg backend, no display) built from ``result.json`` data, or
None when there is nothing to draw; :mod:`getiaction_export.report.html` lays them into the page.
Also the drawing helpers the rollout figures (:mod:`getiaction_export.report.rollout_figures`) share:
the colours, :func:`new_figure`, :func:`log_limits`, :func:`number`, :func:`row_label`.
No torch here (the sweep callback runs in the CLI process).

Example:
    >>> figure = latency_figure([("PyTorch eager", 2.0, "#7f7f7f", None), ("onnx", 1.0, COLORS[0], 2.0)])
    >>> type(figure).__name__
    'Figure'
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
    axes_list = figure.subplots(len(outputs), 1, squeeze=False)[:, 0]
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


def latency_figure(bars: list[tuple[str, float, str, float | None]]) -> Figure:
    """Horizontal bars, one per :func:`_latency_bars` entry, each labelled with its ms and speed-up."""
    figure = new_figure(9.0, 0.34 * len(bars) + 1.0)
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
    axes = figure.subplots()
    points = [(len(entries) - 1 - i, number(c.get("max_abs_diff")), c.get("passed") is not False,
               precisions.index(str(row.get("precision") or "?")))
              for i, (row, cases, _) in enumerate(entries) for c in cases]
    floor, ceiling = log_limits([p[1] for p in points] + [b for _, _, bs in entries for b in bs])
    kinds = _strips(axes, points, floor, ceiling, vertical=False) | ({"bound"} if any(e[2] for e in entries) else set())
    for i, (_, _, bounds) in enumerate(entries):
        for bound in bounds:
            axes.plot([bound], [len(entries) - 1 - i], "|", color="#333", ms=13, mew=1.6)
    axes.set_yticks(range(len(entries))[::-1], [row_label(row, labels) for row, _, _ in entries], fontsize=8)
    axes.set_ylim(-0.6, len(entries) - 0.4)
    axes.set_xlabel("max abs diff against PyTorch (per case)")
    for index, precision in enumerate(precisions):
        axes.plot([], [], "o", color=COLORS[index % len(COLORS)], label=precision)
    _legend(axes, kinds, bound_marker="|")
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
    axes.set_yticks(positions, [row_label(row, labels) for row, *_ in entries], fontsize=8)
    axes.set_xlabel("ms per call (batch 1, median)")
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(color=COLORS[i % len(COLORS)], label=name) for i, name in enumerate(formats)]
    handles.extend(axes.plot([], [], "|", color="#222", ms=10, mew=2, ls="none", label="PyTorch eager (same job)"))
    axes.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
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


def log_limits(values: Iterable[float | None]) -> tuple[float, float]:
    """Where 0 (``floor``) and inf/nan (``ceiling``) are drawn on a log axis holding ``values``."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not positive:
        return 1e-9, 1.0
    low, high = min(positive), max(positive)
    return 10 ** (math.floor(math.log10(low)) - 1), 10 ** (math.ceil(math.log10(high)) + (1 if high == low else 0))


def new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot (no global state, no GUI backend): rendered only by
    :func:`getiaction_export.report.parts.svg`."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure


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
