"""Shared helpers of the benchmark scripts: child processes with wall time and peak memory, medians,
and a description of the machine. Standard library only (time.perf_counter, subprocess, os.wait4).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
APP = [PYTHON, "-m", "getiaction_export"]


@dataclass
class Child:
    """One finished child process: wall seconds, peak resident memory (MB), output, how busy the
    machine was meanwhile (mean count of runnable threads, ours included, from /proc/loadavg), and
    the CPU seconds it used (user + system, its children included: less sensitive to a busy machine
    than wall time, though not immune)."""

    seconds: float
    peak_mb: float
    returncode: int
    stdout: str
    stderr: str
    runnable: float = 0.0
    cpu_s: float = 0.0


def run_child(argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> Child:
    """Run ``argv`` to completion; wall time from fork to exit, peak RSS from the kernel (wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen(list(argv), cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    (stdout, stderr), runnable = _drain(process)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Child(seconds, usage.ru_maxrss / 1024.0, process.returncode, stdout, stderr, runnable,
                 usage.ru_utime + usage.ru_stime)


def _drain(process: subprocess.Popen[str]) -> tuple[tuple[str, str], float]:
    """Read both pipes to EOF without reaping the child (wait4 must see it to report its rusage),
    sampling the machine's runnable-thread count every 20 ms meanwhile."""
    import threading

    chunks: dict[str, str] = {}

    def read(name: str, stream: object) -> None:
        chunks[name] = stream.read()  # type: ignore[attr-defined]

    pipes = (("out", process.stdout), ("err", process.stderr))
    threads = [threading.Thread(target=read, args=pipe) for pipe in pipes]
    for thread in threads:
        thread.start()
    counts = []
    while any(thread.is_alive() for thread in threads):
        counts.append(runnable_now())
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    return (chunks["out"], chunks["err"]), (sum(counts) / len(counts) if counts else 0.0)


def runnable_now() -> int:
    """Threads runnable on the machine right now (the 4th field of /proc/loadavg, minus this sampler)."""
    try:
        return max(0, int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
    except (OSError, IndexError, ValueError):
        return 0


def check(child: Child, what: str) -> Child:
    if child.returncode != 0:
        raise SystemExit(f"{what} failed (exit {child.returncode}):\n{child.stdout[-2000:]}\n{child.stderr[-2000:]}")
    return child


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, object]:
    """nproc, CPU model, memory, Python and the package versions that matter here."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"
    except OSError:
        pass
    versions = subprocess.run(
        [PYTHON, "-c", "import json; from getiaction.export.versions import package_versions; "
         "import importlib.metadata as m; v = package_versions(); "
         "v.update({p: m.version(p) for p in ('openvino', 'onnxslim', 'hydra-core')}); print(json.dumps(v))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": memory, "kernel": platform.release(),
            "python": platform.python_version(), "versions": json.loads(versions), "load_average": load_average()}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}x"
