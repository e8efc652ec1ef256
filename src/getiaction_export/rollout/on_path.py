"""The on-path check: PyTorch run on the very observations an artifact met in closed loop.

Comparing two trajectories says something about the artifact only while they see the same
world. A camera policy's observation is a rendered frame, and rendering is not continuous: at
LeRobot's default size a PushT Diffusion's ONNX run was 1.7e-3 px of agent position away from
PyTorch's at step 112 of an episode when 32 of the frame's 55,296 values flipped (a pixel edge
crossed), PyTorch itself answered the two frames with actions 1.87 px apart, and the runs parted
by 9.6 px (benchmarks/RESULTS.md section 10). The artifact did nothing wrong: on its own frame
it acted as PyTorch within 1.4e-3.

So each policy run of the artifact's episodes is kept (:class:`~getiaction_export.rollout.drivers.PolicyRun`:
what its graph was fed, what it returned) and PyTorch is run on the same inputs, conditioned on
what the graph drew (its noise), and the outputs are held to the format's own per-call bound, the one
its parity gate used on random inputs (:func:`on_path`). A miss is a real difference on an
observation the random inputs did not reach. When the trajectories part while every on-path run
holds, :func:`loop_witness` names where PyTorch itself answers the two runs' observations with
different actions: the closed loop amplified a difference, the artifact did not make one.

Example:
    >>> import numpy as np, torch
    >>> from getiaction_export.parity.runtimes import TorchReference
    >>> from getiaction_export.parity.tolerance import Tolerance
    >>> from getiaction_export.rollout.drivers import PolicyRun
    >>> reference = TorchReference(torch.nn.Identity(), "dict")
    >>> runs = [[PolicyRun(0, {"x": np.ones((1, 2), np.float32)}, [np.ones((1, 2), np.float32) + 1e-6]),
    ...          PolicyRun(8, {"x": np.zeros((1, 2), np.float32)}, [np.full((1, 2), 0.5, np.float32)])]]
    >>> figures = on_path(reference, {"action": Tolerance(1e-5, 0.0)}, ["action"], runs, seeds=[0])
    >>> figures["runs"], figures["passed"], figures["worst"], figures["max_abs_diff"]
    (2, False, {'seed': 0, 'step': 8}, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from getiaction_export.rollout.drivers import PolicyRun, chunk_rows

if TYPE_CHECKING:
    from getiaction_export.parity.tolerance import Tolerance
    from getiaction_export.rollout.episodes import Run


def on_path(reference: Any, bounds: Mapping[str, Tolerance], output_names: Sequence[str],
            runs: Sequence[Sequence[PolicyRun]], seeds: Sequence[int]) -> dict[str, Any]:
    """The artifact's recorded runs (one list per episode) against ``reference`` on the same inputs.

    Returns ``runs`` (how many), ``passed``, the action's ``max_abs_diff`` and, where it is a
    tolerance, its ``atol``/``rtol``, the ``worst`` run (``seed``, ``step``) and per episode the
    action's max abs difference at each run (``per_run``: ``[[step, diff], ...]``).
    """
    from getiaction_export.parity.gate import check_parity

    cases, recorded, where = [], [], []
    for seed, episode in zip(seeds, runs, strict=False):
        for run in episode:
            cases.append((f"seed {seed} step {run.step}", torch_batch(run.inputs)))
            recorded.append(run.outputs)
            where.append((seed, run.step))
    replay = iter(recorded)  # check_parity calls the candidate once per case, in order
    report = check_parity(reference, lambda batch: next(replay), output_names, cases, None, None,
                          per_output=bounds)
    action = output_names[0]
    diffs = [_finite(case["max_abs_diff"]) for case in report.cases if case["output"] == action]  # one per case
    worst = int(np.argmax(diffs)) if diffs else None
    figures = report.outputs.get(action, {})
    return {
        "runs": len(cases), "passed": report.passed,
        "max_abs_diff": float(figures.get("max_abs_diff", 0.0)),
        **{key: figures[key] for key in ("atol", "rtol", "share", "cosine") if figures.get(key) is not None},
        "worst": None if worst is None else dict(zip(("seed", "step"), where[worst], strict=True)),
        "failures": report.failures()[:1],
        "per_run": [[[step, float(f"{diff:.4g}")] for (at, step), diff in zip(where, diffs, strict=True) if at == seed]
                    for seed in seeds[:len(runs)]],
    }


def loop_witness(reference: Any, output_names: Sequence[str], episode: Sequence[PolicyRun], torch_run: Run,
                 state_gap: Sequence[float], parted: int) -> dict[str, Any] | None:
    """PyTorch's own answer to the two runs' observations where they parted, in one episode.

    ``parted``: the first step whose tracked-state gap is beyond the bound; the artifact's run whose
    chunk played the action before it is the witness: PyTorch's chunk on the artifact's observation
    there (on-path, conditioned on what the artifact drew) beside the rows PyTorch played from its own
    observation at the same steps. Returns that run's ``step``, the tracked-state gap there
    (``state_gap``) and the ``action_gap`` PyTorch alone makes of the two observations; None when no
    run precedes ``parted``.
    """
    from getiaction_export.parity.runtimes import conditioned

    before = [run for run in episode if run.step < parted and run.step < len(torch_run.actions)]
    if not before:
        return None
    run = before[-1]
    drawn = dict(zip(output_names, run.outputs, strict=False))
    rows = chunk_rows(reference(conditioned(reference, torch_batch(run.inputs), drawn))[0])
    played = np.asarray(torch_run.actions[run.step:run.step + len(rows)])
    gap = float(np.max(np.abs(rows[:len(played)] - played)))
    return {"step": run.step, "state_gap": float(state_gap[run.step]), "action_gap": gap}


def torch_batch(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The numeric arrays of a recorded feed as torch tensors (task strings stay out: the graph took their ids)."""
    import torch

    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in inputs.items()
            if isinstance(value, np.ndarray) and value.dtype.kind in "fiub"}


def _finite(value: float) -> float:
    return value if np.isfinite(value) else float("inf")
