"""Stage ``export``: write each format's artifact under its hidden staging name.

The artifact is renamed to its final name only after ``check`` and ``verify`` pass (stage
``promote``), so a deploy script never picks up an unverified model. The float32 ONNX graph is
exported once per job (:func:`source_onnx`) and both the ONNX artifact and the OpenVINO IR are
made from it.
"""

from __future__ import annotations

import json
from typing import Any

from getiaction.errors import ExportError
from getiaction.export import Export
from getiaction.export.onnx import OnnxExportResult, export_onnx
from getiaction.export.onnx_files import copy_onnx
from getiaction.export.torch import save_checkpoint
from getiaction.export.transforms import convert_to_fp16
from getiaction_export.files import onnx_data_file
from getiaction_export.state import FormatOutcome, Graph, JobState


def source_onnx(state: JobState, fmt: Any) -> OnnxExportResult:
    """The job's float32 ONNX export (hidden; made once, shared by the onnx and openvino formats)."""
    if state.source is not None:
        return state.source
    built, sample = state.built, state.sample
    assert built is not None and sample is not None
    path = state.scratch("source")
    options: dict[str, Any] = {"opset_version": fmt.opset_version, "exporter": str(fmt.exporter),
                               "dynamic_batch": fmt.dynamic_batch, "metadata": model_metadata(state)}
    if fmt.output_names is not None:
        options["output_names"] = list(fmt.output_names)
    if isinstance(built.module, Export):  # policies go through their to_onnx defaults
        exported = built.module.to_onnx(path, input_sample=sample, **options)
    else:
        exported = export_onnx(built.module, path, sample, call_style=built.call_style, **options)
    state.source, state.graph = exported, Graph.of(exported)
    state.opset = {"requested": fmt.opset_version, "saved": exported.opset}
    return exported


def model_metadata(state: JobState) -> dict[str, str]:
    """Provenance stored inside the model: nothing time-, host- or path-dependent."""
    built = state.built
    assert built is not None
    metadata = {"getiaction.versions": json.dumps(state.versions, sort_keys=True)}
    if "config" in state.identity:
        metadata["getiaction.app_config"] = json.dumps(state.identity["config"], sort_keys=True)
        metadata["getiaction.config_sha256"] = str(state.identity.get("config_sha256", ""))
    if built.seed is not None:
        metadata["getiaction.seed"] = str(built.seed)
    if built.checkpoint_sha256:
        metadata["getiaction.checkpoint_sha256"] = built.checkpoint_sha256
    return metadata


def export_onnx_format(state: JobState, outcome: FormatOutcome) -> str:
    """The ONNX artifact: the source graph as is, or converted to float16. Returns the ✓ line."""
    exported = source_onnx(state, outcome.schema)
    staged = outcome.staged[0]
    onnx_data_file(staged).unlink(missing_ok=True)  # left by a killed run
    if outcome.precision == "fp16":
        assert state.sample is not None
        try:
            convert_to_fp16(exported.path, staged, state.sample)
        except ExportError as error:  # the library names its argument; name the config key
            raise ExportError(str(error).replace("precision=", "format.precision=")) from error
    else:  # with its external data file, if it has one (renamed after the staged file)
        copy_onnx(exported.path, staged)
    if onnx_data_file(staged).exists():  # a large model's weights: staged, promoted and hashed with it
        outcome.staged.append(onnx_data_file(staged))
        outcome.final.append(onnx_data_file(outcome.final[0]))
    half = ", float16" if outcome.precision == "fp16" else ""
    return f"{exported.exporter} exporter, opset {exported.opset}{half}"


def export_openvino_format(state: JobState, outcome: FormatOutcome) -> str:
    """The OpenVINO IR, converted from the source graph (fp16: float16 weights; int8: then quantized).

    Returns the ✓ line."""
    from getiaction.export.openvino import convert_onnx_to_openvino

    exported = source_onnx(state, outcome.schema)
    int8 = outcome.precision == "int8"
    target = state.scratch("f32_ir") if int8 else outcome.staged[0]
    converted = convert_onnx_to_openvino(exported.path, target,
                                         compress_to_fp16=outcome.precision == "fp16", source=exported)
    outcome.details = {"converted_from": "onnx", "compressed_to_fp16": converted.compressed_to_fp16,
                       "inputs": [vars(s) for s in converted.inputs], "outputs": [vars(s) for s in converted.outputs]}
    source = f"the ONNX graph ({exported.exporter} exporter, opset {exported.opset})"
    if int8:
        return f"OpenVINO INT8 IR from {source}; {quantize(state, outcome, target)}"
    half = ", float16 weights" if converted.compressed_to_fp16 else ""
    return f"OpenVINO IR from {source[:-1]}{half})"


