"""Peak memory of ``export_onnx`` on a large plain MLP, this checkout's code against another checkout's, side by side.

Each run is one child process (``--child``) that puts a checkout's ``src`` first on ``sys.path``, builds an MLP of
``--width`` x ``--width`` float32 Linear layers (``--layers`` of them; seeded, no download), then calls
``getiaction.export.onnx.export_onnx`` into a temporary folder and reports peak RSS (``resource.getrusage``, the
child's own maximum, so the model's parameters are in every figure), the RSS once the model was built, the wall time
of the export, and the files written (sizes; whether the weights went to an external data file). The two sides
alternate within each round and swap order every other round (the machine is shared; medians over rounds).

    .venv/bin/python benchmarks/export_memory.py --old /tmp/old/src                  # side by side, both exporters
    .venv/bin/python benchmarks/export_memory.py --layers 40 --sides new --exporters torchscript   # > 2 GB model

``git worktree add --detach /tmp/old <commit>`` makes the ``--old`` checkout. Results: ``benchmarks/RESULTS.md``
section 9 (and ``export_memory.json`` beside this file).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NEW_SRC = HERE.parent / "src"


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, args.src)
    import torch
    from torch import nn

    import getiaction
    from getiaction.export.onnx import export_onnx

    assert Path(getiaction.__file__).resolve().is_relative_to(Path(args.src).resolve()), getiaction.__file__
    torch.manual_seed(0)
    torch.set_num_threads(2)

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            with torch.no_grad():
                self.layers = nn.ModuleList()
                for _ in range(args.layers):
                    layer = nn.Linear(args.width, args.width, device="meta")
                    layer.to_empty(device="cpu")
                    layer.weight.normal_(0, args.width ** -0.5)
                    layer.bias.zero_()
                    self.layers.append(layer)

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            x = batch["state"]
            for layer in self.layers:
                x = torch.relu(layer(x))
            return x

    model = MLP().eval()
    params = sum(p.numel() for p in model.parameters())
    built_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with tempfile.TemporaryDirectory(prefix="export-memory-", dir=args.tmp) as folder:
        path = Path(folder) / "mlp.onnx"
        started = time.perf_counter()
        error = None
        try:
            sample = {"state": torch.randn(2, args.width)}
            if args.bare:  # torch.onnx.export alone, to a file: what the exporter costs by itself
                with torch.no_grad():
                    if args.exporter == "dynamo":
                        torch.onnx.export(model, (), str(path), kwargs={"batch": sample}, opset_version=args.opset,
                                          dynamo=True, optimize=True, external_data=True,
                                          dynamic_shapes={"batch": {"state": {0: torch.export.Dim("batch")}}})
                    else:
                        torch.onnx.export(model, (sample, {}), str(path), opset_version=args.opset, dynamo=False,
                                          input_names=["state"], dynamic_axes={"state": {0: "batch"}})
            else:
                export_onnx(model, path, {"state": sample["state"][:1]}, opset_version=args.opset,
                            exporter=args.exporter)
        except Exception as caught:  # the old code refuses > 2 GB: recorded, not raised
            error = f"{type(caught).__name__}: {str(caught).splitlines()[0][:200]}"
        seconds = time.perf_counter() - started
        files = {p.name: p.stat().st_size for p in sorted(Path(folder).iterdir())}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"params": params, "param_bytes": params * 4, "built_rss": built_rss, "peak_rss": peak,
                      "export_s": round(seconds, 2), "files": files, "error": error}))


def run_side(src: str, exporter: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", *(["--bare"] if src == "bare" else []),
               "--src", str(NEW_SRC) if src == "bare" else src, "--exporter", exporter, "--layers", str(args.layers),
               "--width", str(args.width), "--opset", str(args.opset), "--tmp", args.tmp]
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if completed.returncode != 0:
        return {"error": f"exit {completed.returncode}: {completed.stderr.strip().splitlines()[-1:]}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", default=str(NEW_SRC))
    parser.add_argument("--old", default="/tmp/old/src", help="the other checkout's src folder")
    parser.add_argument("--sides", default="old,new", help="old, new and/or bare (torch.onnx.export alone)")
    parser.add_argument("--exporter", default="torchscript")
    parser.add_argument("--exporters", default="torchscript,dynamo")
    parser.add_argument("--layers", type=int, default=24, help="24 x 4096^2 = 403 M parameters, 1.6 GB")
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    parser.add_argument("--json", default=str(HERE / "export_memory.json"))
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sources = {"old": args.old, "new": str(NEW_SRC), "bare": "bare"}
    sides = args.sides.split(",")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for exporter in args.exporters.split(","):
        runs[exporter] = {side: [] for side in sides}
        for round_index in range(args.rounds):
            for side in sides if round_index % 2 == 0 else sides[::-1]:
                record = run_side(sources[side], exporter, args)
                record["load"] = os.getloadavg()[0]
                runs[exporter][side].append(record)
                print(exporter, side, json.dumps(record), flush=True)
    from getiaction_export.machine import cpu_line, describe_cpu

    summary: dict[str, Any] = {"cpu": cpu_line(describe_cpu()), "layers": args.layers, "width": args.width,
                               "opset": args.opset, "runs": runs, "median": {}}
    for exporter, by_side in runs.items():
        for side, records in by_side.items():
            ok = [r for r in records if "peak_rss" in r]
            if ok:
                summary["median"][f"{exporter}/{side}"] = {
                    "peak_gb": round(statistics.median(r["peak_rss"] for r in ok) / 1e9, 2),
                    "built_gb": round(statistics.median(r["built_rss"] for r in ok) / 1e9, 2),
                    "export_s": round(statistics.median(r["export_s"] for r in ok), 1),
                    "files": ok[-1]["files"], "error": ok[-1]["error"],
                }
        if {"old", "new"} <= set(by_side) and f"{exporter}/old" in summary["median"] \
                and f"{exporter}/new" in summary["median"]:
            old, new = summary["median"][f"{exporter}/old"], summary["median"][f"{exporter}/new"]
            summary["median"][f"{exporter}/ratio"] = round(new["peak_gb"] / old["peak_gb"], 3)
    print(json.dumps(summary["median"], indent=1))
    print(summary["cpu"])
    Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
