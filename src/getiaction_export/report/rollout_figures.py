"""The figures of ``report.html``'s rollout sections: a job's closed-loop runs, and a sweep's drift per step.

Each returns a matplotlib ``Figure`` (Agg backend, no display) built from a ``result.json``'s
``rollout`` record, or None when there is nothing to draw; :mod:`getiaction_export.report.rollout`
lays them into the page. The shared drawing helpers (colours, log limits, a new figure) are
:mod:`getiaction_export.report.figures`'s. Also the gap as text: :func:`gap_text` (the page) and
:func:`rollout_gap_text` (summary.md's ``rollout gap`` cell). No torch here.

Example:
    >>> episode = {"seed": 0, "torch_xy": [[0, 0], [1, 1]], "artifact_xy": [[0, 0], [1, 1.5]],
    ...            "state_gap": [0.0, 0.5], "action_gap": [0.0, 1e-3]}
    >>> type(rollout_figure({"max_gap": 1.0, "episodes": [episode]}, ["x", "y"], "px")).__name__
    'Figure'
    >>> rollout_figure({"episodes": []}, ["x", "y"]) is None, positive_steps([0.0, 0.5, "nan", 2])
    (True, ([1, 3], [0.5, 2.0]))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from getiaction_export.report.figures import COLORS, FAILED, log_limits, new_figure, number, row_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def rollout_figure(record: dict[str, Any], plane: list[str], unit: str = "", tracked: str = "tracked state"
                   ) -> Figure | None:
    """One format's closed-loop run against PyTorch's: the trajectories, and per step the state and action gaps.

    Left, the task plane: PyTorch solid, the artifact dashed, one colour per episode (start ○, end ×).
    Right, on log axes over the steps: the tracked state's gap (the gated quantity) with the bound as a
    dashed line and the worst step ringed, and the action gap below it. A gap of 0 cannot be drawn on a
    log axis: a panel whose every gap is 0 says so. None when the record has no episode.
    """
    episodes = [e for e in record.get("episodes") or [] if isinstance(e, dict)]
    if not episodes:
        return None
    figure = new_figure(10.5, 4.0)
    grid = figure.add_gridspec(2, 2, width_ratios=[1, 1.55])
    path_axes = figure.add_subplot(grid[:, 0])
    state_axes = figure.add_subplot(grid[0, 1])
    action_axes = figure.add_subplot(grid[1, 1], sharex=state_axes)
    labelled = len(episodes) <= 4
    drawn: dict[str, list[float]] = {"state_gap": [], "action_gap": []}
    for index, episode in enumerate(episodes):
        color = COLORS[index % len(COLORS)]
        label = f"seed {episode['seed']}" if "seed" in episode else f"episode {index}"
        for key, style in (("torch_xy", "-"), ("artifact_xy", "--")):
            points = [p for p in episode.get(key) or [] if len(p) >= 2]
            if points:
                xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
                path_axes.plot(xs, ys, style, color=color, lw=1.3 if key == "torch_xy" else 1.1,
                               alpha=0.9, label=label if key == "torch_xy" and labelled else None)
                path_axes.plot(xs[:1], ys[:1], "o", mfc="none", color=color, ms=6)
                path_axes.plot(xs[-1:], ys[-1:], "x", color=color, ms=6)
        for axes, key in ((state_axes, "state_gap"), (action_axes, "action_gap")):
            steps, gaps = positive_steps(episode.get(key))
            if steps:
                axes.plot(steps, gaps, color=color, lw=1.0, alpha=0.85)
                drawn[key].extend(gaps)
    path_axes.plot([], [], "-", color="#444", label="PyTorch")
    path_axes.plot([], [], "--", color="#444", label="artifact")
    path_axes.set_xlabel(plane[0], fontsize=8)
    path_axes.set_ylabel(plane[1] if len(plane) > 1 else "", fontsize=8)
    path_axes.set_title(f"trajectories on the task plane ({len(episodes)} episode{'s' if len(episodes) != 1 else ''})",
                        fontsize=9)
    path_axes.tick_params(labelsize=7)
    path_axes.set_aspect("equal", adjustable="datalim")
    path_axes.legend(fontsize=7, loc="best", framealpha=0.8)
    bound, passed = number(record.get("max_gap")), record.get("passed") is not False
    suffix = f" ({unit})" if unit else ""
    _gap_panel(state_axes, drawn["state_gap"], f"{tracked} gap{suffix}", bound, passed, _worst_point(episodes), unit)
    _gap_panel(action_axes, drawn["action_gap"], "max |action gap|", None, True, None, "")
    longest = max(max(len(e.get("state_gap") or []), len(e.get("action_gap") or [])) for e in episodes)
    state_axes.set_xlim(-0.01 * longest, longest * 1.01 if longest else 1)
    state_axes.tick_params(labelbottom=False)
    state_axes.set_title(f"per step, against PyTorch's run (log axes; {len(episodes)} episode"
                         f"{'s' if len(episodes) != 1 else ''})", fontsize=9)
    action_axes.set_xlabel("step", fontsize=8)
    return figure


def _gap_panel(axes: Axes, values: list[float], ylabel: str, bound: float | None, passed: bool,
               worst: tuple[int, float] | None, unit: str) -> None:
    """Log scale over a panel's gap lines (``values``), the bound's dashed line, the worst point; a note when none."""
    axes.set_yscale("log")
    axes.set_ylabel(ylabel, fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(True, which="major", axis="y", color="#eee", lw=0.6)
    color = "#333" if passed else FAILED
    if values:
        floor, ceiling = log_limits([*values, bound])
        axes.set_ylim(floor * 2, ceiling * 3)
    elif bound is not None and bound > 0:
        axes.set_ylim(bound / 1000, bound * 10)
    else:
        axes.set_ylim(0.1, 10)
        axes.set_yticks([])
        axes.minorticks_off()
    if bound is not None and bound > 0:
        axes.axhline(bound, color=color, ls="--", lw=1.1)
        if not passed:
            axes.axhspan(bound, axes.get_ylim()[1], color=FAILED, alpha=0.07, lw=0)
        axes.annotate(f"bound {bound:g}{(' ' + unit) if unit else ''}", (1.0, bound),
                      xycoords=("axes fraction", "data"), xytext=(-3, 2), textcoords="offset points", ha="right",
                      va="bottom", fontsize=7, color=color)
    if worst is not None:
        step, gap = worst
        axes.plot([step], [gap], "o", mfc="none", mec=color, ms=9, mew=1.3)
        axes.annotate(f"max {gap_text(gap)}{(' ' + unit) if unit else ''} at step {step}", (step, gap),
                      xytext=(7, 4), textcoords="offset points", fontsize=7, color=color, va="bottom",
                      bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    if not values:
        axes.text(0.5, 0.5, "0 at every step (bit-identical to PyTorch): nothing to draw on a log axis",
                  transform=axes.transAxes, ha="center", va="center", fontsize=8, color="#555")


def _worst_point(episodes: list[dict[str, Any]]) -> tuple[int, float] | None:
    """``(step, gap)`` of the largest state gap over the episodes; None when every gap is 0."""
    best: tuple[int, float] | None = None
    for episode in episodes:
        steps, gaps = positive_steps(episode.get("state_gap"))
        for step, gap in zip(steps, gaps, strict=True):
            if best is None or gap > best[1]:
                best = (step, gap)
    return best


def positive_steps(gaps: Any) -> tuple[list[int], list[float]]:
    """The steps whose gap is a positive finite number, and those gaps (a log axis draws nothing else)."""
    steps, values = [], []
    for step, gap in enumerate(gaps or []):
        value = number(gap)
        if value is not None and math.isfinite(value) and value > 0:
            steps.append(step)
            values.append(value)
    return steps, values


def gap_text(value: Any) -> str:
    """A gap as the page and summary.md write it: ``0``, ``4.2e-05``, ``4.20``, ``31.2``, ``123``.

    Example:
        >>> [gap_text(v) for v in (0.0, 4.16e-05, 4.2037, 31.24, 123.4, "nan", None)]
        ['0', '4.2e-05', '4.20', '31.2', '123', 'nan', '']
    """
    parsed = number(value)
    if parsed is None:
        return ""
    if not math.isfinite(parsed):
        return str(parsed)
    if parsed == 0:
        return "0"
    if abs(parsed) < 0.01:
        return f"{parsed:.1e}"
    return f"{parsed:.0f}" if abs(parsed) >= 100 else f"{parsed:#.3g}"


def rollout_gap_text(record: dict[str, Any]) -> str:
    """A format's rollout in one cell: its largest state gap against its bound, ``✗`` first when it failed.

    Example:
        >>> rollout_gap_text({"max_state_gap": 4.2037, "max_gap": 16.0, "unit": "px", "passed": True})
        '4.20 px ≤ 16'
        >>> rollout_gap_text({"max_state_gap": 31.24, "max_gap": 16.0, "unit": "px", "passed": False})
        '✗ 31.2 px > 16'
    """
    gap, bound = number(record.get("max_state_gap")), number(record.get("max_gap"))
    unit = f" {record['unit']}" if record.get("unit") else ""
    failed = record.get("passed") is False
    text = f"{'✗ ' if failed else ''}{gap_text(gap)}{unit}"
    return text + (f" {'>' if failed else '≤'} {bound:g}" if bound is not None else "")


def step_maxima(episodes: list[dict[str, Any]], key: str = "state_gap") -> list[float]:
    """Per step, the largest gap over the episodes that reached it (episodes may end early).

    Example:
        >>> step_maxima([{"state_gap": [0, 1, 3]}, {"state_gap": [0, 2]}])
        [0.0, 2.0, 3.0]
    """
    maxima: list[float] = []
    for episode in episodes:
        for step, gap in enumerate(episode.get(key) or []):
            value = number(gap)
            value = value if value is not None and math.isfinite(value) else math.inf
            if step < len(maxima):
                maxima[step] = max(maxima[step], value)
            else:
                maxima.append(value)
    return maxima


def sweep_rollout_entries(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]]
                          ) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """``(row, the job's rollout, the row's format's rollout record)`` of each row whose format was rolled out."""
    entries = []
    for row in rows:
        rollout = (results.get(str(row["job"])) or {}).get("rollout") or {}
        record = (rollout.get("formats") or {}).get(str(row["format"]))
        if isinstance(record, dict):
            entries.append((row, rollout, record))
    return entries


def sweep_rollout_figure(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                         labels: dict[str, str]) -> Figure | None:
    """Per job and format, the tracked state's gap at each step (the max over episodes) on a log axis.

    One colour per job and format, its bound a dashed line in the same colour; an entry whose every gap
    is 0 (bit-identical) is named in the legend, as it cannot be drawn.
    """
    entries = sweep_rollout_entries(rows, results)
    if not entries:
        return None
    units = {str(rollout.get("unit") or "") for _, rollout, _ in entries}
    unit = units.pop() if len(units) == 1 else ""
    figure = new_figure(10.5, 3.9)
    axes = figure.subplots()
    handles: list[Any] = []
    drawn: list[float] = []
    bounds: list[float] = []
    for index, (row, _, record) in enumerate(entries):
        color = COLORS[index % len(COLORS)]
        steps, gaps = positive_steps(step_maxima(list(record.get("episodes") or [])))
        bound = number(record.get("max_gap"))
        failed = record.get("passed") is False
        label = f"{'✗ ' if failed else ''}{row_label(row, labels)}: max {gap_text(record.get('max_state_gap'))}"
        label += f" {'>' if failed else '≤'} {bound:g}" if bound is not None else ""
        if steps:
            (line,) = axes.plot(steps, gaps, color=color, lw=1.3 if not failed else 1.8, label=label)
            drawn.extend(gaps)
            if failed:  # where it went furthest beyond its bound
                worst = max(range(len(gaps)), key=gaps.__getitem__)
                axes.plot([steps[worst]], [gaps[worst]], "X", color=FAILED, ms=8)
        else:
            (line,) = axes.plot([], [], color=color, lw=1.3, label=label + " (0 at every step)")
        handles.append(line)
        if bound is not None and bound > 0:
            axes.axhline(bound, color=color, ls="--", lw=1.0, alpha=0.8)
            bounds.append(bound)
    floor, ceiling = log_limits([*drawn, *bounds])
    axes.set_yscale("log")
    axes.set_ylim(floor * 2, ceiling * 3)
    for bound in sorted(set(bounds)):
        axes.annotate(f"bound {bound:g}{' ' + unit if unit else ''}", (0.0, bound), xycoords=("axes fraction", "data"),
                      xytext=(3, 2), textcoords="offset points", ha="left", va="bottom", fontsize=7, color="#333",
                      bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    axes.grid(True, which="major", axis="y", color="#eee", lw=0.6)
    tracked = next((str(r.get("tracked")) for _, r, _ in entries if r.get("tracked")), "tracked state")
    axes.set_ylabel(f"{tracked} gap{f' ({unit})' if unit else ''}, max over episodes", fontsize=8)
    axes.set_xlabel("step")
    if bounds:
        handles.extend(axes.plot([], [], color="#333", ls="--", lw=1.0, label="bound (colour of its run)"))
    axes.legend(handles=handles, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return figure
