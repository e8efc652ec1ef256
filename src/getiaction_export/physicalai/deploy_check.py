"""``python -m getiaction_export.deploy_check DIR``: is DIR a policy package the physicalai runtime runs?

For CI pipelines and for the robot side: it needs physicalai (``pip install
'getiaction-export[deploy]'``) but not torch, and it trusts nothing our exporter wrote. It reads
``DIR/manifest.json`` the way physicalai 0.3 does and reports, in one line, the first thing that
would make the runtime fail or silently run something else:

- not a folder, no ``manifest.json``, a manifest that is not JSON or not the runtime's schema;
- ``model.artifacts`` whose first key is not a backend (the runtime reads it as the backend name;
  ``{"model": ...}`` fails), a file it names that is missing (an OpenVINO ``.xml`` without its
  ``.bin`` included), a file whose suffix is not the backend's;
- two models for one backend (``a.onnx`` and ``b.onnx``: the runtime picks one by
  ``policy.name`` or by directory order), a ``policy.name`` the runtime refuses or that makes it
  load another file than ``model.artifacts`` names;
- a model file whose sha256 differs from the one recorded at export (under ``getiaction``);
- then, in the runtime itself, each backend (OpenVINO at f32 precision): the package loads, its
  default backend is the first ``model.artifacts`` key, no input is float64, an output is named
  ``action``, and one observation as the robot loop sends it (``state`` float32 (1, D), camera
  frames (1, H, W, 3) uint8) gives a finite ``(chunk, A)`` from ``predict_action_chunk``;
- and OpenVINO as a robot loads it with no hints (``InferenceModel(dir)``, or
  ``backend="openvino"`` when it is not the default): what it computes in on *this* CPU (bf16
  where the CPU has bfloat16) and how far its chunk is from the f32 one. Not f32 is a ``!``
  warning naming the precision and the f32 call; for the default backend, a chunk off by more
  than the export's bf16 tolerance (5 % of the largest ``|action|``) is not deployable.

Warnings (``!``) do not fail the check: e.g. a single-camera policy whose graph reads
``images.<camera>`` while physicalai's robot loop feeds one camera as ``images``, or the bf16
default load above.

Exit codes: 0 deployable; 6 not deployable (one ``error:`` line on stderr says why);
2 bad usage or physicalai missing.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "manifest.json").write_text('{"model": {"artifacts": {"model": "act.onnx"}}}')
    >>> try:
    ...     static_check(folder)
    ... except NotDeployable as error:
    ...     print(error)  # doctest: +ELLIPSIS
    model.artifacts: first key 'model' is not a backend (the runtime reads it as the backend name); use one of ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from getiaction.errors import ExitCode, GetiActionError
from getiaction_export.files import sha256_of
from getiaction_export.physicalai.manifest import (
    BACKEND_SUFFIX,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    SAFE_NAME,
    SECTION,
    drivability,
    is_image_input,
)
from getiaction_export.physicalai.precision import F32_CALL, default_call
from getiaction_export.physicalai.reference_check import (
    Refused,
    check_fresh,
    check_reference,
    drawn_outputs,
    load_pinned,
    robot_task,
)
from getiaction_export.physicalai.task import TASK


class NotDeployable(GetiActionError):
    """One line saying why the folder is not a package physicalai runs as intended."""

    kind = "deploy"
    exit_code = ExitCode.NOT_DEPLOYABLE


@dataclass
class Report:
    """What the check found: ``lines`` (✓ passed checks), ``warnings`` and the backends it ran."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)


def _known_backends() -> dict[str, tuple[str, ...]]:
    """Backend name -> file extensions, from physicalai's registry when installed (else ours)."""
    try:
        from physicalai.inference.adapters import adapter_registry
    except ImportError:
        return {name: (suffix,) for name, suffix in BACKEND_SUFFIX.items()}
    return {name: tuple(adapter_registry.extensions_of(name)) for name in adapter_registry.names()}


