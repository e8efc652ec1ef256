"""(5) Edge formats: INT8 (OpenVINO, onnxruntime) and ExecuTorch beside PyTorch eager, ACT and diffusion,
batch 1 and 8, every speed figure through an artifact whose outputs were checked against eager.

One runtime per process: every (runtime, model, batch, variant) is measured in a fresh child process
(``edge_speed.py --worker ...``) that loads only that runtime (PyTorch is imported only by the eager
and ExecuTorch children), so no runtime's spinning thread pool slows another one down. Configurations
alternate within each round (order reversed every other round); each child reports the median of its
timed calls after a warm-up, and the tables give the median over rounds with the spread (min–max of
the per-round medians).

PyTorch eager: ``torch.inference_mode()``, ``torch.set_num_threads(2)`` (physical cores) and
``OMP_WAIT_POLICY=PASSIVE`` in its child's environment: PyTorch's OpenMP workers otherwise busy-wait
between parallel regions, and on a shared 2-core machine they then wait on each other (ACT batch 1:
4 ms -> 200+ ms). The default (``OMP_WAIT_POLICY`` unset) and 1 thread are measured as variants, and
every speed-up is also given against the fastest eager variant.

Parity: each child runs 8 observations (the policy's sample plus 7 seeded ones, drawn as the sample
is) through its artifact, at its batch (static batch-1 artifacts one at a time) and reports the max
abs difference from PyTorch eager and that difference as a share of the largest |action|.

    python benchmarks/edge_speed.py --quick      # smoke run: one round, ACT, no ExecuTorch (~45 s)
    python benchmarks/edge_speed.py              # everything, 3 rounds: ~6 min of exports + ~13 min
    python benchmarks/edge_speed.py --keep DIR --json benchmarks/results.json   # reuse exports, save samples
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import PYTHON, check, load_average, machine, median, run_child

THREADS = 2
"""Physical cores of the benchmark machine; every runtime gets this many unless a variant says otherwise."""
PARITY_ROWS = 8
CALIBRATION_ROWS = 100
MODELS = ("act", "diffusion")
TARGET = 3.0

TORCH_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Set for the eager children (see the module doc); other runtimes do not use OpenMP."""


@dataclass(frozen=True)
class Config:
    model: str
    batch: int
    runtime: str
    """torch | ort | ov | et"""
    variant: str
    """comma-separated flags, e.g. ``src=17,int8,static,prec=bf16`` (see the worker functions)."""
    label: str = ""

    @property
    def key(self) -> str:
        return f"{self.model}|{self.batch}|{self.runtime}|{self.variant}"


# The summary table: every model and batch, each runtime as the tool configures it today.
OV_F32 = "src=18"
OV_INT8 = "src=18,int8"
MAIN = [Config(m, b, r, v, label) for m in MODELS for b in (1, 8) for r, v, label in (
    ("torch", "omp=passive", "PyTorch eager (2 threads, OMP_WAIT_POLICY=PASSIVE)"),
    ("torch", "omp=default", "PyTorch eager (2 threads, OMP_WAIT_POLICY unset: busy-waiting workers)"),
    ("torch", "omp=passive,threads=1", "PyTorch eager (1 thread)"),
    ("ort", "src=18", "onnxruntime fp32 (the tool's session)"),
    ("ov", OV_F32, "OpenVINO f32 (the tool's compile config)"),
    ("ov", OV_INT8, "OpenVINO INT8 (NNCF via quantize_openvino, same config)"),
    ("et", "xnnpack", "ExecuTorch XNNPACK .pte (2 threads)"))]

