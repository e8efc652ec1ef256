"""Stage ``verify``: hold each artifact to PyTorch on the same seeded inputs, within each output's tolerance.

:func:`verification_for` decides once per format what the artifact is held to (the inputs, the
job's shared :class:`~getiaction_export.parity.runtimes.TorchReference`, each output's tolerance); the
parity stage and the physicalai runtime check both use it. An fp32 output held to the precision's
default gets a bound fitted to PyTorch's own float32 rounding (:mod:`getiaction_export.parity.fp32_bound`;
the float64 run it needs happens once per job, inside the first verify stage that needs it, and
never when no format uses the default). :func:`gate` runs a candidate runtime on it and records
the figures in the format's outcome; a failure raises.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from getiaction.errors import ConfigError, ExportError, VerificationError
from getiaction.export import Export
from getiaction_export.config.format_plan import tolerances
from getiaction_export.parity.fp32_bound import FITS, Float64Reference, describe, fitted, float64_gaps
from getiaction_export.parity.gate import ParityReport, check_parity, verification_inputs
from getiaction_export.parity.runtimes import Runner, TorchReference, torch_runner
from getiaction_export.parity.tolerance import Tolerance
from getiaction_export.state import Cases, FormatOutcome, JobState, Verification


def verification_for(state: JobState, outcome: FormatOutcome) -> Verification:
    """The seeded inputs, PyTorch's (shared) outputs and per-output tolerances of a graph format."""
    if outcome.verification is not None:
        return outcome.verification
    fmt, graph, sample = outcome.schema, state.graph, state.sample
    assert graph is not None and sample is not None and state.built is not None
    unknown = sorted(set(fmt.output_tolerances) - set(graph.output_names))
    if unknown:
        raise ConfigError(f"format.output_tolerances.{unknown[0]}: no such output; outputs: {graph.output_names}")
    if state.reference is None:
        pytorch = state.built.reference or state.built.module
        state.reference = TorchReference(pytorch, state.built.call_style, graph.input_names)
    dynamic = bool(graph.dynamic_axes) and fmt.dynamic_batch
    batch_sizes = list(fmt.verify_batch_sizes)
    accepted = outcome.details.get("batch_range")
    if accepted:  # a program's range is bounded: its largest batch too, none beyond it
        batch_sizes = [b for b in batch_sizes if b <= accepted[1]] + [accepted[1]]
    cases = verification_inputs(sample, batch_sizes, dynamic, fmt.num_random_inputs, fmt.seed)
    chosen = {name: tolerances(fmt, name) for name in graph.output_names}
    if any(bound["source"] == FITS for bound in chosen.values()):
        chosen = fit_fp32(state, cases, chosen)
    outcome.verification = Verification(cases, state.reference, chosen, dynamic)
    return outcome.verification


