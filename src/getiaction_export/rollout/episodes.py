"""Episodes in closed loop, and how far an artifact's run strays from PyTorch's.

:func:`run_episode` drives one environment from ``env.reset(seed=...)`` with one driver
(:mod:`getiaction_export.rollout.drivers`): each step the adapter's observation, in the robot
loop's layout, goes to ``select_action`` and the row it returns to ``env.step``. The same seed and
the same actions replay the same episode bit for bit (gym-pusht, measured), so any gap between two
runs from one seed is the policies'. :func:`compare` puts a candidate's run beside PyTorch's: per
step the action gap (max abs difference of the rows) and the tracked-state gap (Euclidean
distance, in the adapter's unit), over the steps both runs reached.

Example:
    >>> import numpy as np
    >>> a = Run(tracked=[np.zeros(2), np.ones(2)], actions=[np.zeros(2)], rewards=[0.0], success=False)
    >>> b = Run(tracked=[np.zeros(2), np.array([1.0, 1.5])], actions=[np.array([0.0, 0.25])], rewards=[0.5],
    ...         success=True)
    >>> figures = compare(a, b)
    >>> figures["state_gap"], figures["action_gap"], figures["success"], figures["max_state_gap"]
    ([0.0, 0.5], [0.25], {'torch': False, 'artifact': True}, 0.5)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from getiaction.errors import VerificationError
from getiaction_export.rollout.adapter import TaskAdapter


@dataclass
class Run:
    """One episode of one driver: the tracked state before each step and after the last, and what it did."""

    tracked: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    success: bool = False

    @property
    def steps(self) -> int:
        return len(self.actions)


def robot_observation(observation: Mapping[str, np.ndarray], binding: Mapping[str, str]) -> dict[str, np.ndarray]:
    """``{policy input: array with a batch axis of 1}`` from the adapter's observation (frames stay uint8 HWC)."""
    return {name: np.ascontiguousarray(observation[key])[None] for name, key in binding.items()}


def run_episode(adapter: TaskAdapter, env: Any, driver: Any, binding: Mapping[str, str], seed: int, steps: int,
                on_step: Callable[[], None] | None = None) -> Run:
    """Reset ``env`` with ``seed`` and let ``driver`` act for up to ``steps`` steps (until the episode ends)."""
    obs, info = env.reset(seed=seed)
    driver.reset()
    run = Run(tracked=[adapter.tracked(obs, info)])
    for step in range(steps):
        row = driver.select_action(robot_observation(adapter.observation(obs, info), binding))
        if not np.all(np.isfinite(row)):
            raise VerificationError(f"rollout: the action at step {step} of episode seed {seed} is not finite "
                                    f"({np.asarray(row).tolist()})")
        obs, reward, terminated, truncated, info = env.step(adapter.action(row))
        run.actions.append(np.asarray(row, dtype=np.float64))
        run.rewards.append(float(reward))
        run.tracked.append(adapter.tracked(obs, info))
        run.success = run.success or adapter.success(float(reward), bool(terminated), info)
        if on_step is not None:
            on_step()
        if terminated or truncated:
            break
    return run


def compare(reference: Run, candidate: Run) -> dict[str, Any]:
    """Per-step gaps of ``candidate`` from ``reference`` over the steps both reached, and both outcomes."""
    states = min(len(reference.tracked), len(candidate.tracked))
    actions = min(reference.steps, candidate.steps)
    state_gap = [float(np.linalg.norm(candidate.tracked[i] - reference.tracked[i])) for i in range(states)]
    action_gap = [float(np.max(np.abs(candidate.actions[i] - reference.actions[i]))) for i in range(actions)]
    return {
        "steps": {"torch": reference.steps, "artifact": candidate.steps},
        "state_gap": state_gap,
        "action_gap": action_gap,
        # np.max, not max(): a NaN gap must reach the gate (max() skips NaN after a first finite value)
        "max_state_gap": float(np.max(state_gap)) if state_gap else 0.0,
        "max_action_gap": float(np.max(action_gap)) if action_gap else 0.0,
        "reward": {"torch": _total(reference.rewards), "artifact": _total(candidate.rewards)},
        "max_reward": {"torch": max(reference.rewards, default=0.0), "artifact": max(candidate.rewards, default=0.0)},
        "success": {"torch": reference.success, "artifact": candidate.success},
    }


def _total(rewards: list[float]) -> float:
    return float(np.sum(rewards)) if rewards else 0.0
