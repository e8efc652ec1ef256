"""Call a model's forward the way an export does, and probe it once, eagerly, before tracing.

The probe answers what the trace needs to know and reports it in the caller's terms: which
sample keys the forward reads (they become the graph's inputs; the others are dropped with a
warning), and what it returns (a tensor, a tuple or a dict of tensors, which name the outputs).
A forward that fails here fails as a :class:`~getiaction.errors.ForwardError` on the sample,
not as a tracer error.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def forward(self, batch):
    ...         return {"action": batch["state"] * 2}
    >>> probe = probe_forward(Net(), {"state": torch.ones(1, 3)}, CallStyle.DICT)
    >>> probe.used_keys, probe.output_keys, probe.default_output_names
    (['state'], ['action'], ['action'])
    >>> describe_sample({"state": torch.ones(1, 3)})
    'state[1, 3] float32'
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from getiaction.errors import ConfigError, ExportError, ForwardError, first_line
from getiaction.export.options import CallStyle

DEFAULT_OUTPUT_NAME = "action"


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
class Probe:
    """What one eager forward on the sample showed."""

    used_keys: list[str]
    """The sample keys the forward read, in sample order: the graph's inputs."""
    outputs: list[torch.Tensor]
    output_keys: list[str] | None
    """The keys of a dict output (the order its tensors become graph outputs), else None."""
    default_output_names: list[str]


def probe_forward(model: nn.Module, sample: dict[str, torch.Tensor], style: CallStyle) -> Probe:
    """Run the forward once on ``sample`` (no grad) and record the keys it reads and what it returns."""
    tracked = _TrackingDict(sample)
    output = _call_on_sample(model, sample, tracked, style)
    outputs, keys, names = _split_outputs(output)
    used = [key for key in sample if key in tracked.read]
    unused = [key for key in sample if key not in tracked.read]
    if not used:
        raise ConfigError(f"input_sample: the forward reads none of the sample keys {sorted(sample)}")
    if unused:
        warnings.warn(
            f"input_sample keys {unused} are not read by the forward; they are left out of the ONNX inputs",
            UserWarning,
            stacklevel=4,  # the caller of export_onnx (-> _plan -> probe_forward)
        )
    return Probe(used, outputs, keys, names)


def _call_on_sample(model: nn.Module, sample: dict[str, torch.Tensor], tracked: _TrackingDict, style: CallStyle) -> Any:
    """The forward's output; its failures as errors that name the sample (KeyError: a missing key)."""
    described = describe_sample(sample)
    try:
        with torch.no_grad():
            if style is CallStyle.KWARGS:
                output = model(**sample)
                tracked.read.update(sample)  # keyword arguments cannot be tracked: all count as read
            else:
                output = model(tracked)
    except KeyError as error:
        raise ConfigError(
            f"input_sample: the forward reads key {error.args[0]!r}, which the sample lacks "
            f"(sample has {sorted(sample)})"
        ) from error
    except TypeError as error:
        if style is CallStyle.KWARGS:
            raise ConfigError(f"input_sample: the forward rejects the sample's keys: {first_line(error)}") from error
        raise ForwardError(f"forward failed on the input sample ({described}): {first_line(error)}") from error
    except Exception as error:
        raise ForwardError(
            f"forward failed on the input sample ({described}): {type(error).__name__}: {first_line(error)}"
        ) from error
    return output


def _split_outputs(output: Any) -> tuple[list[torch.Tensor], list[str] | None, list[str]]:
    """``(tensors, dict keys or None, default output names)`` of a tensor, tuple or dict output."""
    if isinstance(output, torch.Tensor):
        return [output], None, [DEFAULT_OUTPUT_NAME]
    if isinstance(output, Mapping) and output and all(isinstance(v, torch.Tensor) for v in output.values()):
        keys = [str(k) for k in output]
        return list(output.values()), keys, list(keys)
    if isinstance(output, list | tuple) and output and all(isinstance(v, torch.Tensor) for v in output):
        return list(output), None, [DEFAULT_OUTPUT_NAME] + [f"output_{i}" for i in range(1, len(output))]
    raise ExportError(
        f"forward must return a tensor, a tuple of tensors or a dict of tensors, got {type(output).__name__}"
    )


class Adapter(nn.Module):
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
