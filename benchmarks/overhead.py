"""(1) Tool overhead: ``python -m getiaction_export format=onnx`` (latency off) vs bare_export.py doing
the same work, for policy=dummy and policy=act; wall time and peak memory, rounds alternating.

    python benchmarks/overhead.py --rounds 5
    python benchmarks/overhead.py --rounds 7 --policies dummy --before-src /tmp/before/src

Every round runs each side once, in an order that rotates from round to round (so no side always
runs first, on a colder page cache, or right after the same neighbour). The sides:

- ``tool``: the command (it must write report.html and manifest.json beside result.json);
- ``bare``: benchmarks/bare_export.py, the same work by hand (the target's baseline);
- ``bare_freeze``: the same script ending as the tool's CLI ends (``gc.freeze()`` before exit, so
  Python's teardown does not walk torch's objects): what the tool costs beyond that one choice;
- ``before`` (with ``--before-src``): the tool from another source tree (``PYTHONPATH``), e.g. the
  code before a change, for a before/after measured in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import APP, PYTHON, REPO, check, median, run_child

TARGET = 1.10


def tool_args(policy: str, folder: Path, extra: list[str]) -> list[str]:
    return [*APP, "format=onnx", f"policy={policy}", "format.latency=false", *extra, f"hydra.run.dir={folder}"]


def app_switches() -> list[str]:
    """Work the bare script does not do and the tool does only on request: switch it off where it exists."""
    from getiaction_export.config.schemas import OnnxFormatSchema

    fields = OnnxFormatSchema.__dataclass_fields__
    return ["format.runtime_check=false"] if "runtime_check" in fields else []


def sides(policy: str, before_src: Path | None) -> list[str]:
    return ["tool", "bare", "bare_freeze", *(["before"] if before_src else [])]


def run_side(side: str, policy: str, folder: Path, extra: list[str], before_src: Path | None) -> dict[str, object]:
    """One run of ``side`` into ``folder``: seconds, peak MB, load, and for the tool its in-process timings."""
    env = None
    if side in ("tool", "before"):
        argv = tool_args(policy, folder, extra)
        env = {"PYTHONPATH": str(before_src)} if side == "before" else None
    else:
        argv = [PYTHON, str(REPO / "benchmarks" / "bare_export.py"), "--policy", policy, "--out", str(folder),
                *(["--freeze-exit"] if side == "bare_freeze" else [])]
    child = check(run_child(argv, cwd=REPO, env=env), side)
    sample: dict[str, object] = {"s": child.seconds, "mb": child.peak_mb, "runnable": child.runnable,
                                 "cpu_s": child.cpu_s}
    if side in ("tool", "before"):
        missing = [name for name in ("result.json", "report.html", "manifest.json") if not (folder / name).is_file()]
        if missing:
            raise SystemExit(f"{side}: {', '.join(missing)} not written in {folder}")
        sample["timings"] = json.loads((folder / "result.json").read_text()).get("timings")
    return sample


def measure(policy: str, rounds: int, before_src: Path | None = None) -> dict[str, object]:
    extra = app_switches()
    names = sides(policy, before_src)
    samples: dict[str, list[dict[str, object]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        for index in range(rounds):
            order = names[index % len(names):] + names[:index % len(names)]
            if index % 2:
                order.reverse()
            for side in order:
                samples[side].append(run_side(side, policy, Path(tmp) / str(index) / side, extra, before_src))
    seconds = {name: median([float(s["s"]) for s in runs]) for name, runs in samples.items()}  # type: ignore[arg-type]
    peak = {name: median([float(s["mb"]) for s in runs]) for name, runs in samples.items()}  # type: ignore[arg-type]
    cpu = {name: median([float(s["cpu_s"]) for s in runs]) for name, runs in samples.items()}  # type: ignore[arg-type]

    def paired(side: str, base: str, key: str = "s") -> float:
        """The median over the rounds of each round's ratio (both ran in the same round, side by side)."""
        return median([float(a[key]) / float(b[key])  # type: ignore[arg-type]
                       for a, b in zip(samples[side], samples[base], strict=True)])

    result: dict[str, object] = {
        "policy": policy, "rounds": rounds, "tool_switches": extra,
        "tool_s": seconds["tool"], "bare_s": seconds["bare"], "time_ratio": seconds["tool"] / seconds["bare"],
        "paired_time_ratio": paired("tool", "bare"), "cpu_s": cpu, "cpu_ratio": cpu["tool"] / cpu["bare"],
        "tool_peak_mb": peak["tool"], "bare_peak_mb": peak["bare"], "memory_ratio": peak["tool"] / peak["bare"],
        "bare_freeze_s": seconds["bare_freeze"], "bare_freeze_peak_mb": peak["bare_freeze"],
        "time_ratio_vs_bare_freeze": seconds["tool"] / seconds["bare_freeze"],
        "paired_time_ratio_vs_bare_freeze": paired("tool", "bare_freeze"),
        "cpu_ratio_vs_bare_freeze": cpu["tool"] / cpu["bare_freeze"],
        "runnable": median([float(s["runnable"]) for runs in samples.values() for s in runs]),  # type: ignore[arg-type]
        "samples": samples,
    }
    if before_src:
        result.update({"before_s": seconds["before"], "before_peak_mb": peak["before"],
                       "before_time_ratio": seconds["before"] / seconds["bare"],
                       "before_paired_time_ratio": paired("before", "bare"),
                       "before_cpu_ratio": cpu["before"] / cpu["bare"],
                       "before_memory_ratio": peak["before"] / peak["bare"]})
    return result


def table(results: list[dict[str, object]]) -> str:
    lines = ["| policy | rounds | side | wall s | / bare (medians) | / bare (paired) | CPU s | CPU / bare | peak MB "
             "| memory / bare |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        samples: dict[str, list[dict[str, float]]] = r["samples"]  # type: ignore[assignment]
        cpu: dict[str, float] = r["cpu_s"]  # type: ignore[assignment]
        for side, runs in samples.items():
            wall, bare = median([s["s"] for s in runs]), median([s["s"] for s in samples["bare"]])
            paired = median([a["s"] / b["s"] for a, b in zip(runs, samples["bare"], strict=True)])
            mb, bare_mb = median([s["mb"] for s in runs]), median([s["mb"] for s in samples["bare"]])
            bold = "**" if side == "tool" else ""
            lines.append(f"| {r['policy']} | {r['rounds']} | {side} | {wall:.2f} | {bold}{wall / bare:.3f}x{bold} "
                         f"| {paired:.3f}x | {cpu[side]:.2f} | {cpu[side] / cpu['bare']:.3f}x | {mb:.0f} | "
                         f"{bold}{mb / bare_mb:.3f}x{bold} |")
        lines.append(f"\n{r['policy']}: tool / bare_freeze {r['time_ratio_vs_bare_freeze']:.3f}x (paired "
                     f"{r['paired_time_ratio_vs_bare_freeze']:.3f}x, CPU {r['cpu_ratio_vs_bare_freeze']:.3f}x); "
                     f"median runnable threads {r['runnable']:.1f}\n")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--policies", default="dummy,act")
    parser.add_argument("--before-src", type=Path, help="also run the tool from this source tree (PYTHONPATH)")
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()
    results = [measure(policy, args.rounds, args.before_src) for policy in args.policies.split(",")]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
