"""``policy=module`` factories that the dynamo exporter cannot trace (used by test_exporter_fallback.py)."""

from __future__ import annotations

import torch
from torch import nn


class Checked(nn.Module):
    """Reads a value into Python only to check it (a data-dependent guard for torch.export); the output ignores it."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)
        self.sample_input = {"state": torch.linspace(-1.0, 1.0, 8).reshape(2, 4)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if float(batch["state"].abs().max()) > 1e9:  # a sanity check, as deployed code has
            raise ValueError("state out of range")
        return self.layer(batch["state"])


class Stepped(nn.Module):
    """Reads a number out of an input (a scheduler's timestep lookup): no graph can follow it."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.linspace(0.0, 1.0, 10))
        self.sample_input = {"state": torch.ones(2, 4), "step": torch.tensor([3, 3])}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        step = int(batch["step"][0].item())
        return batch["state"] * self.table[step]


def make_checked() -> nn.Module:
    return Checked()


def make_stepped() -> nn.Module:
    return Stepped()
