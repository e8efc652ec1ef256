"""Stage ``verify``: the parity gate between PyTorch and the exported artifact.

Inputs are the sample itself plus seeded random inputs shaped like it (values drawn within the
sample's own range), at the sample's batch size and, when the batch is dynamic, at each of the
configured batch sizes. Per output the worst case over all of them is reported: max abs diff,
mean abs diff, max rel diff, cosine similarity, and pass/fail against ``|a - b| <= atol + rtol*|b|``.
Non-finite values on either side fail the output.

Example:
    >>> import numpy as np
    >>> stats = compare(np.array([1.0, 2.0]), np.array([1.0, 2.00001]), atol=1e-5, rtol=1e-4)
    >>> stats["passed"], round(stats["max_abs_diff"], 6)
    (True, 1e-05)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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
                "cosine": 0.0, "nonfinite": False, "passed": False,
                "shape_mismatch": [list(expected64.shape), list(actual64.shape)]}
    nonfinite = bool(not np.isfinite(expected64).all() or not np.isfinite(actual64).all())
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
            "nonfinite": nonfinite, "passed": within and not nonfinite}


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


def onnxruntime_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session with full graph optimizations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_runner(path: Path) -> tuple[Runner, list[str]]:
    """Run an ONNX file in onnxruntime; return the runner and its output names."""
    session = onnxruntime_session(path)
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]

    def run(batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        feed = {name: batch[name].numpy() for name in input_names}
        return [np.asarray(output, dtype=np.float32) for output in session.run(output_names, feed)]

    return run, output_names


def check_parity(
    reference: Runner,
    candidate: Runner,
    output_names: Sequence[str],
    cases: list[tuple[str, dict[str, torch.Tensor]]],
    atol: float,
    rtol: float,
) -> ParityReport:
    """Run both on every case; keep each output's worst figures."""
    report = ParityReport()
    for label, inputs in cases:
        expected, actual = reference(inputs), candidate(inputs)
        batch = next(iter(inputs.values())).shape[0] if next(iter(inputs.values())).dim() else 1
        for name, want, got in zip(output_names, expected, actual, strict=True):
            stats = compare(want, got, atol, rtol)
            report.cases.append({"case": label, "batch": batch, "output": name, **stats})
            worst = report.outputs.setdefault(
                name, {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "max_rel_diff": 0.0, "cosine": 1.0,
                       "nonfinite": False, "atol": atol, "rtol": rtol, "passed": True}
            )
            for key in ("max_abs_diff", "mean_abs_diff", "max_rel_diff"):
                worst[key] = max(worst[key], stats[key])
            worst["cosine"] = min(worst["cosine"], stats["cosine"])
            worst["nonfinite"] = worst["nonfinite"] or stats["nonfinite"]
            worst["passed"] = worst["passed"] and stats["passed"]
    return report