# ACT batch 1: what each setting is worth.
ACT_B1 = [Config("act", 1, r, v, label) for r, v, label in (
    ("ort", "src=18,threads=1", "onnxruntime fp32, 1 thread"),
    ("ort", "src=17", "onnxruntime fp32, opset 17 (TorchScript) graph"),
    ("ort", "src=18,int8=qdq", "onnxruntime INT8 static QDQ (S8S8, per-tensor, MinMax, 100 rows)"),
    ("ort", "src=18,int8=qdq-u8", "onnxruntime INT8 static QDQ (U8S8)"),
    ("ort", "src=18,int8=dynamic", "onnxruntime INT8 dynamic (quantize_dynamic, S8 weights)"),
    ("ov", "src=18,hint=none", "OV f32, no PERFORMANCE_HINT"),
    ("ov", "src=18,hint=throughput", "OV f32, PERFORMANCE_HINT=THROUGHPUT (2 streams x 1 thread)"),
    ("ov", "src=18,pin=off", "OV f32, ENABLE_CPU_PINNING=False"),
    ("ov", "src=18,threads=1", "OV f32, INFERENCE_NUM_THREADS=1"),
    ("ov", "src=18,static", "OV f32, static batch 1 (model.reshape)"),
    ("ov", "src=17", "OV f32, opset 17 (TorchScript) source graph"),
    ("ov", "src=17,static", "OV f32, opset 17, static batch 1"),
    ("ov", "src=18,prec=bf16", "OV f32 IR, bf16 inference precision (the CPU default)"),
    ("ov", "src=pt", "OV f32, PyTorch frontend (fused ScaledDotProductAttention)"),
    ("ov", "src=pt,static", "OV f32, PyTorch frontend, static batch 1"),
    ("ov", "src=pt,static,prec=bf16", "OV f32 IR (PyTorch frontend), static batch 1, bf16"),
    ("ov", "src=18,int8,static", "OV INT8, static batch 1"),
    ("ov", "src=18,int8,static,threads=1", "OV INT8, static batch 1, 1 thread"),
    ("ov", "src=18,int8,static,hint=throughput", "OV INT8, static batch 1, THROUGHPUT hint"),
    ("ov", "src=18,int8,static,pin=off", "OV INT8, static batch 1, ENABLE_CPU_PINNING=False"),
    ("ov", "src=18,int8,static,prec=bf16", "OV INT8, static batch 1, bf16 for the unquantized ops"),
    ("ov", "src=17,int8", "OV INT8 from the opset 17 graph"),
    ("ov", "src=17,int8,static", "OV INT8 from the opset 17 graph, static batch 1"),
    ("ov", "src=pt,int8", "OV INT8 from the PyTorch-frontend IR"),
    ("ov", "src=pt,int8,static", "OV INT8 from the PyTorch-frontend IR, static batch 1"),
    ("ov", "src=pt,int8,static,threads=1", "OV INT8 (PyTorch frontend), static batch 1, 1 thread"),
    ("ov", "src=pt,int8,static,prec=bf16", "OV INT8 (PyTorch frontend), static batch 1, bf16"),
    ("et", "xnnpack,max8", "ExecuTorch XNNPACK, program for batch ≤ 8 (max_batch=8)"),
)]
# Batch 8 and diffusion: do the batch-1 findings carry over?
OTHERS = [Config(m, b, "ov", v, label) for m, b in (("act", 8), ("diffusion", 1), ("diffusion", 8))
          for v, label in (("src=pt", "OV f32, PyTorch frontend"), ("src=pt,int8", "OV INT8, PyTorch frontend"),
                           ("src=18,int8,static", "OV INT8, static batch"))] + [
    Config(m, b, "et", "xnnpack,max8", "ExecuTorch XNNPACK, max_batch=8")
    for m, b in (("act", 8), ("diffusion", 1), ("diffusion", 8))] + [
    Config("act", 8, "ort", v, label) for v, label in (
        ("src=18,int8=qdq", "onnxruntime INT8 static QDQ (S8S8)"),
        ("src=18,int8=qdq-u8", "onnxruntime INT8 static QDQ (U8S8)"),
        ("src=18,int8=dynamic", "onnxruntime INT8 dynamic"))]


def flags(variant: str) -> dict[str, str]:
    out = {}
    for part in filter(None, variant.split(",")):
        name, _, value = part.partition("=")
        out[name] = value or "1"
    return out


# --------------------------------------------------------------------------------------------- prepare


