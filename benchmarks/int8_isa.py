"""INT8 on both CPU kinds (issue 19): NNCF's overflow fix (``first_layer`` | ``enable``) x OpenVINO's ISA
(native | capped to AVX2 with ``ONEDNN_MAX_CPU_ISA=AVX2``) for the shipped policies, accuracy and batch-1 speed.

A CPU without VNNI (AVX2 only) multiplies INT8 u8 x s8 pairs into saturating 16-bit sums; NNCF's default
overflow fix (``first_layer``) keeps only the first layer's weights at 7 bits, ``enable`` all of them. oneDNN
(inside OpenVINO's CPU plugin) uses no ISA above ``ONEDNN_MAX_CPU_ISA``, read when openvino is imported: on a
VNNI machine the capped children run oneDNN's AVX2-only kernels (every INT8 matmul and convolution), so one
machine measures INT8's accuracy on both CPU kinds. Not capped: OpenVINO's bundled MLAS f32 GEMM and some of its
own JIT nodes (FakeQuantize, eltwise) keep AVX-512, so capped f32 timings are optimistic (the report lists the
kernels each IR ran). onnxruntime does not read that variable (its MLAS kernels pick their own ISA): its rows
are native only. The capped eager baseline also caps PyTorch's three kernel sources (``ATEN_CPU_CAPABILITY=avx2``,
``MKL_ENABLE_INSTRUCTIONS=AVX2``, ``ONEDNN_MAX_CPU_ISA=AVX2``).

The parent prepares everything once in one child (``--prepare``): per policy (Dummy, ACT, Diffusion; built
under ``torch.manual_seed(0)`` as the app does, ``.eval()``) the ONNX graph (``policy.to_onnx``, the app's
default: opset 18, dynamic batch), the f32 IR (``policy.to_openvino``), and one INT8 IR per fix
(``getiaction.export.int8.quantize_openvino`` on the app's 100 calibration rows,
``getiaction_export.stages.calibrate.calibration_rows``: the sample, then 99 seeded rows drawn like it), the
20 batch-1 test inputs (``getiaction_export.parity.gate.verification_inputs``: the sample, then 19 seeded random
inputs like it; seed 1, so apart from the sample they are not calibration rows, which the app draws from seed
0) and PyTorch's outputs on them. For ACT it also writes the batch-1 levers: static-batch exports
(``dynamic_batch=False``), onnxslim (``getiaction.export.transforms.simplify_onnx``), the opset 17 TorchScript
graph, and INT8 IRs quantized from the static IR.

Every measurement is one child process running one runtime (``--worker``): it runs the 20 test inputs one at
a time (their outputs are saved and compared with PyTorch's by the parent with the app's own
``getiaction_export.parity.gate.compare``: worst share of the largest |output| and lowest cosine over the 20), then
times batch-1 calls on the sample (warm-up, then >= ``seconds`` and >= 20 calls; median). OpenVINO compiles
with ``INFERENCE_PRECISION_HINT=f32`` (required under the cap: without a hint OpenVINO picks bf16 from the
CPU's flags, which the cap forbids), ``PERFORMANCE_HINT=LATENCY`` and ``INFERENCE_NUM_THREADS``; onnxruntime
with the tool's session (``getiaction_export.parity.runtimes``); eager under ``torch.inference_mode()``. Threads 1 and
2; eager at 2 threads both with ``OMP_WAIT_POLICY=PASSIVE`` and unset (busy-waiting workers). Configurations
alternate within each round, order reversed every other round; figures are medians over rounds. Each
OpenVINO child also records the kernels its runtime model ran (``primitiveType``), to show the cap took.

    .venv/bin/python benchmarks/int8_isa.py --quick      # ACT only, 2 threads, no levers, 1 round (~1 min)
    .venv/bin/python benchmarks/int8_isa.py --rounds 5   # 3 policies, levers: ~3 min of exports + ~3 min a round
    .venv/bin/python benchmarks/int8_isa.py --keep DIR   # reuse the exports and INT8 IRs in DIR
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import PYTHON, check, load_average, machine, median, run_child
from edge_speed import build_ort, eager_calls, time_calls

POLICIES = ("dummy", "act", "diffusion")
FIXES = ("first_layer", "enable")
THREADS = (1, 2)
TEST_INPUTS = 20
TEST_SEED = 1
CALIBRATION_ROWS = 100
TARGET = 3.0
AVX2_OV = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
"""The cap for OpenVINO children (oneDNN inside its CPU plugin)."""
AVX2_TORCH = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
"""The cap for eager children: oneDNN, MKL and ATen's own vectorized kernels."""
CAP_VARIABLES = sorted({*AVX2_OV, *AVX2_TORCH})
OUT = Path(__file__).with_name("int8_isa.json")


