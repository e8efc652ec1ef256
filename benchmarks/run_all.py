"""Run the five benchmarks side by side in one run; print Markdown tables, write results.json beside this file.

    .venv/bin/python benchmarks/run_all.py              # ~45 min on 2 cores
    .venv/bin/python benchmarks/run_all.py --quick      # 1 round each, ~20 min

What each measures and its target: see RESULTS.md. Nothing here is a unit test: timings depend on
the machine and its load, so they are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import config_commands
import edge_speed
import overhead
import runtime_speed
import sweep_cost
from _common import load_average, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of everything")
    args = parser.parse_args()
    rounds = 1 if args.quick else None
    started = time.perf_counter()
    results: dict[str, object] = {"machine": machine()}
    print(f"machine: {json.dumps(results['machine'])}", flush=True)

    results["config_commands"] = config_commands.measure(rounds or 10)
    print("\n## (4) config-only commands\n" + config_commands.table(results["config_commands"]), flush=True)
    results["overhead"] = [overhead.measure(policy, rounds or count) for policy, count in (("dummy", 5), ("act", 3))]
    print("\n## (1) tool overhead\n" + overhead.table(results["overhead"]), flush=True)
    results["sweep_cost"] = [sweep_cost.measure(rounds or 3, policy) for policy in ("dummy", "act")]
    print("\n## (3) sweep cost\n" + sweep_cost.table(results["sweep_cost"]), flush=True)
    results["runtime_speed"] = runtime_speed.measure(rounds or 5)
    print("\n## (2) exported speed\n" + runtime_speed.table(results["runtime_speed"]), flush=True)
    results["edge_speed"] = edge_speed.measure(rounds or 3)
    print("\n## (5) edge formats\n" + edge_speed.table(results["edge_speed"]), flush=True)

    results["load_average_after"] = load_average()
    results["minutes"] = round((time.perf_counter() - started) / 60, 1)
    out = Path(__file__).with_name("results.json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{results['minutes']} min; load average {results['machine']['load_average']} before, "  # type: ignore[index]
          f"{results['load_average_after']} after; {out}")


if __name__ == "__main__":
    main()
