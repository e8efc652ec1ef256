"""The choices an export takes (exporter, call style, precision) and the opsets it can honour.

Plain values with no heavy imports (no torch; onnx only inside :func:`highest_opset`), so an
application can check a config against them before it imports anything that exports.
:mod:`getiaction.export.onnx` and :mod:`getiaction.export.transforms` re-export them.

Example:
    >>> Exporter("dynamo") is Exporter.DYNAMO, Precision.FP16 == "fp16", [c.value for c in CallStyle]
    (True, True, ['dict', 'kwargs'])
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache

DEFAULT_OPSET = 18
LOWEST_OPSET = 7
DYNAMO_LOWEST_OPSET = 18
"""The dynamo exporter builds graphs at opset 18; below that its down-conversion is unreliable."""
TORCHSCRIPT_HIGHEST_OPSET = 20


class Exporter(StrEnum):
    """Which torch.onnx exporter writes the graph."""

    AUTO = "auto"
    """dynamo for opset >= 18, TorchScript below (the only one that honours low opsets)."""
    DYNAMO = "dynamo"
    TORCHSCRIPT = "torchscript"


class CallStyle(StrEnum):
    """How the forward receives the inputs."""

    DICT = "dict"
    """``forward(batch)`` with ``batch = {"state": ..., ...}`` (every policy)."""
    KWARGS = "kwargs"
    """``forward(state=..., images=...)`` (plain modules)."""


class Precision(StrEnum):
    """Numeric precision of an exported graph's weights and arithmetic (inputs/outputs stay float32)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    """Post-training INT8 (OpenVINO + NNCF, calibrated); what is not quantized stays float32."""


INT8_ONNX_REFUSAL = (
    "precision=int8 is not offered for ONNX: onnxruntime's INT8 (static QDQ or dynamic) ran no faster than fp32 "
    "and was less accurate on the shipped policies (benchmarks/RESULTS.md, Edge formats); quantize for OpenVINO "
    "instead (format=openvino format.precision=int8, or getiaction.export.int8.quantize_openvino)"
)
"""Why an INT8 ONNX graph is refused (measured, see benchmarks/RESULTS.md)."""


@cache
def highest_opset() -> int:
    """The highest opset the installed onnx package defines (imports onnx, ~0.5 s, on the first call)."""
    import onnx.defs

    return int(onnx.defs.onnx_opset_version())