def policy_and_rows(model: str) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """The seeded policy, its parity rows and calibration rows (the sample, then seeded draws like it)."""
    import torch

    from getiaction.policies import ACT, Diffusion
    from getiaction.policies.act.model import sample_observation

    torch.manual_seed(0)
    policy = (ACT if model == "act" else Diffusion)().eval()
    config = policy.model.config

    def draw(seed: int) -> dict[str, Any]:
        return sample_observation(config.state_dim, config.cameras, config.image_shape,
                                  torch.Generator().manual_seed(seed))

    sample = policy.sample_input
    parity = [sample] + [draw(1000 + i) for i in range(1, PARITY_ROWS)]
    calibration = [sample] + [draw(i) for i in range(1, CALIBRATION_ROWS)]
    return policy, parity, calibration


def prepare(folder: Path, quick: bool = False) -> None:
    """Export both policies (opset 18 dynamo, opset 17 TorchScript, OpenVINO IRs, INT8) and the references;
    ``quick``: only what the main table needs (the opset 18 graph, its IR and INT8 IR)."""
    import numpy as np
    import openvino as ov
    import torch

    from getiaction.export.int8 import quantize_openvino

    info: dict[str, Any] = {}
    for model in MODELS[:1] if quick else MODELS:
        started = time.perf_counter()
        policy, parity, calibration = policy_and_rows(model)
        names = list(parity[0])
        with torch.inference_mode():
            reference = np.concatenate([policy.model(row).numpy() for row in parity])
        np.savez(folder / f"{model}_rows.npz", reference=reference,
                 **{name: np.concatenate([row[name].numpy() for row in parity]) for name in names})
        rows = [{k: v.numpy() for k, v in row.items()} for row in calibration]
        policy.to_onnx(folder / f"{model}_18.onnx")
        policy.to_openvino(folder / f"{model}_18.xml")
        if quick:
            result = quantize_openvino(folder / f"{model}_18.xml", folder / f"{model}_18_int8.xml", rows)
            info[model] = {"inputs": names, "int8": {"18": {"model_type": result.model_type}}}
            continue
        policy.to_onnx(folder / f"{model}_17.onnx", opset_version=17, exporter="torchscript")
        policy.to_openvino(folder / f"{model}_17.xml", opset_version=17, exporter="torchscript")
        # Not in the library (yet): OpenVINO's PyTorch frontend keeps F.scaled_dot_product_attention as one
        # ScaledDotProductAttention op, which the CPU plugin runs as a fused attention kernel.
        wrapper = _positional_class()(policy.model, names).eval()
        converted = ov.convert_model(wrapper, example_input=tuple(parity[0][n] for n in names),
                                     input=[ov.PartialShape([-1, *parity[0][n].shape[1:]]) for n in names])
        for port, name in zip(converted.inputs, names, strict=True):
            port.get_tensor().set_names({name})
        converted.outputs[0].get_tensor().set_names({"action"})
        ov.save_model(converted, str(folder / f"{model}_pt.xml"), compress_to_fp16=False)
        int8 = {}
        for src in ("18", "17", "pt"):
            result = quantize_openvino(folder / f"{model}_{src}.xml", folder / f"{model}_{src}_int8.xml", rows)
            int8[src] = {"model_type": result.model_type, "seconds": result.seconds,
                         "fake_quantize_ops": result.quantized_ops}
        info[model] = {"inputs": names, "int8": int8, "seconds": round(time.perf_counter() - started, 1)}
        if model == "act":
            info[model]["onnxruntime_int8"] = quantize_onnxruntime(folder, model, rows)
    (folder / "prepare.json").write_text(json.dumps({**info, "quick": quick}, indent=1))


def _positional_class() -> type:
    import torch

    class Positional(torch.nn.Module):
        """``forward(*tensors)`` -> ``model({name: tensor})`` (the PyTorch frontend wants positional inputs)."""

        def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
            super().__init__()
            self.model, self.names = model, names

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(self.names, tensors, strict=True)))

    return Positional