@dataclass(frozen=True)
class Config:
    policy: str
    runtime: str
    """torch | ort | ov"""
    artifact: str
    """file name in the prepare folder ('' for eager)"""
    isa: str
    """native | avx2"""
    threads: int
    variant: str = ""
    """eager: 'passive' | 'busy' | ''; ort: 'plain' (InferenceSession with no options); ov: 'bf16'"""
    label: str = ""
    group: str = "main"

    @property
    def key(self) -> str:
        return f"{self.policy}|{self.runtime}|{self.artifact}|{self.isa}|{self.threads}|{self.variant}"

    @property
    def precision(self) -> str:
        return "int8" if "int8" in self.artifact else "fp32"

    def env(self) -> dict[str, str]:
        env = {"PYTHONWARNINGS": "ignore"}
        if self.runtime == "torch":
            env.update(AVX2_TORCH if self.isa == "avx2" else {})
            if self.variant == "passive":
                env["OMP_WAIT_POLICY"] = "PASSIVE"
        elif self.isa == "avx2":
            env.update(AVX2_OV)
        return env


def main_configs(policy: str, threads: tuple[int, ...]) -> list[Config]:
    out = []
    for isa in ("native", "avx2"):
        cap = "" if isa == "native" else ", AVX2 cap"
        for t in threads:
            if t == 1:
                out.append(Config(policy, "torch", "", isa, 1, "", f"PyTorch eager, 1 thread{cap}"))
            else:
                out.append(Config(policy, "torch", "", isa, t, "passive", f"PyTorch eager, {t} threads PASSIVE{cap}"))
                out.append(Config(policy, "torch", "", isa, t, "busy", f"PyTorch eager, {t} threads busy-wait{cap}"))
        for t in threads:
            if isa == "native":
                out.append(Config(policy, "ort", f"{policy}.onnx", isa, t, "", f"onnxruntime fp32, {t}T"))
            out.append(Config(policy, "ov", f"{policy}.xml", isa, t, "", f"OpenVINO f32, {t}T{cap}"))
            for fix in FIXES:
                out.append(Config(policy, "ov", f"{policy}_int8_{fix}.xml", isa, t, "",
                                  f"OpenVINO INT8 {fix}, {t}T{cap}"))
    return out


def lever_configs() -> list[Config]:
    """ACT batch 1: what each lever is worth (ORT natively; OpenVINO natively and capped)."""
    out = []
    graphs = (("act_static.onnx", "opset 18, static batch 1"), ("act_slim.onnx", "opset 18, onnxslim"),
              ("act_static_slim.onnx", "opset 18, static batch 1, onnxslim"),
              ("act_17.onnx", "opset 17 TorchScript"), ("act_17_static.onnx", "opset 17, static batch 1"),
              ("act_17_static_slim.onnx", "opset 17, static batch 1, onnxslim"))
    for t in THREADS:
        for name, what in graphs:
            out.append(Config("act", "ort", name, "native", t, "", f"onnxruntime fp32, {what}, {t}T", "lever"))
    for name in ("act.onnx", "act_17_static_slim.onnx"):
        out.append(Config("act", "ort", name, "native", 2, "plain",
                          f"onnxruntime fp32, {name}, InferenceSession with no options", "lever"))
    for isa in ("native", "avx2"):
        cap = "" if isa == "native" else ", AVX2 cap"
        for t in THREADS:
            out.append(Config("act", "ov", "act_static.xml", isa, t, "", f"OpenVINO f32, static batch 1, {t}T{cap}",
                              "lever"))
            for fix in FIXES:
                out.append(Config("act", "ov", f"act_static_int8_{fix}.xml", isa, t, "",
                                  f"OpenVINO INT8 {fix}, static batch 1, {t}T{cap}", "lever"))
    for t in THREADS:
        out.append(Config("act", "ov", "act_static_int8_enable.xml", "native", t, "bf16",
                          f"OpenVINO INT8 enable, static batch 1, bf16 for the unquantized ops, {t}T", "lever"))
    return out


