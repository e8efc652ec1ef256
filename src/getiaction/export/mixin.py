"""The ``Export`` mixin: every policy gets ``to_torch``, ``to_onnx``, ``to_openvino``, ``to_executorch`` and ``export``.

The mixin only gathers defaults from the policy and dispatches; each format's module writes its
one artifact.

Example:
    >>> import tempfile, pathlib
    >>> from getiaction.policies import Dummy, DummyConfig
    >>> policy = Dummy(config=DummyConfig(action_shape=(7,)))
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> policy.to_torch(folder / "checkpoint.pt").name
    'checkpoint.pt'
    >>> policy.to_onnx(folder / "model_14.onnx", opset_version=14, output_names=["predictions"]).output_names
    ['predictions']
    >>> policy.to_onnx(folder / "half.onnx", opset_version=17, precision="fp16").path.name
    'half.onnx'
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from getiaction.errors import ConfigError, MissingSampleError
from getiaction.export.atomic import atomic_path
from getiaction.export.onnx import OnnxExportResult, export_onnx
from getiaction.export.options import INT8_ONNX_REFUSAL
from getiaction.export.serialization import to_yaml
from getiaction.export.torch import class_path_of, save_checkpoint
from getiaction.export.transforms import Precision, convert_to_fp16, precision_of

if TYPE_CHECKING:
    from getiaction.export.executorch import ExecutorchExportResult
    from getiaction.export.openvino import OpenVINOExportResult


class ExportFormat(StrEnum):
    """The artifact formats a policy can be exported to."""

    TORCH = "torch"
    ONNX = "onnx"
    OPENVINO = "openvino"
    EXECUTORCH = "executorch"


class Export:
    """Mixin for policies (``class MyPolicy(Export, Policy)``) that adds the export methods.

    The policy's inner ``self.model`` may define ``sample_input`` (dict of tensors),
    ``extra_export_args`` (``{"onnx": {...}}`` defaults for ``to_onnx``) and ``config``.
    """

    def _export_module(self) -> nn.Module:
        model = getattr(self, "model", None)
        if isinstance(model, nn.Module):
            return model
        if isinstance(self, nn.Module):
            return self
        raise ConfigError(f"{type(self).__name__}: has no 'model' module to export")

    def _export_config(self) -> Any:
        return getattr(self._export_module(), "config", None) or {}

    def to_torch(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint (weights + YAML config + header) that :func:`load_policy` rebuilds.

        The file loads with ``torch.load(path, weights_only=True)`` and is written atomically;
        an existing file is replaced the way ``torch.save`` would.
        """
        # A policy saves itself (load_policy rebuilds its class); a plain host saves the module it exports.
        module = self if isinstance(self, nn.Module) else self._export_module()
        return save_checkpoint(module, path, self._export_config())

    def to_onnx(
        self,
        path: str | os.PathLike[str],
        input_sample: Mapping[str, torch.Tensor] | None = None,
        *,
        precision: Precision | str = Precision.FP32,
        **export_kwargs: Any,
    ) -> OnnxExportResult:
        """Export to one ONNX file whose opset, inputs and dynamic batch are checked on the file.

        Defaults: ``input_sample`` from ``model.sample_input``; export arguments from
        ``model.extra_export_args["onnx"]`` with ``export_kwargs`` winning; opset 18; dynamic
        batch on; output ``["action"]``. See :func:`getiaction.export.onnx.export_onnx`.
        ``precision="fp16"`` stores weights and arithmetic in float16 (inputs and outputs stay
        float32) and refuses a model whose outputs overflow float16 on the sample; see
        :func:`getiaction.export.transforms.convert_to_fp16`.
        """
        if precision_of(precision) is Precision.INT8:
            raise ConfigError(INT8_ONNX_REFUSAL)
        model, sample, kwargs = self._onnx_arguments(input_sample, export_kwargs)
        if precision_of(precision) is Precision.FP32:
            return export_onnx(model, path, sample, **kwargs)
        with atomic_path(path) as temp:  # the float32 graph never appears under the final name
            exported = export_onnx(model, temp, sample, **kwargs)
            convert_to_fp16(temp, temp, sample)
        return dataclasses.replace(exported, path=Path(path))

    def to_openvino(
        self,
        path: str | os.PathLike[str],
        input_sample: Mapping[str, torch.Tensor] | None = None,
        *,
        compress_to_fp16: bool = False,
        **export_kwargs: Any,
    ) -> OpenVINOExportResult:
        """Export to an OpenVINO IR: ``path`` (``.xml``) and its weights beside it (``.bin``).

        The policy is exported to ONNX first (same defaults and ``export_kwargs`` as
        :meth:`to_onnx`), then converted; ``compress_to_fp16=True`` stores float16 weights.
        Needs the ``[openvino]`` extra. See :mod:`getiaction.export.openvino`.
        """
        from getiaction.export.openvino import export_openvino

        model, sample, kwargs = self._onnx_arguments(input_sample, export_kwargs)
        return export_openvino(model, path, sample, compress_to_fp16=compress_to_fp16, **kwargs)

    def to_executorch(
        self,
        path: str | os.PathLike[str],
        input_sample: Mapping[str, torch.Tensor] | None = None,
        **export_kwargs: Any,
    ) -> ExecutorchExportResult:
        """Export to an ExecuTorch program (``.pte``, XNNPACK delegate) that accepts batch 1..``max_batch``.

        Defaults: ``input_sample`` from ``model.sample_input``; arguments from
        ``model.extra_export_args["executorch"]`` with ``export_kwargs`` winning; dynamic batch up
        to 64. The batch range is read from the written program and run; a program that accepts
        less is an error. Needs the ``[executorch]`` extra. See :mod:`getiaction.export.executorch`.
        """
        from getiaction.export.executorch import export_executorch

        model = self._export_module()
        sample = self._sample(model, input_sample, "to_executorch")
        defaults = copy.deepcopy(dict(getattr(model, "extra_export_args", {}).get("executorch", {})))
        kwargs = {**defaults, **export_kwargs}
        metadata = {"policy.class_path": class_path_of(self), "policy.config": to_yaml(self._export_config())}
        metadata.update(kwargs.pop("metadata", None) or {})
        return export_executorch(model, path, sample, metadata=metadata, **kwargs)

    def _sample(
        self, model: nn.Module, input_sample: Mapping[str, torch.Tensor] | None, method: str
    ) -> Mapping[str, torch.Tensor]:
        """``input_sample``, else the model's ``sample_input``, else a :class:`MissingSampleError`."""
        sample = input_sample if input_sample is not None else getattr(model, "sample_input", None)
        if sample is None:
            raise MissingSampleError(
                f"input_sample: {type(self).__name__} has no sample_input; pass "
                f"input_sample={{'state': torch.randn(1, 8), ...}} to {method}"
            )
        return sample

    def _onnx_arguments(
        self, input_sample: Mapping[str, torch.Tensor] | None, export_kwargs: dict[str, Any]
    ) -> tuple[nn.Module, Mapping[str, torch.Tensor], dict[str, Any]]:
        """The module, its sample and the ONNX export arguments: the model's defaults, then the caller's."""
        model = self._export_module()
        sample = self._sample(model, input_sample, "to_onnx")
        defaults = copy.deepcopy(dict(getattr(model, "extra_export_args", {}).get("onnx", {})))
        kwargs = {**defaults, **export_kwargs}
        kwargs["default_dynamic_axes"] = _follow_renames(
            defaults.pop("dynamic_axes", None) or {},
            defaults.get("output_names"),
            export_kwargs.get("output_names"),
        )
        kwargs["dynamic_axes"] = export_kwargs.get("dynamic_axes")
        if "dynamo" in kwargs:  # torch.onnx's own switch, spelled our way
            kwargs.setdefault("exporter", "dynamo" if kwargs.pop("dynamo") else "torchscript")
        metadata = {"policy.class_path": class_path_of(self), "policy.config": to_yaml(self._export_config())}
        metadata.update(kwargs.pop("metadata", None) or {})
        return model, sample, {**kwargs, "metadata": metadata}

    def export(self, path: str | os.PathLike[str], export_format: ExportFormat | str, **kwargs: Any) -> Any:
        """Export to ``export_format`` (``"torch"``, ``"onnx"``, ``"openvino"`` or ``"executorch"``)."""
        try:
            chosen = ExportFormat(export_format)
        except ValueError:
            valid = [f.value for f in ExportFormat]
            raise ConfigError(f"export_format: {export_format!r} is not valid; use one of {valid}") from None
        if chosen is ExportFormat.TORCH:
            return self.to_torch(path)
        if chosen is ExportFormat.OPENVINO:
            return self.to_openvino(path, **kwargs)
        if chosen is ExportFormat.EXECUTORCH:
            return self.to_executorch(path, **kwargs)
        return self.to_onnx(path, **kwargs)


def _follow_renames(
    axes: Mapping[str, Any], default_names: list[str] | None, new_names: list[str] | None
) -> dict[str, Any]:
    """Re-key the model's dynamic axes when the caller renames outputs (position i -> name i)."""
    if not new_names or not default_names:
        return dict(axes)
    renamed = dict(zip(default_names, new_names, strict=False))
    return {renamed.get(name, name): value for name, value in axes.items()}
