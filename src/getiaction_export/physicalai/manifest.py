"""``manifest.json``: what makes an export folder a physicalai policy package.

Intel's ``physicalai`` inference runtime loads a folder holding a ``manifest.json`` and a model
(``<name>.onnx``, or ``<name>.xml`` + ``.bin``) and runs it with onnxruntime or OpenVINO. What
its loader actually reads (physicalai 0.3.0, ``physicalai/inference/model.py``), and so what
this module writes:

- ``policy.name`` picks the model file ``<name><ext>``; without it the runtime takes the first
  file with the extension. It must match ``[a-zA-Z0-9][a-zA-Z0-9_.-]*`` or loading fails; an
  artifact stem outside that (a Lightning ``epoch=3-step=100`` checkpoint) is left out of the
  manifest and the runtime falls back to the one file of the extension.
- ``model.artifacts``: only its FIRST key is read, as the backend name (``onnx``/``openvino``);
  the file names are informational. With both formats in one folder the first key is the
  default backend: the fastest verified one on the export machine (:func:`default_backend`,
  its reason recorded as ``getiaction.default_backend_reason``), but never OpenVINO on a CPU with
  bfloat16, because the runtime has no place in the manifest for OpenVINO's compile config and
  OpenVINO's CPU default precision is bfloat16 there (AVX512-BF16/AMX; ACT ~1 %, diffusion ~2-3 % of
  the largest |action| off PyTorch): the ONNX backend runs the numbers this tool verified in f32.
  Ask for OpenVINO in f32 explicitly with ``InferenceModel(dir, backend="openvino", INFERENCE_PRECISION_HINT="f32")``
  (:data:`.precision.F32_CALL`). A folder holding only the IR loads in bf16 on such a CPU; the runtime check
  verifies that load too, and ``getiaction.backends.<b>.default_load`` records, per backend,
  what the hint-free load (:func:`.precision.default_call`) computes in and how far it is from PyTorch.
- ``model.runner``: ``{"type": "single_pass"}``, the only runner; it takes no arguments
  (a ``chunk_size`` there is rejected), ``select_action`` queues the rows of each chunk itself.
- ``model.preprocessors``: the runtime's own ``to_float_tensor`` when the graph has camera
  inputs (``images`` / ``images.<camera>``, 4-D float32, 3 channels): its robot loop feeds
  ``(1, H, W, 3)`` uint8 frames, which that step turns into the ``(1, 3, H, W)`` float32 in
  [0, 1] our graphs take, bit-exactly (``x / 255`` in float32); float ``(B, 3, H, W)`` input
  passes through unchanged, so the same package runs the verification inputs too. No stats
  file: the shipped policies normalize inside the graph.
- ``model.input_features`` / ``output_features`` (``InferenceFeature``: name, shape without the
  batch axis, dtype float32/int64) and ``hardware`` (cameras, robot state/action sizes):
  descriptive, used by the runtime's benchmark input source.
- Our provenance goes under the top-level key ``getiaction``: the manifest model keeps unknown
  top-level keys (``extra="allow"``, meant for domain layers), where extra keys inside
  ``metadata`` would be silently dropped on a round-trip through the runtime's ``Manifest``. What its
  blocks hold (task, noise, each backend's runtime check and hint-free load): :mod:`.provenance`.

The manifest holds nothing time-dependent, and only relative file names: the folder is copied to a
robot as is. It names the machine the figures were taken on (``getiaction.machine``: CPU model, ISA
features, runtime versions), and carries what ``deploy_check`` needs to verify the package again where
it runs: ``getiaction.reference`` (the reference set, :mod:`.reference_set`) and per backend its
``tolerance`` and its figures on that set at export (``reference``).

Example:
    >>> specs = [{"name": "state", "shape": ["batch", 14], "dtype": "float32"},
    ...          {"name": "images.top", "shape": ["batch", 3, 64, 64], "dtype": "float32"}]
    >>> manifest = build_manifest("act", "getiaction.policies.act.policy.ACT", {"onnx": "act.onnx"}, specs,
    ...                           [{"name": "action", "shape": ["batch", 20, 14], "dtype": "float32"}], {})
    >>> manifest["model"]["artifacts"], manifest["model"]["preprocessors"]
    ({'onnx': 'act.onnx'}, [{'type': 'to_float_tensor'}])
    >>> [f["init_args"]["ftype"] for f in manifest["model"]["input_features"]]
    ['STATE', 'VISUAL']
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from getiaction.export.atomic import atomic_write_text
from getiaction_export.physicalai import precision as machine_precision
from getiaction_export.physicalai.history import HISTORY_SOURCE, history_of, single_step
from getiaction_export.physicalai.precision import OPENVINO_F32
from getiaction_export.physicalai.provenance import (
    default_load_summary,
    history_steps,
    input_names,
    noise_section,
    plain_config,
    runtime_summary,
    task_inputs,
    task_section,
)
from getiaction_export.physicalai.reference_set import figures_at_export

if TYPE_CHECKING:
    from getiaction_export.state import FormatOutcome, JobState

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "policy_package"
MANIFEST_VERSION = "1.0"
SECTION = "getiaction"
"""Top-level manifest key holding our provenance (kept by the runtime's parser, never read by it)."""
SECTION_VERSION = 1

BACKEND_SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}
"""Our format name -> the runtime's backend name is the same; the suffix its loader looks for."""
PACKAGE_FORMATS = tuple(BACKEND_SUFFIX)
"""The formats whose export folder is a policy package."""
DEFAULT_BACKEND_ORDER = ("onnx", "openvino")
CLEAR_MARGIN = 0.10
"""Another backend becomes the default only when it is this much faster than ONNX (timings are noisy; the
manifest should not change between two runs of the same export)."""
"""Order of ``model.artifacts``; the first present is the runtime's default backend (see module doc)."""

