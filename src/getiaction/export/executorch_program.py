"""Read an ExecuTorch program (``.pte``) back: the batches it accepts, its metadata, and a runner for it.

Everything here loads the program from its file: ``Runtime.load_program(bytes)`` does not keep
the bytes alive (executorch 1.5.1; a later call crashes). The runtime explains a refusal (a
batch above the planned one: ``Attempted to resize a bounded tensor with a maximum capacity of
210 elements to 224 elements``) on stderr in C++, its exception only gives an error code, so
the explanation is captured and quoted.

Example:
    >>> import tempfile, pathlib, torch
    >>> from getiaction.policies import Dummy
    >>> path = Dummy().to_executorch(pathlib.Path(tempfile.mkdtemp()) / "dummy.pte", max_batch=4).path
    >>> program_batch_range(path)
    (1, 4)
    >>> model = ExecutorchModel(path)
    >>> model.runtime, model.input_names, [output.shape for output in model({"state": torch.zeros(3, 7)})]
    ('executorch', ['state'], [(3, 7)])
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from getiaction.errors import ConfigError, ExportError, first_line
from getiaction.export.extras import require
from getiaction.export.onnx_exporters import quiet, stderr_captured

BACKEND = "XnnpackBackend"
METHOD = "forward"
METADATA_METHOD = "getiaction_metadata"
"""A constant method of the program that returns its metadata as JSON (names, versions, policy)."""
CHATTY_LOGGERS = ("torch.export", "torch._dynamo", "torch.fx", "torch.utils._pytree", "torchao", "executorch", "")
"""Loggers silenced while lowering; "" is the root logger, which ExecuTorch's passes log to directly
(``logging.info("Copying constant nodes ...")``, once per unrolled step)."""
"""Loggers that narrate ExecuTorch's import, lowering and loading; quiet below ERROR."""


def executorch_module(feature: str = "to_executorch") -> Any:
    """``import executorch``, or a one-line :class:`ConfigError` that says how to install it."""
    return require("executorch", feature)


def program_batch_range(
    path: str | os.PathLike[str], *, max_batch: int | None = None, traced_batch: int | None = None
) -> tuple[int, int]:
    """The batches the program at ``path`` accepts: ``(smallest, largest)``, read from it and confirmed by running it.

    The largest is the batch its inputs are planned for (the method's input sizes); the program
    is run there and at batch 1 (zeros in; the outputs must have as many rows). If the planned
    batch fails at run time, the largest batch that runs is searched for. With ``max_batch``, a
    program that does not accept 1..``max_batch`` is a one-line :class:`ExportError` (which says
    what the lowering did to a batch traced at ``traced_batch``, when given).
    """
    program, method = _load_method(Path(path))
    meta = method.metadata
    infos = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
    if not infos or any(not info.sizes() for info in infos):
        raise ExportError(f"{Path(path).name}: the ExecuTorch program has an input without a batch axis")
    planned = min(info.sizes()[0] for info in infos)

    def runs(batch: int) -> str | None:
        return _run_failure(method, infos, batch)

    failure = runs(planned)
    largest = planned if failure is None else _largest_running(runs, planned)
    if largest < 1:
        raise ExportError(f"{Path(path).name}: the ExecuTorch program runs at no batch: {failure}")
    smallest = 1 if largest == 1 or runs(1) is None else largest
    del program  # kept alive until the method's last run
    if max_batch is not None and (smallest > 1 or largest < max_batch):
        if smallest > 1:
            why = f"its inputs have a fixed batch of {largest}"
            if traced_batch is not None:
                why += ", the traced one: the lowering fixed it, as it does for a .chunk of a batched tensor"
        elif planned < max_batch:
            why = f"its inputs are planned for at most {planned} rows"
            if traced_batch is not None:
                why += f": the lowering narrowed the batch traced at {traced_batch}"
        else:
            why = f"planned for {planned} rows, it fails at run time above {largest}: {failure}"
        accepted = f"the ExecuTorch program accepts batch {smallest}..{largest} only"
        raise ExportError(f"max_batch={max_batch}: {accepted} ({why})")
    return smallest, largest


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a program written by :func:`~getiaction.export.executorch.export_executorch` records ({} for others)."""
    program = _load_program(Path(path))
    if METADATA_METHOD not in program.method_names:
        return {}
    text = program.load_method(METADATA_METHOD).execute(())[0]
    return dict(json.loads(text))


class ExecutorchModel:
    """A ``.pte`` in the ExecuTorch runtime, called like onnxruntime's: a batch dict in, float32 arrays out.

    ``input_names`` / ``output_names`` default to the ones the program records. ``threads``
    resets ExecuTorch's thread pool, which is one per process (XNNPACK's), not per model.
    """

    runtime = "executorch"

    def __init__(
        self,
        path: str | os.PathLike[str],
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.program, self.method = _load_method(self.path)  # the method needs its program alive
        meta = self.method.metadata
        recorded = read_metadata(self.path) if input_names is None or output_names is None else {}
        self.input_names = list(input_names if input_names is not None else recorded.get("getiaction.inputs", []))
        self.output_names = list(output_names if output_names is not None else recorded.get("getiaction.outputs", []))
        if len(self.input_names) != meta.num_inputs() or len(self.output_names) != meta.num_outputs():
            raise ConfigError(
                f"{self.path.name}: the program takes {meta.num_inputs()} input(s) and returns {meta.num_outputs()} "
                f"output(s); got names {self.input_names} and {self.output_names}"
            )
        if threads is not None:
            _portable_lib()._unsafe_reset_threadpool(int(threads))

    def feed(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(batch[name].contiguous() for name in self.input_names)

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
        outputs = self.method.execute(self.feed(batch))
        return [np.array(output.detach().numpy(), dtype=np.float32) for output in outputs]

    def timed_call(self, batch: Mapping[str, torch.Tensor]) -> Callable[[], Any]:
        """A no-argument call on ``batch`` with the inputs converted once (for latency)."""
        feed = self.feed(batch)
        return lambda: self.method.execute(feed)

    def settings(self) -> dict[str, Any]:
        """How the runtime was configured, for result.json."""
        threads = int(_portable_lib()._threadpool_get_thread_count())
        return {"backend": BACKEND, "threads": threads, "threadpool": "one per process (XNNPACK's)"}


def _portable_lib() -> Any:
    return require("executorch.extension.pybindings.portable_lib", "the ExecuTorch runtime")


def _load_program(path: Path) -> Any:
    """The program, loaded from its file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such ExecuTorch program")
    executorch_module("the ExecuTorch runtime")
    lines: list[str] = []
    with quiet(CHATTY_LOGGERS), stderr_captured(lines):  # torchao's optional kernels, cpuinfo's notes
        from executorch.runtime import Runtime

        try:
            return Runtime.get().load_program(path)
        except Exception as error:
            raise ExportError(_cannot_load(path, error, lines)) from error


