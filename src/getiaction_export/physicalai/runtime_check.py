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
  camera it feeds ``images``, see :func:`~getiaction_export.physicalai.manifest.drivability`).
- **the default load**: what a robot gets with no hints, ``InferenceModel(folder)`` (or
  ``backend="openvino"`` for a backend that is not the default), on the same inputs. ONNX: the
  load above (onnxruntime computes in the graph's own precision). OpenVINO: compiled with
  OpenVINO's defaults, which on a CPU with bfloat16 (AVX512-BF16/AMX) compute in **bf16**, and
  no manifest field can change that (see below). It is held to the format's tolerance when it
  computes in f32, else to :data:`REDUCED_PRECISION_TOLERANCE` relative to the largest
  ``|output|``; a failure of the package's *default* backend fails the check, one of another
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

Example:
    >>> enabled(False)
    False
    >>> enabled(None) == available()
    True
"""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from getiaction.errors import ConfigError, ExportError, VerificationError
from getiaction.export.extras import EXTRAS, installed, missing_message
from getiaction_export.physicalai.manifest import (
    OPENVINO_F32,
    camera_name,
    default_call,
    drivability,
    is_image_input,
)

if TYPE_CHECKING:
    import torch

    from getiaction_export.runtimes import Runner

INSTALL_HINT = f"pip install 'getiaction-export[{EXTRAS['physicalai']}]'"
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


def available() -> bool:
    """Whether physicalai can be imported (without importing it)."""
    return installed("physicalai")


def physicalai_version() -> str | None:
    try:
        return version("physicalai")
    except PackageNotFoundError:
        return None


def enabled(setting: bool | None) -> bool:
    """``format.runtime_check``: null = on when physicalai is importable; true without it is a config error."""
    if setting is None:
        return available()
    if setting and not available():
        raise ConfigError(missing_message("format.runtime_check=true", "physicalai"))
    return bool(setting)


@contextlib.contextmanager
def quiet_runtime() -> Iterator[None]:
    """physicalai logs every load at INFO through loguru; keep those lines out of our console and job log."""
    from loguru import logger

    logger.disable("physicalai")
    try:
        yield
    finally:
        logger.enable("physicalai")


def load(folder: Path, backend: str, default_backend: str | None, hints: bool = True) -> Any:
    """``InferenceModel`` on ``folder`` as a robot would load it: ``backend="auto"`` for the default one.

    OpenVINO gets the f32 inference-precision hint unless ``hints`` is False (the default load).
    Raises :class:`ExportError` with the runtime's first line when it refuses the package, or
    when it picked another backend or file than ours.
    """
    from physicalai.inference import InferenceModel

    kwargs = dict(OPENVINO_F32) if backend == "openvino" and hints else {}
    asked = "auto" if backend == default_backend else backend
    try:
        with quiet_runtime():
            model = InferenceModel(folder, backend=asked, **kwargs)
    except Exception as error:  # the runtime raises plain ValueError/TypeError/KeyError/FileNotFoundError
        raise ExportError(f"physicalai cannot load the package ({backend}): {first_line(error)}") from error
    if model.backend != backend:
        raise ExportError(f"physicalai loads the package with backend {model.backend!r}, not the default "
                          f"{backend!r}; the first key of model.artifacts names the default backend")
    return model


def model_file(model: Any) -> str | None:
    """The file the runtime loaded (its private lookup; None if a later version renames it)."""
    lookup = getattr(model, "_get_model_path", None)
    return Path(lookup()).name if callable(lookup) else None


def precision_of(model: Any, graph_precision: str = "f32") -> str:
    """What a loaded ``InferenceModel`` computes in: OpenVINO's compiled ``INFERENCE_PRECISION_HINT``
    (``bf16``, ``f32``, ``f16``); for onnxruntime the graph's own precision."""
    compiled = getattr(model.adapter, "compiled_model", None)
    if compiled is None:
        return graph_precision
    return str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())


