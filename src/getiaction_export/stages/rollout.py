"""Stage ``rollout``: PyTorch and each verified artifact drive their own copy of a simulated task.

Per-call parity is necessary, not sufficient: in a loop each action changes the next observation,
so small errors can compound. With ``rollout=<task>``:

- :func:`fit_task` (after ``sample``, before any export) refuses a policy whose inputs or action do
  not fit the task's observation and action, in one line naming the shapes that differ;
- PyTorch eager runs ``rollout.episodes`` episodes from ``env.reset(seed=rollout.seed + e)`` once;
- :func:`rollout_format` (after a format's runtime check, before it is promoted) runs the artifact
  from the same seeds through the same adapter, the way a robot runs it: a package format
  (onnx, openvino) through physicalai's ``select_action`` on the package as it will be promoted;
  the others (the reloaded checkpoint, OpenVINO INT8, ExecuTorch) through the runtime they were
  verified in, behind the same action queue. Per step it records the action gap and the tracked
  state's gap (PushT: the agent position, in pixels), per episode reward and success of both.
- The on-path check (:mod:`getiaction_export.rollout.on_path`): PyTorch run on every observation the
  artifact's policy ran on in its episodes, held to the format's per-call parity bound.
- The gate: every on-path run within its bound, and the tracked state's gap at every step within
  ``rollout.max_gap.<precision>`` (default: the adapter's ``max_gap``), except that an fp32 artifact whose
  run parted from PyTorch's while it acted as PyTorch on every observation it met passes with a ``!``
  line naming where PyTorch itself answers the two runs' observations differently (a camera frame's
  pixels flip: the loop amplified a difference within the fp32 bound). An artifact that fails is not promoted
  (exit code 4).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import numpy as np

from getiaction.errors import ConfigError, VerificationError
from getiaction_export.console import progress_bar
from getiaction_export.errors import first_line
from getiaction_export.physicalai.manifest import PACKAGE_FORMATS, is_image_input
from getiaction_export.rollout.adapter import IMAGES, adapter_class, bind_inputs, fit_problems
from getiaction_export.rollout.drivers import HistoryDriver, PackageDriver, QueueDriver, ReplayDriver
from getiaction_export.rollout.episodes import Run, compare, run_episode
from getiaction_export.state import FormatOutcome, JobState, Rollout

DRIFT_MULTIPLE = 4.0
"""An fp32 artifact may stray this many times PyTorch's own float32-vs-float64 closed-loop drift (as per call)."""
XY_DECIMALS = 3
"""result.json keeps trajectory points to 1e-3 of the task's unit (plotted), per-step gaps to 4 significant
digits; the maxima the gate compares are exact."""


def fit_task(state: JobState) -> str:
    """Check that the policy fits the task; set ``state.rollout``; return what the task feeds (for the stage line)."""
    from getiaction_export.parity.runtimes import torch_runner

    rollout, built, sample = state.config.rollout, state.built, state.sample
    assert rollout.adapter and built is not None and sample is not None
    adapter = adapter_class(rollout.adapter)()
    action = torch_runner(built.module, built.call_style)(sample)[0].shape
    from_task = tuple(getattr(built.module, "task_input_names", ()))
    _check_task(rollout.name, rollout.task, from_task, sample)
    steps = int(getattr(built.module, "history", 0) or 0)  # (B, n_obs_steps, ...): the loop feeds one step a tick
    inputs = {name: [int(tensor.shape[0]), *tensor.shape[1 + bool(steps):]] for name, tensor in sample.items()
              if name not in from_task}
    fixed = [(name, shape) for name, shape in inputs.items() if shape and shape[0] != 1]
    if fixed and getattr(state.config.format, "dynamic_batch", True) is False:
        name, shape = fixed[0]
        raise ConfigError(f"rollout={rollout.name}: the robot loop feeds batch 1, but input {name!r} is {shape} with "
                          "format.dynamic_batch=false; give a batch-1 input sample or set format.dynamic_batch=true")
    problems = fit_problems(inputs, list(action), adapter)
    if problems:
        raise ConfigError(f"rollout={rollout.name}: the policy does not fit {adapter.name}: {'; '.join(problems)} "
                          f"(set the policy's shapes to the task's; conf/fit/{rollout.name}_<policy>.yaml does it for "
                          "a shipped policy)")
    try:  # the task's own imports (gym-pusht's opencv needs libGL) fail here, before any export
        adapter.make_env().close()
    except (ImportError, OSError) as error:
        hint = " (install Debian's libgl1: apt-get install libgl1)" if "libGL" in str(error) else ""
        raise ConfigError(f"rollout={rollout.name}: cannot make the {adapter.name} environment: "
                          f"{first_line(error)}{hint}") from error
    binding = bind_inputs(inputs, adapter.observation_shapes)
    cameras = {name for name, key in binding.items() if key == IMAGES or key.startswith(IMAGES + ".")}
    tokens = dict(built.module.task_inputs([rollout.task])) if from_task else {}  # type: ignore[operator]
    drawn = dict(getattr(built.reference or built.module, "conditioned_on", None) or {})
    state.rollout = Rollout(adapter, binding, cameras, task=rollout.task, task_inputs=tokens, drawn=drawn,
                            outputs=_output_names(built, sample) if drawn else ["action"], history=steps)
    fed = ", ".join(f"{key} -> {name}" for name, key in binding.items())
    return fed + (f", task {rollout.task!r} -> {', '.join(from_task)}" if from_task else "")


