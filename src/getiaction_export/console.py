"""What a job prints: one ``[stage] ✓ ...`` line per finished stage, with its time; a spinner on a terminal.

The job's first stage (``prepare``) starts with one line naming the machine its figures are taken on
(``[prepare] · machine: AMD EPYC, x86_64, 2 cores, AVX2 ...``, :func:`getiaction_export.machine.cpu_line`).

A failure prints its ``[stage] ✗ ...`` line to the job's log (stdout) and the same line to
stderr, so a script that captures only stderr still learns why a job failed.

Example:
    >>> lines = []
    >>> console = Console(lines.append)
    >>> timings = {}
    >>> with console.stage("build", timings):
    ...     pass
    >>> console.done("build", "Dummy from config", timings["build"])
    >>> lines[0].startswith("[build] ✓ Dummy from config  0.")
    True
    >>> console.machine({"model": "AMD EPYC", "arch": "x86_64", "cores": 2, "isa": ["avx2"], "isa_cap": "AVX2"})
    >>> console.machine()  # said once
    >>> lines[1:]
    ['[prepare] · machine: AMD EPYC, x86_64, 2 cores, AVX2 (ISA capped at AVX2 by ONEDNN_MAX_CPU_ISA)']
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("getiaction_export")

LONG_STAGES = ("build", "export", "verify", "latency")
"""Stages that get a live spinner on a terminal."""


class Console:
    """Stage lines for one job; ``echo`` defaults to the app's logger (console + job log)."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.echo = echo or log.info
        self._machine_said = False

    @contextmanager
    def stage(self, name: str, *timings: dict[str, float]) -> Iterator[None]:
        """Time the block into every mapping of ``timings`` (summed when a stage runs once per format)."""
        if name == "prepare":  # the job's first stage: say once which machine its figures come from
            self.machine()
        started = time.perf_counter()
        with _progress(name):
            yield
        elapsed = time.perf_counter() - started
        for record in timings:
            record[name] = round(record.get(name, 0.0) + elapsed, 4)

    def machine(self, cpu: dict[str, Any] | None = None) -> None:
        """Say once which CPU the job runs on (``cpu``: a :func:`getiaction_export.machine.describe_cpu` record)."""
        if self._machine_said:
            return
        self._machine_said = True
        from getiaction_export.machine import cpu_line, describe_cpu

        self.note("prepare", f"machine: {cpu_line(describe_cpu() if cpu is None else cpu)}", "·")

    def done(self, name: str, message: str, seconds: float | None = None) -> None:
        timing = f"  {seconds:.2f} s" if seconds is not None else ""
        self.echo(f"[{name}] ✓ {message}{timing}")

    def note(self, name: str, message: str, mark: str = "!") -> None:
        """A warning (``!``) or a skipped step (``-``): does not fail the job."""
        self.echo(f"[{name}] {mark} {message}")

    def failed(self, name: str | None, message: str) -> None:
        line = f"[{name}] ✗ {message}"
        self.echo(line)
        print(line, file=sys.stderr, flush=True)


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar of ``total`` steps on a terminal; yields the function that advances it by one.

    Without a terminal (logs, CI) nothing is drawn and advancing costs one call.
    """
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console as RichConsole
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=RichConsole(stderr=True), transient=True) as progress:
        task = progress.add_task(escape(label), total=total)  # "[rollout]" is not a style
        yield lambda: progress.advance(task)


@contextmanager
def _progress(stage: str) -> Iterator[None]:
    """A live spinner for long stages on a terminal (rich); nothing extra in logs and CI."""
    if stage not in LONG_STAGES or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console as RichConsole

    with RichConsole(stderr=True).status(f"[{stage}] running…", spinner="dots"):
        yield
