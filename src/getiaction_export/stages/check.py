"""Stage ``check``: read the written ONNX file back and trust nothing the exporter said.

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
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx.checker rejected {path.name}: {str(error).splitlines()[0]}") from error
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