def _output_names(built: Any, sample: dict[str, Any]) -> list[str]:
    """The policy's outputs in the order a runner returns them (a dict's keys; else ``action`` first)."""
    import torch

    from getiaction.export.onnx import call_with_batch

    with torch.no_grad():
        out = call_with_batch(built.module, sample, built.call_style)
    return [str(name) for name in out] if isinstance(out, dict) else ["action"]


def _check_task(name: str, task: str | None, from_task: tuple[str, ...], sample: dict[str, Any]) -> None:
    """A policy that reads a task string needs ``rollout.task``; one that does not refuses it; graphs fed noise
    by the caller (``policy.noise=input``) have no one to feed it in a rollout."""
    if from_task and not task:
        raise ConfigError(f"rollout.task: this policy reads a task string; give one, e.g. rollout={name} "
                          "rollout.task='push the T-shaped block onto the target'")
    if task and not from_task:
        raise ConfigError(f"rollout.task: this policy reads no task string (only vision-language-action policies "
                          f"such as SmolVLA do); remove rollout.task={task!r}")
    if "noise" in sample and from_task:
        raise ConfigError(f"rollout={name}: this graph takes its start noise as an input (policy.noise=input), which "
                          "a robot loop does not feed; roll out the default policy.noise=graph, which draws it")


