"""Stage ``check``: read the written ONNX file (or OpenVINO IR) back and trust nothing the exporter said.

Example:
    >>> import tempfile, pathlib
    >>> from getiaction.policies import Dummy
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "d.onnx"
    >>> _ = Dummy().to_onnx(path, opset_version=14)
    >>> check_onnx(path, requested_opset=14)["saved_opset"]
    14
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from getiaction.errors import ExportError, OpsetError
from getiaction.export.onnx import saved_opset


def check_onnx(path: Path, requested_opset: int) -> dict[str, Any]:
    """``onnx.checker`` full check, and the saved opset must equal the request."""
    try:  # on the path: a large model's external data is read from beside it, not copied into memory
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx.checker rejected {path.name}: {str(error).splitlines()[0]}") from error
    model = onnx.load(str(path), load_external_data=False)
    saved = saved_opset(model)
    if saved != requested_opset:
        raise OpsetError(f"format.opset_version={requested_opset}: the file was saved at opset {saved}")
    return {
        "saved_opset": saved,
        "nodes": len(model.graph.node),
        "inputs": [value.name for value in model.graph.input],
        "outputs": [value.name for value in model.graph.output],
        "external_data": any(
            init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer
        ),
    }


def check_openvino(
    xml_path: Path, input_names: list[str], output_names: list[str], dynamic_batch: bool
) -> dict[str, Any]:
    """Read the IR back with OpenVINO: the graph's input and output names are there, the batch as asked.

    An IR port carries several names (OpenVINO merges the names of tensors it folds together);
    the graph's own name must be one of them, since deploy runtimes feed observations by name.
    """
    from getiaction.export.openvino import openvino_module

    model = openvino_module("format=openvino").Core().read_model(str(xml_path))
    for kind, ports, wanted in (("input", model.inputs, input_names), ("output", model.outputs, output_names)):
        names = [port.get_names() for port in ports]
        missing = [name for name in wanted if not any(name in aliases for aliases in names)]
        if missing or len(ports) != len(wanted):
            raise ExportError(f"{xml_path.name}: the IR's {kind}s {[sorted(a) for a in names]} do not match {wanted}")
        for port in ports:
            shape = port.get_partial_shape()
            if shape.rank.is_static and len(shape) and dynamic_batch != shape[0].is_dynamic:
                state = "static" if dynamic_batch else "dynamic"
                raise ExportError(f"{xml_path.name}: the batch axis of {kind} {port.get_any_name()!r} came out {state}")
    return {"inputs": input_names, "outputs": output_names, "nodes": len(model.get_ops())}
