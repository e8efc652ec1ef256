"""Write one ONNX file from a module whose forward takes a dict of tensors — and check it.

Guarantees, each checked on the written file rather than trusted from the request:

* the saved opset equals the requested one (the dynamo exporter silently writes 18 when asked
  for less, so requests below 18 go to the TorchScript exporter, and an operator that needs a
  higher opset is reported with the lowest opset that works);
* inputs are exactly the sample keys the forward reads (unused keys are dropped with a warning);
* the batch axis is dynamic unless asked otherwise, and really is symbolic in the file;
* one self-contained file, or, from :data:`~getiaction.export.onnx_files.EXTERNAL_DATA_THRESHOLD` bytes of
  weights (protobuf cannot hold 2 GB), the file plus one ``<name>.onnx.data`` beside it;
  ``onnx.checker`` full check on the written file, self-describing ``metadata_props``;
* no per-node source locations (absolute paths) in the file, so bytes don't depend on the checkout;
* the file appears under its final name only when all of the above passed (its data file first).

Memory: the exporter writes to a hidden folder beside ``path`` (the dynamo exporter streams the
weights to a data file there), the graph is read back once, and its tensors are streamed to the
final file; no serialised copy of the whole model is held beside the graph (see
``benchmarks/RESULTS.md`` section 9).

This module is the public face and the order of the steps; each step lives in its own module:
:mod:`~getiaction.export.onnx_args` (the arguments), :mod:`~getiaction.export.onnx_forward`
(the eager probe of the forward), :mod:`~getiaction.export.onnx_exporters` (torch.onnx) and
:mod:`~getiaction.export.onnx_graph` (what is read back from the graph). Their public names are
importable from here too.

Example:
    >>> import tempfile, pathlib, torch
    >>> from getiaction.policies import Dummy, DummyConfig
    >>> model = Dummy(config=DummyConfig(action_shape=(4,))).model
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "dummy.onnx"
    >>> result = export_onnx(model, path, {"state": torch.randn(1, 4)}, opset_version=14)
    >>> result.opset, result.exporter, result.input_names, result.output_names
    (14, 'torchscript', ['state'], ['action'])
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from getiaction.errors import ExportError, OpsetError, first_line
from getiaction.export.atomic import artifact_path
from getiaction.export.onnx_args import (
    BATCH_AXIS_NAME,
    DynamicAxes,
    check_opset,
    check_sample,
    check_torch_kwargs,
    choose_exporter,
    enum_value,
    graph_output_names,
    resolve_dynamic_axes,
)
from getiaction.export.onnx_exporters import ExportJob, trace_sample
from getiaction.export.onnx_files import EXTERNAL_DATA_THRESHOLD, data_file, write_onnx
from getiaction.export.onnx_forward import (
    DEFAULT_OUTPUT_NAME,
    Adapter,
    Probe,
    call_with_batch,
    describe_sample,
    output_tensors,
    probe_forward,
)
from getiaction.export.onnx_graph import (
    TensorSpec,
    check_dynamic_axes,
    pin_static_dims,
    saved_opset,
    specs,
    strip_source_locations,
)
from getiaction.export.options import (  # torch-free home of the choices
    DEFAULT_OPSET,
    DYNAMO_LOWEST_OPSET,
    LOWEST_OPSET,
    TORCHSCRIPT_HIGHEST_OPSET,
    CallStyle,
    Exporter,
    highest_opset,
)
from getiaction.export.versions import package_versions

__all__ = [
    "BATCH_AXIS_NAME",
    "DEFAULT_OPSET",
    "DEFAULT_OUTPUT_NAME",
    "DYNAMO_LOWEST_OPSET",
    "EXTERNAL_DATA_THRESHOLD",
    "LOWEST_OPSET",
    "TORCHSCRIPT_HIGHEST_OPSET",
    "TWO_GIGABYTES",
    "CallStyle",
    "DynamicAxes",
    "Exporter",
    "NamedTensors",
    "OnnxExportResult",
    "TensorSpec",
    "call_with_batch",
    "data_file",
    "describe_sample",
    "export_onnx",
    "highest_opset",
    "output_tensors",
    "saved_opset",
]

TWO_GIGABYTES = 2**31
"""protobuf's limit on one message: a bigger graph is written with external data (:func:`data_file`)."""


