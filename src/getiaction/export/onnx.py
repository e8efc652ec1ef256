"""Write one ONNX file from a module whose forward takes a dict of tensors — and check it.

Guarantees, each checked on the written file rather than trusted from the request:

* the saved opset equals the requested one (the dynamo exporter silently writes 18 when asked
  for less, so requests below 18 go to the TorchScript exporter, and an operator that needs a
  higher opset is reported with the lowest opset that works);
* inputs are exactly the sample keys the forward reads (unused keys are dropped with a warning);
* the batch axis is dynamic unless asked otherwise, and really is symbolic in the file;
* one self-contained file, ``onnx.checker`` full check, self-describing ``metadata_props``;
* no per-node source locations (absolute paths) in the file, so bytes don't depend on the checkout;
* the file appears under its final name only when all of the above passed.

Example:
    >>> import tempfile, pathlib, torch
    >>> from getiaction.policies import Dummy, DummyConfig
    >>> model = Dummy(config=DummyConfig(action_shape=(4,))).model
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "dummy.onnx"
    >>> result = export_onnx(model, path, {"state": torch.randn(1, 4)}, opset_version=14)
    >>> result.opset, result.exporter, result.input_names, result.output_names
    (14, 'torchscript', ['state'], ['action'])
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from getiaction.errors import ConfigError, ExportError, ForwardError, OpsetError
from getiaction.export.atomic import atomic_write_bytes, prepare_parent
from getiaction.export.options import (  # re-exported: torch-free home of the choices
    DEFAULT_OPSET,
    DYNAMO_LOWEST_OPSET,
    LOWEST_OPSET,
    TORCHSCRIPT_HIGHEST_OPSET,
    CallStyle,
    Exporter,
    highest_opset,
)
from getiaction.export.versions import package_versions

BATCH_AXIS_NAME = "batch"
DEFAULT_OUTPUT_NAME = "action"
TWO_GIGABYTES = 2**31

DynamicAxes = dict[str, dict[int, str]]


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (symbolic axes as names) and dtype of one graph input or output."""

    name: str
    shape: list[int | str]
    dtype: str