def quantize(state: JobState, outcome: FormatOutcome, f32_ir: Any) -> str:
    """INT8 of ``f32_ir`` into the staged IR (``format.calibration``: NNCF post-training quantization, or weight
    compression); returns its summary."""
    from getiaction.export.int8 import compress_weights_openvino, quantize_openvino
    from getiaction_export.stages.calibrate import calibration_rows

    assert state.sample is not None and state.graph is not None and state.built is not None
    calibration = outcome.schema.calibration
    method, why = int8_method(calibration.method, state.built.module)
    if method == "weights":
        result = compress_weights_openvino(f32_ir, outcome.staged[0])
        outcome.details["int8"] = {"method": method, "method_reason": why, "seconds": result.seconds,
                                   "compressed_weights": result.quantized_ops}
        return (f"NNCF weight compression (8-bit weights, float32 activations; {why}) in {result.seconds:.1f} s, "
                f"{result.quantized_ops} weights")
    rows, record = calibration_rows(calibration, state.sample, state.graph.input_names)
    result = quantize_openvino(f32_ir, outcome.staged[0], rows, model_type=calibration.model_type,
                               overflow_fix=calibration.overflow_fix)
    record.update(method=method, method_reason=why, model_type=result.model_type,
                  model_type_reason=result.model_type_reason, overflow_fix=result.overflow_fix,
                  seconds=result.seconds, quantized_ops=result.quantized_ops)
    outcome.details["int8"] = record
    fewer = (f" (the file has {record['samples']} of the {record['requested']} asked for)"
             if record["samples"] < record["requested"] else "")
    return (f"NNCF ({result.model_type}) on {record['samples']} {record['source']} inputs{fewer} in "
            f"{result.seconds:.1f} s, {result.quantized_ops} quantizers")


def int8_method(requested: str, module: Any) -> tuple[str, str]:
    """``(method, why)``: ``format.calibration.method``, or for ``auto`` the policy's ``preferred_int8``.

    >>> int8_method("auto", object()), int8_method("weights", object())[0]
    (('quantize', 'the default'), 'weights')
    """
    if requested != "auto":
        return requested, "format.calibration.method"
    preferred = getattr(module, "preferred_int8", None)
    if preferred:
        return str(preferred), str(getattr(module, "preferred_int8_reason", "the policy's choice"))
    return "quantize", "the default"


def export_executorch_format(state: JobState, outcome: FormatOutcome) -> str:
    """The ExecuTorch program (``.pte``, XNNPACK), lowered with torch.export; its batch range read back.

    Returns the ✓ line. With no ONNX format in the job, the program's interface is the job's graph."""
    from getiaction.export.executorch import export_executorch

    built, sample, fmt = state.built, state.sample, outcome.schema
    assert built is not None and sample is not None
    options: dict[str, Any] = {"dynamic_batch": fmt.dynamic_batch, "max_batch": fmt.max_batch,
                               "metadata": model_metadata(state)}
    if fmt.output_names is not None:
        options["output_names"] = list(fmt.output_names)
    try:
        if isinstance(built.module, Export):
            result = built.module.to_executorch(outcome.staged[0], input_sample=sample, **options)
        else:
            result = export_executorch(built.module, outcome.staged[0], sample, call_style=built.call_style, **options)
    except ExportError as error:  # the library names its argument; name the config key
        raise ExportError(str(error).replace("max_batch=", "format.max_batch=")) from error
    delegation = result.delegation
    outcome.details = {"batch_range": list(result.batch_range) if result.batch_range else None,
                       "traced_batch": result.traced_batch, "export_seconds": result.export_seconds,
                       "inputs": result.input_names, "outputs": result.output_names,
                       "delegation": {"backend": delegation.backend, "subgraphs": delegation.subgraphs,
                                      "delegated_nodes": delegation.delegated_nodes,
                                      "other_nodes": delegation.other_nodes,
                                      "not_delegated": delegation.not_delegated}}
    if state.graph is None:
        state.graph = program_graph(result.input_names, result.output_names, sample, fmt.dynamic_batch)
    batches = f"batch {result.batch_range[0]}..{result.batch_range[1]}" if result.batch_range else "static batch"
    return (f"ExecuTorch program via torch.export, {batches} (traced at {result.traced_batch}); "
            f"XNNPACK runs {delegation.delegated_nodes} of {delegation.total_nodes} operators "
            f"in {delegation.subgraphs} subgraph(s)")


def program_graph(inputs: list[str], outputs: list[str], sample: dict[str, Any], dynamic: bool) -> Graph:
    """The interface of a program exported from ``sample`` (batch axis named ``batch`` when dynamic)."""
    def spec(name: str, tensor: Any) -> dict[str, Any]:
        shape = ["batch" if dynamic else tensor.shape[0], *tensor.shape[1:]]
        return {"name": name, "shape": [d if isinstance(d, str) else int(d) for d in shape],
                "dtype": str(tensor.dtype).removeprefix("torch.")}

    axes = {name: {"0": "batch"} for name in [*inputs, *outputs]} if dynamic else {}
    return Graph([spec(name, sample[name]) for name in inputs],
                 [{"name": name, "shape": ["batch" if dynamic else "?"], "dtype": "float32"} for name in outputs], axes)


def export_torch_format(state: JobState, outcome: FormatOutcome) -> str:
    """The checkpoint (policies through ``to_torch``; other modules with their config or an empty one).

    A module under the robot loop's names (``RobotNamed``) is saved as the module it wraps: its own class and
    state dict keys, loadable without the wrapper."""
    assert state.built is not None
    module = getattr(state.built.module, "wrapped", state.built.module)
    if isinstance(module, Export):
        module.to_torch(outcome.staged[0])
    else:
        save_checkpoint(module, outcome.staged[0], getattr(module, "config", None) or {})
    return "checkpoint with embedded config"
