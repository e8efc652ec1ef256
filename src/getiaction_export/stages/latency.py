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

from getiaction_export.parity import batch_of

if TYPE_CHECKING:
    from getiaction_export.runtimes import OnnxRuntimeModel, OpenVINOModel
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
    return {"torch_ms": round(torch_ms, 4), "runtime_ms": round(runtime_ms, 4),
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
