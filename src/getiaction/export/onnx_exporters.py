"""Run one of torch.onnx's two exporters and turn its failures into one-line project errors.

The TorchScript exporter is the one that honours opsets below 18; when it lacks an operator at
the requested opset, :meth:`ExportJob.opset_refusal` names the operator and searches for the
lowest opset this model does export at. The dynamo exporter gets ``torch.export`` dims built
from the same :data:`~getiaction.export.onnx_args.DynamicAxes`. Both run quietly: their
deprecation, tracer and logger chatter (and the TorchScript exporter's C++ dump of its IR on
stdout) says nothing our errors do not.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def forward(self, batch):
    ...         return (batch["state"] * 2,)
    >>> sample = {"state": torch.ones(1, 3)}
    >>> axes = {"state": {0: "batch"}, "action": {0: "batch"}}
    >>> job = ExportJob(Net(), trace_sample(sample, axes), ["state"], ["action"], axes, {})
    >>> job.sample["state"].shape  # a size-1 dynamic axis is traced at 2
    torch.Size([2, 3])
    >>> proto = job.run(Exporter.TORCHSCRIPT, 14)
    >>> proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    'batch'
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import onnx
import torch
from torch import nn

from getiaction.errors import ConfigError, ExportError, OpsetError, first_line
from getiaction.export.onnx_args import DynamicAxes
from getiaction.export.options import DYNAMO_LOWEST_OPSET, TORCHSCRIPT_HIGHEST_OPSET, Exporter

log = logging.getLogger(__name__)
EXPORTED_NAME = "model.onnx"
"""What an exporter writes in :meth:`ExportJob.run`'s folder (its external data file: ``model.onnx.data``)."""
_CHATTY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir", "torch.export", "torch._dynamo")
_OP_NAME = re.compile(r"operator '([^']+)'")
_OP_SUPPORT = re.compile(r"operator '([^']+)' to ONNX opset version (\d+).*?added in version (\d+)", re.S)


def trace_sample(sample: dict[str, torch.Tensor], axes: DynamicAxes) -> dict[str, torch.Tensor]:
    """Grow every dynamic size-1 axis to 2: torch.export fixes size-1 dims to constants."""
    traced = {}
    for name, tensor in sample.items():
        for axis in axes.get(name, {}):
            if tensor.shape[axis] == 1:
                tensor = torch.cat([tensor, tensor], dim=axis)
        traced[name] = tensor
    return traced


