"""What ``InferenceModel(folder)`` computes in when loaded with no hints, and how far that is from PyTorch.

physicalai compiles OpenVINO with exactly the caller's adapter kwargs (it adds the f32 hint only
on ARM), and nothing a package can carry changes that: on a bfloat16-capable CPU the default load
of an OpenVINO package computes in bf16. So the runtime check also runs the package as loaded
with no hints and holds it to PyTorch: f32 to the format's tolerance, bf16 to
:data:`REDUCED_PRECISION_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from getiaction.errors import ExportError, VerificationError
from getiaction_export.errors import first_line
from getiaction_export.physicalai.precision import cpu_bf16, default_call, precision_of
from getiaction_export.physicalai.runtime import RuntimeRunner, load
from getiaction_export.physicalai.task import Feed, numpy_feed

if TYPE_CHECKING:
    import torch

    from getiaction_export.parity.runtimes import Runner


REDUCED_PRECISION_TOLERANCE = 5e-2
"""The default load's gate when it computes below f32 (OpenVINO's bf16): on every input, max abs
difference from PyTorch <= 5 % of that input's largest ``|PyTorch output|`` (``relative``).
Measured with openvino 2026.4.1 on an AVX512-BF16 CPU, the shipped policies (``conf/policy``,
weight seeds 0 and 1; worst of the sample and 5 seeded inputs at batch 1, 2 and 8): ACT
0.8-1.0 %, diffusion (10 DDIM steps) 2.8-2.9 %. Diffusion's bf16 error grows with its steps
(4.9 % at 20, 11-12 % at 50): such a package fails this gate when OpenVINO is its default
backend; ``format=all`` makes ONNX (f32) the default."""

class DefaultLoadError(VerificationError):
    """The package's default backend, loaded with no hints, is off PyTorch by more than its tolerance.

    ``figures``: the runtime check's figures so far (its f32 checks passed), ``default_load`` included.
    """

    def __init__(self, message: str, figures: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.figures = dict(figures)

def check_default_load(
    model: Any,
    call: str,
    precision: str,
    reference: Runner,
    cases: list[tuple[str, dict[str, torch.Tensor]]],
    names: Sequence[str],
    all_names: Sequence[str],
    tolerances: Mapping[str, Sequence[float | None]],
    reduced: bool,
    feed: Feed = numpy_feed,
) -> dict[str, Any]:
    """The hint-free load ``model`` (made by ``call``) on every case against PyTorch (:func:`default_load_figures`)."""
    from getiaction_export.parity.runtimes import paired
    from getiaction_export.parity.tolerance import compare

    runner = RuntimeRunner(model, names, feed)
    indexes = [list(all_names).index(name) for name in names]
    rows = []
    for _, inputs in cases:
        expected, actual = paired(reference, runner, inputs, names)
        for name, index, got in zip(names, indexes, actual, strict=True):
            rows.append((name, compare(expected[index], got, *tolerances[name]), _largest(expected[index])))
    return default_load_figures(call, precision, rows, tolerances, reduced, len(cases))

def _largest(array: np.ndarray) -> float:
    return float(np.abs(array).max()) if array.size else 0.0

def reduced_bound(tolerance: Sequence[float | None]) -> float:
    """The share of the largest |output| a reduced-precision load may be off: :data:`REDUCED_PRECISION_TOLERANCE`,
    or the format's own scale bound (INT8's) when that is looser: a load cannot be held tighter than the format.

    >>> reduced_bound((1e-5, 1e-4)), reduced_bound((None, None, 0.1, 0.999))
    (0.05, 0.1)
    """
    own = tolerance[2] if len(tolerance) > 2 else None
    return max(REDUCED_PRECISION_TOLERANCE, own or 0.0)


def default_load_figures(
    call: str,
    precision: str,
    rows: Sequence[tuple[str, Mapping[str, Any], float]],
    tolerances: Mapping[str, Sequence[float | None]],
    reduced: bool,
    cases: int,
) -> dict[str, Any]:
    """The ``default_load`` record from ``(output, compare() figures, largest |PyTorch output|)`` per case.

    Held to the format's ``tolerances``, or when ``reduced`` (it computes below the precision the
    format was verified in) each case's max abs difference must stay within
    :data:`REDUCED_PRECISION_TOLERANCE` of its largest ``|PyTorch output|`` (or within the
    output's atol). ``relative`` is that ratio, worst over the cases.

    >>> figures = default_load_figures("InferenceModel(dir)", "bf16",
    ...     [("action", {"max_abs_diff": 0.02, "passed": False, "nonfinite": False}, 1.25)],
    ...     {"action": (1e-5, 1e-4)}, reduced=True, cases=1)
    >>> figures["relative"], figures["tolerance"], figures["passed"]
    (0.016, {'relative': 0.05}, True)
    """
    outputs: dict[str, dict[str, Any]] = {}
    for name, stats, largest in rows:
        diff = float(stats["max_abs_diff"])
        relative = diff / largest if largest > 0 else (0.0 if diff == 0 else float("inf"))
        within = (diff <= max(reduced_bound(tolerances[name]) * largest, tolerances[name][0] or 0.0)
                  and not stats["nonfinite"]) if reduced else stats["passed"]
        worst = outputs.setdefault(name, {"max_abs_diff": 0.0, "max_abs_output": 0.0, "relative": 0.0,
                                          "passed": True})
        worst["max_abs_diff"] = max(worst["max_abs_diff"], diff)
        worst["max_abs_output"] = max(worst["max_abs_output"], largest)
        worst["relative"] = max(worst["relative"], relative)
        worst["passed"] = worst["passed"] and bool(within)
    main = "action" if "action" in outputs else next(iter(outputs))
    atol, rtol = tolerances[main][:2]
    return {"call": call, "adapter_kwargs": {}, "precision": precision,
            "max_abs_diff": outputs[main]["max_abs_diff"], "relative": outputs[main]["relative"],
            "tolerance": {"relative": reduced_bound(tolerances[main])} if reduced else {"atol": atol, "rtol": rtol},
            "outputs": outputs, "cases": cases, "passed": all(o["passed"] for o in outputs.values())}

def default_load(
    folder: Path, backend: str, default_backend: str | None, graph_precision: str, reference: Runner,
    cases: list[tuple[str, dict[str, torch.Tensor]]], names: Sequence[str], output_names: Sequence[str],
    tolerances: Mapping[str, Sequence[float | None]], checked: Sequence[Mapping[str, Any]],
    feed: Feed = numpy_feed,
) -> dict[str, Any]:
    """The package as loaded with no hints (see the module doc): its figures, ``gated`` for the default backend.

    ``checked``: the parity check's per-case figures. onnxruntime takes no hints, so the load
    checked there is the default load: its figures are reused, nothing runs again.
    """
    call = default_call(backend, default_backend)
    if backend != "openvino":
        # the figures carry the largest |PyTorch output| of each case (conditioned, where the graph draws)
        rows = [(str(case["output"]), case, float(case["max_abs_expected"])) for case in checked]
        record = default_load_figures(call, graph_precision, rows, tolerances, False, len(cases))
    else:
        plain = load(folder, backend, default_backend, hints=False)
        precision = precision_of(plain)
        try:
            record = check_default_load(plain, call, precision, reference, cases, names, output_names, tolerances,
                                        reduced=precision != "f32", feed=feed)
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise ExportError(f"physicalai ({backend}, {call}) cannot run the package: "
                              f"{first_line(error)}") from error
        record["cpu_bf16"] = cpu_bf16()
    record["gated"] = backend == default_backend
    return record

def default_load_failure(backend: str, record: Mapping[str, Any]) -> str:
    """One line: the hint-free load of the default backend is off by more than its tolerance."""
    tolerance = record["tolerance"]
    bound = (f"{tolerance['relative']:.0%} of it" if "relative" in tolerance
             else f"atol {tolerance['atol']:.1e}, rtol {tolerance['rtol']:.1e}" if tolerance.get("atol") is not None
             else "the format's bound")
    advice = ("; export format=all to make ONNX (f32) the package's default backend"
              if record["precision"] != "f32" and backend == "openvino" else "")
    return (f"runtime check failed (physicalai {backend}, {record['call']} with no hints, {record['precision']} "
            f"on this CPU): action {record['max_abs_diff']:.3g} off PyTorch, {record['relative']:.1%} of the "
            f"largest |action| (tolerance {bound}){advice}")