# --------------------------------------------------------------------------------------------- prepare


def build_policy(name: str) -> Any:
    import torch

    from getiaction.policies import ACT, Diffusion, Dummy

    torch.manual_seed(0)  # as the app builds a policy (policy.seed=0)
    return {"dummy": Dummy, "act": ACT, "diffusion": Diffusion}[name]().eval()


def prepare(folder: Path, policies: list[str], levers: bool) -> None:
    import numpy as np
    import torch

    from getiaction.export.int8 import quantize_openvino
    from getiaction.export.transforms import simplify_onnx
    from getiaction_export.config.schemas import CalibrationSchema
    from getiaction_export.parity.gate import verification_inputs
    from getiaction_export.stages.calibrate import calibration_rows

    info: dict[str, Any] = {}
    for name in policies:
        started = time.perf_counter()
        policy = build_policy(name)
        sample = policy.sample_input
        names = list(sample)
        cases = verification_inputs(sample, [1], False, TEST_INPUTS - 1, TEST_SEED)
        with torch.inference_mode():
            reference = np.concatenate([policy.model(inputs).numpy() for _, inputs in cases])
        np.savez(folder / f"{name}_rows.npz", reference=reference,
                 **{n: np.concatenate([inputs[n].numpy() for _, inputs in cases]) for n in names})
        rows, record = calibration_rows(CalibrationSchema(samples=CALIBRATION_ROWS), sample, names)
        exported = policy.to_onnx(folder / f"{name}.onnx")
        policy.to_openvino(folder / f"{name}.xml")
        sources = {"": f"{name}.xml"}
        entry: dict[str, Any] = {"inputs": names, "calibration": record, "opset": exported.opset,
                                 "exporter": exported.exporter, "int8": {}}
        if levers and name == "act":
            policy.to_onnx(folder / "act_static.onnx", dynamic_batch=False)
            policy.to_openvino(folder / "act_static.xml", dynamic_batch=False)
            policy.to_onnx(folder / "act_17.onnx", opset_version=17, exporter="torchscript")
            policy.to_onnx(folder / "act_17_static.onnx", opset_version=17, exporter="torchscript",
                           dynamic_batch=False)
            entry["onnxslim"] = {}
            for stem in ("act", "act_static", "act_17_static"):
                slim = simplify_onnx(folder / f"{stem}.onnx", folder / f"{stem}_slim.onnx")
                entry["onnxslim"][stem] = [slim.nodes_before, slim.nodes_after]
            sources["_static"] = "act_static.xml"
        for suffix, source in sources.items():
            for fix in FIXES:
                result = quantize_openvino(folder / source, folder / f"{name}{suffix}_int8_{fix}.xml", rows,
                                           overflow_fix=fix)
                entry["int8"][f"{name}{suffix}_int8_{fix}"] = {
                    "model_type": result.model_type, "seconds": result.seconds,
                    "fake_quantize_ops": result.quantized_ops, "overflow_fix": result.overflow_fix}
        entry["seconds"] = round(time.perf_counter() - started, 1)
        info[name] = entry
        print(f"  prepared {name} in {entry['seconds']} s", file=sys.stderr, flush=True)
    (folder / "prepare.json").write_text(json.dumps({"policies": info, "levers": levers}, indent=1))


