"""Real-size LeRobot policies in closed loop (issue 22, item 5): a PushT-shaped LeRobot Diffusion and ACT at
LeRobot's default sizes, each exported by the app and rolled out in gym-pusht against LeRobot's own inference.

The folders are built offline with LeRobot's own classes and random weights (``torch.manual_seed(0)``, no
downloads, ``pretrained_backbone_weights=None``), saved the way lerobot-train saves them (policy, pre- and
post-processor), with the PushT-shaped features and stats of the tests (``tests/lerobot/test_lerobot_rollout.py``
``pusht_features`` / ``pusht_stats``, ``tests/lerobot/conftest.py`` ``save_policy``): state 2, action 2, one
camera ``observation.images.top`` 3x96x96.

- **Diffusion**: LeRobot's ``DiffusionConfig`` defaults (``down_dims`` (512, 1024, 2048), kernel 5, 8 groups,
  resnet18 with group norm, 32 keypoints, n_obs_steps 2, horizon 16, n_action_steps 8) with PushT's crop 84x84
  of 96x96 and the DDIM sampler at ``--diffusion-steps`` inference steps (default 10; LeRobot's default,
  ``num_inference_steps=None``, is ``num_train_timesteps`` = 100).
- **ACT**: LeRobot's ``ACTConfig`` defaults (dim_model 512, 8 heads, feed-forward 3200, 4 encoder layers,
  1 decoder layer, VAE with 4 layers, chunk_size 100, n_action_steps 100, resnet18) with no pretrained backbone.

Each policy is one child that builds its folder (``--build KIND DIR``), then one app job as a child process::

    python -m getiaction_export policy=lerobot policy.path=DIR rollout=pusht format=all \\
        format.formats=[onnx,openvino] format.exporter=torchscript format.opset_version=17 \\
        rollout.episodes=E rollout.steps=S hydra.run.dir=JOB

PyTorch's episodes are LeRobot's pre-processor -> policy -> post-processor (the app's parity reference); each
artifact is driven through physicalai's ``select_action``. Recorded from the job's ``result.json``: parameters,
export time per format, rollout time of PyTorch and of each artifact, steps, max state gap (px) and max action
gap per format, pass/fail; from the child: wall time of the job and its peak RSS (``os.wait4``).

Children run the tree of ``--tree`` (default: this checkout) on ``PYTHONPATH`` (it wins over an editable
install), with the current directory in a temporary folder; the commit measured is recorded.

    HF_HUB_OFFLINE=1 CI=true ~/.cache/getiaction-export/venv-torch-2.8.0/bin/python benchmarks/lerobot_closed_loop.py
    ... benchmarks/lerobot_closed_loop.py --episodes 1 --steps 100 --tree /tmp/bench-wt --keep /tmp/lcl
    ... benchmarks/lerobot_closed_loop.py --report        # print the markdown table of the recorded JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, load_average, run_child

OUT = Path(__file__).with_name("lerobot_closed_loop.json")
POLICIES = ("diffusion", "act")
FORMATS = ("onnx", "openvino")


# ------------------------------------------------------------------------------------------------- build child


def build(kind: str, folder: Path, diffusion_steps: int) -> dict[str, Any]:
    """Build and save one PushT-shaped LeRobot folder at LeRobot's default size (random weights)."""
    from tests.lerobot.conftest import save_policy
    from tests.lerobot.test_lerobot_rollout import pusht_features, pusht_stats

    inputs, outputs = pusht_features()
    common = {"input_features": inputs, "output_features": outputs, "device": "cpu", "push_to_hub": False,
              "pretrained_backbone_weights": None}
    if kind == "diffusion":
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

        config = DiffusionConfig(**common, crop_shape=(84, 84), noise_scheduler_type="DDIM",
                                 num_inference_steps=diffusion_steps)
        cls: type = DiffusionPolicy
        settings = {name: getattr(config, name) for name in (
            "n_obs_steps", "horizon", "n_action_steps", "down_dims", "kernel_size", "n_groups",
            "diffusion_step_embed_dim", "vision_backbone", "crop_shape", "spatial_softmax_num_keypoints",
            "noise_scheduler_type", "num_train_timesteps", "num_inference_steps")}
    else:
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy

        config = ACTConfig(**common)
        cls = ACTPolicy
        settings = {name: getattr(config, name) for name in (
            "dim_model", "n_heads", "dim_feedforward", "n_encoder_layers", "n_decoder_layers", "use_vae",
            "latent_dim", "n_vae_encoder_layers", "chunk_size", "n_action_steps", "vision_backbone")}
    started = time.perf_counter()
    save_policy(cls, config, folder, pusht_stats())
    policy = cls.from_pretrained(folder)
    parameters = sum(p.numel() for p in policy.parameters())
    return {"kind": kind, "parameters": parameters, "config": {k: list(v) if isinstance(v, tuple) else v
                                                                for k, v in settings.items()},
            "build_seconds": round(time.perf_counter() - started, 2)}


