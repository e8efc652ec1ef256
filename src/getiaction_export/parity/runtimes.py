"""The runtimes outputs are compared in: PyTorch eager (the reference), onnxruntime, OpenVINO.

Each is a :data:`Runner`: called with a batch (``{input name: tensor}``), it returns the outputs
as float32 numpy arrays in graph-output order. The runtimes are set up the way the tool
recommends deploying them, for speed: see :data:`ONNXRUNTIME_OPTIONS` and :class:`OpenVINOModel`.

:class:`TorchReference` runs PyTorch once per distinct input for a whole job: ``format=all``
checks ONNX, OpenVINO and the physicalai package on the same inputs, and PyTorch eager
dominates the time of a check.

Example:
    >>> import torch
    >>> reference = TorchReference(torch.nn.Identity(), "kwargs")
    >>> batch = {"input": torch.ones(1, 2)}
    >>> reference(batch)[0].tolist(), reference(batch) is reference(batch), reference.runs
    ([[1.0, 1.0]], True, 1)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from getiaction.errors import ConfigError
from getiaction.export.onnx import call_with_batch, output_tensors

Runner = Callable[[dict[str, torch.Tensor]], list[np.ndarray]]


def torch_runner(module: nn.Module, call_style: str, input_names: Sequence[str] | None = None) -> Runner:
    """Run the PyTorch module and return its outputs as numpy arrays in graph-output order."""

    def run(batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        feed = {k: batch[k] for k in input_names if k in batch} if input_names is not None else batch
        with torch.no_grad():
            outputs = output_tensors(call_with_batch(module, feed, call_style))
        return [output.detach().float().cpu().numpy() for output in outputs]

    return run


class TorchReference:
    """PyTorch's outputs, each distinct input computed once (keyed by the inputs' bytes).

    ``input_names`` limits the feed to the graph's inputs (an exporter may drop unused ones), plus
    the inputs the module is :attr:`conditioned_on`.
    """

    conditioned_on: dict[str, str]
    """Graph output -> reference input (the module's own ``conditioned_on``; see :func:`conditioned`)."""

    def __init__(self, module: nn.Module, call_style: str, input_names: Sequence[str] | None = None) -> None:
        self.module = module
        self.conditioned_on = dict(getattr(module, "conditioned_on", None) or {})
        if input_names is not None:
            input_names = [*input_names, *(n for n in self.conditioned_on.values() if n not in input_names)]
        self._run = torch_runner(module, call_style, input_names)
        self._outputs: dict[tuple[Any, ...], list[np.ndarray]] = {}
        self.runs = 0
        """How many times PyTorch actually ran (the rest came from the memo)."""

    def __call__(self, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        key = tuple((name, tuple(t.shape), str(t.dtype), hashlib.sha256(t.numpy().tobytes()).hexdigest())
                    for name, t in sorted(batch.items()))
        if key not in self._outputs:
            self._outputs[key] = self._run(batch)
            self.runs += 1
        return self._outputs[key]


def conditioned(reference: Any, batch: dict[str, torch.Tensor],
                drawn: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """``batch`` plus what the candidate drew, as the inputs the ``reference`` is conditioned on.

    A graph that draws something itself (SmolVLA's start noise) returns it as an output; its
    reference declares ``conditioned_on`` (graph output -> reference input), and is run on that
    draw: the graph's other outputs must equal the reference's *for what the graph drew*. A
    reference without ``conditioned_on`` gets ``batch`` unchanged.

    >>> import torch, numpy as np
    >>> reference = TorchReference(torch.nn.Identity(), "kwargs")
    >>> sorted(conditioned(reference, {"x": torch.ones(1)}, {"noise": np.zeros(1, np.float32)}))
    ['x']
    >>> reference.conditioned_on = {"noise": "noise"}
    >>> sorted(conditioned(reference, {"x": torch.ones(1)}, {"noise": np.zeros(1, np.float32)}))
    ['noise', 'x']
    """
    pairs = getattr(reference, "conditioned_on", None) or {}
    if not pairs:
        return batch
    missing = [output for output in pairs if output not in drawn]
    if missing:
        raise ValueError(f"the candidate returned no {missing[0]!r}; its reference is conditioned on that output")
    return {**batch, **{name: torch.from_numpy(np.array(drawn[output], dtype=np.float32))
                        for output, name in pairs.items()}}


def paired(reference: Any, candidate: Runner, batch: dict[str, torch.Tensor],
           output_names: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(reference outputs, candidate outputs)`` on ``batch``: the candidate first, then the reference
    :func:`conditioned` on what it drew."""
    actual = candidate(batch)
    return reference(conditioned(reference, batch, dict(zip(output_names, actual, strict=False)))), actual


ONNXRUNTIME_OPTIONS = {
    "graph_optimization_level": "ORT_ENABLE_ALL",
    "execution_mode": "ORT_SEQUENTIAL",
    "inter_op_num_threads": 1,
    "intra_op_num_threads": "threads",
    "session.intra_op.allow_spinning": "1",
    "session.force_spinning_stop": "1",
}
"""How :func:`onnxruntime_session` configures onnxruntime (recorded in result.json with the latency).

All graph optimizations (constant folding, layout changes for convolutions, fusions such as
LayerNorm, GELU, MatMul+Add); one sequential stream of operators with ``threads`` threads inside
each; worker threads that spin while a run needs them (onnxruntime's default; on an idle 2-core
machine ACT-like batch-1 ran in 1.6 ms spinning vs 2.4 ms sleeping) and stop spinning when the
run returns, so between calls they leave the cores to the rest of the process and the machine
(PyTorch's own threads, the next runtime being measured, a robot's other processes). Measured
trade-offs in benchmarks/RESULTS.md."""


def default_threads() -> int:
    """The thread count every runtime gets, PyTorch included: PyTorch's own default (physical cores)."""
    return max(1, torch.get_num_threads())


def onnxruntime_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session configured for batch-1 inference speed (see ONNXRUNTIME_OPTIONS)."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as error:  # not installed (an interrupted import is not this)
        raise ConfigError(
            "onnxruntime is not installed; the ONNX parity gate needs it: pip install onnxruntime"
        ) from error

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads or default_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModel:
    """An ONNX file in onnxruntime, called like a :data:`Runner`."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.session = onnxruntime_session(path, threads)
        self.threads = threads or default_threads()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def feed(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {name: batch[name].numpy() for name in self.input_names}

    def __call__(self, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        outputs = self.session.run(self.output_names, self.feed(batch))
        return [np.asarray(output, dtype=np.float32) for output in outputs]

    def timed_call(self, batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
        """A no-argument call on ``batch`` with the inputs converted once (for latency)."""
        feed = self.feed(batch)
        return lambda: self.session.run(self.output_names, feed)

    def settings(self) -> dict[str, Any]:
        """How the runtime was configured, for result.json."""
        return {"session_options": {**ONNXRUNTIME_OPTIONS, "intra_op_num_threads": self.threads}}


class OpenVINOModel:
    """An OpenVINO IR compiled for CPU at f32 inference precision, with the latency hint.

    OpenVINO's CPU default can be bfloat16 (error ~1e-3 on ACT-like policies); verification must
    see the model's own numbers. Outputs come back in ``output_names`` order (the IR's own names).
    """

    runtime = "openvino"

    def __init__(self, xml_path: Path, output_names: Sequence[str], threads: int | None = None) -> None:
        from getiaction.export.openvino import F32_CONFIG, openvino_module

        ov = openvino_module("format=openvino")
        self.config = {**F32_CONFIG, "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_NUM_THREADS": threads or default_threads()}
        self.compiled = ov.Core().compile_model(str(xml_path), "CPU", self.config)
        self.request = self.compiled.create_infer_request()
        self.output_names = list(output_names)
        self._outputs = [_port_named(self.compiled.outputs, name, "output") for name in self.output_names]

    def feed(self, batch: dict[str, torch.Tensor]) -> dict[Any, np.ndarray]:
        """The batch keyed by input port: an IR port has several names, one of them the graph's own."""
        return {_port_named(self.compiled.inputs, name, "input"): batch[name].numpy()
                for name in batch if any(name in port.get_names() for port in self.compiled.inputs)}

    def __call__(self, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        results = self.request.infer(self.feed(batch))
        return [np.array(results[port], dtype=np.float32) for port in self._outputs]

    def timed_call(self, batch: dict[str, torch.Tensor]) -> Callable[[], Any]:
        """A no-argument call on ``batch`` with the inputs converted once (for latency)."""
        feed = self.feed(batch)
        return lambda: self.request.infer(feed)

    def settings(self) -> dict[str, Any]:
        """How the runtime was configured, for result.json."""
        return {"compile_config": dict(self.config)}


def _port_named(ports: Sequence[Any], name: str, kind: str) -> Any:
    for port in ports:
        if name in port.get_names():
            return port
    raise KeyError(f"the OpenVINO model has no {kind} named {name!r}")