def quantize_onnxruntime(folder: Path, model: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Static QDQ (S8S8 and U8S8, MinMax on the calibration rows) and dynamic INT8 of the opset 18 graph."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(rows)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.rows, None)

    source = folder / f"{model}_18.onnx"
    pre = folder / f"{model}_18_pre.onnx"
    quant_pre_process(str(source), str(pre))  # asserts on TorchScript (opset 17) graphs, see FACTS.md
    timings = {}
    for name, activation in (("qdq", QuantType.QInt8), ("qdq-u8", QuantType.QUInt8)):
        started = time.perf_counter()
        quantize_static(str(pre), str(folder / f"{model}_18_{name}.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=activation, weight_type=QuantType.QInt8)
        timings[name] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    quantize_dynamic(str(pre), str(folder / f"{model}_18_dynamic.onnx"), weight_type=QuantType.QInt8)
    timings["dynamic"] = round(time.perf_counter() - started, 1)
    return timings


def prepare_executorch(folder: Path) -> None:
    """Lower both policies to XNNPACK ``.pte`` files with the library's ExecuTorch exporter: at the tool's default
    ``max_batch`` 64 and at 8 (the largest batch measured here)."""
    from getiaction.export.executorch import export_executorch

    info: dict[str, Any] = {}
    for model in MODELS:
        policy, parity, _ = policy_and_rows(model)
        for max_batch, suffix in ((64, ""), (8, "_max8")):
            started = time.perf_counter()
            export_executorch(policy.model, folder / f"{model}{suffix}.pte", parity[0], call_style="dict",
                              dynamic_batch=True, max_batch=max_batch)
            info[f"{model}{suffix}"] = {"seconds": round(time.perf_counter() - started, 1)}
    (folder / "prepare_et.json").write_text(json.dumps({**info, "version": 2}, indent=1))


# ---------------------------------------------------------------------------------------------- worker


def artifact(folder: Path, config: Config) -> list[Path]:
    """The files of ``config``'s artifact (for its size)."""
    f, m = flags(config.variant), config.model
    if config.runtime == "torch":
        return []
    if config.runtime == "et":
        return [folder / f"{m}{'_max8' if 'max8' in f else ''}.pte"]
    if config.runtime == "ort":
        name = f"{m}_{f['src']}" + (f"_{f['int8']}" if "int8" in f else "")
        return [p for p in (folder / f"{name}.onnx", folder / f"{name}.onnx.data") if p.exists()]
    xml = folder / (f"{m}_{f['src']}" + ("_int8" if "int8" in f else "") + ".xml")
    return [xml, xml.with_suffix(".bin")]


def worker(folder: Path, config: Config, seconds: float) -> None:
    """Build ``config``'s runtime in this process, check parity on the 8 rows, time it; print one JSON line."""
    import numpy as np

    data = np.load(folder / f"{config.model}_rows.npz")
    names = json.loads((folder / "prepare.json").read_text())[config.model]["inputs"]
    rows = {name: data[name] for name in names}
    reference = data["reference"]
    f = flags(config.variant)
    run, settings, static = build(folder, config, f, names)
    # parity: at the timed batch (batch 1 and static artifacts: one row at a time)
    step = 1 if config.batch == 1 else PARITY_ROWS
    outputs = np.concatenate([np.asarray(run({n: rows[n][i:i + step] for n in names}), dtype=np.float32)
                              for i in range(0, PARITY_ROWS, step)])
    error = float(np.abs(outputs - reference).max())
    scale = float(np.abs(reference).max())
    a, b = outputs.ravel().astype(np.float64), reference.ravel().astype(np.float64)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    precision = "int8" if "int8" in f else "bf16" if f.get("prec") == "bf16" else "fp32"
    verified = bool(np.allclose(outputs, reference, rtol=1e-4, atol=1e-5)) if precision == "fp32" else (
        error / scale <= 0.10 and cosine >= 0.999) if precision == "int8" else bool(
        np.allclose(outputs, reference, rtol=1e-2, atol=5e-3))
    if config.batch not in (1, PARITY_ROWS):
        raise SystemExit(f"batch {config.batch}: measure batch 1 or {PARITY_ROWS} (the parity rows)")
    timed = {n: np.ascontiguousarray(rows[n][:config.batch]) for n in names}
    call = run.timed(timed) if hasattr(run, "timed") else (lambda: run(timed))
    times = time_calls(call, seconds)
    size = sum(p.stat().st_size for p in artifact(folder, config))
    print(json.dumps({"ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000,
                      "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))] * 1000, "calls": len(times),
                      "max_abs": error, "share": error / scale, "cosine": cosine, "precision": precision,
                      "verified": verified, "size_mb": size / 1e6, "static": static,
                      "settings": settings}))


def time_calls(call: Any, seconds: float) -> list[float]:
    """Warm up (10 calls or 0.5 s, at least 2 calls), then time calls for ``seconds`` and at least 20 calls
    (at least 3 calls and 3 s for slow ones)."""
    started = time.perf_counter()
    warm = 0
    while warm < 2 or (warm < 10 and time.perf_counter() - started < 0.5):
        call()
        warm += 1
    times: list[float] = []
    started = time.perf_counter()
    while True:
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and (len(times) >= 20 or (len(times) >= 3 and elapsed >= 3.0)):
            return times


class Runner:
    """``runner(inputs) -> action`` plus ``runner.timed(inputs) -> zero-argument call``."""

    def __init__(self, run: Any, timed: Any = None) -> None:
        self.run = run
        if timed is not None:
            self.timed = timed

    def __call__(self, inputs: dict[str, Any]) -> Any:
        return self.run(inputs)


def build(folder: Path, config: Config, f: dict[str, str], names: list[str]) -> tuple[Runner, dict[str, Any], bool]:
    threads = int(f.get("threads", THREADS))
    if config.runtime == "torch":
        return build_torch(config, f, threads)
    if config.runtime == "ort":
        return build_ort(artifact(folder, config)[0], threads)
    if config.runtime == "et":
        return build_et(artifact(folder, config)[0], names, threads)
    return build_ov(artifact(folder, config)[0], config.batch, f, names, threads)


def eager_calls(module: Any) -> tuple[Any, Any]:
    """``(run, timed)`` for PyTorch eager: ``run(inputs)`` -> numpy output; ``timed(inputs)`` -> a no-argument call."""
    import torch

    def run(inputs: dict[str, Any]) -> Any:
        batch = {k: torch.from_numpy(v) for k, v in inputs.items()}
        with torch.inference_mode():
            return module(batch).numpy()

    def timed(inputs: dict[str, Any]) -> Any:
        batch = {k: torch.from_numpy(v) for k, v in inputs.items()}

        def call() -> Any:
            with torch.inference_mode():
                return module(batch)

        return call

    return run, timed


def build_torch(config: Config, f: dict[str, str], threads: int) -> tuple[Runner, dict[str, Any], bool]:
    import torch

    torch.set_num_threads(threads)
    policy, _, _ = policy_and_rows(config.model)
    run, timed = eager_calls(policy.model)
    settings = {"torch.get_num_threads": torch.get_num_threads(), "inference_mode": True,
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)")}
    return Runner(run, timed), settings, False


def build_ort(path: Path, threads: int) -> tuple[Runner, dict[str, Any], bool]:
    """The tool's session (getiaction_export.parity.runtimes.onnxruntime_session), spelled out."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs: dict[str, Any]) -> Any:
        return session.run(["action"], inputs)[0]

    def timed(inputs: dict[str, Any]) -> Any:
        return lambda: session.run(["action"], inputs)

    settings = {"intra_op_num_threads": threads, "allow_spinning": 1, "force_spinning_stop": 1,
                "graph_optimization_level": "ORT_ENABLE_ALL"}
    return Runner(run, timed), settings, False


def build_ov(xml: Path, batch: int, f: dict[str, str], names: list[str],
             threads: int) -> tuple[Runner, dict[str, Any], bool]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    static = "static" in f
    if static:
        model.reshape({port.get_any_name(): [batch, *(d.get_length() for d in list(port.get_partial_shape())[1:])]
                       for port in model.inputs})
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": f.get("prec", "f32"), "INFERENCE_NUM_THREADS": threads}
    hint = f.get("hint", "latency")
    if hint != "none":
        config["PERFORMANCE_HINT"] = hint.upper()
    if "pin" in f:
        config["ENABLE_CPU_PINNING"] = f["pin"] == "on"
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    ports = {name: next(p for p in compiled.inputs if name in p.get_names()) for name in names}
    out = compiled.outputs[0]

    def run(inputs: dict[str, Any]) -> Any:
        return request.infer({ports[n]: v for n, v in inputs.items()})[out].copy()

    def timed(inputs: dict[str, Any]) -> Any:
        feed = {ports[n]: v for n, v in inputs.items()}
        return lambda: request.infer(feed)

    effective = {key: str(compiled.get_property(key)) for key in (
        "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "ENABLE_CPU_PINNING",
        "INFERENCE_PRECISION_HINT")}
    settings = {"compile_config": {k: str(v) for k, v in config.items()}, "effective": effective}
    return Runner(run, timed), settings, static


def build_et(path: Path, names: list[str], threads: int) -> tuple[Runner, dict[str, Any], bool]:
    import torch

    from getiaction.export.executorch import ExecutorchModel

    torch.set_num_threads(threads)  # torch only converts the inputs here; XNNPACK has its own pool
    model = ExecutorchModel(path, names, ["action"], threads=threads)

    def run(inputs: dict[str, Any]) -> Any:
        out = model({k: torch.from_numpy(v) for k, v in inputs.items()})
        return out[0] if isinstance(out, list | tuple) else out

    def timed(inputs: dict[str, Any]) -> Any:
        return model.timed_call({k: torch.from_numpy(v) for k, v in inputs.items()})

    settings = {"backend": "XNNPACK", "torch.get_num_threads": torch.get_num_threads()}
    if hasattr(model, "settings"):
        settings.update(model.settings())
    return Runner(run, timed), settings, False


# --------------------------------------------------------------------------------------------- measure


def measure(rounds: int, quick: bool = False, keep: Path | None = None) -> dict[str, Any]:
    configs = [c for c in MAIN if c.model == "act" and c.runtime != "et"] if quick else MAIN + ACT_B1 + OTHERS
    seconds = 0.3 if quick else 0.8
    samples: dict[str, list[dict[str, Any]]] = {c.key: [] for c in configs}
    busy: dict[str, list[float]] = {c.key: [] for c in configs}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        marker = folder / "prepare.json"
        if not marker.exists() or (json.loads(marker.read_text()).get("quick") and not quick):
            argv = [PYTHON, __file__, "--prepare", str(folder), *(["--quick"] if quick else [])]
            check(run_child(argv, env={"PYTHONWARNINGS": "ignore"}), "edge-format exports")
        prepared = json.loads((folder / "prepare.json").read_text())
        prepare_s = round(time.perf_counter() - started, 1)
        et_ok = not quick and executorch_ready(folder, errors)
        if quick:
            errors["et"] = "skipped by --quick (lowering both programs takes minutes)"
        for index in range(rounds):
            order = configs if index % 2 == 0 else configs[::-1]
            for config in order:
                if config.runtime == "et" and not et_ok:
                    continue
                if config.key in errors:
                    continue
                env = TORCH_ENV if config.runtime in ("torch", "et") and "omp=default" not in config.variant else {}
                argv = [PYTHON, __file__, "--worker", str(folder), config.model, str(config.batch),
                        config.runtime, config.variant, str(seconds)]
                child = run_child(argv, env={**env, "PYTHONWARNINGS": "ignore"})
                if child.returncode != 0:
                    errors[config.key] = (child.stderr.strip().splitlines() or ["?"])[-1][:300]
                    print(f"  {config.key}: FAILED {errors[config.key]}", file=sys.stderr, flush=True)
                    continue
                sample = json.loads(child.stdout.strip().splitlines()[-1])
                samples[config.key].append(sample)
                busy[config.key].append(round(child.runnable, 2))
            print(f"  round {index + 1}/{rounds} done, load {load_average()}", file=sys.stderr, flush=True)
    summary = {}
    for config in configs:
        got = samples[config.key]
        if not got:
            continue
        ms = [s["ms"] for s in got]
        summary[config.key] = {
            "model": config.model, "batch": config.batch, "runtime": config.runtime, "variant": config.variant,
            "label": config.label, "ms": median(ms), "ms_min": min(ms), "ms_max": max(ms), "rounds": len(ms),
            "max_abs": max(s["max_abs"] for s in got), "share": max(s["share"] for s in got),
            "cosine": min(s["cosine"] for s in got), "verified": all(s["verified"] for s in got),
            "precision": got[0]["precision"],
            "size_mb": got[0]["size_mb"], "settings": got[0]["settings"], "samples_ms": [round(x, 4) for x in ms],
            "runnable": busy[config.key],
        }
    return {"rounds": rounds, "seconds_per_child": seconds, "torch_env": TORCH_ENV, "threads": THREADS,
            "prepare": prepared, "prepare_s": prepare_s, "results": summary, "errors": errors}


def executorch_ready(folder: Path, errors: dict[str, str]) -> bool:
    marker = folder / "prepare_et.json"
    if marker.exists() and json.loads(marker.read_text()).get("version") == 2:
        return True
    if not (Path(__file__).resolve().parents[1] / "src/getiaction/export/executorch.py").exists():
        errors["et"] = "getiaction.export.executorch is not there yet"
        return False
    child = run_child([PYTHON, __file__, "--prepare-et", str(folder)], env={"PYTHONWARNINGS": "ignore"})
    if child.returncode != 0:
        errors["et"] = (child.stderr.strip().splitlines() or ["?"])[-1][:300]
        print(f"  ExecuTorch export FAILED: {errors['et']}", file=sys.stderr, flush=True)
        return False
    return True


# ---------------------------------------------------------------------------------------------- report

def _eager(results: dict[str, Any], model: str, batch: int) -> tuple[float, float, float]:
    """Eager for model/batch: the fastest variant's median over rounds, the best round of any variant, and the
    PASSIVE 2-thread median (ms). The fastest variant is the baseline: eager is not handicapped by our setting."""
    eager = [r for r in results.values() if r["model"] == model and r["batch"] == batch and r["runtime"] == "torch"]
    passive = results[f"{model}|{batch}|torch|omp=passive"]["ms"]
    return min(r["ms"] for r in eager), min(r["ms_min"] for r in eager), passive


def _row(r: dict[str, Any], eager: tuple[float, float, float], name: str) -> str:
    base, best, passive = eager
    spread = f"{r['ms_min']:.2f}–{r['ms_max']:.2f}" if r["rounds"] > 1 else "–"
    error = "(reference)" if r["runtime"] == "torch" else (
        f"{r['max_abs']:.1e} ({100 * r['share']:.2g}%) {'✓' if r['verified'] else '✗'}")
    size = f"{r['size_mb']:.1f}" if r["size_mb"] else "–"
    return (f"| {name} | {r['ms']:.2f} | {spread} | **{base / r['ms']:.2f}x** | {best / r['ms_min']:.2f}x "
            f"| {passive / r['ms']:.2f}x | {error} | {size} |")


HEADER = ["| runtime | ms (median of rounds) | rounds min–max | vs fastest eager | best round vs best eager round "
          "| vs eager PASSIVE | max abs diff (share of max abs action), verified | MB |",
          "|---|---|---|---|---|---|---|---|"]


def table(result: dict[str, Any]) -> str:
    results: dict[str, Any] = result["results"]
    lines: list[str] = []
    for model in MODELS:
        for batch in (1, 8):
            if f"{model}|{batch}|torch|omp=passive" not in results:
                continue
            eager = _eager(results, model, batch)
            lines += [f"**{model}, batch {batch}**", "", *HEADER]
            for config in [c for c in MAIN + OTHERS if c.model == model and c.batch == batch]:
                r = results.get(config.key)
                if r:
                    lines.append(_row(r, eager, config.label))
            lines.append("")
    if "act|1|torch|omp=passive" in results and any(c.key in results for c in ACT_B1):
        eager = _eager(results, "act", 1)
        lines += ["**ACT, batch 1: what each setting is worth**", "", *HEADER]
        for config in [*MAIN[:7], *ACT_B1]:
            r = results.get(config.key)
            if r:
                lines.append(_row(r, eager, config.label))
        lines.append("")
    lines += verdict(result)
    if result["errors"]:
        lines += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in result["errors"].items())]
    return "\n".join(lines)


TOLERANCES = ("verified = within the tool's tolerance for the artifact's precision: fp32 atol 1e-5 + rtol 1e-4; "
              "int8 ≤ 10% of the largest |action| and cosine ≥ 0.999; bf16 inference (no tolerance of its own) "
              "judged as fp16, atol 5e-3 + rtol 1e-2")


def verdict(result: dict[str, Any]) -> list[str]:
    results: dict[str, Any] = result["results"]
    if "act|1|torch|omp=passive" not in results:
        return []
    base, base_best, passive = _eager(results, "act", 1)
    candidates = [r for r in results.values() if r["model"] == "act" and r["batch"] == 1
                  and r["runtime"] != "torch" and r["verified"]]
    if not candidates:
        return []
    fastest = min(candidates, key=lambda r: r["ms"])
    by_best = min(candidates, key=lambda r: r["ms_min"])
    floats = [r for r in candidates if r["precision"] == "fp32"]
    word = "reached" if base / fastest["ms"] >= TARGET else "NOT reached"
    lines = [f"P2 (ACT batch 1 ≥ {TARGET:.0f}x eager through a verified artifact; {TOLERANCES}): fastest "
             f"{fastest['runtime']} `{fastest['variant']}` {fastest['ms']:.2f} ms = **{base / fastest['ms']:.2f}x** "
             f"the fastest eager ({base:.2f} ms; {passive / fastest['ms']:.2f}x eager PASSIVE), error "
             f"{fastest['max_abs']:.1e} ({100 * fastest['share']:.2g}%): {word}. "
             f"Settings: {json.dumps(fastest['settings'])}",
             "", f"Fastest by best round: {by_best['runtime']} `{by_best['variant']}` {by_best['ms_min']:.2f} ms = "
             f"**{base_best / by_best['ms_min']:.2f}x** eager's best round ({base_best:.2f} ms)."]
    if floats:
        f32 = min(floats, key=lambda r: r["ms"])
        lines += ["", f"Fastest fp32 artifact: {f32['runtime']} `{f32['variant']}` {f32['ms']:.2f} ms = "
                  f"**{base / f32['ms']:.2f}x** the fastest eager."]
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--prepare":
        prepare(Path(sys.argv[2]), "--quick" in sys.argv[3:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--prepare-et":
        prepare_executorch(Path(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        folder, model, batch, runtime, variant, seconds = sys.argv[2:8]
        worker(Path(folder), Config(model, int(batch), runtime, variant), float(seconds))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: one round, ACT only, no ExecuTorch")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the exported artifacts in this folder")
    parser.add_argument("--json", type=Path, help="also write the result (every sample) into this file's "
                        "'edge_speed' key, e.g. benchmarks/results.json")
    args = parser.parse_args()
    started = time.perf_counter()
    result = measure(1 if args.quick else args.rounds, args.quick, args.keep)
    result["minutes"] = round((time.perf_counter() - started) / 60, 1)
    print(table(result))
    if args.json:  # merged into the file under "edge_speed" (run_all.py's results.json keeps its other sections)
        merged = json.loads(args.json.read_text()) if args.json.exists() else {}
        merged["edge_speed"] = {"machine": machine(), **result}
        args.json.write_text(json.dumps(merged, indent=1) + "\n")
    print(f"\n{result['minutes']} min; load average {load_average()}", file=sys.stderr)


if __name__ == "__main__":
    main()
