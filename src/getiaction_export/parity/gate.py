"""The parity gate's arithmetic: verification inputs, per-output comparison, worst-case report.

Inputs are the sample itself plus seeded random inputs shaped like it (values drawn within the
sample's own range), at the sample's batch size and, when the batch is dynamic, at each of the
configured batch sizes. Per output the worst case over all of them is reported: max abs diff,
mean abs diff, max rel diff, ``share`` (max abs diff over the largest ``|PyTorch output|``), cosine
similarity, and pass/fail against the output's :class:`Tolerance`: elementwise
``|a - b| <= atol + rtol*|b|`` (float32), or relative to the output's scale (``share <= max_share``
and ``cosine >= min_cosine``: reduced precision, where an elementwise bound is either too loose for
large outputs or too tight for small ones). Non-finite values on either side fail the output, and
which side had them is recorded (``nonfinite_expected`` / ``nonfinite_actual``).

The runtimes being compared are in :mod:`getiaction_export.parity.runtimes`; the stage that runs the
gate and records its figures is :mod:`getiaction_export.stages.verify`.

Example:
    >>> import numpy as np
    >>> stats = compare(np.array([1.0, 2.0]), np.array([1.0, 2.00001]), atol=1e-5, rtol=1e-4)
    >>> stats["passed"], round(stats["max_abs_diff"], 6)
    (True, 1e-05)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from getiaction_export.parity.runtimes import Runner, paired
from getiaction_export.parity.tolerance import Tolerance, compare, failure_phrase, keep_worst


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
        return [failure_phrase(name, o) for name, o in self.outputs.items() if not o["passed"]]


def random_tensor(
    shape: list[int], dtype: torch.dtype, generator: torch.Generator, low: float, high: float
) -> torch.Tensor:
    """A seeded tensor: uniform in [low, high) for floats, integers in [low, high] otherwise."""
    if dtype.is_floating_point:
        return (torch.rand(shape, generator=generator) * (high - low) + low).to(dtype)
    if dtype is torch.bool:
        return torch.rand(shape, generator=generator) < 0.5
    return torch.randint(int(low), int(high) + 1, shape, generator=generator, dtype=dtype)


def batch_of(batch: Mapping[str, torch.Tensor]) -> int:
    """The batch size of a batch of inputs (axis 0 of its first tensor; 1 for a scalar)."""
    first = next(iter(batch.values()))
    return int(first.shape[0]) if first.dim() else 1


def verification_inputs(
    sample: dict[str, torch.Tensor],
    batch_sizes: Sequence[int],
    dynamic_batch: bool,
    count: int,
    seed: int,
) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The sample, then ``count`` seeded random inputs at each batch size to check."""
    generator = torch.Generator().manual_seed(seed)
    sample_batch = batch_of(sample)
    sizes = [sample_batch] + ([b for b in batch_sizes if b != sample_batch] if dynamic_batch else [])
    cases = [(f"sample b={sample_batch}", sample)]
    for batch in sizes:
        for index in range(count):
            inputs = {name: random_like(tensor, batch, generator) for name, tensor in sample.items()}
            cases.append((f"random#{index} b={batch}", inputs))
    return cases


def random_like(tensor: torch.Tensor, batch: int, generator: torch.Generator) -> torch.Tensor:
    shape = [batch, *tensor.shape[1:]] if tensor.dim() else []
    if tensor.dtype is torch.bool:
        return random_tensor(shape, tensor.dtype, generator, 0, 1)
    low, high = float(tensor.min()), float(tensor.max())
    if low == high:
        low, high = low - 1.0, high + 1.0
    return random_tensor(shape, tensor.dtype, generator, low, high)


def check_parity(
    reference: Runner,
    candidate: Runner,
    output_names: Sequence[str],
    cases: list[tuple[str, dict[str, torch.Tensor]]],
    atol: float | None,
    rtol: float | None,
    per_output: Mapping[str, tuple[float | None, ...]] | None = None,
) -> ParityReport:
    """Run both on every case; keep each output's worst figures.

    ``per_output`` maps an output name to its own :class:`Tolerance` (or ``(atol, rtol)``); the others
    use ``atol``/``rtol``. A reference ``conditioned_on`` what the candidate draws runs on that draw
    (:func:`~getiaction_export.parity.runtimes.paired`).
    """
    report = ParityReport()
    for label, inputs in cases:
        expected, actual = paired(reference, candidate, inputs, output_names)
        batch = batch_of(inputs)
        for name, want, got in zip(output_names, expected, actual, strict=True):
            bound = Tolerance(*(per_output or {}).get(name, (atol, rtol)))
            stats = compare(want, got, *bound)
            report.cases.append({"case": label, "batch": batch, "output": name, **stats})
            keep_worst(report.outputs, name, stats, bound)
    return report