SAFE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$", re.ASCII)
"""The runtime's rule for ``policy.name`` (it becomes a file name)."""
FEATURE_CLASS = "physicalai.inference.data.features.InferenceFeature"
FEATURE_DTYPES = ("float32", "int64")
"""dtypes an ``InferenceFeature`` can declare; other inputs are left out of ``input_features``."""
IMAGES = "images"
"""Key prefix of camera inputs in the runtime (``images`` for one camera, ``images.<camera>``)."""
TO_FLOAT_TENSOR = {"type": "to_float_tensor"}


def is_image_input(spec: Mapping[str, Any]) -> bool:
    """A camera input the runtime's ``to_float_tensor`` step can feed: ``images[.cam]``, (B, 3, H, W) float32."""
    name, shape = str(spec["name"]), list(spec["shape"])
    named = name == IMAGES or name.startswith(IMAGES + ".")
    return named and len(shape) == 4 and shape[1] == 3 and spec["dtype"] == "float32"


def camera_name(input_name: str) -> str:
    """``images.top`` -> ``top``; a bare ``images`` input is camera ``images``."""
    return input_name.split(".", 1)[1] if "." in input_name else input_name


def robot_loop_keys(image_inputs: Sequence[str]) -> dict[str, str]:
    """Graph input -> the key physicalai's robot loop (``PolicySource``) feeds that camera under.

    It feeds one camera as ``images`` and several as ``images.<camera>``
    (``physicalai/runtime/action_sources/policy.py``, ``_to_model_input``).
    """
    if len(image_inputs) == 1:
        return {image_inputs[0]: IMAGES}
    return {name: f"{IMAGES}.{camera_name(name)}" for name in image_inputs}


def _static_dims(shape: Sequence[Any]) -> list[int] | None:
    """The shape without its batch axis, or None when another axis is symbolic."""
    dims = list(shape[1:])
    return dims if all(isinstance(d, int) and d > 0 for d in dims) else None


def _feature(spec: Mapping[str, Any], ftype: str) -> dict[str, Any] | None:
    dims = _static_dims(spec["shape"])
    if dims is None or spec["dtype"] not in FEATURE_DTYPES:
        return None
    return {"class_path": FEATURE_CLASS,
            "init_args": {"ftype": ftype, "shape": dims, "name": spec["name"], "dtype": spec["dtype"]}}