class NamedTensors:
    """``input_names`` / ``output_names`` of an export result that lists its ``inputs`` and ``outputs``."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]


@dataclass(frozen=True)
class OnnxExportResult(NamedTensors):
    """What :func:`export_onnx` wrote."""

    path: Path
    opset: int
    exporter: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    dynamic_axes: DynamicAxes = field(default_factory=dict)
    fallback: str | None = None
    """Why ``exporter=auto`` did not keep the dynamo exporter's graph (its one-line failure), or None."""


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_sample: Mapping[str, torch.Tensor],
    *,
    opset_version: int = DEFAULT_OPSET,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    dynamic_axes: Mapping[str, Any] | None = None,
    default_dynamic_axes: Mapping[str, Any] | None = None,
    exporter: Exporter | str = Exporter.AUTO,
    call_style: CallStyle | str = CallStyle.DICT,
    metadata: Mapping[str, str] | None = None,
    external_data: bool | None = None,
    **torch_kwargs: Any,
) -> OnnxExportResult:
    """Export ``model`` to one verified ONNX file at ``path`` and describe what was written.

    Args:
        model: the module to export; its forward takes the sample dict (or its keys as kwargs).
        path: the ``.onnx`` file to write (overwritten atomically if it exists).
        input_sample: example inputs; the keys the forward reads become the graph's inputs.
        opset_version: the ONNX opset the file must have (checked on the written file).
        output_names: graph output names; default ``["action"]`` (or the keys of a dict output).
        dynamic_batch: make axis 0 of every input and output symbolic (``"batch"``).
        dynamic_axes: ``{name: {axis: dim_name}}`` (or ``{name: [axes]}``) added on top; every
            name must be an input or output.
        default_dynamic_axes: like ``dynamic_axes`` but from model defaults: names that are not
            inputs or outputs (e.g. after outputs were renamed) are dropped instead of refused.
        exporter: ``auto``, ``dynamo`` or ``torchscript``; ``auto`` takes the model's
            ``preferred_exporter`` attribute where it can write the opset, else dynamo from opset 18.
        call_style: ``dict`` (``forward(batch)``) or ``kwargs`` (``forward(**batch)``).
        metadata: extra ``metadata_props`` entries (e.g. the policy's class path and config).
        external_data: where the weights go: ``None`` (default) in ``<path>.data`` beside the file
            when the tensors hold :data:`~getiaction.export.onnx_files.EXTERNAL_DATA_THRESHOLD`
            bytes or more (protobuf cannot hold 2 GB), else inside the file; ``True`` / ``False`` force it.
        **torch_kwargs: passed on to ``torch.onnx.export`` (e.g. ``do_constant_folding``).
    """
    # Every argument is checked before the (slow) forward and trace.
    sample = check_sample(input_sample)
    opset = check_opset(opset_version)
    chosen = choose_exporter(exporter, opset, getattr(model, "preferred_exporter", None))
    style = enum_value(CallStyle, call_style, "call_style")
    check_torch_kwargs(torch_kwargs)
    path = artifact_path(path, ".onnx")

    # The exporter writes into a hidden folder beside the target (same disk; removed whatever happens).
    with _eval_mode(model), tempfile.TemporaryDirectory(prefix=f".{path.name}.export-", dir=path.parent) as work:
        job, probe = _plan(
            model, sample, style, output_names, dynamic_batch, dynamic_axes, default_dynamic_axes, torch_kwargs
        )
        proto, chosen, fallback, folder = _run(job, enum_value(Exporter, exporter, "exporter"), chosen, opset,
                                               Path(work))
        inputs, outputs = _read_back(proto, chosen, opset, job, sample, probe)
        _describe(proto, chosen, opset, inputs, outputs, metadata)
        axes = job.axes
        del job, probe  # the traced sample and the probe's outputs
        write_onnx(proto, path, base_dir=folder, external=external_data, check=_check_file)
    return OnnxExportResult(path, opset, chosen.value, inputs, outputs, axes, fallback)


