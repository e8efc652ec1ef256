"""Export policies to PyTorch checkpoints and ONNX files that are checked, not trusted.

Example:
    >>> from getiaction.export import Export, ExportFormat
    >>> [f.value for f in ExportFormat]
    ['torch', 'onnx']
"""

from getiaction.export.mixin import Export, ExportFormat
from getiaction.export.onnx import Exporter, OnnxExportResult, export_onnx
from getiaction.export.torch import load_checkpoint, load_policy, save_checkpoint

__all__ = [
    "Export",
    "ExportFormat",
    "Exporter",
    "OnnxExportResult",
    "export_onnx",
    "load_checkpoint",
    "load_policy",
    "save_checkpoint",
]