def cpu_bf16() -> bool | None:
    """Whether this CPU computes bfloat16 natively for OpenVINO (None: openvino not installed)."""
    try:
        import openvino
    except ImportError:
        return None
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def openvino_default_precision() -> str | None:
    """What ``InferenceModel(dir)`` compiles an OpenVINO model in on this machine's CPU, without loading one.

    OpenVINO's CPU default (``bf16`` where the CPU has it), or ``f32`` on ARM, where physicalai
    sets that hint itself; None when openvino is not installed.
    """
    import platform

    try:
        import openvino
    except ImportError:
        return None
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "f32"
    return str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name())


def check_default_load(
    model: Any,
    call: str,
    precision: str,
    reference: Runner,
    cases: list[tuple[str, dict[str, torch.Tensor]]],
    names: Sequence[str],
    all_names: Sequence[str],
    tolerances: Mapping[str, tuple[float, float]],
    reduced: bool,
) -> dict[str, Any]:
    """The hint-free load ``model`` (made by ``call``) on every case against PyTorch (:func:`default_load_figures`)."""
    from getiaction_export.parity import compare

    runner = RuntimeRunner(model, names)
    indexes = [list(all_names).index(name) for name in names]
    rows = []
    for _, inputs in cases:
        expected = reference(inputs)
        for name, index, got in zip(names, indexes, runner(inputs), strict=True):
            rows.append((name, compare(expected[index], got, *tolerances[name]), _largest(expected[index])))
    return default_load_figures(call, precision, rows, tolerances, reduced, len(cases))


def _largest(array: np.ndarray) -> float:
    return float(np.abs(array).max()) if array.size else 0.0


def default_load_figures(
    call: str,
    precision: str,
    rows: Sequence[tuple[str, Mapping[str, Any], float]],
    tolerances: Mapping[str, tuple[float, float]],
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
        within = (diff <= max(REDUCED_PRECISION_TOLERANCE * largest, tolerances[name][0])
                  and not stats["nonfinite"]) if reduced else stats["passed"]
        worst = outputs.setdefault(name, {"max_abs_diff": 0.0, "max_abs_output": 0.0, "relative": 0.0,
                                          "passed": True})
        worst["max_abs_diff"] = max(worst["max_abs_diff"], diff)
        worst["max_abs_output"] = max(worst["max_abs_output"], largest)
        worst["relative"] = max(worst["relative"], relative)
        worst["passed"] = worst["passed"] and bool(within)
    main = "action" if "action" in outputs else next(iter(outputs))
    atol, rtol = tolerances[main]
    return {"call": call, "adapter_kwargs": {}, "precision": precision,
            "max_abs_diff": outputs[main]["max_abs_diff"], "relative": outputs[main]["relative"],
            "tolerance": {"relative": REDUCED_PRECISION_TOLERANCE} if reduced else {"atol": atol, "rtol": rtol},
            "outputs": outputs, "cases": cases, "passed": all(o["passed"] for o in outputs.values())}


class RuntimeRunner:
    """An ``InferenceModel`` called like a verification :data:`~getiaction_export.runtimes.Runner`."""

    def __init__(self, model: Any, output_names: Sequence[str]) -> None:
        self.model = model
        self.output_names = list(output_names)

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
        outputs = self.model({name: tensor.numpy() for name, tensor in batch.items()})
        return [np.asarray(outputs[name]) for name in self.output_names]


def _counted_runs(model: Any) -> list[int]:
    """Count model runs from here on (wraps the runner's ``run``); returns the one-element counter."""
    calls = [0]
    original = model.runner.run

    def counted(adapter: Any, inputs: Any) -> Any:
        calls[0] += 1
        return original(adapter, inputs)

    setattr(model.runner, "run", counted)  # noqa: B010 - an instance attribute shadows the method
    return calls


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
) -> dict[str, Any]:
    """``predict_action_chunk`` and ``select_action`` on two batch-1 observations (see the module doc)."""
    from getiaction_export.parity import compare

    expected = _chunk_of(reference(first)[action_index])
    feed = {name: tensor.numpy() for name, tensor in first.items()}
    chunk = np.asarray(model.predict_action_chunk(feed))
    figures: dict[str, Any] = {"shape": list(chunk.shape), "expected_shape": list(expected.shape)}
    figures.update(compare(expected, chunk, atol, rtol))
    runs = _counted_runs(model)
    model.reset()
    rows = [np.asarray(model.select_action(feed)) for _ in range(expected.shape[0])]
    runs_for_chunk = runs[0]
    in_order = compare(expected, np.stack(rows), atol, rtol)
    next_row = np.asarray(model.select_action({name: tensor.numpy() for name, tensor in second.items()}))
    expected_next = _chunk_of(reference(second)[action_index])[0]
    rerun = compare(expected_next, next_row, atol, rtol)
    figures["select_action"] = {
        "rows": len(rows), "runs_for_chunk": runs_for_chunk, "rows_in_order": in_order["passed"],
        "max_abs_diff": in_order["max_abs_diff"], "runs_after_chunk_used_up": runs[0],
        "reran_on_new_observation": rerun["passed"] and runs[0] == runs_for_chunk + 1,
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
) -> dict[str, Any]:
    """uint8 ``(1, H, W, 3)`` frames through the manifest's preprocessing, and the loop's own observation."""
    import torch

    from getiaction_export.parity import compare

    record = drivability(inputs)
    frames = frames_for(inputs, observation, seed)
    as_floats = {name: torch.from_numpy(frame).permute(0, 3, 1, 2).float() / 255 for name, frame in frames.items()}
    expected = _chunk_of(reference({**observation, **as_floats})[action_index])
    record["uint8_frames"] = None
    if frames:
        feed = {**{name: tensor.numpy() for name, tensor in observation.items()}, **frames}
        record["uint8_frames"] = compare(expected, np.asarray(model.predict_action_chunk(feed)), atol, rtol)
    if record["ok"] and "state" in observation:
        record["policy_source"] = _through_policy_source(model, observation, frames, expected, atol, rtol)
    return record