def _input_type(spec: Mapping[str, Any]) -> str:
    if spec["name"] == "state":
        return "STATE"
    return "VISUAL" if is_image_input(spec) else "COMMON"


def _hardware(inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Cameras (C, H, W) uint8 and the robot's state/action sizes, where the graph says them."""
    cameras = [{"name": camera_name(s["name"]), "shape": _static_dims(s["shape"]), "dtype": "uint8"}
               for s in inputs if is_image_input(s) and _static_dims(s["shape"])]
    robot: dict[str, Any] = {"name": "main"}
    state = next((s for s in inputs if s["name"] == "state"), None)
    if state is not None and (dims := _static_dims(state["shape"])) and len(dims) == 1:
        robot["state"] = {"shape": dims, "dtype": "float32"}
    action = next((s for s in outputs if s["name"] == "action"), None)
    if action is not None and (dims := _static_dims(action["shape"])):
        robot["action"] = {"shape": dims[-1:], "dtype": "float32"}  # one step of a chunk
    hardware: dict[str, Any] = {}
    if len(robot) > 1:
        hardware["robots"] = [robot]
    if cameras:
        hardware["cameras"] = cameras
    return hardware


def build_manifest(
    policy_name: str,
    class_path: str,
    artifacts: Mapping[str, str],
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    provenance: Mapping[str, Any],
    preprocessors: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The manifest of a package holding ``artifacts`` (backend -> main file name; the first is the default).

    ``inputs``/``outputs``: the graph's tensors as ``{name, shape, dtype}`` (axis 0 the batch).
    ``provenance`` goes under :data:`SECTION` as is. ``preprocessors``: the policy's own runtime steps
    (a task's tokenizer), after ``to_float_tensor``.
    """
    ordered = dict(artifacts)
    policy: dict[str, Any] = {"source": {"class_path": class_path}}
    if SAFE_NAME.fullmatch(policy_name):
        policy = {"name": policy_name, **policy}
    model: dict[str, Any] = {"runner": {"type": "single_pass"}, "artifacts": ordered}
    steps = [dict(TO_FLOAT_TENSOR)] if any(is_image_input(spec) for spec in inputs) else []
    steps += [dict(step) for step in preprocessors]
    if steps:
        model["preprocessors"] = steps
    features = [_feature(s, _input_type(s)) for s in inputs]
    model["input_features"] = [f for f in features if f]
    out_features = [_feature(s, "ACTION" if s["name"] == "action" else "COMMON") for s in outputs]
    model["output_features"] = [f for f in out_features if f]
    manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "policy": policy,
                                "model": model}
    hardware = _hardware(inputs, outputs)
    if hardware:
        manifest["hardware"] = hardware
    versions = provenance.get("versions") or {}
    manifest["metadata"] = {"created_by": f"getiaction-export {versions.get('getiaction', '')}".strip()}
    manifest[SECTION] = dict(provenance)
    return manifest


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (a reader never sees half a manifest)."""
    path = Path(folder) / MANIFEST_FILE
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def drivability(inputs: Sequence[Mapping[str, Any]], task: Sequence[str] = (), history: int = 0) -> dict[str, Any]:
    """How physicalai's robot loop (``state`` float32 (1, D), camera frames (1, H, W, 3) uint8) feeds this graph.

    ``task``: the graph inputs the package's tokenizer writes from the loop's ``task`` (fed when the
    loop has a task set). ``history``: the observations the inputs carry on axis 1 (fed by
    :data:`~.history.HISTORY_SOURCE`). ``ok`` is False when the loop would not find an input under the
    key it feeds, with ``reason``.
    """
    if history:  # (B, n, ...) inputs: the history source stacks what the loop feeds under the same names
        stacked = drivability(single_step(inputs), task)
        stacked["feeds"]["history"] = f"{HISTORY_SOURCE} keeps the last {history} observations"
        return stacked
    images = [str(s["name"]) for s in inputs if is_image_input(s)]
    keys = robot_loop_keys(images) if images else {}
    fed = {"state", *keys.values(), *task}
    missing = [str(s["name"]) for s in inputs if str(s["name"]) not in keys and str(s["name"]) not in fed]
    other_cameras = [name for name in missing if name == IMAGES or name.startswith(IMAGES + ".")]
    mismatched = {graph: key for graph, key in keys.items() if graph != key}
    record: dict[str, Any] = {"state": "float32 (1, D)", "images": "uint8 (1, H, W, 3) -> to_float_tensor",
                              "feeds": {**({"state": "state"} if any(s["name"] == "state" for s in inputs) else {}),
                                        **keys, **({"task": "tokenizer -> " + ", ".join(task)} if task else {})},
                              "ok": True, "reason": None}
    if other_cameras:
        record.update(ok=False, reason=f"camera input {other_cameras[0]!r} is not (B, 3, H, W) float32; the runtime's "
                                       "to_float_tensor step converts only 3-channel frames")
    elif missing:
        record.update(ok=False, reason=f"input(s) {missing} are not fed by the robot loop "
                                       "(it feeds only state and images); feed them from your own code")
    elif mismatched:
        graph, key = next(iter(mismatched.items()))
        record.update(ok=False, reason=f"with one camera the robot loop feeds it as {key!r}, the graph reads "
                                       f"{graph!r}; call the model with {{{graph!r}: frame}} (or "
                                       f"{{'images': {{{camera_name(graph)!r}: frame}}}}) from your own loop")
    return record


def package_files(state: JobState, staged: FormatOutcome | None = None) -> dict[str, dict[str, str | None]]:
    """Per backend in the folder, ``{file name: sha256}`` with its main file first, the default backend first
    (:func:`default_backend`).

    Every format the job promoted, plus ``staged`` (a format not promoted yet, whose hashes are
    not known: ``None``).
    """
    files: dict[str, dict[str, str | None]] = {}
    for name in DEFAULT_BACKEND_ORDER:
        outcome = state.formats.get(name)
        if outcome is staged and outcome is not None:
            files[name] = {path.name: None for path in outcome.final}
        elif outcome is not None and outcome.promoted:
            files[name] = {Path(path).name: sha for path, sha in outcome.files.items()}
    default, _ = default_backend(state, list(files))
    return {name: files[name] for name in sorted(files, key=lambda name: name != default)}


def default_backend(state: JobState, backends: Sequence[str]) -> tuple[str | None, str]:
    """The package's default backend and why: the fastest verified one whose hint-free load (``InferenceModel(dir)``)
    computes in the precision it was verified in on this machine; ONNX first when latency was not measured.

    OpenVINO's hint-free load computes in bf16 on CPUs with bfloat16 (AVX512-BF16/AMX), which no manifest field
    changes: there it is never the default, however fast. On a CPU without bf16 it is, when it is faster.
    """
    names = [name for name in DEFAULT_BACKEND_ORDER if name in backends]
    if len(names) <= 1:
        return (names[0] if names else None), "the only backend in the package"
    measured = {name: (state.formats[name].latency or {}).get("runtime_ms") for name in names}
    timed: dict[str, float] = {name: float(ms) for name, ms in measured.items() if ms is not None}
    if len(timed) < len(names):
        return names[0], ("latency not measured (format.latency=false): ONNX first, whose hint-free load computes "
                          "in the graph's own precision everywhere")
    unhinted = machine_precision.openvino_default_precision() or "f32"
    eligible = [name for name in names if name != "openvino" or unhinted == "f32"]
    fastest = min(eligible, key=lambda name: timed[name])
    ranking = ", then ".join(sorted(names, key=lambda name: timed[name]))
    reason = f"the fastest verified backend at batch 1 on the export machine (fastest first: {ranking})"
    if fastest != names[0] and timed[fastest] > (1 - CLEAR_MARGIN) * timed[names[0]]:
        # a tie within timing noise keeps the manifest the same from run to run
        fastest, reason = names[0], f"{names[0]}: the others are less than {CLEAR_MARGIN:.0%} faster at batch 1"
    overall = min(names, key=lambda name: timed[name])
    if overall not in eligible:
        reason += (f"; {overall} is faster but InferenceModel(dir) would compute it in {unhinted} on this CPU, "
                   "not the precision it was verified in")
    return fastest, reason


def manifest_section(
    state: JobState, files: Mapping[str, Mapping[str, str | None]], with_checks: bool = True
) -> dict[str, Any]:
    """The :data:`SECTION` of the manifest: the job's provenance and each backend's verified figures."""
    built, graph = state.built, state.graph
    assert built is not None and graph is not None
    default, why_default = default_backend(state, list(files))
    backends: dict[str, Any] = {}
    for name, names in files.items():
        outcome = state.formats[name]
        main = next(iter(names))
        parity = {output: {key: figures.get(key) for key in ("max_abs_diff", "max_rel_diff", "atol", "rtol", "passed")}
                  for output, figures in (outcome.parity.outputs if outcome.parity else {}).items()}
        backends[name] = {"file": main, "sha256": names[main], "files": dict(names), "precision": outcome.precision,
                          "verified_with": outcome.runtime, "parity": parity}
        if "int8" in outcome.details:  # how it was quantized (the overflow fix decides whether it holds without VNNI)
            backends[name]["int8"] = {key: outcome.details["int8"].get(key)
                                     for key in ("method", "model_type", "overflow_fix")}
        if outcome.verification is not None:  # what deploy_check holds this backend to, on the reference set
            backends[name]["tolerance"] = outcome.verification.tolerances
        if state.reference_set is not None and outcome.parity is not None:
            backends[name]["reference"] = figures_at_export(outcome.parity.cases, state.reference_set["labels"])
        if name == "openvino":
            backends[name]["adapter_kwargs"] = dict(OPENVINO_F32)
        if with_checks and outcome.runtime_check and outcome.runtime_check.get("passed"):
            backends[name]["runtime_check"] = runtime_summary(outcome.runtime_check)
        if with_checks:
            backends[name]["default_load"] = default_load_summary(
                name, default, outcome.precision, (outcome.runtime_check or {}).get("default_load"))
    policy = {"name": state.config.policy_name, "class_path": built.class_path, "source": built.source,
              "seed": built.seed, "checkpoint_sha256": built.checkpoint_sha256}
    section: dict[str, Any] = {
        "schema_version": SECTION_VERSION,
        "policy": {key: value for key, value in policy.items() if value is not None},
        "model_config": plain_config(built.module) if with_checks else None,
        "config": state.identity.get("config"),
        "config_sha256": state.identity.get("config_sha256"),
        "versions": state.versions,
        "machine": state.machine,
        "reference": state.reference_set,
        "opset": state.opset,
        "exporter": state.source.exporter if state.source else None,
        "inputs": graph.inputs,
        "outputs": graph.outputs,
        "default_backend": default,
        "default_backend_reason": why_default,
        "backends": backends,
        "robot_loop": drivability(graph.inputs, task=task_inputs(state), history=history_steps(state)),
        "history": history_of(graph.inputs, history_steps(state)),
        "input_names": input_names(built.module),
        "play_warning": getattr(built.module, "play_warning", None),
        "task": task_section(state),
        "noise": noise_section(state),
    }
    return {key: value for key, value in section.items() if value is not None}


def package_manifest(
    state: JobState, files: Mapping[str, Mapping[str, str | None]], with_checks: bool = True
) -> dict[str, Any]:
    """The whole manifest of a folder holding ``files`` (see :func:`manifest_section`, :func:`build_manifest`)."""
    section = manifest_section(state, files, with_checks)
    assert state.built is not None
    artifacts = {name: next(iter(names)) for name, names in files.items()}
    extras = state.package_extras or {}
    return build_manifest(state.config.policy_name, state.built.class_path, artifacts,
                          section.get("inputs", []), section.get("outputs", []), section,
                          extras.get("preprocessors", ()))