def rollout_format(state: JobState, outcome: FormatOutcome, echo: Callable[[str], None]) -> None:
    """Run ``outcome``'s artifact in closed loop against PyTorch's runs; record; raise beyond the bound."""
    task = state.rollout
    assert task is not None
    if task.reference is None and not task.drawn:
        _reference(state, task, echo)
    config, adapter = state.config.rollout, task.adapter
    precision = outcome.precision
    replay: list[Run] | None = None
    drift = task.float64_drift if precision == "fp32" else None
    bound, source = rollout_bound(precision, config.max_gap, adapter, drift)
    started = time.perf_counter()
    how = None
    try:
        with ExitStack() as stack:
            driver, how = _driver(state, outcome, stack)
            runs = _episodes(state, task, driver, f"[rollout] {outcome.name}")
        if task.drawn:  # the policy draws (noise): PyTorch on the artifact's draws, chunk by chunk
            replay = _replayed(state, task, driver.drawn, echo)
        on_path = _on_path(state, outcome, driver.policy_runs)
    except Exception as error:  # recorded, so result.json's rollout says this format failed, and why
        outcome.rollout = {"driver": how, "precision": precision, "unit": adapter.unit, "max_gap": bound,
                           "max_gap_source": source, "passed": False, "error": first_line(error), "episodes": []}
        raise
    references = replay if replay is not None else task.reference
    assert references is not None
    episodes = [{"seed": config.seed + index, **_rounded(compare(reference, run)), "torch_xy": _points(reference),
                 "artifact_xy": _points(run)} for index, (reference, run) in enumerate(zip(references, runs,
                                                                                            strict=True))]
    worst = max(episodes, key=lambda e: (not math.isfinite(e["max_state_gap"]), _finite_or_0(e["max_state_gap"])))
    gap = worst["max_state_gap"]
    within = math.isfinite(gap) and gap <= bound
    # an fp32 artifact that acted as PyTorch on every observation it met, within the bound PyTorch's own float32
    # rounding sets (not one a user loosened), did not make the runs part
    parted = (not within and math.isfinite(gap) and precision == "fp32" and on_path is not None
              and bool(on_path["passed"]) and bool(on_path["model_bound"]))
    outcome.rollout = {
        "driver": how, "precision": precision, "unit": adapter.unit, "max_gap": bound, "max_gap_source": source,
        "max_state_gap": gap, "max_action_gap": max(e["max_action_gap"] for e in episodes),
        "float64_drift": drift,
        "worst": {"seed": worst["seed"], "step": int(np.argmax(worst["state_gap"]))},
        "success": {side: sum(e["success"][side] for e in episodes) for side in ("torch", "artifact")},
        "on_path": on_path,
        "passed": (within or parted) and (on_path is None or bool(on_path["passed"])),
        "seconds": round(time.perf_counter() - started, 3),
        "episodes": episodes,
    }
    record = outcome.rollout
    unit = f" {adapter.unit}" if adapter.unit else ""
    if parted:
        record["parted"] = _parted(state, outcome, driver.policy_runs, references, worst, bound)
    summary = (f"{outcome.name}: {adapter.tracked_name} within {gap:.2e}{unit} of PyTorch's over "
               f"{_episodes_text(runs)} "
               f"({sum(r.steps for r in runs)} steps; bound {bound:g}{unit} for {precision}), max action gap "
               f"{record['max_action_gap']:.2e}, success PyTorch {record['success']['torch']}/{len(runs)}, "
               f"{outcome.name} {record['success']['artifact']}/{len(runs)} ({how})")
    if on_path is not None and not on_path["passed"]:
        where = on_path["worst"] or {"seed": config.seed, "step": 0}
        raise VerificationError(
            f"rollout: {outcome.name} differs from PyTorch on an observation it met in closed loop (step "
            f"{where['step']} of episode seed {where['seed']}: {'; '.join(on_path['failures'])}), beyond the per-call "
            "bound it met on the parity gate's inputs")
    if not record["passed"]:
        raise VerificationError(
            f"rollout: {outcome.name}'s {adapter.tracked_name} strayed {gap:.3g}{unit} from PyTorch's at step "
            f"{record['worst']['step']} of episode seed {worst['seed']} (bound {bound:g}{unit} for {precision}, "
            f"{source}; override with rollout.max_gap.{precision}=...)")
    if on_path is not None:
        echo(f"[rollout] ✓ {outcome.name} on its own path: PyTorch given the {on_path['runs']} observations "
             f"{outcome.name}'s policy ran on does what it did (max abs diff {on_path['max_abs_diff']:.2e})")
    if parted and on_path is not None:
        witness = record["parted"].get("witness") or {}
        seen = (f"; PyTorch itself answers the two runs' observations at step {witness['step']} "
                f"({witness['state_gap']:.2g}{unit} apart) with actions {witness['action_gap']:.3g} apart, "
                f"{outcome.name} on its own {on_path['max_abs_diff']:.2g} from PyTorch at most" if witness else "")
        echo(f"[rollout] ! {outcome.name}: the runs parted at step {record['parted']['step']} of episode seed "
             f"{worst['seed']} ({gap:.3g}{unit} > {bound:g}{unit}) though {outcome.name} acted as PyTorch on every "
             f"observation it met: the closed loop amplified a difference within the fp32 bound{seen}")
    echo(f"[rollout] ✓ {summary}  {record['seconds']:.2f} s")


def _on_path(state: JobState, outcome: FormatOutcome, policy_runs: list[Any]) -> dict[str, Any] | None:
    """PyTorch on the observations the artifact's policy ran on (:func:`~getiaction_export.rollout.on_path.on_path`);
    None for a format with no per-call bound (the checkpoint is held bit-identical per call instead)."""
    from getiaction_export.parity.fp32_bound import FITS, SOURCE
    from getiaction_export.rollout.on_path import on_path

    verification = outcome.verification
    if verification is None or state.graph is None or not any(policy_runs):
        return None
    seeds = [state.config.rollout.seed + episode for episode in range(len(policy_runs))]
    names = state.graph.output_names
    figures = on_path(verification.reference, verification.bounds(), names, policy_runs, seeds)
    source = verification.tolerances.get(names[0], {}).get("source")
    return {**figures, "bound_source": source, "model_bound": source in (FITS, SOURCE)}


def _parted(state: JobState, outcome: FormatOutcome, policy_runs: list[Any], references: list[Run],
            worst: dict[str, Any], bound: float) -> dict[str, Any]:
    """Where the worst episode's runs parted, and PyTorch's own answer to the two runs' observations there."""
    from getiaction_export.rollout.on_path import loop_witness

    assert outcome.verification is not None and state.graph is not None
    index = worst["seed"] - state.config.rollout.seed
    step = next(i for i, value in enumerate(worst["state_gap"]) if value > bound)
    witness = loop_witness(outcome.verification.reference, state.graph.output_names, policy_runs[index],
                           references[index], worst["state_gap"], step)
    return {"seed": worst["seed"], "step": step, "witness": witness}


