"""Load a policy package in physicalai's ``InferenceModel`` and hold it to PyTorch.

The parity stage proves the model file; this proves the *package*: that the runtime a robot
uses (physicalai, without any of our code) finds the right file through our manifest, feeds our
input names, gets an output named ``action``, and computes what PyTorch computes. On one
package folder and one backend it checks:

- **loading**: ``InferenceModel(folder)`` picks the declared default backend and the model file
  we wrote (OpenVINO with ``INFERENCE_PRECISION_HINT=f32``: its CPU default may be bfloat16);
- **parity**: the same seeded inputs as the parity stage (every batch size), through the
  runtime's whole pipeline (preprocessors included), within the format's tolerance;
- **action chunks** (batch 1): ``predict_action_chunk`` returns the ``(chunk, A)`` PyTorch
  returns; ``select_action`` returns that chunk's rows in order from one model run, and runs the
  model again, on the new observation, once the chunk is used up;
- **the robot loop's input layout**: camera frames as ``(1, H, W, 3)`` uint8 through the
  manifest's ``to_float_tensor`` step give PyTorch's output on ``frame / 255`` in NCHW; and
  the observation physicalai's own ``PolicySource`` assembles reaches the graph (with one
  camera it feeds ``images``, see :func:`~getiaction_export.physicalai.manifest.drivability`;
  a graph with an observation history behind ``HistorySource``, which keeps it).
- **the default load**: what a robot gets with no hints, ``InferenceModel(folder)`` (or
  ``backend="openvino"`` for a backend that is not the default), on the same inputs. ONNX: the
  load above (onnxruntime computes in the graph's own precision). OpenVINO: compiled with
  OpenVINO's defaults, which on a CPU with bfloat16 (AVX512-BF16/AMX) compute in **bf16**, and
  no manifest field can change that (see below). It is held to the format's tolerance when it
  computes in f32, else to ``REDUCED_PRECISION_TOLERANCE`` (:mod:`.default_load`) relative to the
  largest ``|output|``; a failure of the package's *default* backend fails the check, one of another
  backend is recorded and reported. Its figures go under ``default_load``.

Why the package cannot make OpenVINO's default load compute in f32 (physicalai 0.3.0, openvino
2026.4.1, read in their source and tried): the OpenVINO adapter compiles with exactly the
caller's ``**adapter_kwargs`` (plus ``INFERENCE_PRECISION_HINT=f32`` on ARM CPUs only);
``InferenceModel`` builds the adapter from the backend name, the device (``auto`` -> ``CPU``) and
those kwargs alone: no manifest field (``model.runner``, ``model.artifacts``, ``hardware``,
``metadata``) reaches it. ``runtime_options`` in the IR's rt_info are ignored for this hint;
marking every node of the IR ``precise`` (disable fp16 compression) leaves its fully connected
layers in bf16 (ACT still 5.7e-3 off instead of 9.9e-3). Only a manifest
``model.callbacks`` entry could recompile the model in ``on_load``, and that would make the
robot import our code to load a package, so it is not done.

physicalai is optional (``pip install 'getiaction-export[deploy]'``); this module imports it,
and torch, only inside the functions that need them.
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from getiaction.errors import ExportError, VerificationError
from getiaction_export.errors import first_line
from getiaction_export.parity.tolerance import Tolerance
from getiaction_export.physicalai.default_load import (
    DefaultLoadError,
    default_load,
    default_load_failure,
)
from getiaction_export.physicalai.history import in_history, single_step
from getiaction_export.physicalai.manifest import (
    OPENVINO_F32,
    camera_name,
    drivability,
    is_image_input,
)
from getiaction_export.physicalai.runtime import RuntimeRunner, load, model_file, physicalai_version, watch_runs
from getiaction_export.physicalai.task import Feed, numpy_feed

if TYPE_CHECKING:
    import torch

    from getiaction_export.parity.runtimes import Runner


class _Watch:
    """Counts the model's runs from here on and keeps the last run's raw outputs (wraps the runner's ``run``).

    The raw outputs carry what a graph drew itself (SmolVLA's ``noise``): the reference of a
    ``predict_action_chunk`` / ``select_action`` call is conditioned on the run behind it.
    """

    def __init__(self, model: Any) -> None:
        self.runs = 0
        self.last: dict[str, np.ndarray] = {}
        watch_runs(model, self._ran)

    def _ran(self, inputs: dict[str, Any], outputs: dict[str, np.ndarray]) -> None:
        self.runs += 1
        self.last = outputs

    def expected(self, reference: Runner, batch: dict[str, torch.Tensor], index: int) -> np.ndarray:
        """The reference's chunk for ``batch``, conditioned on what the last run drew."""
        from getiaction_export.parity.runtimes import conditioned

        return _chunk_of(reference(conditioned(reference, batch, self.last))[index])


def _chunk_of(output: np.ndarray) -> np.ndarray:
    """What ``predict_action_chunk`` makes of a batch-1 ``action``: the batch axis of a 3-D output dropped."""
    return np.atleast_2d(output[0] if output.ndim == 3 else output)


def check_chunks(
    model: Any,
    reference: Runner,
    action_index: int,
    first: dict[str, torch.Tensor],
    second: dict[str, torch.Tensor],
    atol: float,
    rtol: float,
    feed_of: Feed = numpy_feed,
) -> dict[str, Any]:
    """``predict_action_chunk`` and ``select_action`` on two batch-1 observations (see the module doc)."""
    from getiaction_export.parity.tolerance import compare

    watch = _Watch(model)
    feed = feed_of(first)
    chunk = np.asarray(model.predict_action_chunk(feed))
    expected = watch.expected(reference, first, action_index)
    figures: dict[str, Any] = {"shape": list(chunk.shape), "expected_shape": list(expected.shape)}
    figures.update(compare(expected, chunk, atol, rtol))
    watch.runs = 0
    model.reset()
    rows = [np.asarray(model.select_action(feed)) for _ in range(expected.shape[0])]
    runs_for_chunk = watch.runs
    in_order = compare(watch.expected(reference, first, action_index), np.stack(rows), atol, rtol)
    next_row = np.asarray(model.select_action(feed_of(second)))
    expected_next = watch.expected(reference, second, action_index)[0]
    rerun = compare(expected_next, next_row, atol, rtol)
    figures["select_action"] = {
        "rows": len(rows), "runs_for_chunk": runs_for_chunk, "rows_in_order": in_order["passed"],
        "max_abs_diff": in_order["max_abs_diff"], "runs_after_chunk_used_up": watch.runs,
        "reran_on_new_observation": rerun["passed"] and watch.runs == runs_for_chunk + 1,
        "next_row_max_abs_diff": rerun["max_abs_diff"],
    }
    select = figures["select_action"]
    figures["passed"] = bool(figures["passed"] and chunk.shape == expected.shape and runs_for_chunk == 1
                             and select["rows_in_order"] and select["reran_on_new_observation"])
    return figures


def frames_for(
    inputs: Sequence[Mapping[str, Any]], batch: Mapping[str, torch.Tensor], seed: int
) -> dict[str, np.ndarray]:
    """Seeded camera frames ``(1, H, W, 3)`` uint8 for every image input of ``batch`` (a batch-1 observation)."""
    generator = np.random.default_rng(seed)
    frames = {}
    for spec in inputs:
        if is_image_input(spec) and spec["name"] in batch:
            _, channels, height, width = batch[spec["name"]].shape
            frames[spec["name"]] = generator.integers(0, 256, (1, height, width, channels), dtype=np.uint8)
    return frames


def check_robot_loop(
    model: Any,
    reference: Runner,
    action_index: int,
    inputs: Sequence[Mapping[str, Any]],
    observation: dict[str, torch.Tensor],
    atol: float,
    rtol: float,
    seed: int,
    feed_of: Feed = numpy_feed,
    task: Sequence[str] = (),
    history: int = 0,
) -> dict[str, Any]:
    """uint8 ``(1, H, W, 3)`` frames through the manifest's preprocessing, and the loop's own observation.

    ``task``: the graph inputs the package's tokenizer writes (see :func:`~.manifest.drivability`).
    ``history``: the observations a graph's ``state``/``images`` carry on axis 1; the loop's observation then
    goes through :class:`~getiaction_export.physicalai.robot_loop.HistorySource` (the first tick of an
    episode: every step is that observation, as LeRobot's queues fill) and no package step converts frames.
    """
    import torch

    from getiaction_export.parity.tolerance import compare

    record = drivability(inputs, task, history)
    step = {name: tensor[:, -1] if history and in_history(name) else tensor for name, tensor in observation.items()}
    frames = frames_for(single_step(inputs) if history else inputs, step, seed)
    as_floats = {name: torch.from_numpy(frame).permute(0, 3, 1, 2).float() / 255 for name, frame in frames.items()}
    watch = _Watch(model)

    def expected() -> np.ndarray:
        batch = {**step, **as_floats}
        if history:  # the first tick of an episode fills every step with its observation
            batch = {name: torch.stack([tensor] * history, dim=1) if in_history(name) else tensor
                     for name, tensor in batch.items()}
        return watch.expected(reference, batch, action_index)

    record["uint8_frames"] = None
    if frames and not history:
        feed = {**feed_of(step), **frames}
        got = np.asarray(model.predict_action_chunk(feed))
        record["uint8_frames"] = compare(expected(), got, atol, rtol)
    if record["ok"] and "state" in step:
        tasks = getattr(feed_of, "tasks_of", None)
        record["policy_source"] = _through_policy_source(model, step, frames, expected, atol, rtol,
                                                         tasks(observation)[0] if tasks else None, history)
    return record


def _through_policy_source(
    model: Any, observation: Mapping[str, torch.Tensor], frames: Mapping[str, np.ndarray],
    expected: Callable[[], np.ndarray], atol: float, rtol: float, task: str | None = None, history: int = 0,
) -> dict[str, Any]:
    """The observation physicalai's ``PolicySource`` builds from a robot state and camera frames, run by the model
    (``HistorySource`` for a graph with an observation ``history``)."""
    from physicalai.capture.frame import Frame
    from physicalai.runtime.action_sources.policy import PolicySource

    from getiaction_export.parity.tolerance import compare

    robot = types.SimpleNamespace(state=observation["state"].numpy()[0], images=None)
    cameras = {camera_name(name): Frame(data=frame[0], timestamp=0.0, sequence=0) for name, frame in frames.items()}
    if history:
        from getiaction_export.physicalai.robot_loop import HistorySource

        source: Any = HistorySource(model, task=task, n_obs_steps=history)
    else:
        source = PolicySource(model, task=task)
    fed = source.to_model_input(robot, cameras)
    try:
        got = np.asarray(model.predict_action_chunk(fed))
    except KeyError as error:  # drivability() said the keys match; the runtime disagrees
        raise ExportError(f"physicalai's robot loop feeds {sorted(fed)}: {first_line(error)}") from error
    return {"keys": sorted(fed), "source": type(source).__name__, **compare(expected(), got, atol, rtol)}


def _loaded(folder: Path, backend: str, default_backend: str | None, expected_file: str) -> tuple[Any, dict[str, Any]]:
    """The package loaded as a robot loads it (f32 hint for OpenVINO), the file and outputs checked; first figures."""
    started = time.perf_counter()
    model = load(folder, backend, default_backend)
    loaded = model_file(model)
    if loaded is not None and loaded != expected_file:
        raise ExportError(f"physicalai loads {loaded}, not {expected_file}; policy.name in manifest.json "
                          "picks the file")
    runtime_outputs = list(model.adapter.output_names)
    if "action" not in runtime_outputs:
        raise ExportError(f"the runtime needs an output named 'action'; the graph's outputs are {runtime_outputs} "
                          "(export with format.output_names=[action, ...])")
    return model, {"backend": backend, "default_backend": default_backend, "model_file": loaded,
                   "physicalai": physicalai_version(),
                   "adapter_kwargs": dict(OPENVINO_F32) if backend == "openvino" else {},
                   "load_s": round(time.perf_counter() - started, 4)}


def check_package(
    folder: Path,
    backend: str,
    default_backend: str | None,
    expected_file: str,
    reference: Runner,
    cases: list[tuple[str, dict[str, torch.Tensor]]],
    output_names: Sequence[str],
    tolerances: Mapping[str, Tolerance],
    inputs: Sequence[Mapping[str, Any]],
    seed: int = 0,
    graph_precision: str = "f32",
    feed: Feed = numpy_feed,
    task: Sequence[str] = (),
    history: int = 0,
) -> dict[str, Any]:
    """Every check of the module doc on one backend of the package in ``folder``; the figures.

    ``graph_precision``: what the model file computes in by itself (``f32``; ``f16`` for an fp16
    ONNX export), which is what onnxruntime runs. ``feed``: a case -> what the model is called with
    (task strings for a package that tokenizes its task; ``task``: the inputs its tokenizer writes).
    ``history``: the observations the graph's inputs carry on axis 1 (LeRobot Diffusion's ``n_obs_steps``).

    Raises :class:`ExportError` when the runtime cannot load or run the package,
    :class:`VerificationError` when its numbers differ from PyTorch's beyond the tolerance, and
    :class:`DefaultLoadError` (one) when the default backend loaded with no hints does.
    """
    from getiaction_export.parity.gate import check_parity

    started = time.perf_counter()
    model, figures = _loaded(folder, backend, default_backend, expected_file)
    names = [name for name in output_names if name in model.adapter.output_names]
    atol, rtol = tolerances[names[0]][:2]
    try:
        report = check_parity(reference, RuntimeRunner(model, names, feed), names, cases, atol, rtol,
                              per_output={name: tolerances[name] for name in names})
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        raise ExportError(f"physicalai ({backend}) cannot run the package: {first_line(error)}") from error
    figures.update(parity=report.outputs, cases=len(cases))
    if not report.passed:
        raise VerificationError(f"runtime check failed (physicalai {backend} vs PyTorch): "
                                + "; ".join(report.failures()))
    action_index = list(output_names).index("action")
    ones = [inputs_ for _, inputs_ in cases if next(iter(inputs_.values())).shape[:1] == (1,)]
    # a scale bound (INT8) becomes an elementwise one at the scale of PyTorch's actions on these inputs
    scale = report.outputs["action"]["max_abs_expected"]
    action_atol, action_rtol = Tolerance(*tolerances["action"]).elementwise(scale)
    if len(ones) >= 2:
        figures["chunk"] = check_chunks(model, reference, action_index, ones[0], ones[1], action_atol, action_rtol,
                                        feed)
        figures["robot_loop"] = check_robot_loop(model, reference, action_index, inputs, ones[0],
                                                 action_atol, action_rtol, seed, feed, task, history)
    else:
        figures["chunk"] = figures["robot_loop"] = None  # a static batch other than 1: no batch-1 calls
    _raise_on_failures(figures, backend)
    figures["default_load"] = unhinted = default_load(folder, backend, default_backend, graph_precision, reference,
                                                       cases, names, output_names, tolerances, report.cases, feed)
    if unhinted["gated"] and not unhinted["passed"]:
        raise DefaultLoadError(default_load_failure(backend, unhinted), figures)
    figures["passed"] = True
    figures["seconds"] = round(time.perf_counter() - started, 4)
    return figures


def _raise_on_failures(figures: Mapping[str, Any], backend: str) -> None:
    chunk, loop = figures["chunk"], figures["robot_loop"]
    if chunk and not chunk["passed"]:
        select = chunk["select_action"]
        raise VerificationError(
            f"runtime check failed (physicalai {backend}): predict_action_chunk gave {tuple(chunk['shape'])} "
            f"(max abs diff {chunk['max_abs_diff']:.3g}), PyTorch {tuple(chunk['expected_shape'])}; select_action "
            f"rows in order: {select['rows_in_order']}, runs for one chunk: {select['runs_for_chunk']}, "
            f"re-ran when used up: {select['reran_on_new_observation']}"
        )
    for key in ("uint8_frames", "policy_source"):
        part = (loop or {}).get(key)
        if part and not part["passed"]:
            raise VerificationError(
                f"runtime check failed (physicalai {backend}): uint8 (1, H, W, 3) camera frames through "
                f"to_float_tensor differ from PyTorch on frame / 255 by {part['max_abs_diff']:.3g}"
            )


