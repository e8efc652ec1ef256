"""Stage ``simplify`` (``format.simplify=true``): onnxslim on the verified ONNX file.

The simplified graph replaces the export only if it passes the same check and parity gate; a
graph that fails either is dropped with a ``✗`` line and the verified original is kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from getiaction.errors import ExportError, VerificationError
from getiaction_export.errors import one_line
from getiaction_export.parity.gate import check_parity
from getiaction_export.parity.runtimes import OnnxRuntimeModel
from getiaction_export.stages.check import check_onnx
from getiaction_export.stages.verify import record
from getiaction_export.state import FormatOutcome, JobState


def simplify(state: JobState, outcome: FormatOutcome, echo: Callable[[str], None]) -> OnnxRuntimeModel | None:
    """Simplify ``outcome``'s staged file in place when the result verifies; its runtime, else None."""
    from getiaction.export.transforms import simplify_onnx

    staged, verification = outcome.staged[0], outcome.verification
    assert verification is not None and state.graph is not None
    scratch = state.scratch("simplified")
    nodes_before = state.graph.nodes or 0
    figures: dict[str, Any] = {"tool": "onnxslim", "nodes_before": nodes_before, "nodes_after": None,
                               "applied": False, "reason": None}
    state.simplify = figures
    try:
        simplified = simplify_onnx(staged, scratch)
        figures["nodes_after"] = simplified.nodes_after
        check_onnx(scratch, outcome.schema.opset_version)
        candidate = OnnxRuntimeModel(scratch, state.threads)
        bounds = verification.bounds()
        names = candidate.output_names
        report = check_parity(verification.reference, candidate, names, verification.cases,
                              *bounds[names[0]][:2], per_output=bounds)
        figures["parity"] = {name: {"max_abs_diff": o["max_abs_diff"], "passed": o["passed"]}
                             for name, o in report.outputs.items()}
        if not report.passed:
            raise VerificationError("; ".join(report.failures()))
    except (ExportError, VerificationError) as error:
        scratch.unlink(missing_ok=True)
        figures["reason"] = one_line(error)
        echo(f"[simplify] ✗ kept the original graph: {figures['reason']}")
        return None
    os.replace(scratch, staged)
    figures["applied"] = True
    state.graph.nodes = simplified.nodes_after
    record(outcome, report, None, False)  # the shipped file's figures
    echo(f"[simplify] ✓ onnxslim: {nodes_before} -> {simplified.nodes_after} nodes, "
         f"verified again on {len(verification.cases)} inputs")
    return OnnxRuntimeModel(staged, state.threads)