def rollout_bound(precision: str, given: dict[str, float], adapter: Any, drift: float | None) -> tuple[float, str]:
    """The largest tracked-state gap allowed for ``precision``, and where it comes from.

    ``rollout.max_gap.<precision>`` when given; else the task's default, raised for fp32 to
    :data:`DRIFT_MULTIPLE` x PyTorch's own float32 closed-loop ``drift`` where that is larger.

    >>> from getiaction_export.rollout.pusht import PushT
    >>> rollout_bound("fp32", {}, PushT(), 1e-5), rollout_bound("fp32", {}, PushT(), 2.5)[0]
    ((0.01, 'pusht default'), 10.0)
    >>> rollout_bound("fp32", {"fp32": 0.5}, PushT(), 2.5)
    (0.5, 'rollout.max_gap.fp32')
    """
    if precision in given:
        return given[precision], f"rollout.max_gap.{precision}"
    bound, source = adapter.max_gap.get(precision, 0.0), f"{adapter.name} default"
    if drift is not None and DRIFT_MULTIPLE * drift > bound:
        # the model's own float32 rounding compounds in closed loop beyond the task's default: fitted, as per call
        unit = f" {adapter.unit}" if adapter.unit else ""
        return DRIFT_MULTIPLE * drift, (f"fitted: {DRIFT_MULTIPLE:g}x PyTorch's own float32 drift ({drift:.3g}{unit} "
                                        "from a float64 run of its episodes)")
    return bound, source


def rollout_record(state: JobState) -> dict[str, Any] | None:
    """``result.json``'s ``rollout``: the task, PyTorch's outcomes, and per format what its run recorded."""
    task = state.rollout
    if task is None:
        return None
    config, adapter = state.config.rollout, task.adapter
    formats = {o.name: o.rollout for o in state.formats.values() if o.rollout is not None}
    reference = task.reference or []
    return {
        "task": config.name, "adapter": config.adapter, "tracked": adapter.tracked_name, "plane": list(adapter.plane),
        "unit": adapter.unit,
        "episodes": config.episodes, "steps": config.steps, "seed": config.seed, "task_string": config.task,
        "torch_on_drawn": list(task.drawn) or None,
        "binding": dict(task.binding),
        "torch": {"success": sum(run.success for run in reference), "steps": [run.steps for run in reference],
                  "seconds": round(task.seconds, 3), "float64_drift": task.float64_drift,
                  "float64_note": task.float64_note} if reference else None,
        "status": "failed" if any(not f["passed"] for f in formats.values()) else "ok" if formats else "pending",
        "formats": formats,
    }


def _reference(state: JobState, task: Rollout, echo: Callable[[str], None]) -> None:
    """PyTorch eager's episodes (the LeRobot source's own inference where there is one)."""
    from getiaction_export.parity.runtimes import torch_runner

    built = state.built
    assert built is not None
    started = time.perf_counter()
    driver = QueueDriver(torch_runner(built.reference or built.module, built.call_style), task.cameras,
                         extra=task.task_inputs)
    task.reference = _episodes(state, task, driver, "[rollout] PyTorch")
    task.seconds = time.perf_counter() - started
    steps = sum(run.steps for run in task.reference)
    echo(f"[rollout] ✓ PyTorch eager: {_episodes_text(task.reference)} of {task.adapter.name}, {steps} steps, "
         f"{driver.runs} policy runs, success {sum(r.success for r in task.reference)}/{len(task.reference)}  "
         f"{task.seconds:.2f} s")
    if "fp32" not in state.config.rollout.max_gap and any(o.precision == "fp32" for o in state.formats.values()):
        _float64_drift(state, task, echo)


