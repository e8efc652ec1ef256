"""What is read back from an exported graph, and the one edit made to it before it is written.

An export request is not trusted: the opset and the symbolic axes are read from the graph the
exporter wrote, and the graph's inputs and outputs are described from it as :class:`TensorSpec`.
The edit is :func:`strip_source_locations`, so the file's bytes do not depend on the checkout.

Example:
    >>> import torch
    >>> from onnx import TensorProto, helper
    >>> x = helper.make_tensor_value_info("state", TensorProto.FLOAT, ["batch", 4])
    >>> y = helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 4])
    >>> graph = helper.make_graph([helper.make_node("Relu", ["state"], ["action"])], "g", [x], [y])
    >>> proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    >>> saved_opset(proto)
    17
    >>> check_dynamic_axes(proto, {"state": {0: "batch"}, "action": {0: "batch"}})  # symbolic: passes
    >>> specs(proto.graph.input, {"state": torch.zeros(1, 4)})
    [TensorSpec(name='state', shape=['batch', 4], dtype='float32')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import onnx
import torch

from getiaction.errors import ExportError
from getiaction.export.onnx_args import DynamicAxes


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (symbolic axes as names) and dtype of one graph input or output."""

    name: str
    shape: list[int | str]
    dtype: str


def saved_opset(proto: onnx.ModelProto) -> int:
    """The default-domain opset a model declares."""
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ExportError("the exported model declares no default-domain opset")


def specs(values: Iterable[onnx.ValueInfoProto], tensors: Mapping[str, torch.Tensor]) -> list[TensorSpec]:
    """Graph values as specs: the shape as written, the dtype of the same-named tensor (else ``unknown``)."""
    described = []
    for value in values:
        dims = value.type.tensor_type.shape.dim
        shape: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]
        tensor = tensors.get(value.name)
        dtype = str(tensor.dtype).removeprefix("torch.") if tensor is not None else "unknown"
        described.append(TensorSpec(value.name, shape, dtype))
    return described


def pin_static_dims(
    values: Iterable[onnx.ValueInfoProto], tensors: Mapping[str, torch.Tensor], axes: DynamicAxes
) -> None:
    """Give every axis not declared dynamic its real size, from the traced outputs.

    The TorchScript exporter names some fixed dims of an output whose shape it could not infer
    (``[batch, "Addaction_dim_1", 6]`` for an ACT chunk of 100); a reader of the file, or of our
    records, would take them for dynamic. Only the declared axes (the batch) stay symbolic.
    """
    for value in values:
        tensor = tensors.get(value.name)
        if tensor is None:
            continue
        declared = axes.get(value.name, {})
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if index not in declared and index < tensor.dim() and dim.HasField("dim_param"):
                dim.dim_value = int(tensor.shape[index])  # dim_value and dim_param are one field (oneof)


def check_dynamic_axes(proto: onnx.ModelProto, axes: DynamicAxes) -> None:
    """Raise if an axis declared dynamic came out static in the graph."""
    values = {v.name: v for v in list(proto.graph.input) + list(proto.graph.output)}
    inferred = _inferred_output_dims(proto)
    for name, name_axes in axes.items():
        dims = values[name].type.tensor_type.shape.dim
        for axis in (axis for axis in name_axes if axis < len(dims)):
            # The TorchScript exporter writes the declared dim_param on an output even when the
            # graph computes a constant there, so also ask shape inference what the graph computes.
            size = inferred.get(name, {}).get(axis) or dims[axis].dim_value
            if size or not dims[axis].dim_param:
                raise ExportError(
                    f"dynamic axis {axis} of {name!r} came out static (size {size}): the "
                    "forward fixes that size (e.g. a reshape with a constant); fix it or pass dynamic_batch=False"
                )


def _inferred_output_dims(proto: onnx.ModelProto) -> dict[str, dict[int, int]]:
    """``{output: {axis: size}}`` for output axes that ONNX shape inference finds constant."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for output in probe.graph.output:
        output.type.tensor_type.ClearField("shape")
    try:
        probe = onnx.shape_inference.infer_shapes(probe, data_prop=True)
    except Exception:  # inference is a second opinion only; the declared shapes were checked
        return {}
    return {
        output.name: {
            axis: dim.dim_value for axis, dim in enumerate(output.type.tensor_type.shape.dim) if dim.dim_value
        }
        for output in probe.graph.output
    }


def strip_source_locations(proto: onnx.ModelProto) -> None:
    """Drop per-node metadata and doc strings (source paths, line numbers) for reproducible bytes."""
    _strip_graph(proto.graph)
    for function in proto.functions:
        for node in function.node:
            del node.metadata_props[:]
            node.doc_string = ""
        del function.metadata_props[:]
    proto.doc_string = ""


def _strip_graph(graph: onnx.GraphProto) -> None:
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attribute in node.attribute:  # control flow (If, Loop, Scan) nests whole graphs
            if attribute.HasField("g"):
                _strip_graph(attribute.g)
            for sub in attribute.graphs:
                _strip_graph(sub)
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        del value.metadata_props[:]
        value.doc_string = ""
    for initializer in graph.initializer:
        del initializer.metadata_props[:]
    del graph.metadata_props[:]
    graph.doc_string = ""