def _load_method(path: Path) -> tuple[Any, Any]:
    """``(program, its forward method)``."""
    program = _load_program(path)
    if METHOD not in program.method_names:
        raise ExportError(f"{path.name}: the ExecuTorch program has no {METHOD!r} method")
    lines: list[str] = []
    with stderr_captured(lines):
        try:
            return program, program.load_method(METHOD)
        except Exception as error:  # e.g. an operator this runtime has no kernel for
            raise ExportError(_cannot_load(path, error, lines)) from error


def _cannot_load(path: Path, error: BaseException, lines: list[str]) -> str:
    return f"{path.name}: the ExecuTorch runtime cannot load it: {_runtime_cause(error, lines)}"


def _run_failure(method: Any, infos: list[Any], batch: int) -> str | None:
    """Why the method does not run at ``batch`` (zeros in), or None when it does and returns ``batch`` rows."""
    inputs = tuple(torch.zeros(batch, *info.sizes()[1:], dtype=_TORCH_DTYPES.get(int(info.dtype()), torch.float32))
                   for info in infos)
    lines: list[str] = []
    with stderr_captured(lines):
        try:
            outputs = method.execute(inputs)
        except Exception as error:
            return _runtime_cause(error, lines)
    rows = {int(o.shape[0]) for o in outputs if isinstance(o, torch.Tensor) and o.dim()}
    if rows and rows != {batch}:
        return f"it returns {sorted(rows)} rows for batch {batch}"
    return None


def _largest_running(runs: Callable[[int], str | None], planned: int) -> int:
    """The largest batch below ``planned`` that runs (0 if none), by bisection."""
    low, high = 0, planned  # runs(low) holds (0: vacuously), runs(high) fails
    while high - low > 1:
        middle = (low + high) // 2
        if runs(middle) is None:
            low = middle
        else:
            high = middle
    return low


_TORCH_DTYPES = {0: torch.uint8, 1: torch.int8, 3: torch.int32, 4: torch.int64, 5: torch.float16, 6: torch.float32,
                 7: torch.float64, 11: torch.bool, 15: torch.bfloat16}
"""ExecuTorch's ScalarType codes (what ``TensorInfo.dtype()`` returns) -> torch dtypes."""
_LOG_PREFIX = re.compile(r"^\[[\w.]+:\d+\]\s*")


def _runtime_cause(error: BaseException, lines: list[str]) -> str:
    """The exception's first line, with the runtime's own explanation from stderr when it logged one."""
    logged = [_LOG_PREFIX.sub("", line) for line in lines if line.strip() and "cpuinfo" not in line]
    detail = f" ({logged[0][:200]})" if logged else ""
    return f"{first_line(error)}{detail}"
