"""PushT (gym-pusht): push a T-shaped block onto its goal with a round agent, in a 512x512 pixel workspace.

The policy sees the 96x96 render and the agent's position (``pixels_agent_pos``); its action is
the agent's target position in pixels. The tracked state is the agent position, so a gap is a
distance in pixels of the workspace. ``pip install 'getiaction-export[sim]'`` (gym-pusht, pymunk,
pygame, opencv; about 330 MB); runs headless, about 2-4 ms a step.

Bounds (:attr:`PushT.max_gap`), measured here over 10 episodes x 300 steps with ``policy=act`` and
``policy=diffusion`` fitted to PushT (seeded weights): fp32 runtimes (ONNX, OpenVINO, ExecuTorch)
stay within 1.4e-4 px of PyTorch's run, so fp32 is held to 0.01 px; OpenVINO fp16 weights drift
up to 0.07 px and INT8 up to 5.3 px, both held to 16 px (3% of the workspace's side). The README's
"Closed-loop parity" section has the table.

Example:
    >>> task = PushT()
    >>> task.observation_shapes, task.action_dim, task.unit
    ({'state': (2,), 'images': (96, 96, 3)}, 2, 'px')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from getiaction_export.rollout.adapter import TaskAdapter

ENV_ID = "gym_pusht/PushT-v0"


class PushT(TaskAdapter):
    """gym-pusht's ``PushT-v0`` with pixel and agent-position observations."""

    name = "pusht"
    requires = ("gymnasium", "gym_pusht")
    observation_shapes: ClassVar[dict[str, tuple[int, ...]]] = {"state": (2,), "images": (96, 96, 3)}
    action_dim = 2
    plane = ("x (px)", "y (px)")
    tracked_name = "agent"
    unit = "px"
    max_gap: ClassVar[dict[str, float]] = {"fp32": 0.01, "fp16": 16.0, "int8": 16.0}

    def make_env(self) -> Any:
        import gym_pusht  # noqa: F401 - registers gym_pusht/PushT-v0
        import gymnasium

        return gymnasium.make(ENV_ID, obs_type="pixels_agent_pos", render_mode="rgb_array")

    def observation(self, obs: Any, info: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {"state": np.asarray(obs["agent_pos"], dtype=np.float32), "images": np.asarray(obs["pixels"])}

    def tracked(self, obs: Any, info: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(obs["agent_pos"], dtype=np.float64)
