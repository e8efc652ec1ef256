"""(4) Config-only commands: ``--cfg job`` and ``--help`` wall time (no torch import on that path),
against ``python -c "import torch"`` for scale.

    python benchmarks/config_commands.py --runs 10
"""

from __future__ import annotations

import argparse

from _common import APP, PYTHON, REPO, check, median, run_child

TARGET_S = 0.5
COMMANDS = {"--cfg job": [*APP, "--cfg", "job"], "--help": [*APP, "--help"],
            "python -c 'import torch' (scale)": [PYTHON, "-c", "import torch"]}


def measure(runs: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            samples[name].append(check(run_child(argv, cwd=REPO), name).seconds)
    return {name: {"median_s": median(values), "min_s": min(values), "runs": runs} for name, values in samples.items()}


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| command | median s | min s |", "|---|---|---|"]
    lines += [f"| `{name}` | **{r['median_s']:.2f}** | {r['min_s']:.2f} |" for name, r in results.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    print(table(measure(parser.parse_args().runs)))


if __name__ == "__main__":
    main()
