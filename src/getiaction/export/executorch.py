"""Write one ExecuTorch program (``.pte``, XNNPACK delegate) from a policy, checked on the written file.

The steps: the dict-input forward is wrapped in a module that takes the inputs positionally (in
sample order; their names go into the program's metadata), ``torch.export`` traces it with one
``Dim("batch", min=1, max=max_batch)`` on axis 0 of every input, weight-only computations are
folded into constants, ``to_edge_transform_and_lower`` hands what XNNPACK supports to XNNPACK,
and ``to_executorch`` plans the memory. The file appears under its name only once the ExecuTorch
runtime has loaded it and run it at batch 1 and at the largest batch it accepts
(:func:`~getiaction.export.executorch_program.program_batch_range`).

Measured here (executorch 1.5.1, torch 2.13, x86 CPU):

* The batch range is decided by lowering, not by the ``Dim``, and silently. XNNPACK's
  channels-last pass re-runs every convolution on fake tensors, and torch's convolution picks a
  backend by ``batch >= 16`` at the traced size: traced at 2..15 the program is planned for at
  most 15 rows (batch 16 fails at run time), traced at 16 or more it keeps 1..max. A ``.chunk``
  of a batched tensor fixes the batch to the traced size outright. So the program is traced at
  ``max_batch`` (a guard on the traced size can then only keep it), and a program that accepts
  less than 1..``max_batch`` is an :class:`ExportError`.
* The traced inputs are real copies (``max_batch`` rows of the sample): ExecuTorch refuses the
  zero strides of an expanded view.
* XNNPACK takes a convolution or linear layer only if its weight is a constant (see
  :func:`_fold_constants`).

A program is read back (range, metadata, runner :class:`ExecutorchModel`) by
:mod:`getiaction.export.executorch_program`. executorch is an optional extra:
``pip install 'getiaction-export[executorch]'``.

Example:
    >>> import tempfile, pathlib, torch
    >>> from getiaction.policies import Dummy
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> result = Dummy().to_executorch(folder / "dummy.pte", max_batch=8)
    >>> result.input_names, result.output_names, result.batch_range, result.delegation.backend
    (['state'], ['action'], (1, 8), 'XnnpackBackend')
    >>> model = ExecutorchModel(result.path)
    >>> [output.shape for output in model({"state": torch.zeros(3, 7)})]
    [(3, 7)]
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import operator
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from getiaction.errors import ConfigError, ExportError, first_line
from getiaction.export.atomic import artifact_path, atomic_path
from getiaction.export.executorch_program import (
    BACKEND,
    CHATTY_LOGGERS,
    METADATA_METHOD,
    ExecutorchModel,
    executorch_module,
    program_batch_range,
    read_metadata,
)
from getiaction.export.extras import require
from getiaction.export.onnx_args import check_sample, enum_value, graph_output_names
from getiaction.export.onnx_exporters import dynamo_cause, quiet, stderr_to_log
from getiaction.export.onnx_forward import call_with_batch, output_tensors, probe_forward
from getiaction.export.options import CallStyle

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
"""What a program accepts by default; a larger bound is slower at every batch (diffusion b1: 5.5 ms at 8,
720 ms at 64)."""

__all__ = [
    "DEFAULT_MAX_BATCH",
    "Delegation",
    "ExecutorchExportResult",
    "ExecutorchModel",
    "PositionalAdapter",
    "delegation_of",
    "executorch_module",
    "export_executorch",
    "lowering_failure",
    "program_batch_range",
    "read_metadata",
]


@dataclass(frozen=True)
class Delegation:
    """How much of the graph runs in the delegate (the rest runs on ExecuTorch's portable kernels)."""

    backend: str
    subgraphs: int
    """Delegated subgraphs (each one call into the backend)."""
    delegated_nodes: int
    """Operators inside the delegated subgraphs."""
    other_nodes: int
    """Operators left outside them."""
    not_delegated: dict[str, int] = field(default_factory=dict)
    """Operator -> how many of it were left outside."""

    @property
    def total_nodes(self) -> int:
        return self.delegated_nodes + self.other_nodes


@dataclass(frozen=True)
class ExecutorchExportResult:
    """What :func:`export_executorch` wrote."""

    path: Path
    input_names: list[str]
    output_names: list[str]
    batch_range: tuple[int, int] | None
    """The batches the program accepts, read from it and run; None for a static batch."""
    traced_batch: int
    delegation: Delegation
    size_bytes: int
    export_seconds: float
    """torch.export, lowering and emission (not the check runs)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """What the program's ``getiaction_metadata`` method returns (see :func:`read_metadata`)."""


def export_executorch(
    module: nn.Module,
    path: str | os.PathLike[str],
    input_sample: Mapping[str, torch.Tensor],
    *,
    call_style: CallStyle | str = CallStyle.DICT,
    dynamic_batch: bool = True,
    max_batch: int = DEFAULT_MAX_BATCH,
    output_names: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    trace_batch: int | None = None,
) -> ExecutorchExportResult:
    """Export ``module`` to an ExecuTorch program at ``path`` that accepts batch 1..``max_batch``.

    Args:
        module: the module to export; its forward takes the sample dict (or its keys as kwargs).
        path: the ``.pte`` file to write (replaced atomically; nothing is left on failure).
        input_sample: example inputs; the keys the forward reads become the program's inputs,
            in sample order.
        call_style: ``dict`` (``forward(batch)``) or ``kwargs`` (``forward(**batch)``).
        dynamic_batch: axis 0 of every input is dynamic, 1..``max_batch``; else the program
            takes the sample's batch only.
        max_batch: the largest batch the program must accept (its inputs are planned for it).
        output_names: one name per forward output; default ``["action"]`` or a dict output's keys.
        metadata: extra JSON-serializable entries for the program's metadata.
        trace_batch: the batch the forward is traced at; default ``max_batch`` (see the module
            docstring for why a smaller one can silently shrink the range).
    """
    sample = check_sample(input_sample)
    style = enum_value(CallStyle, call_style, "call_style")
    path = artifact_path(path, ".pte")
    traced = _trace_batch(sample, dynamic_batch, max_batch, trace_batch)
    _import_quietly()
    was_training = module.training
    module.eval()
    try:
        probe = probe_forward(module, sample, style)
        inputs = probe.used_keys
        outputs = graph_output_names(output_names, probe.default_output_names, inputs)
        adapter = PositionalAdapter(module, inputs, style, probe.output_keys).eval()
        args = tuple(_rows(sample[name], traced) if dynamic_batch else sample[name] for name in inputs)
        info = _metadata(inputs, outputs, dynamic_batch, max_batch, traced, metadata)
        start = time.perf_counter()
        delegation, program = _lower(adapter, args, max_batch if dynamic_batch else None, info)
        seconds = time.perf_counter() - start
    finally:
        module.train(was_training)
    with atomic_path(path) as temp:
        with open(temp, "wb") as stream:
            program.write_to_file(stream)
            stream.flush()
            os.fsync(stream.fileno())
        accepted = program_batch_range(temp, max_batch=max_batch if dynamic_batch else None, traced_batch=traced)
    return ExecutorchExportResult(
        path=path,
        input_names=inputs,
        output_names=outputs,
        batch_range=accepted if dynamic_batch else None,
        traced_batch=traced,
        delegation=delegation,
        size_bytes=path.stat().st_size,
        export_seconds=round(seconds, 3),
        metadata=info,
    )


class PositionalAdapter(nn.Module):
    """``forward(*tensors)`` with the inputs in ``names`` order, returning a tuple: what torch.export traces.

    A program's inputs are positional; the names live in its metadata.
    """

    def __init__(self, model: nn.Module, names: list[str], style: CallStyle, output_keys: list[str] | None) -> None:
        super().__init__()
        self.model = model
        self.names = names
        self.style = style
        self.output_keys = output_keys

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = dict(zip(self.names, tensors, strict=True))
        return output_tensors(call_with_batch(self.model, batch, self.style), self.output_keys)


def delegation_of(graph_module: torch.fx.GraphModule) -> Delegation:
    """Count the operators inside the lowered (delegated) subgraphs and those left outside."""
    subgraphs = delegated = 0
    outside: collections.Counter[str] = collections.Counter()
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            subgraphs += 1
            lowered = getattr(graph_module, node.target)
            delegated += sum(n.op == "call_function" for n in lowered.original_module.graph.nodes)
        elif node.op == "call_function" and node.target is not operator.getitem and "call_delegate" not in node.name:
            outside[_op_name(node.target)] += 1
    return Delegation(BACKEND, subgraphs, delegated, sum(outside.values()), dict(sorted(outside.items())))


_NODE_TARGET = re.compile(r"target=(?:torch\.ops\.|executorch\.exir\.dialects\.edge\._ops\.)([\w.]+)")
_EDGE_OP = re.compile(r"<EdgeOpOverload: ([\w.]+)>")


def lowering_failure(error: BaseException, step: str) -> str:
    """A lowering failure on one line: the pass or step, the operator when the error names one, the cause."""
    chain = _chain(error)
    text = "\n".join(str(e) for e in chain)
    named_pass = re.search(r"running the '(\w+)' pass", text)
    where = named_pass.group(1) if named_pass else _step_of(error, step)
    innermost = chain[-1]
    core = re.search(r"Operator torch\._ops\.([\w.]+) is not in Core ATen opset", text)
    if core:
        return f"ExecuTorch lowering failed in {where}: operator {core.group(1)} is not in the Core ATen opset it runs"
    op = _NODE_TARGET.search(text) or _EDGE_OP.search(text)
    at = f" at {op.group(1)}" if op else ""
    return f"ExecuTorch lowering failed in {where}{at}: {type(innermost).__name__}: {first_line(innermost)}"


def _lower(adapter: nn.Module, args: tuple[torch.Tensor, ...], max_batch: int | None, info: dict[str, Any]) -> Any:
    """torch.export -> edge dialect with XNNPACK delegation -> ExecuTorch program (in memory), and its delegation."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    shapes = None
    if max_batch is not None:
        batch = torch.export.Dim("batch", min=1, max=max_batch)
        shapes = (tuple({0: batch} for _ in args),)  # one entry: the *tensors of the adapter's forward
    with _quiet_lowering():
        try:
            exported = torch.export.export(adapter, args, dynamic_shapes=shapes)
        except Exception as error:
            log.debug("torch.export failure", exc_info=True)
            raise ExportError(f"torch.export failed: {dynamo_cause(error)}") from error
        try:
            exported = _fold_constants(exported)
            edge = to_edge_transform_and_lower(
                exported, partitioner=[XnnpackPartitioner()], constant_methods={METADATA_METHOD: json.dumps(info)}
            )
        except Exception as error:
            log.debug("ExecuTorch lowering failure", exc_info=True)
            raise ExportError(lowering_failure(error, "to_edge_transform_and_lower")) from error
        delegation = delegation_of(edge.exported_program().graph_module)  # before emission adds its own nodes
        try:
            program = edge.to_executorch()
        except Exception as error:
            log.debug("ExecuTorch emission failure", exc_info=True)
            raise ExportError(lowering_failure(error, "to_executorch")) from error
    return delegation, program


def _fold_constants(exported: Any) -> Any:
    """Compute once what depends on weights only (a reshaped conv weight, an MLP of constant embeddings).

    XNNPACK delegates a convolution or linear layer only when its weight is a constant: a weight
    computed in the forward (``weight.unsqueeze(2)``, ``weight[:n]``) leaves it to ExecuTorch's
    portable kernels (the 10-step diffusion policy's convolutions: 1.2 s a batch-1 call, 5 ms delegated).
    A folded slice is a view into its parameter, and executorch 1.5.1 serializes it from the
    start of that storage (the second half of a split weight came out as the first): every
    folded view gets storage of its own.
    """
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    folded = constant_prop_pass(exported)
    for name, value in list(folded.constants.items()):
        if isinstance(value, torch.Tensor) and _is_view(value):
            folded.constants[name] = value.detach().clone(memory_format=torch.contiguous_format)
        elif isinstance(value, torch.Tensor) and value.requires_grad:  # folded from a parameter: a constant now
            folded.constants[name] = value.detach()
    return folded


def _is_view(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` covers less than its whole storage, or not in order."""
    whole = tensor.numel() * tensor.element_size() == tensor.untyped_storage().nbytes()
    return tensor.storage_offset() != 0 or not whole or not tensor.is_contiguous()


@contextlib.contextmanager
def _quiet_lowering() -> Iterator[None]:
    """torch.export's and ExecuTorch's warnings and stderr (C++ logs, a failed trace's graph) go to the debug log."""
    with quiet(CHATTY_LOGGERS), torch.no_grad(), stderr_to_log("torch.export / ExecuTorch", log):
        yield


def _import_quietly() -> None:
    """Import executorch's exporter once, its import-time chatter (torchao's optional kernels) kept off the console."""
    executorch_module()
    with _quiet_lowering():
        require("executorch.exir", "to_executorch")
        require("executorch.backends.xnnpack.partition.xnnpack_partitioner", "to_executorch")


def _trace_batch(sample: dict[str, torch.Tensor], dynamic: bool, max_batch: Any, trace_batch: Any) -> int:
    """The batch to trace at (checked against the arguments and the sample)."""
    sizes = {name: tensor.shape[0] if tensor.dim() else None for name, tensor in sample.items()}
    if not dynamic:
        first = next(iter(sizes.values()))
        return int(first) if first is not None else 1
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 2:
        raise ConfigError(
            f"max_batch: {max_batch!r} must be an integer >= 2 for a dynamic batch; "
            "pass dynamic_batch=False for a fixed one"
        )
    scalar = [name for name, size in sizes.items() if size is None]
    if scalar:
        raise ConfigError(f"input_sample[{scalar[0]!r}]: a 0-d tensor has no batch axis; pass dynamic_batch=False")
    if len(set(sizes.values())) > 1:
        raise ConfigError(
            f"input_sample: the inputs' batch sizes differ ({sizes}); axis 0 must be the batch of every input"
        )
    traced = max_batch if trace_batch is None else trace_batch
    if isinstance(traced, bool) or not isinstance(traced, int) or not 2 <= traced <= max_batch:
        raise ConfigError(f"trace_batch: {trace_batch!r} must be an integer in 2..max_batch={max_batch}")
    return traced


def _rows(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """``batch`` rows cycled from ``tensor``'s own, as a real copy (ExecuTorch refuses an expanded view's 0 strides)."""
    return tensor[torch.arange(batch) % tensor.shape[0]].contiguous()


def _metadata(
    inputs: list[str], outputs: list[str], dynamic: bool, max_batch: int, traced: int, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "getiaction.inputs": inputs,
        "getiaction.outputs": outputs,
        "getiaction.dynamic_batch": dynamic,
        "getiaction.max_batch": max_batch if dynamic else None,
        "getiaction.traced_batch": traced,
        "getiaction.backend": BACKEND,
        **{f"versions.{name}": _version(dist) for name, dist in
           (("getiaction", "getiaction-export"), ("torch", "torch"), ("executorch", "executorch"))},
        **dict(extra or {}),
    }
    try:
        json.dumps(info)
    except TypeError as error:
        raise ConfigError(f"metadata: values must be JSON-serializable: {first_line(error)}") from error
    return info


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"




def _chain(error: BaseException) -> list[BaseException]:
    chain = [error]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and cause not in chain:
        chain.append(cause)
    return chain


def _step_of(error: BaseException, step: str) -> str:
    """Where in ``step`` the error arose, from the traceback: the decompositions, the edge verifier, or ``step``."""
    names = []
    traceback = error.__traceback__
    while traceback is not None:
        names.append(traceback.tb_frame.f_code.co_name)
        traceback = traceback.tb_next
    if "run_decompositions" in names:
        return f"{step} (core ATen decomposition)"
    if any("verifier" in name or name == "_check_graph_module" for name in names):
        return f"{step} (edge dialect verifier)"
    return step


def _op_name(target: Any) -> str:
    name = str(getattr(target, "__name__", target))
    return name.removeprefix("aten.").removesuffix(".default")
