"""A ``policy=module`` factory shaped like a LeRobot policy: its forward reads dotted input names.

Used by the CLI tests (test_dotted_names.py, test_sweep_dirs.py) as
``policy._target_=tests.getiaction_export.dotted_modules.make_lerobot_like`` (repo root on PYTHONPATH).
"""

from __future__ import annotations

import torch
from torch import nn

STATE = "observation.state"
CAMERAS = ("observation.images.top", "observation.images.wrist")
INPUTS = (STATE, *CAMERAS)


class _LeRobotLike(nn.Module):
    """``action = Linear(state) + mean brightness of each camera``: every input is read (none is pruned)."""

    def __init__(self, state_dim: int = 6, action_dim: int = 6) -> None:
        super().__init__()
        self.layer = nn.Linear(state_dim, action_dim)
        self.camera_weights = nn.Parameter(torch.linspace(0.5, 1.5, len(CAMERAS)))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        action = self.layer(batch[STATE])
        for weight, camera in zip(self.camera_weights, CAMERAS, strict=True):
            action = action + weight * batch[camera].float().mean(dim=(1, 2, 3)).unsqueeze(-1)
        return action


def make_lerobot_like(state_dim: int = 6, action_dim: int = 6) -> nn.Module:
    """``forward({"observation.state": (B, state_dim), "observation.images.<top|wrist>": (B, 3, H, W)})``."""
    return _LeRobotLike(state_dim, action_dim)