# ---------------------------------------------------------------------------------------------- worker


def worker(folder: Path, config: Config, seconds: float, outputs: Path) -> None:
    """Run the 20 test inputs (outputs saved to ``outputs``), then time batch-1 calls; print one JSON line."""
    import numpy as np

    data = np.load(folder / f"{config.policy}_rows.npz")
    names = json.loads((folder / "prepare.json").read_text())["policies"][config.policy]["inputs"]
    rows = {n: data[n] for n in names}
    if config.runtime == "torch":
        run, timed, settings = build_eager(config)
    elif config.runtime == "ort":
        run, timed, settings = build_onnxruntime(folder / config.artifact, config)
    else:
        run, timed, settings = build_openvino(folder / config.artifact, config, names)
    got = np.concatenate([np.asarray(run({n: rows[n][i:i + 1] for n in names}), dtype=np.float32)
                          for i in range(TEST_INPUTS)])
    np.save(outputs, got)
    first = {n: np.ascontiguousarray(rows[n][:1]) for n in names}
    times = time_calls(timed(first), seconds)
    if "primitives" in settings:  # the kernels the runtime model holds after the runs
        settings["primitives"] = settings["primitives"]()
    print(json.dumps({"ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000, "calls": len(times),
                      "settings": settings}))


def build_eager(config: Config) -> tuple[Any, Any, dict[str, Any]]:
    import torch

    torch.set_num_threads(config.threads)
    run, timed = eager_calls(build_policy(config.policy).model)
    settings = {"torch.get_num_threads": torch.get_num_threads(), "inference_mode": True,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                **{k: os.environ.get(k, "(unset)") for k in ("OMP_WAIT_POLICY", *CAP_VARIABLES)}}
    return run, timed, settings


def build_onnxruntime(path: Path, config: Config) -> tuple[Any, Any, dict[str, Any]]:
    if config.variant != "plain":
        runner, settings, _ = build_ort(path, config.threads)  # the tool's session, spelled out
        return runner, runner.timed, settings
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(inputs: dict[str, Any]) -> Any:
        return session.run(["action"], inputs)[0]

    return run, lambda inputs: (lambda: session.run(["action"], inputs)), {"session_options": "(none)"}


