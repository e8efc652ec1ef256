"""Factories for ``policy=module`` in the ExecuTorch tests (tests/getiaction_export/test_executorch.py).

Import path from a subprocess whose cwd is not the repo: put the repo root on ``PYTHONPATH`` and
name ``policy._target_=tests.getiaction_export.executorch_modules.make_chunked``.
"""

from __future__ import annotations

import torch
from torch import nn


class Chunked(nn.Module):
    """``state.chunk(2, dim=1)``: lowering fixes a chunked batched tensor's batch to the traced size."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.layer = nn.Linear(dim // 2, dim // 2)
        self.sample_input = {"state": torch.linspace(-1.0, 1.0, 2 * dim).reshape(2, dim)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        left, right = batch["state"].chunk(2, dim=1)
        return self.layer(left) * right


def make_chunked(dim: int = 8) -> nn.Module:
    return Chunked(dim)
