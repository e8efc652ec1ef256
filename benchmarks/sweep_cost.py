"""(3) Sweep cost: a 6-opset sweep through the tool vs the same six bare exports in one process
(one import, then export + check + verify per opset), rounds alternating. For policy=dummy every
export takes milliseconds, so the ratio is nearly all per-job fixed cost (Hydra composes each
job's config twice, the pre-flight once more); policy=act is what a real sweep costs.

    python benchmarks/sweep_cost.py --rounds 3 --policies dummy,act
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import APP, PYTHON, REPO, check, median, run_child
from overhead import app_switches

OPSETS = "14,15,16,17,18,20"
TARGET = 1.10


def measure(rounds: int, policy: str = "dummy") -> dict[str, object]:
    samples: dict[str, list[float]] = {"sweep": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for index in range(rounds):
            folder = Path(tmp) / str(index)
            order = ("sweep", "bare") if index % 2 == 0 else ("bare", "sweep")
            for side in order:
                if side == "sweep":
                    argv = [*APP, "-m", "format=onnx", f"policy={policy}", f"format.opset_version={OPSETS}",
                            "format.latency=false", *app_switches(), f"hydra.sweep.dir={folder / 'sweep'}"]
                else:
                    argv = [PYTHON, str(REPO / "benchmarks" / "bare_export.py"), "--policy", policy,
                            "--opsets", OPSETS, "--out", str(folder / "bare")]
                samples[side].append(check(run_child(argv, cwd=REPO), side).seconds)
    sweep_s, bare_s = median(samples["sweep"]), median(samples["bare"])
    return {"policy": policy, "opsets": OPSETS, "rounds": rounds, "sweep_s": sweep_s, "bare_s": bare_s,
            "ratio": sweep_s / bare_s, "samples": samples}


def table(results: list[dict[str, object]]) -> str:
    lines = ["| sweep | tool s | bare exports + one import s | ratio | tool extra per job s |", "|---|---|---|---|---|"]
    for r in results:
        extra = (float(r["sweep_s"]) - float(r["bare_s"])) / len(OPSETS.split(","))  # type: ignore[arg-type]
        lines.append(f"| {r['policy']}, opsets {r['opsets']} | {r['sweep_s']:.2f} | {r['bare_s']:.2f} | "
                     f"**{r['ratio']:.3f}x** | {extra:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policies", default="dummy,act")
    args = parser.parse_args()
    print(table([measure(args.rounds, policy) for policy in args.policies.split(",")]))


if __name__ == "__main__":
    main()
