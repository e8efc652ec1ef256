"""(1) What report.html costs a job: writing it from a job's result.json in a fresh process that already
holds what a job holds (torch, onnx, onnxruntime imported), wall time and added peak memory; with
``--before-src`` the same from another source tree (``PYTHONPATH``), rounds alternating.

    python benchmarks/report_cost.py --rounds 7 --before-src /tmp/before/src

The result.json is a real dummy job's (made once, with latency, so both figures are drawn). Each
child imports torch, onnx, onnxruntime and the job's module (as a job has them when it ends), reads
its peak RSS, then times importing the report module and writing report.html (what the job pays at
its end, in ``ExportJob._html_report``), and reads its peak RSS again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from _common import APP, PYTHON, REPO, check, median, run_child

CHILD = """
import json, resource, sys, time
from pathlib import Path
import onnx, onnxruntime, torch  # what a job holds when it writes its report
import getiaction_export.job  # the app's modules a job has imported by then
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
from getiaction_export.report.html import write_job_report
write_job_report(Path(sys.argv[2]), json.loads(Path(sys.argv[1]).read_text()))
seconds = time.perf_counter() - started
added = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"s": seconds, "added_mb": added, "plotting": sorted(
    m for m in sys.modules if m.split(".")[0] in ("matplotlib", "PIL", "pyparsing", "kiwisolver"))[:3]}))
"""


def job_result(folder: Path) -> Path:
    """A real dummy job's result.json (ONNX, latency measured so the page has both figures)."""
    argv = [*APP, "format=onnx", "policy=dummy", "format.runtime_check=false", f"hydra.run.dir={folder}"]
    check(run_child(argv, cwd=REPO), "dummy job")
    return folder / "result.json"


def measure(rounds: int, before_src: Path | None = None) -> dict[str, object]:
    sides = {"after": None, **({"before": str(before_src)} if before_src else {})}
    samples: dict[str, list[dict[str, object]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        result = job_result(Path(tmp) / "job")
        for index in range(rounds):
            for side in list(sides) if index % 2 == 0 else list(sides)[::-1]:
                out = Path(tmp) / f"{side}-{index}"
                out.mkdir()
                env = {"PYTHONPATH": sides[side]} if sides[side] else None
                done = subprocess.run([PYTHON, "-c", CHILD, str(result), str(out)], cwd=REPO, capture_output=True,
                                      text=True, check=True, env={**os.environ, **(env or {})})
                samples[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {side: {"s": median([float(s["s"]) for s in runs]),  # type: ignore[arg-type]
                   "added_mb": median([float(s["added_mb"]) for s in runs]),  # type: ignore[arg-type]
                   "plotting": runs[0]["plotting"], "samples": runs} for side, runs in samples.items()}


def table(results: dict[str, dict[str, object]]) -> str:
    lines = ["| code | write report.html (import + render) s | peak memory added MB | plotting modules loaded |",
             "|---|---|---|---|"]
    lines += [f"| {side} | **{r['s']:.3f}** | {r['added_mb']:.0f} | {', '.join(r['plotting']) or 'none'} |"  # type: ignore[arg-type]
              for side, r in results.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before-src", type=Path, help="also from this source tree (PYTHONPATH)")
    args = parser.parse_args()
    print(table(measure(args.rounds, args.before_src)))


if __name__ == "__main__":
    main()
