"""What DDPM as trained costs against DDIM: the same LeRobot Diffusion folder exported both ways, side by side.

A PushT-shaped Diffusion (tests/lerobot's tiny config, or ``--size default``: LeRobot's default
``down_dims`` 512/1024/2048) is saved once with DDPM (LeRobot's default) and exported twice by the
app, alternating, ``--rounds`` times: as trained (the graph draws each step's noise) and with
``policy.noise_scheduler=DDIM`` (the same number of inference steps). Recorded from result.json:
export time, ONNX size and node count, onnxruntime batch-1 latency and PyTorch eager's, and the
job's peak memory; the ratios DDPM / DDIM are per round, then the median.

Run in the LeRobot environment::

    HF_HUB_OFFLINE=1 CI=true ~/.cache/getiaction-export/venv-torch-2.8.0/bin/python benchmarks/ddpm_cost.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import APP, REPO, run_child

FIGURES = ("export_s", "onnx_bytes", "nodes", "runtime_ms", "torch_ms", "peak_mb")


def make_folder(folder: Path, size: str, steps: int) -> Path:
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from tests.lerobot.conftest import save_policy, small_diffusion
    from tests.lerobot.test_lerobot_rollout import pusht_features, pusht_stats

    if size == "default":
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

        inputs, outputs = pusht_features()
        config = DiffusionConfig(input_features=inputs, output_features=outputs, device="cpu", push_to_hub=False,
                                 pretrained_backbone_weights=None, crop_shape=(84, 84), num_inference_steps=steps)
    else:
        config = small_diffusion(*pusht_features(), num_inference_steps=steps)
    return save_policy(DiffusionPolicy, config, folder, pusht_stats())


def export(folder: Path, out: Path, ddim: bool) -> dict[str, float]:
    args = [*APP, "policy=lerobot", f"policy.path={folder}", "format=onnx", "format.opset_version=17",
            f"hydra.run.dir={out}", *(["policy.noise_scheduler=DDIM"] if ddim else [])]
    child = run_child(args, cwd=out.parent)
    if child.returncode != 0:
        raise SystemExit(f"export failed ({'DDIM' if ddim else 'DDPM'}): {child.stderr[-2000:]}")
    result = json.loads((out / "result.json").read_text())
    latency = result.get("latency") or {}
    return {"export_s": result["timings"]["export"], "onnx_bytes": result["artifact_sizes"]["onnx"],
            "nodes": result["onnx"]["nodes"], "runtime_ms": latency.get("runtime_ms"),
            "torch_ms": latency.get("torch_ms"), "peak_mb": child.peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["tiny", "default"], default="tiny")
    parser.add_argument("--steps", type=int, default=10, help="inference steps, the same for both samplers")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "ddpm_cost.json")
    args = parser.parse_args()
    from getiaction_export.machine import cpu_line, describe_cpu

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folder = make_folder(root / "policy", args.size, args.steps)
        rounds = []
        for index in range(args.rounds):
            order = [False, True] if index % 2 == 0 else [True, False]
            runs = {("DDIM" if ddim else "DDPM"): export(folder, root / f"r{index}-{ddim}", ddim) for ddim in order}
            rounds.append(runs)
    ratios = {key: statistics.median(r["DDPM"][key] / r["DDIM"][key] for r in rounds) for key in FIGURES
              if all(r["DDPM"][key] and r["DDIM"][key] for r in rounds)}
    record = {"cpu": cpu_line(describe_cpu()), "size": args.size, "steps": args.steps, "rounds": rounds,
              "ratio_ddpm_over_ddim": {key: round(value, 3) for key, value in ratios.items()}}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["ratio_ddpm_over_ddim"], indent=2))
    print(record["cpu"])


if __name__ == "__main__":
    main()