# ------------------------------------------------------------------------------------------------- parent


def tree_env(tree: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}", "HF_HUB_OFFLINE": "1", "CI": "true"}


def job_argv(folder: Path, job: Path, episodes: int, steps: int, formats: list[str]) -> list[str]:
    return [sys.executable, "-m", "getiaction_export", "policy=lerobot", f"policy.path={folder}", "rollout=pusht",
            "format=all", f"format.formats=[{','.join(formats)}]", "format.exporter=torchscript",
            "format.opset_version=17", f"rollout.episodes={episodes}", f"rollout.steps={steps}",
            f"hydra.run.dir={job}"]


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """What this benchmark records of one job's ``result.json``."""
    rollout = result.get("rollout") or {}
    formats: dict[str, Any] = {}
    exports = result.get("formats") or {}
    sizes = result.get("artifact_sizes") or {}
    for name in FORMATS:
        record = (rollout.get("formats") or {}).get(name) or {}
        export = exports.get(name) if isinstance(exports.get(name), dict) else {}
        formats[name] = {
            "export_seconds": (export.get("timings") or {}).get("export"),
            "verify_seconds": (export.get("timings") or {}).get("verify"),
            "latency_ms": (export.get("latency") or {}).get("runtime_ms"),
            "size_mb": round(size / 1e6, 1) if isinstance(size := export.get("size") or sizes.get(name), int) else None,
            "rollout_seconds": record.get("seconds"),
            "steps": [e.get("steps") for e in record.get("episodes") or []],
            "max_state_gap_px": record.get("max_state_gap"),
            "max_action_gap": record.get("max_action_gap"),
            "max_gap_px": record.get("max_gap"),
            "passed": record.get("passed"),
            "driver": record.get("driver"),
            "success": record.get("success"),
            "parity_max_abs": ((export.get("parity") or {}).get("action") or {}).get("max_abs_diff"),
            # PyTorch on the observations the artifact met (the on-path check), and where the runs parted
            "on_path": {key: (record.get("on_path") or {}).get(key) for key in ("runs", "max_abs_diff", "atol",
                                                                               "passed", "worst")},
            "parted": record.get("parted"),
        }
    torch_run = rollout.get("torch") or {}
    return {"status": result.get("status"), "error": result.get("error"),
            "parameters": (result.get("policy") or {}).get("parameters"),
            "timings": result.get("timings"), "torch_rollout_seconds": torch_run.get("seconds"),
            "torch_steps": torch_run.get("steps"), "torch_success": torch_run.get("success"),
            "torch_latency_ms": (result.get("latency") or {}).get("torch_ms"),
            "formats": formats}