@dataclass(frozen=True)
class OnnxExportResult:
    """What :func:`export_onnx` wrote."""

    path: Path
    opset: int
    exporter: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    dynamic_axes: DynamicAxes = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_sample: Mapping[str, torch.Tensor],
    *,
    opset_version: int = DEFAULT_OPSET,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    dynamic_axes: Mapping[str, Any] | None = None,
    default_dynamic_axes: Mapping[str, Any] | None = None,
    exporter: Exporter | str = Exporter.AUTO,
    call_style: CallStyle | str = CallStyle.DICT,
    metadata: Mapping[str, str] | None = None,
    **torch_kwargs: Any,
) -> OnnxExportResult:
    """Export ``model`` to one verified ONNX file at ``path`` and describe what was written.

    Args:
        model: the module to export; its forward takes the sample dict (or its keys as kwargs).
        path: the ``.onnx`` file to write (overwritten atomically if it exists).
        input_sample: example inputs; the keys the forward reads become the graph's inputs.
        opset_version: the ONNX opset the file must have (checked on the written file).
        output_names: graph output names; default ``["action"]`` (or the keys of a dict output).
        dynamic_batch: make axis 0 of every input and output symbolic (``"batch"``).
        dynamic_axes: ``{name: {axis: dim_name}}`` (or ``{name: [axes]}``) added on top; every
            name must be an input or output.
        default_dynamic_axes: like ``dynamic_axes`` but from model defaults: names that are not
            inputs or outputs (e.g. after outputs were renamed) are dropped instead of refused.
        exporter: ``auto``, ``dynamo`` or ``torchscript``.
        call_style: ``dict`` (``forward(batch)``) or ``kwargs`` (``forward(**batch)``).
        metadata: extra ``metadata_props`` entries (e.g. the policy's class path and config).
        **torch_kwargs: passed on to ``torch.onnx.export`` (e.g. ``do_constant_folding``).
    """
    sample = _check_sample(input_sample)
    opset = _check_opset(opset_version)
    chosen = _choose_exporter(exporter, opset)
    style = _enum_value(CallStyle, call_style, "call_style")
    for reserved in ("input_names", "dynamic_shapes", "f", "args", "kwargs"):
        if reserved in torch_kwargs:
            raise ConfigError(
                f"{reserved}: set by getiaction (inputs are the input_sample keys); "
                "rename the sample keys or drop this argument"
            )
    path = Path(path)
    if path.suffix != ".onnx":
        raise ConfigError(f"path: {str(path)!r} must end in .onnx")
    prepare_parent(path)

    was_training = model.training
    model.eval()
    try:
        probe = _probe_forward(model, sample, style)
        input_names = probe.used_keys
        outputs = _output_names(output_names, probe.default_output_names)
        clash = sorted(set(input_names) & set(outputs))
        if clash:
            raise ConfigError(
                f"output_names: {clash} also name inputs; an ONNX graph needs distinct names, "
                "rename the output(s)"
            )
        axes = _dynamic_axes(
            input_names, outputs, sample, probe.outputs, dynamic_batch, dynamic_axes, default_dynamic_axes
        )
        trace_sample = _trace_sample({k: sample[k] for k in input_names}, axes)
        adapter = _Adapter(model, input_names, style, probe.output_keys).eval()
        job = _ExportJob(adapter, trace_sample, input_names, outputs, axes, torch_kwargs)
        proto = job.run(chosen, opset)
    finally:
        model.train(was_training)

    _strip_source_locations(proto)
    saved = saved_opset(proto)
    if saved != opset:
        raise OpsetError(
            f"opset_version={opset}: the {chosen} exporter wrote opset {saved}; no file was kept"
        )
    _check_dynamic_axes(proto, axes)
    inputs_spec = _specs(proto.graph.input, sample)
    outputs_spec = _specs(proto.graph.output, dict(zip(outputs, probe.outputs, strict=True)))
    props = {
        "getiaction.exporter": chosen.value,
        "getiaction.opset": str(opset),
        "getiaction.inputs": json.dumps([spec.__dict__ for spec in inputs_spec]),
        "getiaction.outputs": json.dumps([spec.__dict__ for spec in outputs_spec]),
        **{f"versions.{k}": v for k, v in package_versions().items() if k in ("getiaction", "torch", "onnx")},
        **dict(metadata or {}),
    }
    onnx.helper.set_model_props(proto, props)
    data = proto.SerializeToString()
    if len(data) >= TWO_GIGABYTES:
        raise ExportError(f"{path}: the model is larger than 2 GB, which one .onnx file cannot hold")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx.checker rejected the exported graph: {_first_line(error)}") from error
    atomic_write_bytes(path, data)
    return OnnxExportResult(path, saved, chosen.value, inputs_spec, outputs_spec, axes)


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def _enum_value(enum_type: type[StrEnum], value: Any, key: str) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not valid; use one of {[e.value for e in enum_type]}") from None


