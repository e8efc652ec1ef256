"""The closed-loop rollout sections of ``report.html``, a job's and a sweep's.

A job whose ``result.json`` has a ``rollout`` record (:func:`getiaction_export.stages.rollout.rollout_record`)
gets the section ``rollout`` on its page (:func:`rollout_section`: ``rollout-table``, and per format
``fig-rollout-<format>``); a sweep with a job that rolled out gets ``sweep-rollout``
(:func:`sweep_rollout_section`: ``fig-sweep-rollout``, and ``rollout-table`` per job and format).
:mod:`getiaction_export.report.html` places them on its pages. The drawings are
:mod:`getiaction_export.report.rollout_figures`'s, the pieces of HTML :mod:`getiaction_export.report.parts`'s.
Torch-free and Hydra-free.

Example:
    >>> episode = {"seed": 0, "state_gap": [0.0, 0.5, 2.0], "action_gap": [0.0, 1e-3, 4e-3]}
    >>> record = {"precision": "fp16", "max_gap": 1.0, "max_state_gap": 2.0, "passed": False, "episodes": [episode]}
    >>> results = {"job": {"rollout": {"unit": "px", "steps": 3, "formats": {"onnx": record}}}}
    >>> section = sweep_rollout_section([{"job": "job", "format": "onnx"}], results, {}, {})
    >>> [f'id="{name}"' in section for name in ("sweep-rollout", "fig-sweep-rollout", "rollout-table")]
    [True, True, True]
    >>> "2.00 px &gt; 1 px" in section, '<tr class="failed">' in section
    (True, True)
"""

from __future__ import annotations

from typing import Any

from getiaction_export.report.figures import as_int, number
from getiaction_export.report.parts import badge, classes, escape, figure_html, fmt, pass_badge, slug
from getiaction_export.report.rollout_figures import (
    gap_text,
    positive_steps,
    rollout_figure,
    sweep_rollout_entries,
    sweep_rollout_figure,
)


def rollout_section(rollout: dict[str, Any]) -> str:
    """The ``rollout`` section of a job's page: ``rollout-table``, and per format ``fig-rollout-<format>``.

    Rendered when ``result["rollout"]`` exists (:func:`getiaction_export.stages.rollout.rollout_record`
    writes it). What it reads, every key optional but ``formats``::

        {"task": "pusht", "plane": ["x (px)", "y (px)"], "unit": "px", "episodes": 2, "steps": 300, "seed": 0,
         "torch": {"success": 0, "seconds": 1.7}, "status": "ok" | "failed" | "pending",
         "formats": {"onnx": {"driver": "...", "precision": "fp32", "max_gap": 0.01, "max_gap_source": "...",
                              "max_state_gap": 4e-05, "max_action_gap": 9e-05, "worst": {"seed": 1, "step": 181},
                              "success": {"torch": 0, "artifact": 0}, "passed": True, "seconds": 1.6,
                              "episodes": [{"seed": 0, "steps": {"torch": 300, "artifact": 300},
                                            "state_gap": [...], "action_gap": [...],   # per step
                                            "reward": {"torch": 16.1, "artifact": 16.1},
                                            "success": {"torch": False, "artifact": False},
                                            "torch_xy": [[x, y], ...], "artifact_xy": [[x, y], ...]}]}}}

    ``rollout-table`` has one row per format (a failed one red); each figure draws the trajectories on
    the task plane and, per step on log axes, the tracked state's gap against the bound and the action gap.

    Example:
        >>> episode = {"seed": 0, "torch_xy": [[0, 0], [1, 1]], "artifact_xy": [[0, 0], [1, 1.01]],
        ...            "state_gap": [0.0, 0.01], "action_gap": [1e-6, 2e-6], "reward": {"torch": 1.0, "artifact": 0.5},
        ...            "success": {"torch": True, "artifact": False}}
        >>> record = {"precision": "fp16", "max_gap": 16.0, "max_state_gap": 0.01, "passed": True, "unit": "px",
        ...           "episodes": [episode]}
        >>> section = rollout_section({"task": "pusht", "unit": "px", "formats": {"onnx": record}})
        >>> [f'id="{name}"' in section for name in ("rollout", "rollout-table", "fig-rollout-onnx")]
        [True, True, True]
        >>> "0.0100 px ≤ 16 px" in section, "1 / 0 of 1" in section, "1.00 / 0.50" in section
        (True, True, True)
    """
    task = rollout.get("task")
    unit = str(rollout.get("unit") or "")
    plane = list(rollout.get("plane") or ["x", "y"])
    tracked = str(rollout.get("tracked") or "tracked state")
    formats = {name: record for name, record in (rollout.get("formats") or {}).items() if isinstance(record, dict)}
    status = str(rollout.get("status") or ("failed" if any(r.get("passed") is False for r in formats.values())
                                           else "ok" if formats else "pending"))
    parts = ['<section id="rollout">',
             f'<h2>Rollout{": " + escape(task) if task else ""}, closed loop against PyTorch '
             f'{badge(status, status)}</h2>',
             f"<p>{escape(_rollout_intro(rollout, tracked, unit))}</p>",
             _rollout_table(formats, unit)]
    for name, record in formats.items():
        passed = record.get("passed") is not False
        parts.append(f"<h3>{escape(name)} {pass_badge(passed)}</h3>")
        parts.append(figure_html(f"fig-rollout-{slug(name)}", rollout_figure(record, plane, unit, tracked),
                                 _rollout_caption(name, record, tracked, unit)))
    parts.append("</section>")
    return "\n".join(parts)


