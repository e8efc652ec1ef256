"""The environment side of a rollout: one :class:`TaskAdapter` per gymnasium task.

A rollout drives PyTorch and each artifact through the same adapter, so everything task-specific
lives in one class: how to make the environment, what the policy sees of an observation, what the
environment takes as an action, which state is tracked (and in what unit the gap is measured),
and what counts as success. Adding a task is one subclass and one config file, not a fork:

.. code-block:: python

    # my_tasks.py
    import numpy as np
    from getiaction_export.rollout.adapter import TaskAdapter

    class Pendulum(TaskAdapter):
        name, requires, unit = "pendulum", ("gymnasium",), "rad"
        plane = ("cos θ", "sin θ")
        observation_shapes = {"state": (3,)}        # the policy's input "state": (B, 3)
        action_dim = 1
        max_gap = {"fp32": 1e-4, "fp16": 0.05, "int8": 0.1}

        def make_env(self):
            import gymnasium
            return gymnasium.make("Pendulum-v1")

        def observation(self, obs, info):
            return {"state": np.asarray(obs, np.float32)}

        def tracked(self, obs, info):                # the point drawn on the plane and gated
            return np.asarray(obs[:2], np.float64)

    # conf/rollout/pendulum.yaml (in your --config-dir):  name: pendulum, adapter: my_tasks.Pendulum

Observation keys follow the shipped policies' input names: ``state`` (a float vector) and
``images`` (one camera) or ``images.<camera>``, each camera an ``(H, W, 3)`` uint8 frame as a robot
loop hands it over. A policy input is fed by the key it names, or whose last dotted part it ends
with (LeRobot's ``observation.state`` takes ``state``; its one camera ``observation.image`` takes
the one frame): :func:`bind_inputs`.

Example:
    >>> bind_inputs({"observation.state": [1, 2], "observation.image": [1, 3, 96, 96]},
    ...             {"state": (2,), "images": (96, 96, 3)})
    {'observation.state': 'state', 'observation.image': 'images'}
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from getiaction.errors import ConfigError
from getiaction_export.errors import first_line

IMAGES = "images"


class TaskAdapter(ABC):
    """One gymnasium task as a rollout sees it (see the module doc); subclasses set the class attributes."""

    name: str = "task"
    requires: tuple[str, ...] = ("gymnasium",)
    """Import names the task needs; a missing one is a one-line config error before anything runs."""
    observation_shapes: ClassVar[dict[str, tuple[int, ...]]] = {}
    """``{key: shape}`` of :meth:`observation`'s arrays, without a batch axis (cameras ``(H, W, 3)``)."""
    action_dim: int = 0
    plane: tuple[str, str] = ("x", "y")
    """Axis labels of :meth:`tracked`'s first two values (the report draws trajectories there)."""
    tracked_name: str = "tracked state"
    """What :meth:`tracked` is, in messages (``agent``)."""
    unit: str = ""
    """The unit of :meth:`tracked` and of ``max_gap`` (``px``)."""
    max_gap: ClassVar[dict[str, float]] = {}
    """Default per precision (fp32, fp16, int8): the largest tracked-state distance from PyTorch's run. A job whose
    precision has a bound neither here nor in ``rollout.max_gap`` is refused before it runs."""

    @abstractmethod
    def make_env(self) -> Any:
        """A fresh ``gymnasium.Env`` (each run gets its own)."""

    @abstractmethod
    def observation(self, obs: Any, info: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """What the policy sees: ``{key: array}`` as :attr:`observation_shapes` says (no batch axis)."""

    @abstractmethod
    def tracked(self, obs: Any, info: Mapping[str, Any]) -> np.ndarray:
        """The state whose distance between two runs is gated (a float vector in :attr:`unit`)."""

    def action(self, row: np.ndarray) -> np.ndarray:
        """One action row of the policy as the environment's ``step`` takes it (default: float32 as is)."""
        return np.asarray(row, dtype=np.float32).reshape(self.action_dim)

    def success(self, reward: float, terminated: bool, info: Mapping[str, Any]) -> bool:
        """Whether this step reached the goal (default: gymnasium's ``info["is_success"]``)."""
        return bool(info.get("is_success", False))


def adapter_class(path: str) -> type[TaskAdapter]:
    """Import ``rollout.adapter``; one-line :class:`ConfigError` when it is not a TaskAdapter class.

    Example:
        >>> adapter_class("getiaction_export.rollout.pusht.PushT").name
        'pusht'
        >>> adapter_class("getiaction_export.rollout.pusht.Nope")
        Traceback (most recent call last):
        ...
        getiaction.errors.ConfigError: rollout.adapter: getiaction_export.rollout.pusht has no Nope
    """
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ConfigError(f"rollout.adapter: {path!r} is not an import path (module.Class, e.g. "
                          "getiaction_export.rollout.pusht.PushT)")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a user's module may fail to import in any way: one line, not a traceback
        raise ConfigError(f"rollout.adapter: cannot import {module_name!r} ({first_line(error)})") from None
    found = getattr(module, attribute, None)
    if found is None:
        raise ConfigError(f"rollout.adapter: {module_name} has no {attribute}")
    if not (isinstance(found, type) and issubclass(found, TaskAdapter)) or inspect.isabstract(found):
        raise ConfigError(f"rollout.adapter: {path} is not a TaskAdapter subclass that defines make_env, observation "
                          "and tracked (getiaction_export.rollout.adapter.TaskAdapter)")
    return found


def bind_inputs(inputs: Mapping[str, Sequence[int]], shapes: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """``{policy input: observation key}``; a :class:`ConfigError` naming the input no key feeds."""
    keys = list(shapes)
    cameras = [key for key in keys if key == IMAGES or key.startswith(IMAGES + ".")]
    bound: dict[str, str] = {}
    for name, shape in inputs.items():
        last = name.rsplit(".", 1)[-1]
        match = name if name in shapes else last if last in shapes else None
        if match is None and len(shape) >= 4 and len(cameras) == 1:  # the one camera, whatever the policy calls it
            match = cameras[0]
        if match is None:
            offered = ", ".join(f"{k} {tuple(s)}" for k, s in shapes.items())
            raise ConfigError(f"rollout: the policy's input {name!r} has no counterpart in the task's "
                              f"observation ({offered})")
        bound[name] = match
    return bound


def fit_problems(inputs: Mapping[str, Sequence[int]], action: Sequence[int], adapter: TaskAdapter) -> list[str]:
    """Where the policy's shapes (batch axis first) and the task's differ, one phrase each (empty: they fit).

    Example:
        >>> from getiaction_export.rollout.pusht import PushT
        >>> fit_problems({"state": [1, 14], "images": [1, 3, 64, 64]}, [1, 20, 14], PushT())
        ['state (B, 14) vs (B, 2)', 'images (B, 3, 64, 64) vs (B, 3, 96, 96)', 'action (14,) per step vs (2,)']
    """
    shapes = adapter.observation_shapes
    problems = []
    for name, key in bind_inputs(inputs, shapes).items():
        have, want = tuple(inputs[name])[1:], tuple(shapes[key])
        if len(want) == 3 and want[-1] == 3:  # a camera frame (H, W, 3) reaches the graph as (3, H, W)
            want = (3, *want[:2])
        if have != want:
            problems.append(f"{name} {_batched(have)} vs {_batched(want)}")
    per_step = tuple(action)[-1:] if len(action) >= 2 else tuple(action)
    if per_step != (adapter.action_dim,):
        problems.append(f"action {per_step} per step vs ({adapter.action_dim},)")
    return problems


def _batched(shape: Sequence[int]) -> str:
    return "(" + ", ".join(["B", *map(str, shape)]) + ")"
