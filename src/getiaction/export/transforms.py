"""ONNX-to-ONNX transforms: float16 weights and arithmetic, and graph simplification (onnxslim).

Each reads one ONNX file and writes another (atomically; the same path is allowed). Neither is
trusted: :func:`convert_to_fp16` refuses a model whose outputs become NaN/Inf in float16, and the
application verifies both results against PyTorch like any export.

Example:
    >>> import tempfile, pathlib
    >>> from getiaction.policies import Dummy
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> policy = Dummy()
    >>> _ = policy.to_onnx(folder / "fp32.onnx", opset_version=17)
    >>> half = convert_to_fp16(folder / "fp32.onnx", folder / "fp16.onnx", policy.sample_input)
    >>> import onnx; onnx.load(str(half)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    True
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from getiaction.errors import ConfigError, ExportError, first_line
from getiaction.export.atomic import atomic_write_bytes
from getiaction.export.extras import require
from getiaction.export.onnx_files import onnx_files
from getiaction.export.options import Precision  # re-exported: torch-free home of the choices

FLOAT16_MAX = 65504.0

log = logging.getLogger(__name__)


def precision_of(value: Precision | str) -> Precision:
    """``value`` as a :class:`Precision`, or a one-line :class:`ConfigError` naming the valid ones."""
    try:
        return Precision(value)
    except ValueError:
        raise ConfigError(f"precision: {value!r} is not valid; use one of {[p.value for p in Precision]}") from None


@dataclass(frozen=True)
class SimplifyResult:
    """What :func:`simplify_onnx` did."""

    path: Path
    nodes_before: int
    nodes_after: int


def count_nodes(model: onnx.ModelProto) -> int:
    """Nodes of the main graph (what a runtime schedules; subgraphs are not counted)."""
    return len(model.graph.node)


def convert_to_fp16(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    input_sample: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``source`` with float16 weights and arithmetic to ``destination``; inputs/outputs stay float32.

    Uses onnxruntime's converter (``keep_io_types=True``, constants clamped to float16's range), then
    puts the nodes back in topological order, which the converter's input casts break and
    ``onnx.checker`` requires. With ``input_sample`` (a dict of tensors or arrays), a model whose
    outputs on it are NaN/Inf in float16 where float32's are finite is refused and no file is
    written (see :func:`_refuse_nonfinite` for why that runs in onnx's reference evaluator).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    fp32_bytes = model.SerializeToString()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "value truncated" notes: the sample check below is the real test
        half = convert_float_to_float16(model, max_finite_val=FLOAT16_MAX, keep_io_types=True)
    sort_topologically(half.graph)
    onnx.helper.set_model_props(half, {**{p.key: p.value for p in half.metadata_props}, "getiaction.precision": "fp16"})
    try:
        onnx.checker.check_model(half, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"precision=fp16: the float16 graph fails onnx.checker: {first_line(error)}") from error
    data = half.SerializeToString()
    if input_sample is not None:
        _refuse_nonfinite(fp32_bytes, data, input_sample)
    atomic_write_bytes(destination, data)
    return Path(destination)


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (stable otherwise).

    A node's dependencies include values its subgraphs (If/Loop bodies) read from this graph.
    """
    nodes = list(graph.node)
    producer = {output: index for index, node in enumerate(nodes) for output in node.output if output}
    needs = []
    for node in nodes:
        names = set(node.input) | _subgraph_reads(node)
        needs.append({producer[name] for name in names if name in producer})
    placed: list[int] = []
    done: set[int] = set()
    pending = list(range(len(nodes)))
    while pending:
        ready = [index for index in pending if needs[index] <= done]
        if not ready:
            raise ExportError("the graph has a cycle; it cannot be ordered topologically")
        placed += ready
        done |= set(ready)
        pending = [index for index in pending if index not in done]
    del graph.node[:]
    graph.node.extend(nodes[index] for index in placed)


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    names: set[str] = set()
    for attribute in node.attribute:
        for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
            for inner in subgraph.node:
                names |= set(inner.input) | _subgraph_reads(inner)
    return names


def _refuse_nonfinite(fp32: bytes, fp16: bytes, sample: Mapping[str, Any]) -> None:
    """Raise if the float16 graph's outputs are NaN/Inf on ``sample`` where float32's are finite.

    The float16 graph runs in onnx's reference evaluator, which computes in true float16:
    onnxruntime's CPU provider has few float16 kernels and silently upcasts to float32, so an
    overflow that a GPU or NPU would hit never shows there.
    """
    reference = _run_onnxruntime(fp32, sample)
    try:
        half = _run_reference(fp16, sample)
    except Exception as error:  # an operator the reference evaluator lacks: fall back to onnxruntime
        log.warning("float16 check in onnxruntime only (reference evaluator: %s)", first_line(error))
        half = _run_onnxruntime(fp16, sample)
    for name, values in half.items():
        if np.isfinite(reference[name]).all() and not np.isfinite(values).all():
            largest = float(np.abs(reference[name]).max())
            raise ExportError(
                f"precision=fp16: output {name!r} is NaN/Inf in float16 on the input sample (float32 "
                f"max |value| {largest:.3g}; float16 ends at ±{FLOAT16_MAX:g}); export this model with precision=fp32"
            )


def _feed(names: list[str], sample: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(sample[name]) for name in names}


def _run_onnxruntime(data: bytes, sample: Mapping[str, Any]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, _feed([i.name for i in session.get_inputs()], sample))
    return dict(zip(names, outputs, strict=True))


def _run_reference(data: bytes, sample: Mapping[str, Any]) -> dict[str, np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    model = onnx.load_from_string(data)
    evaluator = ReferenceEvaluator(model)
    names = [o.name for o in model.graph.output]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        outputs = evaluator.run(names, _feed([i.name for i in model.graph.input], sample))
    return dict(zip(names, outputs, strict=True))


def simplify_onnx(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> SimplifyResult:
    """Simplify ``source`` with onnxslim (constant folding, dead-node and shape-op elimination, fusions).

    Metadata and opset are kept; the result passes ``onnx.checker`` or nothing is written. Needs
    the ``[simplify]`` extra.
    """
    onnxslim = require("onnxslim", "simplify")
    if len(onnx_files(source)) > 1:  # the simplified graph would need its own data file; keep the export
        raise ExportError("the model keeps its weights in an external data file, which simplify does not rewrite")
    model = onnx.load(str(source))
    before = count_nodes(model)
    props = {p.key: p.value for p in model.metadata_props}
    try:
        slim = onnxslim.slim(model)
    except Exception as error:  # onnxslim's failures are not typed; any of them means "keep the original"
        raise ExportError(f"onnxslim failed: {type(error).__name__}: {first_line(error)}") from error
    if not isinstance(slim, onnx.ModelProto):
        raise ExportError(f"onnxslim returned {type(slim).__name__}, not a model")
    onnx.helper.set_model_props(slim, {**props, "getiaction.simplified": "onnxslim"})
    try:
        onnx.checker.check_model(slim, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the simplified graph fails onnx.checker: {first_line(error)}") from error
    atomic_write_bytes(destination, slim.SerializeToString())
    return SimplifyResult(Path(destination), before, count_nodes(slim))