@dataclass
class ExportJob:
    """What both torch.onnx exporters need, so each is called with just an opset."""

    adapter: nn.Module
    """Takes ``forward(batch)`` and returns a tuple (see :class:`~getiaction.export.onnx_forward.Adapter`)."""
    sample: dict[str, torch.Tensor]
    input_names: list[str]
    output_names: list[str]
    axes: DynamicAxes
    torch_kwargs: dict[str, Any]

    def run(self, exporter: Exporter, opset: int, folder: Path | None = None) -> onnx.ModelProto:
        """The graph ``exporter`` writes at ``opset`` (nothing is checked yet).

        With ``folder``, the exporter writes ``folder/model.onnx`` and the graph is read back
        without its external tensors, which stay in ``folder`` (the dynamo exporter streams every
        weight there, so no serialised copy of the weights is held in memory); without, a temporary
        folder is used and the graph comes back whole.
        """
        if folder is None:
            with tempfile.TemporaryDirectory(prefix="getiaction-onnx-") as temp:
                proto = self.run(exporter, opset, Path(temp))
                onnx.load_external_data_for_model(proto, temp)
                return proto
        path = Path(folder) / EXPORTED_NAME
        if exporter is Exporter.TORCHSCRIPT:
            try:
                self.torchscript(opset, path)
            except torch.onnx.errors.UnsupportedOperatorError as error:
                raise self.opset_refusal(error, opset, path) from error
        else:
            self.dynamo(opset, path)
        return onnx.load(str(path), load_external_data=False)

    def torchscript(self, opset: int, path: Path) -> None:
        """Write the TorchScript exporter's graph to ``path`` (external data beside it only above 2 GB)."""
        with quiet(), _stdout_fd_silenced(), torch.no_grad():
            try:
                torch.onnx.export(
                    self.adapter,
                    (self.sample, {}),  # the trailing {} keeps the dict positional instead of kwargs
                    str(path),
                    input_names=self.input_names,
                    output_names=self.output_names,
                    opset_version=opset,
                    dynamic_axes=self.axes or None,
                    dynamo=False,
                    **self.torch_kwargs,
                )
            except torch.onnx.errors.UnsupportedOperatorError:
                raise
            except TypeError as error:
                raise ConfigError(f"export argument rejected by torch.onnx.export: {first_line(error)}") from error
            except Exception as error:
                raise ExportError(
                    f"torchscript exporter failed at opset {opset}: {type(error).__name__}: {first_line(error)}"
                ) from error

    def dynamo(self, opset: int, path: Path) -> None:
        """Write the dynamo exporter's graph to ``path``, every weight streamed to ``path``'s external data file."""
        dims: dict[str, Any] = {}  # one torch.export.Dim per name, so inputs sharing "batch" share it
        shapes = {
            name: {axis: dims.setdefault(dim, torch.export.Dim(dim)) for axis, dim in self.axes.get(name, {}).items()}
            for name in self.input_names
        }
        kwargs = {"external_data": False, "verbose": False, "optimize": True, **self.torch_kwargs}
        with quiet(), torch.no_grad(), stderr_to_log():
            try:
                program = torch.onnx.export(
                    self.adapter,
                    (),
                    kwargs={"batch": self.sample},
                    dynamic_shapes={"batch": shapes},
                    input_names=self.input_names,
                    output_names=self.output_names,
                    opset_version=opset,
                    dynamo=True,
                    **kwargs,
                )
            except TypeError as error:
                raise ConfigError(f"export argument rejected by torch.onnx.export: {first_line(error)}") from error
            except ImportError as error:
                raise ConfigError(
                    f"the dynamo exporter needs {error.name or 'onnxscript'}, which is not installed: "
                    "pip install onnxscript, or use exporter=torchscript with opset_version <= 20"
                ) from error
            except Exception as error:
                log.debug("dynamo exporter failure", exc_info=True)
                raise ExportError(f"dynamo exporter failed at opset {opset}: {dynamo_cause(error)}") from error
        if program is None:
            raise ExportError("dynamo exporter returned no program")
        try:
            program.save(str(path), external_data=True)
        except Exception as error:
            raise ExportError(f"dynamo exporter could not write its graph: {type(error).__name__}: "
                              f"{first_line(error)}") from error

    def opset_refusal(self, error: Exception, opset: int, path: Path) -> OpsetError:
        """Say which operator needs which opset, and find the lowest opset this model exports at."""
        match = _OP_SUPPORT.search(str(error))
        if match is None:  # no TorchScript conversion at any opset: only the dynamo exporter can help
            named = _OP_NAME.search(str(error))
            operator = named.group(1) if named else "an operator of this model"
            return OpsetError(
                f"opset_version={opset}: operator {operator} has no TorchScript conversion at any opset; "
                f"use opset_version >= {DYNAMO_LOWEST_OPSET} (dynamo exporter)"
            )
        operator, needed = match.group(1), int(match.group(3))
        lowest = None
        for candidate in range(max(needed, opset + 1), TORCHSCRIPT_HIGHEST_OPSET + 1):
            try:
                self.torchscript(candidate, path)
            except torch.onnx.errors.UnsupportedOperatorError:
                continue
            except Exception:
                break
            lowest = candidate
            break
        lowest_text = f"; the lowest opset that works for this model is {lowest}" if lowest else ""
        return OpsetError(f"opset_version={opset}: operator {operator} needs opset >= {needed}{lowest_text}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SOURCE = re.compile(r'File "([^"]+)", line (\d+)')
_DATA_DEPENDENT = ("GuardOnDataDependentSymNode", "data-dependent", "DataDependent")


def dynamo_cause(error: BaseException) -> str:
    """The real cause of a dynamo export failure, on one line: its type, first line and source line.

    torch.onnx wraps the cause in a generic "Failed to export the model with torch.export" opener
    with ANSI colours; the innermost exception says what went wrong, and the last source line
    it names outside torch is where.
    """
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = _ANSI.sub("", str(cause))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    where = [f"{Path(file).name}:{line}" for file, line in _SOURCE.findall(_ANSI.sub("", str(error)) + text)
             if f"{os.sep}torch{os.sep}" not in file]
    at = f" at {where[-1]}" if where else ""
    if any(marker in text or marker in type(cause).__name__ for marker in _DATA_DEPENDENT):
        reason = "the forward reads a tensor's value into Python (.item(), int(), a branch on data)"
        return f"{type(cause).__name__}{at}: {reason}: {first[:200]}"
    if "Constraints violated" in text:
        return (f"{type(cause).__name__}{at}: the forward fixes a dimension declared dynamic "
                "(e.g. reshape with a constant batch); fix the forward or pass dynamic_batch=False")
    return f"{type(cause).__name__}{at}: {first[:300]}"


@contextlib.contextmanager
def stderr_to_log(source: str = "torch.onnx (dynamo)", logger: logging.Logger = log) -> Iterator[None]:
    """torch.export prints the partial FX graph of a failed trace (thousands of lines) to stderr:
    keep it off the console, in the debug log (the job's export.log)."""
    lines: list[str] = []
    try:
        with stderr_captured(lines):
            yield
    finally:
        if lines:
            logger.debug("%s wrote to stderr:\n%s", source, "\n".join(lines))


@contextlib.contextmanager
def stderr_captured(lines: list[str]) -> Iterator[None]:
    """Point file descriptor 2 at a temporary file for the block; append what was written to ``lines``."""
    with tempfile.TemporaryFile() as capture:
        try:
            with _fd_redirected(2, sys.stderr, capture.fileno()):
                yield
        finally:
            capture.seek(0)
            lines.extend(capture.read().decode(errors="replace").strip().splitlines())


@contextlib.contextmanager
def quiet(logger_names: tuple[str, ...] = _CHATTY_LOGGERS) -> Iterator[None]:
    """Silence torch.onnx's deprecation, tracer and logger chatter; errors still propagate."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*ONNX export.*")
            warnings.filterwarnings("ignore", message=".*training mode.*")
            # dynamo's note that inputs share the one batch Dim we gave them: expected, not news.
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _stdout_fd_silenced() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null for the block.

    On an unsupported operator the TorchScript exporter prints its whole IR graph from C++,
    below Python's sys.stdout; our error already says what matters.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with _fd_redirected(1, sys.stdout, devnull):
            yield
    finally:
        os.close(devnull)


@contextlib.contextmanager
def _fd_redirected(fd: int, stream: TextIO, target: int) -> Iterator[None]:
    """Point file descriptor ``fd`` (what C code writes to, below Python's ``stream``) at ``target``."""
    stream.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # nothing open there to redirect
        yield
        return
    os.dup2(target, fd)
    try:
        yield
    finally:
        stream.flush()
        os.dup2(saved, fd)
        os.close(saved)
