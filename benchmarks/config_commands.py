"""(4) Config-only commands: ``--cfg job`` and ``--help`` wall time (no torch import on that path),
against ``python -c "import torch"`` for scale; ``--before-src`` also runs both commands from
another source tree (``PYTHONPATH``), for a before/after measured in the same rounds.

    python benchmarks/config_commands.py --runs 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import APP, PYTHON, REPO, check, median, run_child

TARGET_S = 0.5
COMMANDS = {"--cfg job": [*APP, "--cfg", "job"], "--help": [*APP, "--help"],
            "python -c 'import torch' (scale)": [PYTHON, "-c", "import torch"]}


def measure(runs: int, before_src: Path | None = None) -> dict[str, dict[str, float]]:
    commands = {name: (argv, None) for name, argv in COMMANDS.items()}
    if before_src:
        commands |= {f"{name} (before)": (argv, {"PYTHONPATH": str(before_src)})
                     for name, argv in COMMANDS.items() if name.startswith("--")}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    runnable: list[float] = []
    for index in range(runs):
        order = list(commands) if index % 2 == 0 else list(commands)[::-1]
        for name in order:
            argv, env = commands[name]
            child = check(run_child(argv, cwd=REPO, env=env), name)
            samples[name].append(child.seconds)
            runnable.append(child.runnable)
    results = {name: {"median_s": median(values), "min_s": min(values), "runs": runs}
               for name, values in samples.items()}
    results["_load"] = {"runnable": median(runnable)}
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| command | median s | min s |", "|---|---|---|"]
    lines += [f"| `{name}` | **{r['median_s']:.2f}** | {r['min_s']:.2f} |" for name, r in results.items()
              if not name.startswith("_")]
    if "_load" in results:
        lines.append(f"\nmedian runnable threads during the runs: {results['_load']['runnable']:.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before-src", type=Path, help="also run the commands from this source tree (PYTHONPATH)")
    args = parser.parse_args()
    print(table(measure(args.runs, args.before_src)))


if __name__ == "__main__":
    main()