def _rollout_intro(rollout: dict[str, Any], tracked: str, unit: str) -> str:
    episodes, steps, seed = rollout.get("episodes"), rollout.get("steps"), rollout.get("seed")
    text = "PyTorch eager and each artifact drive their own copy of the task"
    if episodes:
        text += f": {episodes} episode{'s' if episodes != 1 else ''}"
        text += f" of up to {steps} steps" if steps else ""
        text += f", episode e from env.reset(seed={seed} + e) in every run" if seed is not None else ""
    reference = rollout.get("torch") or {}
    if reference:
        seconds = number(reference.get("seconds"))
        text += (f"; PyTorch succeeded in {reference.get('success', 0)}"
                 + (f" of {episodes}" if episodes else "") + (f" ({seconds:.1f} s)" if seconds is not None else ""))
    return (text + f". The gate: the {tracked}'s distance from PyTorch's{' (' + unit + ')' if unit else ''} at every "
            "step, within the bound of the artifact's precision; and on its own path, PyTorch given every observation "
            "the artifact's policy ran on does what the artifact did, within its per-call bound (an fp32 artifact "
            "that does passes even when the runs part: the loop, not the artifact, made the difference).")


def _rollout_table(formats: dict[str, dict[str, Any]], unit: str) -> str:
    head = ["format", "status", "precision", "driver", "max state gap vs bound", "bound from", "max action gap",
            "on its own path", "success (PyTorch / artifact)", "mean reward (PyTorch / artifact)", "seconds"]
    lines = ['<div class="scroll"><table id="rollout-table"><thead><tr>'
             + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for name, record in formats.items():
        passed = record.get("passed") is not False
        episodes = [e for e in record.get("episodes") or [] if isinstance(e, dict)]
        worst = record.get("worst") or {}
        where = f"seed {worst.get('seed')}, step {worst.get('step')}" if worst and record.get("max_state_gap") else ""
        cells = [escape(name), pass_badge(passed), escape(record.get("precision")), escape(record.get("driver")),
                 escape(_gap_vs_bound(record, unit))
                 + (f'<br><span class="muted">{escape(where)}</span>' if where else ""),
                 escape(record.get("max_gap_source")), escape(gap_text(record.get("max_action_gap"))),
                 escape(on_path_text(record)),
                 escape(_success_text(record, episodes)), escape(_mean_rewards(episodes)),
                 escape(fmt(record.get("seconds"), "{:.1f}"))]
        numeric = {4, 6, 8, 9, 10}
        lines.append(f'<tr class="{"" if passed else "failed"}">' + "".join(
            f'<td{classes("num" if i in numeric else "", "nowrap" if i == 4 else "")}>{c}</td>'
            for i, c in enumerate(cells)) + "</tr>")
    if not formats:
        lines.append(f'<tr><td colspan="{len(head)}" class="muted">no format was rolled out (the job stopped '
                     "before)</td></tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _gap_vs_bound(record: dict[str, Any], unit: str) -> str:
    """``4.20 px ≤ 16 px``, ``31.2 px > 16 px`` for a failed run, ``9.63 px > 0.01 px, parted at step 112`` for runs
    that parted while the artifact acted as PyTorch on its own path."""
    unit = str(record.get("unit") or unit)
    suffix = f" {unit}" if unit else ""
    bound = number(record.get("max_gap"))
    parted = record.get("parted") or {}
    sign = ">" if record.get("passed") is False or parted else "≤"
    text = f"{gap_text(record.get('max_state_gap'))}{suffix}" + (f" {sign} {bound:g}{suffix}" if bound is not None
                                                                 else "")
    return text + (f", parted at step {parted.get('step')}" if parted else "")


def on_path_text(record: dict[str, Any]) -> str:
    """``✓ 1.4e-03 on 38 runs`` (PyTorch on the artifact's observations: its largest action difference), or ``—``.

    >>> on_path_text({"on_path": {"passed": False, "max_abs_diff": 0.5, "runs": 8}}), on_path_text({})
    ('✗ 0.500 on 8 runs', '—')
    """
    on_path = record.get("on_path") or {}
    if not on_path:
        return "—"
    mark = "✓" if on_path.get("passed") else "✗"
    return f"{mark} {gap_text(on_path.get('max_abs_diff'))} on {on_path.get('runs')} runs"


def _success_text(record: dict[str, Any], episodes: list[dict[str, Any]]) -> str:
    """``1 / 0 of 2``: the episodes that succeeded with PyTorch and with the artifact (the record's counts)."""
    success = record.get("success")
    outcomes = [e["success"] for e in episodes if isinstance(e.get("success"), dict)]
    if not isinstance(success, dict):
        if not outcomes:
            return ""
        success = {side: sum(bool(o.get(side)) for o in outcomes) for side in ("torch", "artifact")}
    return f"{success.get('torch', 0)} / {success.get('artifact', 0)}" + (f" of {len(episodes)}" if episodes else "")


def _mean_rewards(episodes: list[dict[str, Any]]) -> str:
    sums = {side: [number((e.get("reward") or {}).get(side)) for e in episodes] for side in ("torch", "artifact")}
    means = {side: [v for v in values if v is not None] for side, values in sums.items()}
    if not means["torch"] or not means["artifact"]:
        return ""
    return " / ".join(f"{sum(values) / len(values):.2f}" for values in means.values())


def _rollout_caption(name: str, record: dict[str, Any], tracked: str, unit: str) -> str:
    episodes = [e for e in record.get("episodes") or [] if isinstance(e, dict)]
    if not episodes:
        return f"no episode recorded for {name}"
    steps = sorted({as_int((e.get("steps") or {}).get("artifact", len(e.get("action_gap") or [])))
                    for e in episodes})
    length = f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
    text = (f"{len(episodes)} episode{'s' if len(episodes) != 1 else ''} of {length} steps, PyTorch (solid) and "
            f"{name} (dashed) from the same seeds")
    text += f"; driver: {record['driver']}" if record.get("driver") else ""
    worst = record.get("worst") or {}
    text += f". Max {tracked} gap {_gap_vs_bound(record, unit)}"
    text += f" ({record['max_gap_source']})" if record.get("max_gap_source") else ""
    text += f" at step {worst.get('step')} of seed {worst.get('seed')}" if worst and record.get("max_state_gap") else ""
    text += f"; max action gap {gap_text(record.get('max_action_gap'))}" if "max_action_gap" in record else ""
    success = _success_text(record, episodes)
    text += f"; success PyTorch {success.replace(' / ', ', artifact ')}" if success else ""
    zero = not any(positive_steps(e.get(key))[0] for e in episodes for key in ("state_gap", "action_gap"))
    text += (". Log axes: a gap of 0 cannot be drawn on them" + (
        ", and here every gap is 0: the artifact's run is bit-identical to PyTorch's." if zero else
        " (step 0 is always 0: both runs start from the same state; a bit-identical step leaves a hole in the line)."))
    return text


def sweep_rollout_section(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                           labels: dict[str, str], links: dict[str, str]) -> str:
    """``sweep-rollout``: the jobs' state gaps per step in one figure, and ``rollout-table``."""
    entries = sweep_rollout_entries(rows, results)
    figure = sweep_rollout_figure(rows, results, labels)
    tracked = next((str(r.get("tracked")) for _, r, _ in entries if r.get("tracked")), "tracked state")
    parts = ['<section id="sweep-rollout"><h2>Rollout: closed loop against PyTorch, per job and format</h2>',
             figure_html("fig-sweep-rollout", figure,
                         f"Per step, the {tracked}'s distance from PyTorch's run (the largest over the job's "
                         "episodes) on a log axis, one colour per job and format; the dashed line in the same colour "
                         "is its bound. A gap of 0 cannot be drawn on a log axis (step 0 always is: both runs start "
                         "from the same state); a run whose every gap is 0 is bit-identical to PyTorch's and is only "
                         "named in the legend. ✗ in the legend, and a red ✕ at its furthest step: beyond its bound.")]
    head = ["job", "format", "precision", "status", "max state gap vs bound", "bound from", "max action gap",
            "success (PyTorch / artifact)", "episodes × steps"]
    lines = ['<div class="scroll"><table id="rollout-table"><thead><tr>'
             + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for row, rollout, record in entries:
        passed = record.get("passed") is not False
        job = escape(labels.get(str(row["job"]), row["job"])).replace(",", ",<wbr>")
        if row["job"] in links:
            job = f'<a href="{escape(links[row["job"]])}">{job}</a>'
        episodes = [e for e in record.get("episodes") or [] if isinstance(e, dict)]
        cells = [(job, "job"), (escape(row["format"]), ""), (escape(record.get("precision")), ""),
                 (pass_badge(passed), ""),
                 (escape(_gap_vs_bound(record, str(rollout.get("unit") or ""))), "num nowrap"),
                 (escape(record.get("max_gap_source")), ""), (escape(gap_text(record.get("max_action_gap"))), "num"),
                 (escape(_success_text(record, episodes)), "num"),
                 (escape(f"{len(episodes)} × {rollout.get('steps', '?')}"), "num")]
        lines.append(f'<tr class="{"" if passed else "failed"}">' + "".join(
            f"<td{classes(kind)}>{text}</td>" for text, kind in cells) + "</tr>")
    lines.append("</tbody></table></div></section>")
    return "\n".join(parts + lines)