def _check_sample(sample: Any) -> dict[str, torch.Tensor]:
    if not isinstance(sample, Mapping) or not sample:
        raise ConfigError(
            f"input_sample: expected a non-empty dict of name -> torch.Tensor, got {type(sample).__name__}"
        )
    for key, value in sample.items():
        if not isinstance(key, str):
            raise ConfigError(f"input_sample: key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"input_sample[{key!r}]: expected a torch.Tensor, got {type(value).__name__}")
        if value.dtype == torch.float64:
            raise ConfigError(
                f"input_sample[{key!r}]: float64 inputs are not fed by deploy runtimes; use float32"
            )
    return dict(sample)


def _check_opset(opset: Any) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ConfigError(f"opset_version: expected an integer, got {opset!r}")
    top = highest_opset()
    if not LOWEST_OPSET <= opset <= top:
        raise OpsetError(
            f"opset_version={opset} is not supported; the installed onnx "
            f"{package_versions()['onnx']} and torch support {LOWEST_OPSET}..{top}"
        )
    return opset


def _choose_exporter(exporter: Any, opset: int) -> Exporter:
    chosen = _enum_value(Exporter, exporter, "exporter")
    if chosen is Exporter.AUTO:
        return Exporter.DYNAMO if opset >= DYNAMO_LOWEST_OPSET else Exporter.TORCHSCRIPT
    if chosen is Exporter.DYNAMO and opset < DYNAMO_LOWEST_OPSET:
        raise OpsetError(
            f"opset_version={opset}: the dynamo exporter writes opset {DYNAMO_LOWEST_OPSET} or higher; "
            "use exporter=torchscript or exporter=auto for lower opsets"
        )
    if chosen is Exporter.TORCHSCRIPT and opset > TORCHSCRIPT_HIGHEST_OPSET:
        raise OpsetError(
            f"opset_version={opset}: the torchscript exporter supports up to {TORCHSCRIPT_HIGHEST_OPSET}; "
            "use exporter=dynamo or exporter=auto"
        )
    return chosen


def _output_names(requested: Sequence[str] | None, default: list[str]) -> list[str]:
    if requested is None:
        return list(default)
    if isinstance(requested, str) or not all(isinstance(name, str) and name for name in requested):
        raise ConfigError(f"output_names: expected a list of non-empty strings, got {requested!r}")
    names = list(requested)
    if len(names) != len(default):
        raise ConfigError(
            f"output_names: {names} has {len(names)} name(s) but the forward returns {len(default)} output(s)"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"output_names: {names} contains duplicates")
    return names


# --------------------------------------------------------------------------------------------
# the eager probe: which keys does forward read, what does it return?
# --------------------------------------------------------------------------------------------
class _TrackingDict(dict[str, torch.Tensor]):
    """A dict that remembers which keys were read (iterating counts as reading all)."""

    def __init__(self, data: Mapping[str, torch.Tensor]) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def _all(self) -> None:
        self.read.update(self.keys())

    def __iter__(self) -> Iterator[str]:
        self._all()
        return super().__iter__()

    def items(self) -> Any:
        self._all()
        return super().items()

    def values(self) -> Any:
        self._all()
        return super().values()


@dataclass
class _Probe:
    used_keys: list[str]
    outputs: list[torch.Tensor]
    output_keys: list[str] | None
    default_output_names: list[str]


def call_with_batch(model: nn.Module, batch: Mapping[str, torch.Tensor], call_style: CallStyle | str) -> Any:
    """Call ``model`` the way ``call_style`` says: ``model(batch)`` or ``model(**batch)``."""
    return model(**batch) if CallStyle(call_style) is CallStyle.KWARGS else model(batch)


def output_tensors(output: Any, keys: Sequence[str] | None = None) -> tuple[torch.Tensor, ...]:
    """A forward's result as a tuple of tensors, in graph-output order (dict: ``keys`` or insertion order)."""
    if isinstance(output, torch.Tensor):
        return (output,)
    if isinstance(output, Mapping):
        return tuple(output[key] for key in (keys or list(output)))
    return tuple(output)


def describe_sample(sample: Mapping[str, torch.Tensor]) -> str:
    """``state[1, 7] float32, images.top[1, 3, 64, 64] float32``."""
    return ", ".join(f"{k}{list(v.shape)} {str(v.dtype).removeprefix('torch.')}" for k, v in sample.items())


def _probe_forward(model: nn.Module, sample: dict[str, torch.Tensor], style: CallStyle) -> _Probe:
    tracked = _TrackingDict(sample)
    described = describe_sample(sample)
    try:
        with torch.no_grad():
            if style is CallStyle.KWARGS:
                output = model(**sample)
                tracked.read.update(sample)
            else:
                output = model(tracked)
    except KeyError as error:
        raise ConfigError(
            f"input_sample: the forward reads key {error.args[0]!r}, which the sample lacks "
            f"(sample has {sorted(sample)})"
        ) from error
    except TypeError as error:
        if style is CallStyle.KWARGS:
            raise ConfigError(f"input_sample: the forward rejects the sample's keys: {_first_line(error)}") from error
        raise ForwardError(f"forward failed on the input sample ({described}): {_first_line(error)}") from error
    except Exception as error:
        raise ForwardError(
            f"forward failed on the input sample ({described}): {type(error).__name__}: {_first_line(error)}"
        ) from error

    if isinstance(output, torch.Tensor):
        outputs, keys, names = [output], None, [DEFAULT_OUTPUT_NAME]
    elif isinstance(output, Mapping) and output and all(isinstance(v, torch.Tensor) for v in output.values()):
        keys = [str(k) for k in output]
        outputs, names = list(output.values()), list(keys)
    elif isinstance(output, list | tuple) and output and all(isinstance(v, torch.Tensor) for v in output):
        outputs, keys = list(output), None
        names = [DEFAULT_OUTPUT_NAME] + [f"output_{i}" for i in range(1, len(output))]
    else:
        raise ExportError(
            f"forward must return a tensor, a tuple of tensors or a dict of tensors, got {type(output).__name__}"
        )
    used = [key for key in sample if key in tracked.read]
    unused = [key for key in sample if key not in tracked.read]
    if not used:
        raise ConfigError(f"input_sample: the forward reads none of the sample keys {sorted(sample)}")
    if unused:
        warnings.warn(
            f"input_sample keys {unused} are not read by the forward; they are left out of the ONNX inputs",
            UserWarning,
            stacklevel=3,
        )
    return _Probe(used, outputs, keys, names)


class _Adapter(nn.Module):
    """Gives the exporters one calling convention: ``forward(batch)`` returning a tuple."""

    def __init__(self, model: nn.Module, names: list[str], style: CallStyle, output_keys: list[str] | None):
        super().__init__()
        self.model = model
        self.names = names
        self.style = style
        self.output_keys = output_keys

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        output = call_with_batch(self.model, {name: batch[name] for name in self.names}, self.style)
        return output_tensors(output, self.output_keys)


# --------------------------------------------------------------------------------------------
# dynamic axes
# --------------------------------------------------------------------------------------------
def _normalise_axes(name: str, axes: Any, key: str) -> dict[int, str]:
    if isinstance(axes, Mapping):
        items = list(axes.items())
    elif isinstance(axes, list | tuple):
        items = [(axis, f"{name}_dim{axis}") for axis in axes]
    else:
        raise ConfigError(f"{key}[{name!r}]: expected {{axis: name}} or [axes], got {axes!r}")
    normalised = {}
    for axis, dim_name in items:
        if isinstance(axis, bool) or not isinstance(axis, int) or not isinstance(dim_name, str):
            raise ConfigError(f"{key}[{name!r}]: expected int axes and str names, got {axis!r}: {dim_name!r}")
        normalised[axis] = dim_name
    return normalised


def _dynamic_axes(
    input_names: list[str],
    output_names: list[str],
    sample: Mapping[str, torch.Tensor],
    outputs: list[torch.Tensor],
    dynamic_batch: bool,
    explicit: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None,
) -> DynamicAxes:
    names = input_names + output_names
    ranks = {name: sample[name].dim() for name in input_names}
    ranks.update({name: tensor.dim() for name, tensor in zip(output_names, outputs, strict=True)})
    axes: DynamicAxes = {}
    if dynamic_batch:
        for name in names:
            if ranks[name] == 0:
                raise ConfigError(
                    f"dynamic_batch: {name!r} is a scalar and has no batch axis; pass dynamic_batch=False"
                )
            axes[name] = {0: BATCH_AXIS_NAME}
    for key, given, strict in (("default dynamic_axes", defaults, False), ("dynamic_axes", explicit, True)):
        for name, name_axes in (given or {}).items():
            if name not in names:
                if strict:
                    raise ConfigError(f"dynamic_axes: {name!r} is neither an input nor an output; valid: {names}")
                continue
            for axis, dim_name in _normalise_axes(name, name_axes, key).items():
                if not -ranks[name] <= axis < ranks[name]:
                    raise ConfigError(f"dynamic_axes[{name!r}]: axis {axis} is out of range for rank {ranks[name]}")
                if not strict and not dynamic_batch and axis % ranks[name] == 0:
                    continue  # dynamic_batch=False opts out of the model's batch-axis defaults too
                axes.setdefault(name, {})[axis % ranks[name]] = dim_name
    return axes


def _trace_sample(sample: dict[str, torch.Tensor], axes: DynamicAxes) -> dict[str, torch.Tensor]:
    """Grow every dynamic size-1 axis to 2: torch.export fixes size-1 dims to constants."""
    traced = {}
    for name, tensor in sample.items():
        for axis in axes.get(name, {}):
            if tensor.shape[axis] == 1:
                tensor = torch.cat([tensor, tensor], dim=axis)
        traced[name] = tensor
    return traced


def _check_dynamic_axes(proto: onnx.ModelProto, axes: DynamicAxes) -> None:
    values = {v.name: v for v in list(proto.graph.input) + list(proto.graph.output)}
    inferred = _inferred_output_dims(proto)
    for name, name_axes in axes.items():
        dims = values[name].type.tensor_type.shape.dim
        for axis in (axis for axis in name_axes if axis < len(dims)):
            # The TorchScript exporter writes the declared dim_param on an output even when the
            # graph computes a constant there, so also ask shape inference what the graph computes.
            size = inferred.get(name, {}).get(axis) or dims[axis].dim_value
            if size or not dims[axis].dim_param:
                raise ExportError(
                    f"dynamic axis {axis} of {name!r} came out static (size {size}): the "
                    "forward fixes that size (e.g. a reshape with a constant); fix it or pass dynamic_batch=False"
                )


def _inferred_output_dims(proto: onnx.ModelProto) -> dict[str, dict[int, int]]:
    """``{output: {axis: size}}`` for output axes that ONNX shape inference finds constant."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for output in probe.graph.output:
        output.type.tensor_type.ClearField("shape")
    try:
        probe = onnx.shape_inference.infer_shapes(probe, data_prop=True)
    except Exception:  # inference is a second opinion only; the declared shapes were checked
        return {}
    return {
        output.name: {
            axis: dim.dim_value for axis, dim in enumerate(output.type.tensor_type.shape.dim) if dim.dim_value
        }
        for output in probe.graph.output
    }


# --------------------------------------------------------------------------------------------
# running the exporters
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _stdout_fd_silenced() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null for the block.

    On an unsupported operator the TorchScript exporter prints its whole IR graph from C++,
    below Python's sys.stdout; our error already says what matters.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


_CHATTY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir", "torch.export", "torch._dynamo")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.onnx's deprecation, tracer and logger chatter; errors still propagate."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
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


@dataclass
class _ExportJob:
    """What both torch.onnx exporters need, so each is called with just an opset."""

    adapter: nn.Module
    sample: dict[str, torch.Tensor]
    input_names: list[str]
    output_names: list[str]
    axes: DynamicAxes
    torch_kwargs: dict[str, Any]

    def run(self, exporter: Exporter, opset: int) -> onnx.ModelProto:
        if exporter is Exporter.TORCHSCRIPT:
            try:
                return self.torchscript(opset)
            except torch.onnx.errors.UnsupportedOperatorError as error:
                raise self.opset_refusal(error, opset) from error
        return self.dynamo(opset)

    def torchscript(self, opset: int) -> onnx.ModelProto:
        buffer = io.BytesIO()
        with _quiet(), _stdout_fd_silenced(), torch.no_grad():
            try:
                torch.onnx.export(
                    self.adapter,
                    (self.sample, {}),  # the trailing {} keeps the dict positional instead of kwargs
                    buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
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
                raise ConfigError(f"export argument rejected by torch.onnx.export: {_first_line(error)}") from error
            except Exception as error:
                raise ExportError(
                    f"torchscript exporter failed at opset {opset}: {type(error).__name__}: {_first_line(error)}"
                ) from error
        return onnx.load_from_string(buffer.getvalue())

    def dynamo(self, opset: int) -> onnx.ModelProto:
        dims: dict[str, Any] = {}
        shapes = {
            name: {axis: dims.setdefault(dim, torch.export.Dim(dim)) for axis, dim in self.axes.get(name, {}).items()}
            for name in self.input_names
        }
        kwargs = {"external_data": False, "verbose": False, "optimize": True, **self.torch_kwargs}
        with _quiet(), torch.no_grad():
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
                raise ConfigError(f"export argument rejected by torch.onnx.export: {_first_line(error)}") from error
            except ImportError as error:
                raise ConfigError(
                    f"the dynamo exporter needs {error.name or 'onnxscript'}, which is not installed: "
                    "pip install onnxscript, or use exporter=torchscript with opset_version <= 20"
                ) from error
            except Exception as error:
                message = _first_line(error)
                if "Constraints violated" in str(error) or "specializ" in str(error):
                    message = (
                        "the forward fixes a dimension declared dynamic (e.g. reshape with a constant batch); "
                        "fix the forward or pass dynamic_batch=False"
                    )
                raise ExportError(f"dynamo exporter failed at opset {opset}: {message}") from error
        if program is None:
            raise ExportError("dynamo exporter returned no program")
        return program.model_proto

    def opset_refusal(self, error: Exception, opset: int) -> OpsetError:
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
                self.torchscript(candidate)
            except torch.onnx.errors.UnsupportedOperatorError:
                continue
            except Exception:
                break
            lowest = candidate
            break
        lowest_text = f"; the lowest opset that works for this model is {lowest}" if lowest else ""
        return OpsetError(f"opset_version={opset}: operator {operator} needs opset >= {needed}{lowest_text}")


_OP_NAME = re.compile(r"operator '([^']+)'")
_OP_SUPPORT = re.compile(r"operator '([^']+)' to ONNX opset version (\d+).*?added in version (\d+)", re.S)


# --------------------------------------------------------------------------------------------
# reading the file back
# --------------------------------------------------------------------------------------------
def saved_opset(proto: onnx.ModelProto) -> int:
    """The default-domain opset a model declares."""
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ExportError("the exported model declares no default-domain opset")


def _strip_source_locations(proto: onnx.ModelProto) -> None:
    """Drop per-node metadata and doc strings (source paths, line numbers) for reproducible bytes."""

    def strip_graph(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    strip_graph(attribute.g)
                for sub in attribute.graphs:
                    strip_graph(sub)
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            del value.metadata_props[:]
            value.doc_string = ""
        for initializer in graph.initializer:
            del initializer.metadata_props[:]
        del graph.metadata_props[:]
        graph.doc_string = ""

    strip_graph(proto.graph)
    for function in proto.functions:
        for node in function.node:
            del node.metadata_props[:]
            node.doc_string = ""
        del function.metadata_props[:]
    proto.doc_string = ""


def _specs(values: Any, tensors: Mapping[str, torch.Tensor]) -> list[TensorSpec]:
    specs = []
    for value in values:
        dims = value.type.tensor_type.shape.dim
        shape: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]
        tensor = tensors.get(value.name)
        dtype = str(tensor.dtype).removeprefix("torch.") if tensor is not None else "unknown"
        specs.append(TensorSpec(value.name, shape, dtype))
    return specs


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
