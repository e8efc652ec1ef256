"""Stage ``verify``: the parity gate between PyTorch and the exported artifact.

Inputs are the sample itself plus seeded random inputs shaped like it (values drawn within the
sample's own range), at the sample's batch size and, when the batch is dynamic, at each of the
configured batch sizes. Per output the worst case over all of them is reported: max abs diff,
mean abs diff, max rel diff, cosine similarity, and pass/fail against ``|a - b| <= atol + rtol*|b|``
(tolerances per output). Non-finite values on either side fail the output, and which side had
them is recorded (``nonfinite_expected`` / ``nonfinite_actual``).

The runtimes are set up the way the tool recommends deploying them, for speed: see
:func:`onnxruntime_session` and :class:`OpenVINOModel`.

Example:
    >>> import numpy as np
    >>> stats = compare(np.array([1.0, 2.0]), np.array([1.0, 2.00001]), atol=1e-5, rtol=1e-4)
    >>> stats["passed"], round(stats["max_abs_diff"], 6)
    (True, 1e-05)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from getiaction.errors import ConfigError
from getiaction.export.onnx import call_with_batch, output_tensors
from getiaction_export.stages.sample import random_tensor

Runner = Callable[[dict[str, torch.Tensor]], list[np.ndarray]]


@dataclass
class ParityReport:
    """Worst-case figures per output, and each checked case."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o["passed"] for o in self.outputs.values())

    def failures(self) -> list[str]:
        """One phrase per failing output."""
        return [
            f"{name}: max abs diff {o['max_abs_diff']:.3g} > atol {o['atol']:g}"
            + (" (non-finite values)" if o["nonfinite"] else "")
            for name, o in self.outputs.items()
            if not o["passed"]
        ]


