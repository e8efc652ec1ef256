"""Stage ``runtime_check``: the package, as it will be, through physicalai, before the format is promoted.

The package is assembled in a hidden folder beside the artifacts (:mod:`getiaction_export.physicalai.staging`),
so nothing gets a final name before the runtime ran it. It is checked on the same
inputs, PyTorch outputs and tolerances as the parity gate (the format's
:class:`~getiaction_export.state.Verification`), and once more as ``InferenceModel(folder)``
loads it with no hints (OpenVINO then computes in bf16 on a CPU that has it: said in a ``!``
line). What is checked is :mod:`getiaction_export.physicalai.runtime_check`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from getiaction.errors import GetiActionError
from getiaction.export.extras import install_command
from getiaction_export.physicalai.manifest import PACKAGE_FORMATS
from getiaction_export.physicalai.runtime import enabled, physicalai_version
from getiaction_export.physicalai.runtime_check import check_package
from getiaction_export.physicalai.staging import staged_package
from getiaction_export.physicalai.task import numpy_feed, task_feed
from getiaction_export.state import FormatOutcome, JobState


def runtime_check(state: JobState, outcome: FormatOutcome, echo: Callable[[str], None]) -> None:
    """Check ``outcome``'s package in physicalai (or say why not); figures go to ``outcome.runtime_check``."""
    if outcome.name not in PACKAGE_FORMATS:
        return
    setting = outcome.schema.runtime_check
    if not enabled(setting):
        state.runtime_check_skipped = ("format.runtime_check=false" if setting is False
                                       else f"physicalai is not installed ({install_command('physicalai')})")
        echo(f"[runtime_check] - skipped: {state.runtime_check_skipped}")
        return
    with staged_package(state, outcome) as (replica, default):
        try:
            figures = _check(replica, state, outcome, default)
        except GetiActionError as error:
            # a failed default load keeps its figures (and the f32 checks' that passed before it)
            outcome.runtime_check = {**getattr(error, "figures", {}), "passed": False, "error": str(error),
                                     "physicalai": physicalai_version()}
            raise
    outcome.runtime_check = figures
    action = figures["parity"].get("action") or next(iter(figures["parity"].values()))
    chunk = figures.get("chunk")
    detail = (f"; predict_action_chunk {tuple(chunk['shape'])}, select_action gave its rows in order and "
              "re-ran the model when they were used up") if chunk else ""
    echo(f"[runtime_check] ✓ physicalai {figures['physicalai']} ({outcome.name}): action max abs diff "
         f"{action['max_abs_diff']:.2e} on {figures['cases']} inputs{detail}")
    loaded = figures.get("default_load") or {}
    if loaded.get("precision", "f32") != "f32" and outcome.name == "openvino":
        mark = "✓" if loaded["passed"] else "!"
        verdict = "" if loaded["passed"] or loaded["gated"] else "; beyond it, and not the default backend"
        echo(f"[runtime_check] {mark} {loaded['call']} with no hints ({loaded['precision']} on this CPU): action "
             f"{loaded['max_abs_diff']:.2e} off PyTorch, {loaded['relative']:.2%} of the largest |action| "
             f"({loaded['precision']} tolerance {loaded['tolerance']['relative']:.0%}{verdict})")


def _check(replica: Path, state: JobState, outcome: FormatOutcome, default: str) -> dict[str, Any]:
    verification = outcome.verification
    assert verification is not None and state.graph is not None
    feed = task_feed(state)  # a package that tokenizes its task is fed task strings, its tokenizer checked too
    cases = feed.with_tasks(verification.cases) if feed else verification.cases
    return check_package(replica, outcome.name, default, outcome.final[0].name, verification.reference,
                         cases, state.graph.output_names, verification.bounds(), state.graph.inputs,
                         seed=outcome.schema.seed, graph_precision="f16" if outcome.precision == "fp16" else "f32",
                         feed=feed or numpy_feed, task=feed.token_inputs if feed else (),
                         history=int(getattr(state.built.module, "history", 0) or 0) if state.built else 0)
