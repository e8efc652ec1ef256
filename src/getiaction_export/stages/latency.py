"""Stage ``latency``: median batch-1 latency of PyTorch eager and of the exported runtime.

What a robot loop sees: one observation in, one action chunk out. Each call is timed on its own
with ``time.perf_counter`` after a warm-up; the median is reported (robust to a noisy neighbour).
The number of timed calls adapts to the model, about :data:`BUDGET_S` of PyTorch time, between
:data:`MIN_RUNS` and :data:`MAX_RUNS`, and is the same for both sides. PyTorch and the runtime
get the same thread count, recorded with the figures.

Example:
    >>> figures = measure(lambda: sum(range(100)), lambda: sum(range(10)), threads=1)
    >>> sorted(figures), figures["speedup"] > 1
    (['runs', 'runtime_ms', 'speedup', 'threads', 'torch_ms'], True)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from getiaction_export.machine import cpu_line
from getiaction_export.parity.gate import batch_of

if TYPE_CHECKING:
    from getiaction_export.parity.runtimes import OnnxRuntimeModel, OpenVINOModel
    from getiaction_export.state import FormatOutcome, JobState

WARMUP = 3
MIN_RUNS = 10
MAX_RUNS = 100
BUDGET_S = 1.0


def batch_one(sample: dict[str, torch.Tensor], dynamic_batch: bool) -> dict[str, torch.Tensor]:
    """The sample cut to batch 1 (a static-batch model keeps its own batch)."""
    if not dynamic_batch:
        return sample
    return {name: tensor[:1] if tensor.dim() else tensor for name, tensor in sample.items()}


def plan_runs(call: Callable[[], Any]) -> int:
    """Warm ``call`` up and choose how many timed calls fit the budget."""
    started = time.perf_counter()
    for _ in range(WARMUP):
        call()
    per_call = (time.perf_counter() - started) / WARMUP
    return int(min(MAX_RUNS, max(MIN_RUNS, BUDGET_S / max(per_call, 1e-9))))


def median_ms(call: Callable[[], Any], runs: int, warmup: int = WARMUP) -> float:
    """Median wall time of ``call`` in milliseconds over ``runs`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def torch_call(module: torch.nn.Module, batch: dict[str, torch.Tensor], call_style: str) -> Callable[[], Any]:
    """A no-argument PyTorch eager call of ``module`` on ``batch`` (no autograd, as deployed)."""
    from getiaction.export.onnx import call_with_batch

    def call() -> Any:
        with torch.inference_mode():
            return call_with_batch(module, batch, call_style)

    return call


def measure(
    eager: Callable[[], Any], runtime: Callable[[], Any], threads: int, reference: tuple[float, int] | None = None
) -> dict[str, Any]:
    """``{torch_ms, runtime_ms, speedup, threads, runs}``; ``reference`` reuses an earlier PyTorch figure."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if reference is None:
            runs = plan_runs(eager)
            reference = (median_ms(eager, runs, warmup=0), runs)
        torch_ms, runs = reference
        runtime_ms = median_ms(runtime, runs)
    finally:
        torch.set_num_threads(previous)
    return {"torch_ms": round(torch_ms, 6), "runtime_ms": round(runtime_ms, 6),
            "speedup": round(torch_ms / max(runtime_ms, 1e-9), 3), "threads": threads, "runs": runs}


def measure_format(state: JobState, outcome: FormatOutcome, candidate: OnnxRuntimeModel | OpenVINOModel,
                   echo: Callable[[str], None]) -> None:
    """Batch-1 latency of ``candidate`` beside PyTorch eager's (measured once per job); kept in the outcome."""
    built, sample, verification = state.built, state.sample, outcome.verification
    assert built is not None and sample is not None and verification is not None
    batch = batch_one(sample, verification.dynamic)
    eager = torch_call(built.module, batch, built.call_style)
    figures = measure(eager, candidate.timed_call(batch), state.threads, state.torch_latency)
    state.torch_latency = (figures["torch_ms"], figures["runs"])
    figures.update(runtime=candidate.runtime, batch=batch_of(batch), **candidate.settings())
    outcome.latency = figures
    echo(f"[latency] ✓ {outcome.runtime} {figures['runtime_ms']:.2f} ms vs PyTorch eager "
         f"{figures['torch_ms']:.2f} ms: {figures['speedup']:.2f}x (batch {figures['batch']}, "
         f"{figures['threads']} threads, median of {figures['runs']})")
    baseline = f32_baseline(state, outcome, batch, figures["runs"])
    if baseline is not None:
        f32_ms, what = baseline
        speedup = round(f32_ms / max(figures["runtime_ms"], 1e-9), 3)
        figures.update(f32_ms=round(f32_ms, 6), f32_runtime=what, vs_f32=speedup)
        if speedup <= 1.0:
            echo(f"[latency] ! {outcome.precision} is not faster than f32 on this CPU: {figures['runtime_ms']:.2f} ms "
                 f"vs {what} {f32_ms:.2f} ms ({cpu_line(state.machine['cpu'])}); here the f32 artifact is "
                 "at least as fast and closer to PyTorch")


def f32_baseline(state: JobState, outcome: FormatOutcome, batch: dict[str, torch.Tensor],
                 runs: int) -> tuple[float, str] | None:
    """A reduced-precision format's float32 counterpart in the same runtime, timed the same way: ``(ms, what)``.

    OpenVINO INT8: the f32 IR (this job's ``openvino`` format when it was timed, else the IR INT8 was made from);
    ONNX fp16: the float32 ONNX export. None for float32 formats, or when no counterpart is at hand.
    """
    from getiaction_export.parity.runtimes import OnnxRuntimeModel, OpenVINOModel

    if outcome.precision not in ("int8", "fp16") or state.graph is None:
        return None
    if outcome.name in ("openvino", "openvino_int8"):
        done = state.formats.get("openvino")
        if done is not None and done is not outcome and done.precision == "fp32" and done.latency:
            return float(done.latency["runtime_ms"]), "OpenVINO f32"
        path = state.scratch("f32_ir")
        if not path.is_file():
            return None
        model: OnnxRuntimeModel | OpenVINOModel = OpenVINOModel(path, state.graph.output_names, state.threads)
        what = "OpenVINO f32"
    elif outcome.name == "onnx" and state.scratch("source").is_file():
        model, what = OnnxRuntimeModel(state.scratch("source"), state.threads), "onnxruntime fp32"
    else:
        return None
    return median_ms(model.timed_call(batch), runs), what
