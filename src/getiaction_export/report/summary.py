"""The sweep's summary at its root: ``summary.md``, ``summary.json`` (the table of :mod:`.table`), ``report.html``.

``summary.json`` also holds the sweep's exit code, which the CLI exits with. It reads each job's
``result.json``, so it works the same whichever Hydra launcher ran the jobs (in-process, joblib,
Ray, Slurm). ``SweepSummary`` is the Hydra callback that writes it when a multirun ends.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from getiaction.export.atomic import atomic_write_text
from getiaction_export.machine import shared_machine
from getiaction_export.report.table import job_machines, job_rows, machine_lines, markdown_table, short_labels

log = logging.getLogger("getiaction_export")

SUMMARY_FILE = "summary.json"


def summarize(sweep_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """Write ``summary.md``/``summary.json`` for every job under ``sweep_dir``; return rows and exit code."""
    sweep_dir = Path(sweep_dir)
    job_dirs = sorted({p.parent for p in sweep_dir.rglob(".hydra") if p.parent != sweep_dir})
    collected = [job_rows(job_dir, sweep_dir) for job_dir in job_dirs]
    collected.sort(key=lambda item: (item[2], item[0][0]["job"]))
    rows = [row for job, _, _ in collected for row in job]
    labels = short_labels(sorted({row["job"] for row in rows}))
    for row in rows:  # what varies between the jobs; the full overrides stay in each job's result.json
        row["label"] = labels[row["job"]]
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
            from getiaction_export.report.html import sweep_results, write_sweep_report

            write_sweep_report(sweep_dir, rows, sweep_results(sweep_dir, rows))
        except Exception as error:  # summary.json holds the exit code; the page only shows it
            log.warning("report.html not written at the sweep root: %s", error)
        jobs = {row["job"]: row["status"] == "ok" for row in rows}
        for row in rows:
            jobs[row["job"]] = jobs[row["job"]] and row["status"] == "ok"
        ok = sum(jobs.values())
        machine = "".join(line + "\n" for line in machine_lines(job_machines(sweep_dir, list(jobs))))
        print(f"\n{ok}/{len(jobs)} jobs ok — {sweep_dir / 'summary.md'}\n{machine}{markdown_table(rows)}", flush=True)
