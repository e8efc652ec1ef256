"""Check :func:`~getiaction.export.onnx.export_onnx`'s arguments before anything is traced.

Each check raises a :class:`~getiaction.errors.ConfigError` (or :class:`~getiaction.errors.OpsetError`)
that names the argument at fault and what would be valid, so a bad request fails in
milliseconds instead of after a trace. Dynamic axes are normalised here to one shape,
:data:`DynamicAxes` (``{name: {axis: dim_name}}``), which the exporters and the read-back use.

Example:
    >>> import torch
    >>> choose_exporter("auto", 14), choose_exporter("auto", 18)
    (<Exporter.TORCHSCRIPT: 'torchscript'>, <Exporter.DYNAMO: 'dynamo'>)
    >>> sample = {"state": torch.zeros(1, 4)}
    >>> resolve_dynamic_axes(["state"], ["action"], sample, [torch.zeros(1, 2)], True, {"state": [1]}, None)
    {'state': {0: 'batch', 1: 'state_dim1'}, 'action': {0: 'batch'}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import torch

from getiaction.errors import ConfigError, OpsetError
from getiaction.export.options import (
    DYNAMO_LOWEST_OPSET,
    LOWEST_OPSET,
    TORCHSCRIPT_HIGHEST_OPSET,
    Exporter,
    highest_opset,
)
from getiaction.export.versions import package_versions

BATCH_AXIS_NAME = "batch"
RESERVED_TORCH_KWARGS = ("input_names", "dynamic_shapes", "f", "args", "kwargs")
"""``torch.onnx.export`` arguments export_onnx sets itself (inputs are the sample's keys)."""

DynamicAxes = dict[str, dict[int, str]]


def enum_value(enum_type: type[StrEnum], value: Any, key: str) -> Any:
    """``enum_type(value)``, or a ConfigError for ``key`` that lists the valid values."""
    try:
        return enum_type(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not valid; use one of {[e.value for e in enum_type]}") from None


def check_sample(sample: Any) -> dict[str, torch.Tensor]:
    """A non-empty ``{str: Tensor}`` copy of ``sample``; float64 is refused (deploy runtimes feed float32)."""
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
            raise ConfigError(f"input_sample[{key!r}]: float64 inputs are not fed by deploy runtimes; use float32")
    return dict(sample)


def check_opset(opset: Any) -> int:
    """``opset`` if it is an int the installed onnx and torch can write."""
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ConfigError(f"opset_version: expected an integer, got {opset!r}")
    top = highest_opset()
    if not LOWEST_OPSET <= opset <= top:
        raise OpsetError(
            f"opset_version={opset} is not supported; the installed onnx "
            f"{package_versions()['onnx']} and torch support {LOWEST_OPSET}..{top}"
        )
    return opset


def choose_exporter(exporter: Any, opset: int, preferred: Any = None) -> Exporter:
    """Resolve ``auto`` (the model's ``preferred`` exporter where it can write ``opset``, else by opset); refuse an
    exporter that cannot write ``opset``.

    >>> choose_exporter("auto", 18, preferred="torchscript"), choose_exporter("dynamo", 18, preferred="torchscript")
    (<Exporter.TORCHSCRIPT: 'torchscript'>, <Exporter.DYNAMO: 'dynamo'>)
    """
    chosen = enum_value(Exporter, exporter, "exporter")
    if chosen is Exporter.AUTO:
        wanted = Exporter(preferred) if preferred in {e.value for e in Exporter} - {"auto"} else None
        if wanted is Exporter.TORCHSCRIPT and opset <= TORCHSCRIPT_HIGHEST_OPSET:
            return wanted
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


def check_torch_kwargs(torch_kwargs: Mapping[str, Any]) -> None:
    """Refuse the ``torch.onnx.export`` arguments that export_onnx owns."""
    for reserved in RESERVED_TORCH_KWARGS:
        if reserved in torch_kwargs:
            raise ConfigError(
                f"{reserved}: set by getiaction (inputs are the input_sample keys); "
                "rename the sample keys or drop this argument"
            )


def graph_output_names(requested: Sequence[str] | None, default: list[str], input_names: list[str]) -> list[str]:
    """The graph's output names: ``requested`` (one per forward output, distinct) or ``default``."""
    names = list(default) if requested is None else _requested_output_names(requested, default)
    clash = sorted(set(input_names) & set(names))
    if clash:
        raise ConfigError(
            f"output_names: {clash} also name inputs; an ONNX graph needs distinct names, rename the output(s)"
        )
    return names


def _requested_output_names(requested: Sequence[str], default: list[str]) -> list[str]:
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


def resolve_dynamic_axes(
    input_names: list[str],
    output_names: list[str],
    sample: Mapping[str, torch.Tensor],
    outputs: list[torch.Tensor],
    dynamic_batch: bool,
    explicit: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None,
) -> DynamicAxes:
    """The batch axis (if ``dynamic_batch``), then the model's ``defaults``, then the caller's ``explicit`` axes.

    A default axis on a name that is no input or output (e.g. after outputs were renamed) is
    dropped; an explicit one is refused.
    """
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
