"""Factories for ``policy=module`` in the precision tests (tests/getiaction_export/test_formats.py).

Import path from a subprocess whose cwd is not the repo: put the repo root on ``PYTHONPATH`` and
name ``policy._target_=tests.getiaction_export.fp16_modules.make_overflowing``.
"""

from __future__ import annotations

import torch
from torch import nn


class Overflowing(nn.Module):
    """``(state @ W + b) * 1e5 * 1e5``: ~1e10 in float32, beyond float16's ±65504 at the first product."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.layer = nn.Linear(dim, dim)
        self.sample_input = {"state": torch.linspace(-1.0, 1.0, 2 * dim).reshape(2, dim)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.layer(batch["state"]) * 1e5 * 1e5


def make_overflowing(dim: int = 4) -> nn.Module:
    return Overflowing(dim)
