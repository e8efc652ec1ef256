"""``policy=module`` factories whose ONNX export is written with external data (used by the CLI tests).

Importing this module lowers :data:`getiaction.export.onnx_files.EXTERNAL_DATA_THRESHOLD` to 64 kB in the
process that builds the policy (the app's subprocess), so a model of a few hundred kB takes the path a 2 GB
model takes: ``<stem>.onnx`` plus ``<stem>.onnx.data``.
"""

from __future__ import annotations

import torch
from torch import nn

from getiaction.export import onnx_files

onnx_files.EXTERNAL_DATA_THRESHOLD = 64_000


class _MLP(nn.Module):
    """Three Linear layers (~140 kB of float32 weights); ``sample_input`` makes ``input_sample=from_policy`` work."""

    def __init__(self, width: int = 128, dim: int = 6, shift: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, width), nn.ReLU(), nn.Linear(width, dim))
        self.shift = shift
        self.sample_input = {"state": torch.linspace(-1.0, 1.0, 2 * dim).reshape(2, dim)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.net(batch["state"])
        if self.shift and (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            out = out + self.shift  # the exported graph differs from PyTorch: the parity gate must fail
        return out


def make_mlp() -> nn.Module:
    """An MLP whose export goes to external data (the threshold is lowered at import)."""
    return _MLP()


def make_mismatched_mlp() -> nn.Module:
    """The same MLP, but its exported graph adds 0.5 to the output: the job fails at verify."""
    return _MLP(shift=0.5)