def fit_fp32(state: JobState, cases: Cases, chosen: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each default fp32 tolerance in ``chosen`` fitted to PyTorch's own float32 error on ``cases``.

    The float64 run is the job's (:attr:`JobState.exact`): inputs already run are not run again.
    When it cannot be made, the fixed bound stays and ``fallback`` says why.
    """
    built, reference = state.built, state.reference
    assert built is not None and reference is not None and state.graph is not None
    names = state.graph.output_names
    if state.exact is None:
        state.exact = Float64Reference(built.reference or built.module, built.call_style, state.graph.input_names)
    exact = state.exact.outputs(cases)
    gaps, why = (None, state.exact.failure) if exact is None else \
        float64_gaps([reference(batch) for _, batch in cases], exact, names)
    return {name: bound if bound["source"] != FITS else
            {**bound, "fallback": why} if gaps is None else fitted(bound, *gaps[name], state.exact.seconds)
            for name, bound in chosen.items()}


def gate(outcome: FormatOutcome, candidate: Runner, output_names: list[str], echo: Callable[[str], None],
         label_outputs: bool) -> ParityReport:
    """Run ``candidate`` on the format's verification; record the figures; raise when it fails."""
    verification = outcome.verification
    assert verification is not None
    for name, chosen in verification.tolerances.items():
        phrase = describe(name, chosen)
        if phrase is not None:
            echo(f"[verify] {outcome.name + ' ' if label_outputs else ''}{phrase}")
    bounds = verification.bounds()
    atol, rtol = bounds[output_names[0]][:2] if output_names else (0.0, 0.0)
    report = check_parity(verification.reference, candidate, output_names, verification.cases, atol, rtol,
                          per_output=bounds)
    record(outcome, report, echo, label_outputs)
    return report


def record(outcome: FormatOutcome, report: ParityReport, echo: Callable[[str], None] | None,
           label_outputs: bool) -> None:
    """Keep ``report`` as the format's parity; say each output's figures; raise on overflow or failure."""
    outcome.parity = report
    for name, figures in report.outputs.items():
        if echo is not None:
            mark = "✓" if figures["passed"] else "✗"
            label = f"{outcome.name} {name}" if label_outputs else name
            echo(f"[verify] {mark} {label}: {figures_line(figures)}")
    overflowed = [name for name, o in report.outputs.items() if o["nonfinite_actual"] and not o["nonfinite_expected"]]
    if overflowed and outcome.precision == "fp16":
        raise ExportError(
            f"format.precision=fp16: output {overflowed[0]!r} is NaN/Inf in {outcome.runtime} where PyTorch's is "
            "finite (float16 overflow); export this model with format.precision=fp32"
        )
    if not report.passed:
        raise VerificationError(f"parity failed ({outcome.runtime} vs PyTorch): " + "; ".join(report.failures()))


def figures_line(figures: dict[str, Any]) -> str:
    """``max abs diff 1.2e-06 (atol 1e-05), max rel 3.4e-05``, or for a scale bound the share and cosine."""
    if figures.get("atol") is not None:
        return (f"max abs diff {figures['max_abs_diff']:.2e} (atol {figures['atol']:.3g}), "
                f"max rel {figures['max_rel_diff']:.2e}")
    bound = Tolerance(None, None, figures.get("max_share"), figures.get("min_cosine"))
    return (f"max abs diff {figures['max_abs_diff']:.2e} = {figures['share']:.2%} of the largest |output| "
            f"({figures['max_abs_expected']:.3g}), cosine {figures['cosine']:.6f} (bound: {bound.describe()})")


def verify_checkpoint(state: JobState, outcome: FormatOutcome, echo: Callable[[str], None]) -> int:
    """Load the staged checkpoint back as a user would; it must be bit-identical. Returns the case count."""
    built, sample = state.built, state.sample
    assert built is not None and sample is not None
    reloaded = _reload(state, outcome)
    fmt = outcome.schema
    cases = verification_inputs(sample, [1, 2], True, fmt.num_random_inputs, fmt.seed)
    original = _seeded(torch_runner(built.module, built.call_style), fmt.seed)
    count = len(original(sample))
    names = ["action", *[f"output_{i}" for i in range(1, count)]]
    outcome.runner = _seeded(torch_runner(reloaded, built.call_style), fmt.seed)
    report = check_parity(original, outcome.runner, names, cases, atol=0.0, rtol=0.0)
    record(outcome, report, echo, len(state.formats) > 1)
    return len(cases)


def _seeded(runner: Runner, seed: int) -> Runner:
    """``runner`` with torch's RNG seeded for each call: a policy that draws (SmolVLA's noise) draws the same."""

    def run(batch: dict[str, torch.Tensor]) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return runner(batch)

    return run


def _reload(state: JobState, outcome: FormatOutcome) -> torch.nn.Module:
    from getiaction.export.torch import load_checkpoint, load_policy

    built = state.built
    assert built is not None
    path = outcome.staged[0]
    if isinstance(built.module, Export):
        # The class we just built is trusted for the load-back, whatever the allow-list says.
        allowed = [*state.config.allowed_packages, built.class_path.split(".")[0]]
        reloaded: torch.nn.Module = load_policy(path, allowed_packages=allowed)
        return reloaded
    fresh = copy.deepcopy(built.module)  # a plain module: its weights are what the checkpoint holds
    getattr(fresh, "wrapped", fresh).load_state_dict(load_checkpoint(path).state_dict, strict=True)  # see export
    return fresh.eval()
