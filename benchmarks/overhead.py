"""(1) Tool overhead: ``python -m getiaction_export format=onnx`` (latency off) vs bare_export.py doing
the same work, for policy=dummy and policy=act; wall time and peak memory, rounds alternating.

    python benchmarks/overhead.py --rounds 5
"""

from __future__ import annotations

import argparse
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


def measure(policy: str, rounds: int) -> dict[str, object]:
    extra = app_switches()
    samples: dict[str, list[tuple[float, float]]] = {"tool": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        for index in range(rounds):
            folder = Path(tmp) / str(index)
            # alternate the order too, so neither side always runs on a warmer page cache
            order = ("tool", "bare") if index % 2 == 0 else ("bare", "tool")
            for side in order:
                if side == "tool":
                    child = check(run_child(tool_args(policy, folder / "tool", extra), cwd=REPO), "tool")
                else:
                    argv = [PYTHON, str(REPO / "benchmarks" / "bare_export.py"), "--policy", policy,
                            "--out", str(folder / "bare")]
                    child = check(run_child(argv, cwd=REPO), "bare script")
                samples[side].append((child.seconds, child.peak_mb))
    tool_s, bare_s = (median([s for s, _ in samples[k]]) for k in ("tool", "bare"))
    tool_mb, bare_mb = (median([m for _, m in samples[k]]) for k in ("tool", "bare"))
    return {"policy": policy, "rounds": rounds, "tool_switches": extra,
            "tool_s": tool_s, "bare_s": bare_s, "time_ratio": tool_s / bare_s,
            "tool_peak_mb": tool_mb, "bare_peak_mb": bare_mb, "memory_ratio": tool_mb / bare_mb,
            "samples": samples}


def table(results: list[dict[str, object]]) -> str:
    lines = ["| policy | tool s | bare s | time ratio | tool peak MB | bare peak MB | memory ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['policy']} | {r['tool_s']:.2f} | {r['bare_s']:.2f} | **{r['time_ratio']:.3f}x** | "
                     f"{r['tool_peak_mb']:.0f} | {r['bare_peak_mb']:.0f} | **{r['memory_ratio']:.3f}x** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--policies", default="dummy,act")
    args = parser.parse_args()
    print(table([measure(policy, args.rounds) for policy in args.policies.split(",")]))


if __name__ == "__main__":
    main()