def build_openvino(xml: Path, config: Config, names: list[str]) -> tuple[Any, Any, dict[str, Any]]:
    import openvino as ov

    core = ov.Core()
    compile_config = {"INFERENCE_PRECISION_HINT": "bf16" if config.variant == "bf16" else "f32",
                      "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": config.threads}
    compiled = core.compile_model(str(xml), "CPU", compile_config)
    request = compiled.create_infer_request()
    ports = {n: next(p for p in compiled.inputs if n in p.get_names()) for n in names}
    out = compiled.outputs[0]

    def run(inputs: dict[str, Any]) -> Any:
        return request.infer({ports[n]: v for n, v in inputs.items()})[out].copy()

    def timed(inputs: dict[str, Any]) -> Any:
        feed = {ports[n]: v for n, v in inputs.items()}
        return lambda: request.infer(feed)

    def primitives() -> dict[str, int]:
        kinds = Counter(str(op.get_rt_info()["primitiveType"].astype(str)) for op in compiled.get_runtime_model()
                        .get_ops())
        return {k: v for k, v in sorted(kinds.items()) if not k.startswith(("unknown", "undef"))}

    settings = {"compile_config": {k: str(v) for k, v in compile_config.items()},
                "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "(unset)"),
                "effective": {k: str(compiled.get_property(k)) for k in (
                    "INFERENCE_PRECISION_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "ENABLE_CPU_PINNING")},
                "primitives": primitives}
    return run, timed, settings


# --------------------------------------------------------------------------------------------- measure


def cpu_flags() -> dict[str, Any]:
    """The CPU's model and the ISA flags that decide INT8's kernels (from /proc/cpuinfo)."""
    model, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16")
    kind = "AVX-512 with VNNI" if "avx512_vnni" in flags or "avx_vnni" in flags else "AVX2 only (no VNNI)"
    return {"model": model, "flags": {f: f in flags for f in wanted}, "kind": kind}


def measure(rounds: int, quick: bool, keep: Path | None) -> dict[str, Any]:
    policies = ["act"] if quick else list(POLICIES)
    threads = (2,) if quick else THREADS
    configs = [c for p in policies for c in main_configs(p, threads)] + ([] if quick else lever_configs())
    seconds = 0.3 if quick else 0.6
    samples: dict[str, list[dict[str, Any]]] = {c.key: [] for c in configs}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-int8-isa-") as tmp:
        folder = keep or Path(tmp)
        (folder / "out").mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        marker = folder / "prepare.json"
        ready = json.loads(marker.read_text()) if marker.exists() else {}
        if set(policies) - set(ready.get("policies", {})) or (not quick and not ready.get("levers")):
            argv = [PYTHON, __file__, "--prepare", str(folder), ",".join(policies), "0" if quick else "1"]
            check(run_child(argv, env={"PYTHONWARNINGS": "ignore"}), "exports and quantization")
        prepared = json.loads(marker.read_text())
        prepare_s = round(time.perf_counter() - started, 1)
        for index in range(rounds):
            for config in configs if index % 2 == 0 else configs[::-1]:
                if config.key in errors:
                    continue
                outputs = folder / "out" / f"{config.key.replace('|', '_').replace('.', '-')}_{index}.npy"
                argv = [PYTHON, __file__, "--worker", str(folder), json.dumps(config.__dict__), str(seconds),
                        str(outputs)]
                child = run_child(argv, env=config.env())
                if child.returncode != 0:
                    errors[config.key] = (child.stderr.strip().splitlines() or ["?"])[-1][:300]
                    print(f"  {config.key}: FAILED {errors[config.key]}", file=sys.stderr, flush=True)
                    continue
                sample = json.loads(child.stdout.strip().splitlines()[-1])
                sample.update(runnable=round(child.runnable, 2), outputs=str(outputs))
                samples[config.key].append(sample)
            print(f"  round {index + 1}/{rounds} done, load {load_average()}", file=sys.stderr, flush=True)
        results = summarize(configs, samples, folder)
    return {"rounds": rounds, "quick": quick, "seconds_per_child": seconds, "test_inputs": TEST_INPUTS,
            "test_seed": TEST_SEED, "calibration_rows": CALIBRATION_ROWS, "prepare": prepared,
            "prepare_s": prepare_s, "results": results, "errors": errors}


def summarize(configs: list[Config], samples: dict[str, list[dict[str, Any]]], folder: Path) -> dict[str, Any]:
    """Per configuration: the median ms over rounds and the worst accuracy over every round's 20 outputs."""
    import numpy as np

    from getiaction_export.parity.gate import compare
    from getiaction_export.parity.tolerance import DEFAULT_TOLERANCES

    summary = {}
    for config in configs:
        got = samples[config.key]
        if not got:
            continue
        reference = np.load(folder / f"{config.policy}_rows.npz")["reference"]
        bound = DEFAULT_TOLERANCES[config.precision]
        worst = {"share": 0.0, "max_abs_diff": 0.0, "cosine": 1.0, "passed": True}
        distinct = set()
        for sample in got:
            outputs = np.load(sample.pop("outputs"))
            distinct.add(outputs.tobytes())
            for expected, actual in zip(reference, outputs, strict=True):  # one test input at a time, as the gate
                stats = compare(expected[None], actual[None], *bound)
                worst = {"share": max(worst["share"], stats["share"]),
                         "max_abs_diff": max(worst["max_abs_diff"], stats["max_abs_diff"]),
                         "cosine": min(worst["cosine"], stats["cosine"]), "passed": worst["passed"] and stats["passed"]}
        ms = [s["ms"] for s in got]
        summary[config.key] = {**{k: v for k, v in config.__dict__.items()}, "precision": config.precision,
                               "ms": median(ms), "ms_min": min(ms), "ms_max": max(ms), "samples_ms": ms,
                               "rounds": len(ms), **worst, "bound": bound.describe(),
                               "outputs_identical_across_rounds": len(distinct) == 1,
                               "settings": got[0]["settings"], "runnable": [s["runnable"] for s in got]}
    return summary


# ---------------------------------------------------------------------------------------------- report


def _eager_ms(results: dict[str, Any], policy: str, isa: str, key: str = "ms") -> float | None:
    """The fastest eager setting's median over rounds (``key="ms_min"``: eager's best round)."""
    eager = [r[key] for r in results.values() if r["policy"] == policy and r["runtime"] == "torch"
             and r["isa"] == isa]
    return min(eager) if eager else None


def _f32_ms(results: dict[str, Any], r: dict[str, Any]) -> float | None:
    """OpenVINO f32 at the same ISA and threads, from the same kind of source (static or dynamic batch)."""
    artifact = "act_static.xml" if r["artifact"].startswith("act_static") else f"{r['policy']}.xml"
    hit = results.get(f"{r['policy']}|ov|{artifact}|{r['isa']}|{r['threads']}|")
    return hit["ms"] if hit else None


def _accuracy(r: dict[str, Any]) -> str:
    if r["runtime"] == "torch" and r["isa"] == "native":
        return "(reference)"
    mark = "✓" if r["passed"] else "✗"
    return f"{100 * r['share']:.3g}% / {r['cosine']:.5f} {mark}"


def accuracy_table(results: dict[str, Any]) -> list[str]:
    lines = ["| policy | artifact | ISA | worst share of max \\|action\\| | min cosine | within the INT8 bound "
             "(≤ 10%, cosine ≥ 0.999) |", "|---|---|---|---|---|---|"]
    for policy in POLICIES:
        for artifact in [f"{policy}.xml", *(f"{policy}_int8_{fix}.xml" for fix in FIXES)]:
            for isa in ("native", "avx2"):
                rows = [r for r in results.values() if r["policy"] == policy and r["artifact"] == artifact
                        and r["isa"] == isa and r["runtime"] == "ov" and not r["variant"]]
                if not rows:
                    continue
                share, cosine = max(r["share"] for r in rows), min(r["cosine"] for r in rows)
                name = "f32 IR" if "int8" not in artifact else f"INT8 `{artifact.split('_int8_')[1][:-4]}`"
                verdict = "✓" if share <= 0.10 and cosine >= 0.999 else "✗"
                lines.append(f"| {policy} | {name} | {'native' if isa == 'native' else 'AVX2 cap'} "
                             f"| {100 * share:.3g}% | {cosine:.5f} | {verdict} |")
    return lines


SPEED_HEADER = ["| runtime | ms (median of rounds) | rounds min–max | vs fastest eager (same ISA) "
                "| best round vs best eager round | vs OpenVINO f32 (same ISA, threads) | share / cosine, verified |",
                "|---|---|---|---|---|---|---|"]


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


def speed_rows(results: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        eager = _eager_ms(results, r["policy"], r["isa"])
        eager_best = _eager_ms(results, r["policy"], r["isa"], "ms_min")
        f32 = _f32_ms(results, r) if r["runtime"] == "ov" else None
        spread = f"{_ms(r['ms_min'])}–{_ms(r['ms_max'])}" if r["rounds"] > 1 else "–"
        versus_f32 = f"{f32 / r['ms']:.2f}x" if f32 else "–"
        lines.append(f"| {r['label']} | {_ms(r['ms'])} | {spread} | **{eager / r['ms']:.2f}x** "
                     f"| {eager_best / r['ms_min']:.2f}x | {versus_f32} | {_accuracy(r)} |")
    return lines


def table(result: dict[str, Any]) -> str:
    results: dict[str, Any] = result["results"]
    lines = ["**Accuracy** (20 seeded batch-1 inputs; worst over threads and rounds)", "",
             *accuracy_table(results), ""]
    for policy in POLICIES:
        rows = [r for r in results.values() if r["policy"] == policy and r["group"] == "main"]
        if rows:
            lines += [f"**{policy}, batch 1**", "", *SPEED_HEADER, *speed_rows(results, rows), ""]
    levers = [r for r in results.values() if r["group"] == "lever"]
    if levers:
        lines += ["**ACT batch 1: levers**", "", *SPEED_HEADER, *speed_rows(results, levers), ""]
    lines += verdict(results)
    lines += kernels(results)
    if result["errors"]:
        lines += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in result["errors"].items())]
    return "\n".join(lines)


def verdict(results: dict[str, Any]) -> list[str]:
    lines = []
    for isa, what in (("native", "natively (VNNI)"), ("avx2", "under the AVX2 cap (OpenVINO and eager only)")):
        eager = _eager_ms(results, "act", isa)
        verified = [r for r in results.values() if r["policy"] == "act" and r["runtime"] != "torch"
                    and r["isa"] == isa and r["passed"]]
        if not eager or not verified:
            continue
        best = min(verified, key=lambda r: r["ms"])
        word = "reached" if eager / best["ms"] >= TARGET else "NOT reached"
        lines.append(f"- ACT batch 1 ≥ {TARGET:.0f}x eager {what}: {best['label']} {best['ms']:.2f} ms = "
                     f"**{eager / best['ms']:.2f}x** the fastest eager ({eager:.2f} ms): {word}.")
        floats = [r for r in verified if r["precision"] == "fp32" and r["variant"] != "bf16"]
        if floats:
            f32 = min(floats, key=lambda r: r["ms"])
            lines.append(f"  Fastest fp32 artifact: {f32['label']} {f32['ms']:.2f} ms = {eager / f32['ms']:.2f}x.")
    return lines


def kernels(results: dict[str, Any]) -> list[str]:
    """Which kernels OpenVINO ran for ACT's IRs natively and under the cap (its ``primitiveType`` per node)."""
    lines = []
    for artifact in ("act.xml", "act_int8_enable.xml"):
        for isa in ("native", "avx2"):
            r = results.get(f"act|ov|{artifact}|{isa}|{max(r['threads'] for r in results.values())}|")
            if r and isinstance(r["settings"].get("primitives"), dict):
                used = ", ".join(f"{k} {v}" for k, v in r["settings"]["primitives"].items())
                lines.append(f"- Kernels, {artifact}, {isa}: {used}")
    return ["", *lines] if lines else []


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--prepare":
        prepare(Path(sys.argv[2]), sys.argv[3].split(","), sys.argv[4] == "1")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        folder, config, seconds, outputs = sys.argv[2:6]
        worker(Path(folder), Config(**json.loads(config)), float(seconds), Path(outputs))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="ACT only, 2 threads, no levers, one round")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the exports and INT8 IRs in this folder")
    parser.add_argument("--json", type=Path, help=f"where to write every sample (default: {OUT.name} beside this "
                        "file; --quick writes only when given)")
    args = parser.parse_args()
    for name in CAP_VARIABLES:  # the native children must not inherit a cap from this shell
        os.environ.pop(name, None)
    started = time.perf_counter()
    info = {"machine": machine(), "cpu_isa": cpu_flags(), "load_average_before": load_average()}
    result = measure(1 if args.quick else args.rounds, args.quick, args.keep)
    result = {**info, **result, "load_average_after": load_average(),
              "minutes": round((time.perf_counter() - started) / 60, 1)}
    print(f"CPU: {info['cpu_isa']['model']}, {info['cpu_isa']['kind']} "
          f"({', '.join(k for k, v in info['cpu_isa']['flags'].items() if v)})\n")
    print(table(result))
    out = args.json or (None if args.quick else OUT)
    if out:
        out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{result['minutes']} min; load average {info['load_average_before']} before, "
          f"{result['load_average_after']} after; {out or '(not written)'}", file=sys.stderr)


if __name__ == "__main__":
    main()
