"""Stage ``sample``: the example inputs the export traces with and verification is shaped like.

Example:
    >>> from getiaction_export.config.schemas import InputSampleSchema, TensorSpecSchema
    >>> spec = InputSampleSchema(name="random", inputs={"state": TensorSpecSchema(shape=[1, 8])})
    >>> sample = make_input_sample(spec, module=None)
    >>> tuple(sample["state"].shape), sample["state"].dtype
    ((1, 8), torch.float32)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from getiaction.errors import ConfigError, ExportError, MissingSampleError
from getiaction_export.config.schemas import InputSampleSchema, TensorSpecSchema, dotted_names
from getiaction_export.parity.gate import random_tensor

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
TENSOR_SPEC_KEYS = tuple(f.name for f in fields(TensorSpecSchema))


def make_input_sample(spec: InputSampleSchema, module: Any) -> dict[str, torch.Tensor]:
    """Build the sample the config asks for (``from_policy``, ``random`` or ``file``)."""
    if spec.name == "from_policy":
        sample = getattr(module, "sample_input", None)
        if sample is None:
            raise MissingSampleError(
                f"input_sample=from_policy: {type(module).__name__} has no sample_input; use input_sample=random "
                "with +input_sample.inputs.<name>.shape=[...], or input_sample=file with input_sample.path=..."
            )
        return {key: value.detach().clone() for key, value in sample.items()}
    if spec.name == "random":
        return random_sample(spec.inputs, spec.seed)
    return load_sample_file(spec.path)


def random_sample(inputs: Mapping[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Seeded random tensors from ``{name: {shape, dtype}}``; names may be dotted (``observation.state``).

    A spec may come as a plain mapping split at the dots of its name (:func:`dotted_names`).

    Example:
        >>> sample = random_sample({"observation": {"state": {"shape": [1, 6]}}}, seed=0)
        >>> {name: tuple(tensor.shape) for name, tensor in sample.items()}
        {'observation.state': (1, 6)}
    """
    if not inputs:
        raise ConfigError(
            "input_sample.inputs: empty; give each input, e.g. '+input_sample.inputs.state.shape=[1,8]' or "
            "'+input_sample.inputs={observation.state: {shape: [1,6]}}'"
        )
    generator = torch.Generator().manual_seed(seed)
    sample = {}
    for name, given in dotted_names(inputs, TENSOR_SPEC_KEYS).items():
        # OmegaConf may hand back a nested spec as a plain mapping; check its keys the same way.
        try:
            tensor_spec = given if isinstance(given, TensorSpecSchema) else TensorSpecSchema(**dict(given))
        except TypeError as error:
            raise ConfigError(f"input_sample.inputs.{name}: {error}; valid keys: {list(TENSOR_SPEC_KEYS)}") from None
        if tensor_spec.dtype not in DTYPES:
            raise ConfigError(f"input_sample.inputs.{name}.dtype: {tensor_spec.dtype!r} is not one of {sorted(DTYPES)}")
        if not tensor_spec.shape or any(n < 1 for n in tensor_spec.shape):
            raise ConfigError(f"input_sample.inputs.{name}.shape: {tensor_spec.shape} must be positive sizes")
        _check_range(name, tensor_spec)
        sample[name] = random_tensor(
            list(tensor_spec.shape), DTYPES[tensor_spec.dtype], generator, tensor_spec.low, tensor_spec.high
        )
    return sample


def _check_range(name: str, spec: TensorSpecSchema) -> None:
    """Integer inputs draw from [low, high]: both must fit the dtype (the default -1..1 does not fit uint8).

    Example:
        >>> _check_range("observation.images.top", TensorSpecSchema(shape=[1, 3, 8, 8], dtype="uint8"))
        Traceback (most recent call last):
        ...
        getiaction.errors.ConfigError: input_sample.inputs.observation.images.top: low..high -1.0..1.0 is not a \
range within uint8's 0..255; give both, e.g. {shape: [1, 3, 8, 8], dtype: uint8, low: 0, high: 255}
    """
    dtype = DTYPES[spec.dtype]
    if dtype.is_floating_point or dtype is torch.bool:
        return
    info = torch.iinfo(dtype)
    if spec.low < info.min or spec.high > info.max or spec.low > spec.high:
        example = f"{{shape: {spec.shape}, dtype: {spec.dtype}, low: {max(info.min, 0)}, high: {min(info.max, 255)}}}"
        raise ConfigError(
            f"input_sample.inputs.{name}: low..high {spec.low}..{spec.high} is not a range within {spec.dtype}'s "
            f"{info.min}..{info.max}; give both, e.g. {example}"
        )


def load_sample_file(path: str | None) -> dict[str, torch.Tensor]:
    """Named arrays from an ``.npz`` or a ``.pt`` dict of tensors (loaded with weights_only=True)."""
    if not path:
        raise ConfigError("input_sample.path: required for input_sample=file (an .npz or .pt file)")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"input_sample.path: {path} does not exist")
    try:
        if file.suffix == ".npz":
            with np.load(file, allow_pickle=False) as arrays:
                return {name: torch.from_numpy(np.ascontiguousarray(arrays[name])) for name in arrays.files}
        if file.suffix in (".pt", ".pth"):
            data = torch.load(file, map_location="cpu", weights_only=True)
            if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
                raise ConfigError(f"input_sample.path: {path} must hold a dict of name -> tensor")
            return {str(k): v for k, v in data.items()}
    except ConfigError:
        raise
    except Exception as error:
        if file.suffix == ".npz":
            raise ConfigError(
                f"input_sample.path: {path} is not a valid .npz archive of named arrays "
                "(write one with numpy.savez(path, state=..., ...))"
            ) from error
        reason = type(error).__name__
        raise ConfigError(f"input_sample.path: cannot read {path} as a dict of tensors: {reason}") from error
    raise ConfigError(f"input_sample.path: {path} must be an .npz or .pt file")


def check_finite(module: Any, call_style: str, sample: dict[str, torch.Tensor]) -> None:
    """Refuse a policy whose own outputs are NaN/Inf on the sample: no export of it could be verified."""
    from getiaction_export.parity.runtimes import torch_runner

    try:
        outputs = torch_runner(module, call_style)(sample)
    except Exception:  # the export stage reports a failing forward with the sample's details
        return
    for index, output in enumerate(outputs):
        if output.size and not np.isfinite(output).all():
            raise ExportError(
                f"the policy's forward returns NaN/Inf in output {index} on the input sample; "
                "refusing to export a model that cannot be verified"
            )
