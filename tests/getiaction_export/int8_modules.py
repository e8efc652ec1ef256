"""Factories for ``policy=module`` in the INT8 tests (tests/getiaction_export/test_int8.py).

Import path from a subprocess whose cwd is not the repo: put the repo root on ``PYTHONPATH`` and
name ``policy._target_=tests.getiaction_export.int8_modules.make_outlier``.
"""

from __future__ import annotations

import torch
from torch import nn


class Outlier(nn.Module):
    """A hidden channel 1e4 times larger than the others, which carry the whole output.

    INT8 quantizes an activation with one scale per tensor: the outlier sets it (~1e4 / 127), and
    the small channels round to a handful of levels: the output is tens of percent off (measured
    99% of the largest |action|, where ACT is 0.9%).
    """

    def __init__(self, dim: int = 64, outlier: float = 1e4) -> None:
        super().__init__()
        self.spread = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, dim)
        with torch.no_grad():
            self.spread.weight[0] *= outlier
            self.spread.bias[0] = outlier
            self.head.weight[:, 0] = 0.0  # the outlier channel never reaches the output
        generator = torch.Generator().manual_seed(0)
        self.sample_input = {"state": torch.rand(2, dim, generator=generator) * 2 - 1}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.relu(self.spread(batch["state"])))


def make_outlier(dim: int = 64, outlier: float = 1e4) -> nn.Module:
    return Outlier(dim, outlier)
