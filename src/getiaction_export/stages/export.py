"""Stage ``export``: write the chosen format to a staging path beside its final name.

The artifact is only renamed to its final name after ``check`` and ``verify`` pass (see the
pipeline), so a deploy script never picks up an unverified model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from getiaction.export import Export
from getiaction.export.onnx import OnnxExportResult, export_onnx
from getiaction.export.torch import save_checkpoint
from getiaction_export.config import OnnxFormatSchema


def export_onnx_artifact(
    module: nn.Module,
    sample: dict[str, torch.Tensor],
    fmt: OnnxFormatSchema,
    path: Path,
    call_style: str,
    metadata: dict[str, str] | None = None,
) -> OnnxExportResult:
    """Export ``module`` with the format's options; policies go through their ``to_onnx`` defaults.

    ``metadata`` (provenance: resolved config, its hash, seeds) is stored in ``metadata_props``.
    """
    options: dict[str, Any] = {
        "opset_version": fmt.opset_version,
        "exporter": fmt.exporter,
        "dynamic_batch": fmt.dynamic_batch,
        "metadata": dict(metadata or {}),
    }
    if fmt.output_names is not None:
        options["output_names"] = list(fmt.output_names)
    if isinstance(module, Export):
        return module.to_onnx(path, input_sample=sample, **options)
    return export_onnx(module, path, sample, call_style=call_style, **options)


def export_torch_artifact(module: nn.Module, path: Path) -> Path:
    """Write the checkpoint (policies through ``to_torch``; other modules with an empty config)."""
    if isinstance(module, Export):
        return module.to_torch(path)
    return save_checkpoint(module, path, getattr(module, "config", None) or {})
