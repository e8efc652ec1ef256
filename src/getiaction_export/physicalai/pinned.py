"""A graph that draws something itself (SmolVLA's start noise), with the draw replaced by an input: "pinned".

A package whose graph draws fresh noise every call cannot be compared with a stored reference
as it is: the reference's action belongs to the noise it was given. Pinning rewrites a copy of
the model file so the drawn output's tensor is read from a graph input of the same name
instead; every other node, and every weight, is the file's own. ``deploy_check`` runs the
package's reference set through the pinned copy (the stored noise fed back) and checks the
unpinned model still draws fresh noise: together, the package computes what was verified for
whatever it draws.

Torch-free (``deploy_check`` runs on the robot); the ONNX copy keeps its external weights where
they are (linked beside it), the OpenVINO copy is written with its weights uncompressed.

Example (ONNX):
    >>> import tempfile, pathlib, numpy as np, onnx
    >>> from onnx import TensorProto, helper
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    >>> outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("action", "noise")]
    >>> nodes = [helper.make_node("RandomNormalLike", ["x"], ["noise"]), helper.make_node("Add", ["x", "noise"],
    ...          ["action"])]
    >>> graph = helper.make_graph(nodes, "g", [x], outs)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "m.onnx")
    >>> path = pin_onnx(folder / "m.onnx", ["noise"], folder / "pinned")
    >>> [i.name for i in onnx.load(str(path)).graph.input]
    ['x', 'noise']
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

SUFFIX = {".onnx": "onnx", ".xml": "openvino"}


def pin(path: Path, outputs: Sequence[str], into: Path) -> Path:
    """A pinned copy of the model file at ``path`` (``.onnx`` or OpenVINO ``.xml``) in the folder ``into``."""
    kind = SUFFIX.get(Path(path).suffix)
    if kind is None:
        raise ValueError(f"{Path(path).name}: only .onnx and OpenVINO .xml models can be pinned")
    return pin_onnx(path, outputs, into) if kind == "onnx" else pin_openvino(path, outputs, into)


def pin_onnx(path: Path, outputs: Sequence[str], into: Path) -> Path:
    """The ONNX model with each of ``outputs`` read from a new graph input of that name (see the module doc)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    declared = {value.name: value for value in graph.output}
    for name in outputs:
        producers = [node for node in graph.node if name in node.output]
        if name not in declared or not producers:
            raise ValueError(f"{Path(path).name} has no output {name!r} made by a node")
        node = producers[0]
        node.output[list(node.output).index(name)] = f"{name}/drawn"  # the draw is left dangling
        graph.input.append(declared[name])
    into.mkdir(parents=True, exist_ok=True)
    for location in _external_files(model):  # the weights stay where they are
        target = into / location
        if not target.exists():
            os.symlink((Path(path).parent / location).resolve(), target)
    pinned = into / Path(path).name
    onnx.save(model, str(pinned))
    return pinned


def _external_files(model: object) -> set[str]:
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    graph = model.graph  # type: ignore[attr-defined]
    return {ExternalDataInfo(tensor).location for tensor in graph.initializer if uses_external_data(tensor)}


def pin_openvino(path: Path, outputs: Sequence[str], into: Path) -> Path:
    """The OpenVINO IR with each of ``outputs`` read from a new Parameter of that name (see the module doc)."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    parameters = []
    for name in outputs:
        ports = [port for port in model.outputs if name in port.get_names()]
        if not ports:
            raise ValueError(f"{Path(path).name} has no output {name!r}")
        source = ports[0].get_node().input_value(0)  # what the Result reads: the end of the draw
        parameter = ov.opset13.parameter(source.get_partial_shape(), source.get_element_type(), name=name)
        source.get_tensor().set_names(set())
        parameter.output(0).get_tensor().set_names({name})
        for target in list(source.get_target_inputs()):
            target.replace_source_output(parameter.output(0))
        parameters.append(parameter)
    model.add_parameters(parameters)
    model.validate_nodes_and_infer_types()
    into.mkdir(parents=True, exist_ok=True)
    pinned = into / Path(path).name
    ov.save_model(model, str(pinned), compress_to_fp16=False)
    return pinned


def remove(folder: Path) -> None:
    """Remove a folder of pinned copies (links to external weights are removed, not what they point at)."""
    shutil.rmtree(folder, ignore_errors=True)
