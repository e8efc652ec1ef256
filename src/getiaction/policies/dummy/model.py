"""The Dummy policy's network: a two-layer MLP from state to action.

Example:
    >>> import torch
    >>> from getiaction.policies.dummy.config import DummyConfig
    >>> model = DummyModel(DummyConfig(action_shape=(2, 3)))
    >>> model({"state": torch.zeros(4, 2, 3)}).shape
    torch.Size([4, 2, 3])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from getiaction.policies.dummy.config import DummyConfig


class DummyModel(nn.Module):
    """Maps ``state`` (B, *action_shape) to ``action`` (B, *action_shape)."""

    def __init__(self, config: DummyConfig) -> None:
        super().__init__()
        self.config = config
        size = math.prod(config.action_shape)
        self.net = nn.Sequential(nn.Linear(size, config.hidden_dim), nn.ReLU(), nn.Linear(config.hidden_dim, size))

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        """One seeded observation; the same every call, so exports are reproducible."""
        generator = torch.Generator().manual_seed(0)
        return {"state": torch.randn(1, *self.config.action_shape, generator=generator)}

    @property
    def extra_export_args(self) -> dict[str, Any]:
        """Export defaults: the output is called ``action`` and its batch axis is dynamic."""
        return {"onnx": {"output_names": ["action"], "dynamic_axes": {"action": {0: "batch"}}}}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        state = batch["state"]
        flat = state.flatten(1)
        return self.net(flat).reshape(state.shape)
