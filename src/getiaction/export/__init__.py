"""Export policies to PyTorch checkpoints and ONNX files that are checked, not trusted.

Names are loaded on first use, so importing a light submodule (``getiaction.export.atomic``)
does not import torch.

Example:
    >>> from getiaction.export import Export, ExportFormat
    >>> [f.value for f in ExportFormat]
    ['torch', 'onnx', 'openvino', 'executorch']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from getiaction.export.executorch import ExecutorchExportResult as ExecutorchExportResult
    from getiaction.export.executorch import ExecutorchModel as ExecutorchModel
    from getiaction.export.executorch import export_executorch as export_executorch
    from getiaction.export.mixin import Export as Export
    from getiaction.export.mixin import ExportFormat as ExportFormat
    from getiaction.export.onnx import Exporter as Exporter
    from getiaction.export.onnx import OnnxExportResult as OnnxExportResult
    from getiaction.export.onnx import export_onnx as export_onnx
    from getiaction.export.openvino import OpenVINOExportResult as OpenVINOExportResult
    from getiaction.export.openvino import export_openvino as export_openvino
    from getiaction.export.torch import load_checkpoint as load_checkpoint
    from getiaction.export.torch import load_policy as load_policy
    from getiaction.export.torch import save_checkpoint as save_checkpoint

_LAZY = {
    "ExecutorchExportResult": "getiaction.export.executorch",
    "ExecutorchModel": "getiaction.export.executorch",
    "export_executorch": "getiaction.export.executorch",
    "Export": "getiaction.export.mixin",
    "ExportFormat": "getiaction.export.mixin",
    "Exporter": "getiaction.export.onnx",
    "OnnxExportResult": "getiaction.export.onnx",
    "export_onnx": "getiaction.export.onnx",
    "OpenVINOExportResult": "getiaction.export.openvino",
    "export_openvino": "getiaction.export.openvino",
    "load_checkpoint": "getiaction.export.torch",
    "load_policy": "getiaction.export.torch",
    "save_checkpoint": "getiaction.export.torch",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'getiaction.export' has no attribute {name!r}")