def _through_policy_source(
    model: Any, observation: Mapping[str, torch.Tensor], frames: Mapping[str, np.ndarray], expected: np.ndarray,
    atol: float, rtol: float,
) -> dict[str, Any]:
    """The observation physicalai's ``PolicySource`` builds from a robot state and camera frames, run by the model."""
    from physicalai.capture.frame import Frame
    from physicalai.runtime.action_sources.policy import PolicySource

    from getiaction_export.parity import compare

    robot = types.SimpleNamespace(state=observation["state"].numpy()[0], images=None)
    cameras = {camera_name(name): Frame(data=frame[0], timestamp=0.0, sequence=0) for name, frame in frames.items()}
    fed = PolicySource(model).to_model_input(robot, cameras)
    try:
        got = np.asarray(model.predict_action_chunk(fed))
    except KeyError as error:  # drivability() said the keys match; the runtime disagrees
        raise ExportError(f"physicalai's robot loop feeds {sorted(fed)}: {first_line(error)}") from error
    return {"keys": sorted(fed), **compare(expected, got, atol, rtol)}


def check_package(
    folder: Path,
    backend: str,
    default_backend: str | None,
    expected_file: str,
    reference: Runner,
    cases: list[tuple[str, dict[str, torch.Tensor]]],
    output_names: Sequence[str],
    tolerances: Mapping[str, tuple[float, float]],
    inputs: Sequence[Mapping[str, Any]],
    seed: int = 0,
    graph_precision: str = "f32",
) -> dict[str, Any]:
    """Every check of the module doc on one backend of the package in ``folder``; the figures.

    ``graph_precision``: what the model file computes in by itself (``f32``; ``f16`` for an fp16
    ONNX export), which is what onnxruntime runs.

    Raises :class:`ExportError` when the runtime cannot load or run the package,
    :class:`VerificationError` when its numbers differ from PyTorch's beyond the tolerance, and
    :class:`DefaultLoadError` (one) when the default backend loaded with no hints does.
    """
    from getiaction_export.parity import check_parity

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
    figures: dict[str, Any] = {"backend": backend, "default_backend": default_backend, "model_file": loaded,
                               "physicalai": physicalai_version(),
                               "adapter_kwargs": dict(OPENVINO_F32) if backend == "openvino" else {},
                               "load_s": round(time.perf_counter() - started, 4)}
    names = [name for name in output_names if name in runtime_outputs]
    atol, rtol = tolerances[names[0]]
    try:
        report = check_parity(reference, RuntimeRunner(model, names), names, cases, atol, rtol,
                              per_output={name: tolerances[name] for name in names})
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        raise ExportError(f"physicalai ({backend}) cannot run the package: {first_line(error)}") from error
    figures.update(parity=report.outputs, cases=len(cases))
    if not report.passed:
        raise VerificationError(f"runtime check failed (physicalai {backend} vs PyTorch): "
                                + "; ".join(report.failures()))
    action_index = list(output_names).index("action")
    ones = [inputs_ for _, inputs_ in cases if next(iter(inputs_.values())).shape[:1] == (1,)]
    action_atol, action_rtol = tolerances["action"]
    if len(ones) >= 2:
        figures["chunk"] = check_chunks(model, reference, action_index, ones[0], ones[1], action_atol, action_rtol)
        figures["robot_loop"] = check_robot_loop(model, reference, action_index, inputs, ones[0],
                                                 action_atol, action_rtol, seed)
    else:
        figures["chunk"] = figures["robot_loop"] = None  # a static batch other than 1: no batch-1 calls
    _raise_on_failures(figures, backend)
    figures["default_load"] = unhinted = _default_load(folder, backend, default_backend, graph_precision, reference,
                                                       cases, names, output_names, tolerances, report.cases)
    if unhinted["gated"] and not unhinted["passed"]:
        raise DefaultLoadError(default_load_failure(backend, unhinted), figures)
    figures["passed"] = True
    figures["seconds"] = round(time.perf_counter() - started, 4)
    return figures