def read_manifest(folder: Path) -> dict[str, Any]:
    """``folder/manifest.json`` as a dict; :class:`NotDeployable` if it is missing or not a JSON object."""
    if not folder.is_dir():
        raise NotDeployable(f"{folder} is not a folder")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise NotDeployable(f"no {MANIFEST_FILE} in {folder}: not a policy package "
                            "(getiaction-export writes one beside every ONNX/OpenVINO export)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise NotDeployable(f"{MANIFEST_FILE} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise NotDeployable(f"{MANIFEST_FILE} holds a JSON {type(data).__name__}, not an object")
    return data


def _schema_check(data: dict[str, Any]) -> None:
    """The runtime's own parser (pydantic) on the manifest, its first complaint as one line."""
    try:
        from physicalai.inference.manifest import Manifest
    except ImportError:
        return
    try:
        Manifest.model_validate(data)
    except Exception as error:  # pydantic.ValidationError
        errors = getattr(error, "errors", None)
        if callable(errors) and errors():
            first = errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise NotDeployable(f"{MANIFEST_FILE}: {where}: {first.get('msg')}") from error
        raise NotDeployable(f"{MANIFEST_FILE} does not match the runtime's schema: {error}") from error


def static_check(folder: Path) -> tuple[dict[str, Any], Report]:
    """Everything that can be checked without loading a model; returns the manifest and a report."""
    folder = Path(folder)
    data = read_manifest(folder)
    report = Report()
    _schema_check(data)
    if data.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT:
        raise NotDeployable(f"{MANIFEST_FILE}: format is {data['format']!r}, not {MANIFEST_FORMAT!r}")
    model = data.get("model") or {}
    artifacts: dict[str, str] = dict(model.get("artifacts") or {})
    known = _known_backends()
    if not artifacts:
        raise NotDeployable("model.artifacts is empty: declare the model file under its backend, "
                            'e.g. {"onnx": "act.onnx"} (its first key is the default backend)')
    for index, (backend, filename) in enumerate(artifacts.items()):
        where = "first key" if index == 0 else "key"
        if backend not in known:
            raise NotDeployable(f"model.artifacts: {where} {backend!r} is not a backend (the runtime reads it as "
                                f"the backend name); use one of {', '.join(known)}")
        if Path(filename).suffix not in known[backend]:
            raise NotDeployable(f"model.artifacts.{backend}: {filename} is not a {'/'.join(known[backend])} file, "
                                f"which is what the {backend} backend loads")
    name = str((data.get("policy") or {}).get("name") or "")
    if name and not SAFE_NAME.fullmatch(name):
        raise NotDeployable(f"policy.name {name!r}: the runtime accepts only [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    steps = {str(step["artifact"]) for step in model.get("preprocessors") or [] if step.get("artifact")}
    for artifact in [folder / step for step in steps]:
        if not artifact.is_file():
            raise NotDeployable(f"model.preprocessors: {artifact.name} is missing from {folder}")
    others = [other for backend, filename in artifacts.items()
              for other in _check_files(folder, backend, filename, known[backend], name, steps)]
    _check_hashes(folder, data, artifacts)
    report.lines.append(f"{MANIFEST_FILE}: backends {', '.join(artifacts)} (default {next(iter(artifacts))}), "
                        f"files present, one model per backend"
                        + (f" (policy.name picks it; also here, not loaded: {', '.join(others)})" if others else ""))
    inputs = ((data.get(SECTION) or {}).get("inputs")) or []
    if inputs:
        section = data.get(SECTION) or {}
        loop = drivability(inputs, (section.get("task") or {}).get("writes") or (),
                           int((section.get("history") or {}).get("n_obs_steps") or 0))
        if not loop["ok"]:
            report.warnings.append(f"robot loop: {loop['reason']}")
    return data, report


def _check_files(folder: Path, backend: str, filename: str, extensions: tuple[str, ...], name: str,
                 steps: set[str]) -> list[str]:
    """The other models of the backend in ``folder`` (``policy.name`` picks the declared one, so the runtime
    never loads them: ``format=all``'s INT8 IR beside the f32 one); refused where the runtime's pick is not the
    declared file. ``steps``: files the manifest's pre-processors load (a task's OpenVINO tokenizer): not models."""
    path = folder / filename
    if not path.is_file():
        raise NotDeployable(f"model.artifacts.{backend}: {filename} is missing from {folder}")
    if backend == "openvino" and not path.with_suffix(".bin").is_file():
        raise NotDeployable(f"model.artifacts.{backend}: {path.with_suffix('.bin').name} "
                            f"(the weights of {filename}) is missing from {folder}")
    models = sorted(p.name for ext in extensions for p in folder.glob(f"*{ext}")
                    if not p.name.startswith(".") and p.name not in steps)
    picked = f"{name}{Path(filename).suffix}" if name else None
    if picked and picked != filename and (folder / picked).is_file():
        raise NotDeployable(f"policy.name {name!r} makes the runtime load {picked}, not {filename} "
                            f"named in model.artifacts.{backend}")
    if len(models) > 1 and picked != filename:
        raise NotDeployable(f"two {backend} models in {folder} ({', '.join(models)}): without a policy.name that "
                            "picks one the runtime loads whichever it lists first; keep one model per backend in a "
                            "package")
    return [model for model in models if model != filename]


def _check_hashes(folder: Path, data: dict[str, Any], artifacts: dict[str, str]) -> None:
    """Files recorded at export (``getiaction.backends.<b>.files``) must still have their sha256."""
    recorded = ((data.get(SECTION) or {}).get("backends")) or {}
    for backend in artifacts:
        for filename, digest in ((recorded.get(backend) or {}).get("files") or {}).items():
            path = folder / filename
            if path.is_file() and digest and sha256_of(path) != digest:
                raise NotDeployable(f"{filename} changed since export: sha256 {sha256_of(path)[:12]}, "
                                    f"the manifest records {digest[:12]}")


def _graph_inputs(model: Any) -> list[dict[str, Any]]:
    """``{name, shape, dtype}`` of the loaded model's inputs (axis 0 the batch; symbolic axes as strings)."""
    adapter = model.adapter
    session = getattr(adapter, "session", None)
    if session is not None:  # onnxruntime
        types = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
                 "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(float16)": "float16"}
        return [{"name": i.name, "shape": [d if isinstance(d, int) else "batch" for d in i.shape],
                 "dtype": types.get(i.type, i.type)} for i in session.get_inputs()]
    compiled = getattr(adapter, "compiled_model", None)
    specs = []
    for name, port in zip(adapter.input_names, compiled.inputs if compiled is not None else [], strict=False):
        shape = [int(d.get_length()) if d.is_static else "batch" for d in port.get_partial_shape()]
        specs.append({"name": name, "shape": shape, "dtype": str(port.get_element_type().to_dtype())})
    return specs


def robot_observation(inputs: list[dict[str, Any]], seed: int = 0, task: str | None = None) -> dict[str, Any]:
    """One batch-1 observation shaped as the robot loop sends it: camera frames (1, H, W, 3) uint8, the rest float32;
    ``task`` (a list of one string) when the package tokenizes its task."""
    generator = np.random.default_rng(seed)
    observation: dict[str, Any] = {} if task is None else {TASK: [task]}
    for spec in inputs:
        dims = [d if isinstance(d, int) else 1 for d in spec["shape"][1:]]
        if is_image_input(spec):
            channels, height, width = dims
            observation[spec["name"]] = generator.integers(0, 256, (1, height, width, channels), dtype=np.uint8)
        elif spec["dtype"] == "int64":
            observation[spec["name"]] = np.zeros((1, *dims), dtype=np.int64)
        else:
            observation[spec["name"]] = generator.standard_normal((1, *dims)).astype(spec["dtype"])
    return observation


def runtime_check(folder: Path, data: dict[str, Any], report: Report, only: str | None = None) -> None:
    """Load and run each declared backend (or ``only``) in physicalai; :class:`NotDeployable` on the first failure.

    Then its reference set again on this machine (:mod:`~.reference_check`), for a graph that draws its noise
    with the draw pinned to the stored one after checking it is fresh."""
    from getiaction_export.physicalai.runtime import load, physicalai_version

    artifacts = dict((data.get("model") or {}).get("artifacts") or {})
    default = next(iter(artifacts))
    if only is not None and only not in artifacts:
        raise NotDeployable(f"--backend {only}: the manifest declares only {', '.join(artifacts)}")
    section = data.get(SECTION) or {}
    task, drawn = robot_task(section), drawn_outputs(section)
    for backend in [only] if only else list(artifacts):
        try:
            model = load(folder, backend, default)
        except Exception as error:  # ExportError from load(), with the runtime's own first line
            raise NotDeployable(str(error)) from error
        outputs = list(model.adapter.output_names)
        if "action" not in outputs:
            raise NotDeployable(f"{backend}: the model's outputs are {outputs}; the runtime's select_action and "
                                "predict_action_chunk read one named 'action'")
        inputs = _graph_inputs(model)
        wide = [spec["name"] for spec in inputs if spec["dtype"] == "float64"]
        if wide:
            raise NotDeployable(f"{backend}: input {wide[0]!r} is float64; the robot loop and onnxruntime feed "
                                "float32 and the runtime does not cast")
        observation = robot_observation(inputs, task=task)
        chunk = _chunk(model, backend, observation)
        report.backends[backend] = {"chunk": list(chunk.shape), "default": backend == default}
        tag = " (default)" if backend == default else ""
        report.lines.append(f"physicalai {physicalai_version()} runs {backend}{tag}: inputs "
                            f"{[s['name'] for s in inputs]}{' + task' if task else ''}, predict_action_chunk -> "
                            f"{tuple(chunk.shape)}")
        with tempfile.TemporaryDirectory(prefix="getiaction-pinned-") as scratch:
            pinned = None
            try:
                if drawn:  # the graph draws (noise): fresh every call; then checked with the draw pinned
                    report.lines.append(check_fresh(model, backend, observation, drawn))
                    pinned = load_pinned(model, backend, folder / artifacts[backend], drawn, Path(scratch))
                    observation = robot_observation(_graph_inputs(model), task=task)
                    chunk = _chunk(model, backend, observation)
                figures, line = check_reference(folder, section, backend, model)
            except Refused as refused:
                raise NotDeployable(str(refused)) from refused
            if figures is None:
                report.warnings.append(line)
            else:
                report.backends[backend]["reference"] = figures
                report.lines.append(line)
            if backend == "openvino":
                _default_load(folder, data, backend, default, observation, chunk, report, pinned)


def _chunk(model: Any, backend: str, observation: dict[str, Any]) -> np.ndarray:
    """``predict_action_chunk`` on one robot-loop observation: a finite ``(chunk, A)`` or :class:`NotDeployable`."""
    from getiaction_export.errors import first_line

    try:
        chunk = np.asarray(model.predict_action_chunk(observation))
    except Exception as error:  # the runtime's KeyError/ValueError/RuntimeError on a bad feed
        raise NotDeployable(f"{backend}: predict_action_chunk failed on a robot-loop observation: "
                            f"{first_line(error)}") from error
    if chunk.ndim != 2 or not np.isfinite(chunk).all():
        raise NotDeployable(f"{backend}: predict_action_chunk gave {chunk.shape} "
                            f"{'with NaN/Inf' if chunk.ndim == 2 else ''}; expected a finite (chunk, action_dim)")
    return chunk


def _default_load(folder: Path, data: dict[str, Any], backend: str, default: str, observation: dict[str, Any],
                  chunk: np.ndarray, report: Report, pinned: Path | None = None) -> None:
    """The OpenVINO model loaded with no hints: its precision on this CPU, and its chunk against the f32 one
    (both with the draw ``pinned``, for a graph that draws its noise)."""
    from getiaction_export.errors import first_line
    from getiaction_export.physicalai.default_load import REDUCED_PRECISION_TOLERANCE
    from getiaction_export.physicalai.precision import cpu_bf16, precision_of
    from getiaction_export.physicalai.runtime import load

    call = default_call(backend, default)
    try:
        model = load(folder, backend, default, hints=False)
        if pinned is not None:
            model.adapter.load(pinned)
        plain = np.asarray(model.predict_action_chunk(observation))
    except Exception as error:  # ExportError from load(); the runtime's own errors from the call
        raise NotDeployable(f"{backend}: {call} (no hints) fails: {first_line(error)}") from error
    precision = precision_of(model)
    diff = float(np.abs(plain.astype(np.float64) - chunk).max()) if plain.shape == chunk.shape else float("inf")
    largest = float(np.abs(chunk).max())
    relative = diff / largest if largest > 0 else (0.0 if diff == 0 else float("inf"))
    report.backends[backend]["default_load"] = {"call": call, "precision": precision, "cpu_bf16": cpu_bf16(),
                                                "max_abs_diff_from_f32": diff, "relative": relative}
    recorded = (((data.get(SECTION) or {}).get("backends") or {}).get(backend) or {}).get("default_load") or {}
    if precision == "f32":
        report.lines.append(f"{backend}: {call} (no hints) computes in f32 on this CPU, as the export verified; "
                            f"{diff:.1e} from the f32-hinted chunk")
        return
    at_export = ""
    if recorded.get("checked") and isinstance(recorded.get("relative"), float):
        at_export = (f" (at export: {recorded['relative']:.2%} off PyTorch, tolerance "
                     f"{(recorded.get('tolerance') or {}).get('relative', REDUCED_PRECISION_TOLERANCE):.0%})")
    if backend == default and not relative <= REDUCED_PRECISION_TOLERANCE:
        raise NotDeployable(f"{backend}: {call} (no hints) computes in {precision} on this CPU and its action chunk is "
                            f"{relative:.1%} of the largest |action| off the f32 one (tolerance "
                            f"{REDUCED_PRECISION_TOLERANCE:.0%}); load {F32_CALL}")
    report.warnings.append(f"{backend}: {call} (no hints) computes in {precision} on this CPU, not f32: its action "
                           f"chunk is {relative:.2%} of the largest |action| off the f32 one{at_export}; "
                           f"for f32: {F32_CALL}")


def check(folder: Path, only: str | None = None) -> Report:
    """The whole check (static, then in the runtime); raises :class:`NotDeployable`."""
    data, report = static_check(Path(folder))
    runtime_check(Path(folder), data, report, only)
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line of ``python -m getiaction_export.deploy_check``."""
    parser = argparse.ArgumentParser(prog="python -m getiaction_export.deploy_check",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a policy package: manifest.json and the model file(s)")
    parser.add_argument("--backend", default=None, help="check only this backend (default: every declared one)")
    args = parser.parse_args(argv)
    from getiaction_export.physicalai.runtime import INSTALL_HINT, available

    if not available():
        print(f"error: the deploy check needs the physicalai package: {INSTALL_HINT}", file=sys.stderr)
        sys.exit(ExitCode.CONFIG)
    try:
        report = check(args.folder, args.backend)
    except NotDeployable as error:
        print(f"error: {args.folder}: {error}", file=sys.stderr)
        print("NOT deployable")
        sys.exit(ExitCode.NOT_DEPLOYABLE)
    for line in report.lines:
        print(f"✓ {line}")
    for line in report.warnings:
        print(f"! {line}")
    print(f"deployable: {args.folder} runs in physicalai")
    sys.exit(ExitCode.OK)


if __name__ == "__main__":
    main()