def _float64_drift(state: JobState, task: Rollout, echo: Callable[[str], None]) -> None:
    """PyTorch's episodes again in float64: how far its own float32 run strays in closed loop (``float64_drift``).

    A policy whose own float32 rounding compounds in closed loop beyond the task's default bound holds an
    fp32 artifact to :data:`DRIFT_MULTIPLE` times that drift. (Runs that part because a rendered pixel
    flips are told apart by the on-path check instead: a default-size LeRobot Diffusion,
    benchmarks/RESULTS.md section 10.)
    """
    from getiaction_export.parity.fp32_bound import Float64Runner

    built = state.built
    assert built is not None and task.reference is not None
    started = time.perf_counter()
    driver = QueueDriver(Float64Runner(built.reference or built.module, built.call_style), task.cameras,
                         extra=task.task_inputs)
    try:
        exact = _episodes(state, task, driver, "[rollout] PyTorch float64")
    except Exception as error:  # a module that cannot run in float64: the task's default bound stays
        task.float64_note = f"the float64 run failed: {first_line(error)}"[:200]
        echo(f"[rollout] - PyTorch float64: {task.float64_note}; the fp32 bound stays the task's default")
        return
    task.float64_drift = max(compare(run, reference)["max_state_gap"]
                             for run, reference in zip(exact, task.reference, strict=True))
    unit = f" {task.adapter.unit}" if task.adapter.unit else ""
    echo(f"[rollout] ✓ PyTorch float64: its float32 run strays {task.float64_drift:.3g}{unit} from it in closed "
         f"loop  {time.perf_counter() - started:.2f} s")


def _replayed(state: JobState, task: Rollout, drawn: list[list[dict[str, Any]]],
              echo: Callable[[str], None]) -> list[Run]:
    """PyTorch's episodes given, chunk by chunk, what the artifact's policy drew (``task.drawn``)."""
    from getiaction_export.parity.runtimes import torch_runner

    built = state.built
    assert built is not None
    started = time.perf_counter()
    driver = ReplayDriver(torch_runner(built.reference or built.module, built.call_style), task.cameras, drawn,
                          task.drawn, extra=task.task_inputs)
    runs = _episodes(state, task, driver, "[rollout] PyTorch")
    seconds = time.perf_counter() - started
    task.reference, task.seconds = runs, task.seconds + seconds
    echo(f"[rollout] ✓ PyTorch eager on the artifact's {', '.join(task.drawn)} ({driver.runs} chunks): "
         f"{_episodes_text(runs)}, {sum(run.steps for run in runs)} steps  {seconds:.2f} s")
    return runs


def _episodes(state: JobState, task: Rollout, driver: Any, label: str) -> list[Run]:
    config = state.config.rollout
    if task.history:  # the policy reads the last n observations: kept per episode, as LeRobot's queues keep them
        driver = HistoryDriver(driver, task.history, list(task.binding))
    env = task.adapter.make_env()
    try:
        with progress_bar(label, config.episodes * config.steps) as advance:
            return [run_episode(task.adapter, env, driver, task.binding, config.seed + episode, config.steps,
                                on_step=advance) for episode in range(config.episodes)]
    finally:
        env.close()


def _driver(state: JobState, outcome: FormatOutcome, stack: ExitStack) -> tuple[Any, str]:
    """The package through physicalai where the job checks packages; else the verified runtime behind a queue."""
    from getiaction_export.physicalai.runtime import enabled, load
    from getiaction_export.physicalai.staging import staged_package

    task = state.rollout
    assert task is not None
    if outcome.name in PACKAGE_FORMATS and enabled(outcome.schema.runtime_check) and state.graph is not None:
        replica, default = stack.enter_context(staged_package(state, outcome))
        model = load(replica, outcome.name, default, hints=True)
        fed_raw = {spec["name"] for spec in state.graph.inputs if is_image_input(spec)}
        hint = ", f32 hint" if outcome.name == "openvino" else ""
        tokenizes = bool((state.package_extras or {}).get("task"))
        tokens = {} if tokenizes else {name: tensor.numpy() for name, tensor in task.task_inputs.items()}
        return (PackageDriver(model, task.cameras - fed_raw, task=task.task if tokenizes else None,
                              keep=list(task.drawn), extra=tokens,
                              record=state.graph.output_names if outcome.verification is not None else ()),
                f"physicalai select_action on the package, {outcome.name} backend{hint}")
    if outcome.runner is None:
        raise VerificationError(f"rollout: {outcome.name} has no verified runtime to drive")
    keep = {name: task.outputs.index(name) for name in task.drawn if name in task.outputs}
    return (QueueDriver(outcome.runner, task.cameras, extra=task.task_inputs, keep=keep,
                        record=outcome.verification is not None),
            f"{outcome.runtime} behind a select_action queue")


def _finite_or_0(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _episodes_text(runs: list[Run]) -> str:
    return f"{len(runs)} episode{'' if len(runs) == 1 else 's'}"


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    for key in ("state_gap", "action_gap"):
        figures[key] = [float(f"{gap:.4g}") for gap in figures[key]]
    return figures


def _points(run: Run) -> list[list[float]]:
    return [[round(float(value), XY_DECIMALS) for value in point[:2]] for point in run.tracked]