def run_policy(kind: str, work: Path, tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    name = kind + (f"_{args.tag}" if args.tag else "")
    folder, job = work / f"{kind}_policy", work / f"{name}_job"
    env = tree_env(tree)
    if not (folder / "config.json").exists() or not (work / f"{kind}_build.json").exists():
        child = run_child([sys.executable, __file__, "--build", kind, str(folder), "--diffusion-steps",
                           str(args.diffusion_steps)], cwd=work, env=env)
        if child.returncode != 0:
            raise SystemExit(f"build {kind} failed:\n{child.stderr[-3000:]}")
        (work / f"{kind}_build.json").write_text(child.stdout.strip().splitlines()[-1])
    built = json.loads((work / f"{kind}_build.json").read_text())
    print(f"[{kind}] built: {built['parameters']:,} parameters; job starts (load {load_average()})", flush=True)
    cwd = Path(tempfile.mkdtemp(prefix=f"lcl-{kind}-", dir=work))
    argv = job_argv(folder, job, args.episodes, args.steps, args.formats) + list(args.override)
    child = run_child(argv, cwd=cwd, env=env)
    (work / f"{name}_job.log").write_text(child.stdout + "\n--- stderr ---\n" + child.stderr)
    result_file = job / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    record = {**built, "episodes": args.episodes, "steps": args.steps, "command": " ".join(argv[1:]),
              "returncode": child.returncode,
              "job_seconds": round(child.seconds, 1), "job_cpu_seconds": round(child.cpu_s, 1),
              "peak_rss_mb": round(child.peak_mb), "runnable_threads": round(child.runnable, 2),
              **figures(result)}
    if record["parameters"] is None:
        record["parameters"] = built["parameters"]
    verify = ("[verify] onnx action:", "[verify] openvino action:")
    record["notes"] = [line.strip() for line in (child.stdout + child.stderr).splitlines()
                       if "failed" in line or line.lstrip().startswith(verify) or "] !" in line or "] ✗" in line]
    if child.returncode != 0:
        record["stderr_tail"] = child.stderr[-3000:]
    print(f"[{kind}] exit {child.returncode} in {child.seconds:.0f} s, peak {child.peak_mb:.0f} MB", flush=True)
    return record


def report(data: dict[str, Any]) -> str:
    def num(value: Any, spec: str) -> str:
        return "—" if value is None else format(value, spec)

    lines = [f"Machine: {data['cpu']}. Commit measured: `{data['commit'][:7]}`; rollout seed 0.", "",
             "| policy (formats) | parameters | episodes x steps | export onnx / openvino (s) | rollout PyTorch "
             "(LeRobot) (s) | rollout onnx / openvino (s) | max state gap onnx / openvino (px) | max action gap onnx "
             "/ openvino | on its own path onnx / openvino (max abs diff) | gate (fp32 0.01 px) | job (s) | peak RSS "
             "(GB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for kind, r in data["policies"].items():
        f = r.get("formats") or {}
        o, v = f.get("onnx") or {}, f.get("openvino") or {}
        gates = {name: record.get("passed") for name, record in f.items() if record.get("passed") is not None}
        parted = {name: (record.get("parted") or {}).get("step") for name, record in f.items()}
        gate = ", ".join(f"{name} {'pass' if ok else 'FAIL'}"
                         + (f" (runs parted at step {parted[name]})" if parted.get(name) is not None else "")
                         for name, ok in gates.items()) or "—"
        if r.get("status") != "ok":
            gate += f" (job {r.get('status')}, exit {r.get('returncode')})"
        lines.append(
            f"| {kind} | {num(r.get('parameters'), ',')} | {r.get('episodes', data.get('episodes'))} x "
            f"{r.get('steps', data.get('steps'))} | {num(o.get('export_seconds'), '.1f')} / "
            f"{num(v.get('export_seconds'), '.1f')} | {num(r.get('torch_rollout_seconds'), '.1f')} | "
            f"{num(o.get('rollout_seconds'), '.1f')} / {num(v.get('rollout_seconds'), '.1f')} | "
            f"{num(o.get('max_state_gap_px'), '.2e')} / "
            f"{num(v.get('max_state_gap_px'), '.2e')} | {num(o.get('max_action_gap'), '.2e')} / "
            f"{num(v.get('max_action_gap'), '.2e')} | {num((o.get('on_path') or {}).get('max_abs_diff'), '.2e')} / "
            f"{num((v.get('on_path') or {}).get('max_abs_diff'), '.2e')} | {gate} | "
            f"{num(r.get('job_seconds'), '.0f')} | "
            f"{num(r.get('peak_rss_mb') / 1024 if r.get('peak_rss_mb') else None, '.1f')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--episodes", type=int, default=2, help="rollout.episodes (the app's default: 2)")
    parser.add_argument("--steps", type=int, default=300, help="rollout.steps per episode (the app's default: 300)")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS), help="format.formats")
    parser.add_argument("--override", nargs="*", default=[], help="more Hydra overrides for the app's jobs")
    parser.add_argument("--tag", default="", help="suffix of the job folder and of the record's key (a second run)")
    parser.add_argument("--diffusion-steps", type=int, default=10, help="DDIM inference steps of the Diffusion")
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout to measure (its src/ on PYTHONPATH)")
    parser.add_argument("--keep", type=Path, help="folder for the policies, jobs and logs (reused when present)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true", help="print the markdown table of --out and stop")
    parser.add_argument("--build", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        print(json.dumps(build(args.build[0], Path(args.build[1]), args.diffusion_steps)))
        return
    if args.report:
        print(report(json.loads(args.out.read_text())))
        return
    tree = args.tree.resolve()
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "src"], capture_output=True,
                                text=True, check=True).stdout.strip())
    line = "from getiaction_export.machine import cpu_line, describe_cpu; print(cpu_line(describe_cpu()))"
    cpu = subprocess.run([sys.executable, "-c", line],
                         capture_output=True, text=True, check=True, env={**os.environ, **tree_env(tree)},
                         cwd=tempfile.gettempdir()).stdout.strip()
    work = args.keep or Path(tempfile.mkdtemp(prefix="lerobot-closed-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data: dict[str, Any] = {"commit": commit, "src_dirty": dirty, "cpu": cpu, "python": sys.executable,
                            "episodes": args.episodes, "steps": args.steps, "diffusion_steps": args.diffusion_steps,
                            "load_average_before": load_average(), "policies": {}}
    if args.out.exists():  # keep the other policies' records when only some are run again
        previous = json.loads(args.out.read_text())
        if previous.get("commit") == commit:
            data["policies"].update(previous.get("policies") or {})
            data["episodes"], data["steps"] = previous.get("episodes"), previous.get("steps")
    for kind in args.policies:
        data["policies"][kind + (f"_{args.tag}" if args.tag else "")] = run_policy(kind, work, tree, args)
        data["seconds"] = round(time.perf_counter() - started, 1)
        data["load_average_after"] = load_average()
        args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(report(data))


if __name__ == "__main__":
    main()
