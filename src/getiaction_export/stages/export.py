"""Stage ``export``: write each format's artifact under its hidden staging name.

The artifact is renamed to its final name only after ``check`` and ``verify`` pass (stage
``promote``), so a deploy script never picks up an unverified model. The float32 ONNX graph is
exported once per job (:func:`source_onnx`) and both the ONNX artifact and the OpenVINO IR are
made from it.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from getiaction.errors import ExportError
from getiaction.export import Export
from getiaction.export.onnx import OnnxExportResult, export_onnx
from getiaction.export.torch import save_checkpoint
from getiaction.export.transforms import convert_to_fp16
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
    if outcome.precision == "fp16":
        assert state.sample is not None
        try:
            convert_to_fp16(exported.path, staged, state.sample)
        except ExportError as error:  # the library names its argument; name the config key
            raise ExportError(str(error).replace("precision=", "format.precision=")) from error
    else:
        shutil.copyfile(exported.path, staged)
    half = ", float16" if outcome.precision == "fp16" else ""
    return f"{exported.exporter} exporter, opset {exported.opset}{half}"


def export_openvino_format(state: JobState, outcome: FormatOutcome) -> str:
    """The OpenVINO IR, converted from the source graph (fp16: float16 weights). Returns the ✓ line."""
    from getiaction.export.openvino import convert_onnx_to_openvino

    exported = source_onnx(state, outcome.schema)
    converted = convert_onnx_to_openvino(exported.path, outcome.staged[0],
                                         compress_to_fp16=outcome.precision == "fp16", source=exported)
    outcome.details = {"converted_from": "onnx", "compressed_to_fp16": converted.compressed_to_fp16,
                       "inputs": [vars(s) for s in converted.inputs], "outputs": [vars(s) for s in converted.outputs]}
    half = ", float16 weights" if converted.compressed_to_fp16 else ""
    return f"OpenVINO IR from the ONNX graph ({exported.exporter} exporter, opset {exported.opset}{half})"


def export_torch_format(state: JobState, outcome: FormatOutcome) -> str:
    """The checkpoint (policies through ``to_torch``; other modules with their config or an empty one)."""
    assert state.built is not None
    module = state.built.module
    if isinstance(module, Export):
        module.to_torch(outcome.staged[0])
    else:
        save_checkpoint(module, outcome.staged[0], getattr(module, "config", None) or {})
    return "checkpoint with embedded config"