def compare(expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Difference figures of ``actual`` against ``expected``."""
    expected64 = expected.astype(np.float64)
    actual64 = actual.astype(np.float64)
    if expected64.shape != actual64.shape:
        return {"max_abs_diff": float("inf"), "mean_abs_diff": float("inf"), "max_rel_diff": float("inf"),
                "cosine": 0.0, "nonfinite": False, "nonfinite_expected": False, "nonfinite_actual": False,
                "passed": False, "shape_mismatch": [list(expected64.shape), list(actual64.shape)]}
    nonfinite_expected = bool(not np.isfinite(expected64).all())
    nonfinite_actual = bool(not np.isfinite(actual64).all())
    nonfinite = nonfinite_expected or nonfinite_actual
    diff = np.abs(expected64 - actual64)
    if diff.size == 0:
        max_abs = mean_abs = max_rel = 0.0
    else:
        max_abs, mean_abs = float(np.nanmax(diff)), float(np.nanmean(diff))
        max_rel = float(np.nanmax(diff / np.maximum(np.abs(expected64), 1e-12)))
    norms = float(np.linalg.norm(expected64) * np.linalg.norm(actual64))
    cosine = float(np.dot(expected64.ravel(), actual64.ravel()) / norms) if norms > 0 else 1.0
    within = bool(np.all(diff <= atol + rtol * np.abs(expected64)))
    return {"max_abs_diff": max_abs, "mean_abs_diff": mean_abs, "max_rel_diff": max_rel, "cosine": cosine,
            "nonfinite": nonfinite, "nonfinite_expected": nonfinite_expected, "nonfinite_actual": nonfinite_actual,
            "passed": within and not nonfinite}


def verification_inputs(
    sample: dict[str, torch.Tensor],
    batch_sizes: Sequence[int],
    dynamic_batch: bool,
    count: int,
    seed: int,
) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The sample, then ``count`` seeded random inputs at each batch size to check."""
    generator = torch.Generator().manual_seed(seed)
    sample_batch = next(iter(sample.values())).shape[0] if next(iter(sample.values())).dim() else 1
    sizes = [sample_batch] + ([b for b in batch_sizes if b != sample_batch] if dynamic_batch else [])
    cases = [(f"sample b={sample_batch}", sample)]
    for batch in sizes:
        for index in range(count):
            inputs = {name: _like(tensor, batch, generator) for name, tensor in sample.items()}
            cases.append((f"random#{index} b={batch}", inputs))
    return cases


def _like(tensor: torch.Tensor, batch: int, generator: torch.Generator) -> torch.Tensor:
    shape = [batch, *tensor.shape[1:]] if tensor.dim() else []
    if tensor.dtype is torch.bool:
        return random_tensor(shape, tensor.dtype, generator, 0, 1)
    low, high = float(tensor.min()), float(tensor.max())
    if low == high:
        low, high = low - 1.0, high + 1.0
    return random_tensor(shape, tensor.dtype, generator, low, high)


def torch_runner(module: nn.Module, call_style: str, input_names: Sequence[str] | None = None) -> Runner:
    """Run the PyTorch module and return its outputs as numpy arrays in graph-output order."""

    def run(batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        feed = {k: batch[k] for k in input_names} if input_names is not None else batch
        with torch.no_grad():
            outputs = output_tensors(call_with_batch(module, feed, call_style))
        return [output.detach().float().cpu().numpy() for output in outputs]

    return run


ONNXRUNTIME_OPTIONS = {
    "graph_optimization_level": "ORT_ENABLE_ALL",
    "execution_mode": "ORT_SEQUENTIAL",
    "inter_op_num_threads": 1,
    "intra_op_num_threads": "threads",
    "session.intra_op.allow_spinning": "1",
    "session.force_spinning_stop": "1",
}
"""How :func:`onnxruntime_session` configures onnxruntime (recorded in result.json with the latency).

All graph optimizations (constant folding, layout changes for convolutions, fusions such as
LayerNorm, GELU, MatMul+Add); one sequential stream of operators with ``threads`` threads inside
each; worker threads that spin while a run needs them (onnxruntime's default; on an idle 2-core
machine ACT-like batch-1 ran in 1.6 ms spinning vs 2.4 ms sleeping) and stop spinning when the
run returns, so between calls they leave the cores to the rest of the process and the machine
(PyTorch's own threads, the next runtime being measured, a robot's other processes). Measured
trade-offs in benchmarks/RESULTS.md."""


def default_threads() -> int:
    """The thread count every runtime gets, PyTorch included: PyTorch's own default (physical cores)."""
    return max(1, torch.get_num_threads())


def onnxruntime_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session configured for batch-1 inference speed (see ONNXRUNTIME_OPTIONS)."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as error:  # not installed (an interrupted import is not this)
        raise ConfigError(
            "onnxruntime is not installed; the ONNX parity gate needs it: pip install onnxruntime"
        ) from error

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads or default_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModel:
    """An ONNX file in onnxruntime, called like a :data:`Runner`."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.session = onnxruntime_session(path, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def feed(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {name: batch[name].numpy() for name in self.input_names}

    def __call__(self, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        outputs = self.session.run(self.output_names, self.feed(batch))
        return [np.asarray(output, dtype=np.float32) for output in outputs]

    def timed_call(self, batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
        """A no-argument call on ``batch`` with the inputs converted once (for latency)."""
        feed = self.feed(batch)
        return lambda: self.session.run(self.output_names, feed)


class OpenVINOModel:
    """An OpenVINO IR compiled for CPU at f32 inference precision, with the latency hint.

    OpenVINO's CPU default can be bfloat16 (error ~1e-3 on ACT-like policies); verification must
    see the model's own numbers. Outputs come back in ``output_names`` order (the IR's own names).
    """

    runtime = "openvino"

    def __init__(self, xml_path: Path, output_names: Sequence[str], threads: int | None = None) -> None:
        from getiaction.export.openvino import F32_CONFIG, openvino_module

        ov = openvino_module("format=openvino")
        self.config = {**F32_CONFIG, "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_NUM_THREADS": threads or default_threads()}
        self.compiled = ov.Core().compile_model(str(xml_path), "CPU", self.config)
        self.request = self.compiled.create_infer_request()
        self.output_names = list(output_names)
        self._outputs = [_port_named(self.compiled.outputs, name, "output") for name in self.output_names]

    def feed(self, batch: dict[str, torch.Tensor]) -> dict[Any, np.ndarray]:
        """The batch keyed by input port: an IR port has several names, one of them the graph's own."""
        return {_port_named(self.compiled.inputs, name, "input"): batch[name].numpy()
                for name in batch if any(name in port.get_names() for port in self.compiled.inputs)}

    def __call__(self, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        results = self.request.infer(self.feed(batch))
        return [np.array(results[port], dtype=np.float32) for port in self._outputs]

    def timed_call(self, batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
        """A no-argument call on ``batch`` with the inputs converted once (for latency)."""
        feed = self.feed(batch)
        return lambda: self.request.infer(feed)


def _port_named(ports: Sequence[Any], name: str, kind: str) -> Any:
    for port in ports:
        if name in port.get_names():
            return port
    raise KeyError(f"the OpenVINO model has no {kind} named {name!r}")


def check_parity(
    reference: Runner,
    candidate: Runner,
    output_names: Sequence[str],
    cases: list[tuple[str, dict[str, torch.Tensor]]],
    atol: float,
    rtol: float,
    per_output: Mapping[str, tuple[float, float]] | None = None,
) -> ParityReport:
    """Run both on every case; keep each output's worst figures.

    ``per_output`` maps an output name to its own ``(atol, rtol)``; the others use ``atol``/``rtol``.
    """
    report = ParityReport()
    flags = ("nonfinite", "nonfinite_expected", "nonfinite_actual")
    for label, inputs in cases:
        expected, actual = reference(inputs), candidate(inputs)
        batch = next(iter(inputs.values())).shape[0] if next(iter(inputs.values())).dim() else 1
        for name, want, got in zip(output_names, expected, actual, strict=True):
            out_atol, out_rtol = (per_output or {}).get(name, (atol, rtol))
            stats = compare(want, got, out_atol, out_rtol)
            report.cases.append({"case": label, "batch": batch, "output": name, **stats})
            worst = report.outputs.setdefault(
                name, {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "max_rel_diff": 0.0, "cosine": 1.0,
                       **dict.fromkeys(flags, False), "atol": out_atol, "rtol": out_rtol, "passed": True}
            )
            for key in ("max_abs_diff", "mean_abs_diff", "max_rel_diff"):
                worst[key] = max(worst[key], stats[key])
            worst["cosine"] = min(worst["cosine"], stats["cosine"])
            for key in flags:
                worst[key] = worst[key] or stats[key]
            worst["passed"] = worst["passed"] and stats["passed"]
    return report