def _run(
    job: ExportJob, asked: Exporter, chosen: Exporter, opset: int, work: Path
) -> tuple[onnx.ModelProto, Exporter, str | None, Path]:
    """Run the chosen exporter; with ``exporter=auto``, a dynamo failure falls back to TorchScript at the same opset.

    Real models trip torch.export (a diffusers scheduler's data-dependent branch) where the
    TorchScript tracer records the one path the sample takes; ``exporter=dynamo`` stays strict.
    Returns the graph (its external tensors left in the returned folder), the exporter and why it fell back.
    """
    first = work / "first"
    try:
        return job.run(chosen, opset, _made(first)), chosen, None, first
    except ExportError as error:
        if asked is not Exporter.AUTO or chosen is not Exporter.DYNAMO or opset > TORCHSCRIPT_HIGHEST_OPSET:
            raise
        reason = error.one_line()
    shutil.rmtree(first, ignore_errors=True)
    second = work / "fallback"
    try:
        return job.run(Exporter.TORCHSCRIPT, opset, _made(second)), Exporter.TORCHSCRIPT, reason, second
    except ExportError as failure:
        raise ExportError(f"{reason}; the TorchScript fallback failed too: {failure.one_line()}") from failure


def _made(folder: Path) -> Path:
    folder.mkdir()
    return folder


def _check_file(path: Path) -> None:
    """``onnx.checker``'s full check on the written file (external data read from beside it)."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx.checker rejected the exported graph: {first_line(error)}") from error


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Export in eval mode (dropout off, batch-norm statistics frozen); give the model back as it came."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _plan(
    model: nn.Module,
    sample: dict[str, torch.Tensor],
    style: CallStyle,
    output_names: Sequence[str] | None,
    dynamic_batch: bool,
    dynamic_axes: Mapping[str, Any] | None,
    default_dynamic_axes: Mapping[str, Any] | None,
    torch_kwargs: dict[str, Any],
) -> tuple[ExportJob, Probe]:
    """Probe the forward once, then name the graph's inputs and outputs and choose its dynamic axes."""
    probe = probe_forward(model, sample, style)
    inputs = probe.used_keys
    outputs = graph_output_names(output_names, probe.default_output_names, inputs)
    axes = resolve_dynamic_axes(
        inputs, outputs, sample, probe.outputs, dynamic_batch, dynamic_axes, default_dynamic_axes
    )
    traced = trace_sample({k: sample[k] for k in inputs}, axes)
    adapter = Adapter(model, inputs, style, probe.output_keys).eval()
    return ExportJob(adapter, traced, inputs, outputs, axes, torch_kwargs), probe


def _read_back(
    proto: onnx.ModelProto,
    chosen: Exporter,
    opset: int,
    job: ExportJob,
    sample: Mapping[str, torch.Tensor],
    probe: Probe,
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Check the written graph against the request; its inputs' and outputs' specs."""
    strip_source_locations(proto)
    saved = saved_opset(proto)
    if saved != opset:
        raise OpsetError(f"opset_version={opset}: the {chosen} exporter wrote opset {saved}; no file was kept")
    graph_inputs = [value.name for value in proto.graph.input]
    dropped = [name for name in job.input_names if name not in graph_inputs]
    if dropped:  # the TorchScript tracer froze a value read into Python; the graph ignores that input
        raise ExportError(
            f"input {dropped[0]!r} is not in the {chosen} graph: the forward reads it as a Python value "
            "(.item(), int(), a branch on it), which the trace froze to the sample's value; compute with it as a "
            "tensor, or leave it out of the sample"
        )
    produced = dict(zip(job.output_names, probe.outputs, strict=True))
    pin_static_dims(proto.graph.input, sample, job.axes)
    pin_static_dims(proto.graph.output, produced, job.axes)
    check_dynamic_axes(proto, job.axes)
    inputs = specs(proto.graph.input, sample)
    outputs = specs(proto.graph.output, produced)
    return inputs, outputs


def _describe(
    proto: onnx.ModelProto,
    chosen: Exporter,
    opset: int,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    metadata: Mapping[str, str] | None,
) -> None:
    """Give the graph its self-describing ``metadata_props``."""
    props = {
        "getiaction.exporter": chosen.value,
        "getiaction.opset": str(opset),
        "getiaction.inputs": json.dumps([spec.__dict__ for spec in inputs]),
        "getiaction.outputs": json.dumps([spec.__dict__ for spec in outputs]),
        **{f"versions.{k}": v for k, v in package_versions().items() if k in ("getiaction", "torch", "onnx")},
        **dict(metadata or {}),
    }
    onnx.helper.set_model_props(proto, props)