def _default_load(
    folder: Path, backend: str, default_backend: str | None, graph_precision: str, reference: Runner,
    cases: list[tuple[str, dict[str, torch.Tensor]]], names: Sequence[str], output_names: Sequence[str],
    tolerances: Mapping[str, tuple[float, float]], checked: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The package as loaded with no hints (see the module doc): its figures, ``gated`` for the default backend.

    ``checked``: the parity check's per-case figures. onnxruntime takes no hints, so the load
    checked there is the default load: its figures are reused, nothing runs again.
    """
    call = default_call(backend, default_backend)
    if backend != "openvino":
        indexes = [list(output_names).index(name) for name in names]
        largest = [_largest(reference(inputs)[index]) for _, inputs in cases for index in indexes]
        rows = [(str(case["output"]), case, size) for case, size in zip(checked, largest, strict=True)]
        record = default_load_figures(call, graph_precision, rows, tolerances, False, len(cases))
    else:
        plain = load(folder, backend, default_backend, hints=False)
        precision = precision_of(plain)
        try:
            record = check_default_load(plain, call, precision, reference, cases, names, output_names, tolerances,
                                        reduced=precision != "f32")
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
             else f"atol {tolerance['atol']:.1e}, rtol {tolerance['rtol']:.1e}")
    advice = ("; export format=all to make ONNX (f32) the package's default backend"
              if record["precision"] != "f32" and backend == "openvino" else "")
    return (f"runtime check failed (physicalai {backend}, {record['call']} with no hints, {record['precision']} "
            f"on this CPU): action {record['max_abs_diff']:.3g} off PyTorch, {record['relative']:.1%} of the "
            f"largest |action| (tolerance {bound}){advice}")


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


def first_line(error: BaseException) -> str:
    """An exception as one line with its type (the runtime's errors are multi-line or bare KeyErrors)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error  # KeyError quotes itself
    text = " ".join(str(message).strip().split("\n")[0].split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
