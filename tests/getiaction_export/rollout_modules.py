"""Small policies and a task adapter for the rollout tests (tests/getiaction_export/test_rollout.py).

Import path from a subprocess whose cwd is not the repo: put the repo root on ``PYTHONPATH`` and
name ``policy._target_=tests.getiaction_export.rollout_modules.make_seeker``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from getiaction_export.rollout.adapter import TaskAdapter


class Seeker(nn.Module):
    """A PushT-shaped policy: ``state`` (B, 2) pixels and ``images`` (B, 3, 96, 96) in, a chunk of targets out.

    Each target is the agent's position moved by up to 40 px, a function of the position and the
    image's mean colour, so the closed loop feeds back. ``export_offset`` (pixels) is added to the
    actions only while the graph is traced for ONNX: a deliberately perturbed artifact, per-call
    off by exactly that much. ``export_trap`` (pixels) is added the same way, but only on frames as
    bright as PushT's (mean colour above 0.8; the parity gate's random frames average 0.5): an artifact
    that differs from PyTorch only on observations a closed loop meets.
    """

    def __init__(self, chunk: int = 8, export_offset: float = 0.0, export_trap: float = 0.0) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 2 * chunk)
        self.chunk, self.export_offset, self.export_trap = chunk, export_offset, export_trap
        generator = torch.Generator().manual_seed(0)
        self.sample_input = {"state": 256.0 + 100.0 * torch.rand(1, 2, generator=generator),
                             "images": torch.rand(1, 3, 96, 96, generator=generator)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        state = batch["state"]
        colour = batch["images"].mean(dim=(1, 2, 3)).unsqueeze(1)
        features = torch.cat([(state - 256.0) / 128.0, colour], dim=1)
        step = 40.0 * torch.tanh(self.layer(features)).reshape(-1, self.chunk, 2)
        action = state.unsqueeze(1) + step
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            action = action + self.export_offset + self.export_trap * (colour > 0.8).to(action.dtype).unsqueeze(-1)
        return action


def make_seeker(chunk: int = 8, export_offset: float = 0.0, export_trap: float = 0.0) -> nn.Module:
    return Seeker(chunk, export_offset, export_trap)


class Swinger(nn.Module):
    """A Pendulum-shaped policy: ``state`` (B, 3) = (cos, sin, velocity) in, ``action`` (B, 1) torque out."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)
        self.sample_input = {"state": torch.tensor([[1.0, 0.0, 0.5]])}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return 2.0 * torch.tanh(self.layer(batch["state"]))


def make_swinger() -> nn.Module:
    return Swinger()


class Pendulum(TaskAdapter):
    """gymnasium's Pendulum-v1 as a user would add it: the README's example of another task, one class."""

    name = "pendulum"
    requires = ("gymnasium",)
    observation_shapes = {"state": (3,)}  # noqa: RUF012 - as a user writes it
    action_dim = 1
    plane = ("cos θ", "sin θ")
    tracked_name = "pendulum tip"
    unit = "m"
    max_gap = {"fp32": 1e-4, "fp16": 0.05, "int8": 0.1}  # noqa: RUF012

    def make_env(self) -> Any:
        import gymnasium

        return gymnasium.make("Pendulum-v1")

    def observation(self, obs: Any, info: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {"state": np.asarray(obs, dtype=np.float32)}

    def tracked(self, obs: Any, info: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(obs[:2], dtype=np.float64)


class NeedsMissing(Pendulum):
    """A task whose package is not installed."""

    name = "missing"
    requires = ("gymnasium", "no_such_simulator_here")


class LeRobotNamed(Seeker):
    """The Seeker under LeRobot's input names: ``observation.state`` and one camera ``observation.image``."""

    def __init__(self) -> None:
        super().__init__()
        self.sample_input = {"observation.state": self.sample_input["state"],
                             "observation.image": self.sample_input["images"]}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return super().forward({"state": batch["observation.state"], "images": batch["observation.image"]})


def make_lerobot_named() -> nn.Module:
    return LeRobotNamed()


class Unbounded(Pendulum):
    """A task that sets no default bound: each precision's bound must come from rollout.max_gap."""

    max_gap = {}  # noqa: RUF012
