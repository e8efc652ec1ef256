"""A LeRobot policy's inputs under the names physicalai's robot loop feeds (``policy.names=robot``, the default).

physicalai's ``RobotRuntime`` (its ``PolicySource``) builds every tick's input itself: the robot's
state as ``state`` float32 ``(1, D)``, each camera's frame as ``images.<camera>`` uint8
``(1, H, W, 3)`` (plain ``images`` when the robot has one camera), and ``task`` when a task is
set. A LeRobot policy reads ``observation.state`` and ``observation.images.<camera>``. So the
exported graph takes the loop's names, and the package runs in the loop with no code:

==============================  ==========================================================
LeRobot input                   graph input (``policy.names=robot``)
==============================  ==========================================================
``observation.state``           ``state``
``observation.images.<cam>``    ``images.<robot camera>`` (``images`` with one camera)
``observation.image``           ``images``
anything else                   its LeRobot name (the robot loop does not feed it)
==============================  ==========================================================

``policy.cameras`` maps the robot's camera names to the policy's (``{front: top}``: the robot's
``front`` camera feeds the policy's ``top``); a policy camera not named keeps its own name. The
map is recorded in the manifest (``getiaction.input_names``). ``policy.names=lerobot`` keeps
LeRobot's names, for your own loop (``InferenceModel(dir)({"observation.state": ...})``).

:class:`RobotNamed` wraps the exported module and its parity reference: both take the graph's
names and hand LeRobot's own code LeRobot's names.

Example:
    >>> robot_names(["observation.state", "observation.images.top", "observation.images.wrist"], {"front": "top"})
    {'observation.state': 'state', 'observation.images.top': 'images.front', 'observation.images.wrist': 'images.wrist'}
    >>> robot_names(["observation.state", "observation.images.top"], {})
    {'observation.state': 'state', 'observation.images.top': 'images'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from getiaction.errors import ConfigError

NAMES = ("robot", "lerobot")
IMAGE_PREFIX = "observation.images."


def robot_names(inputs: Sequence[str], cameras: Mapping[str, str] | None) -> dict[str, str]:
    """LeRobot input name -> the name the robot loop feeds it under (see the module doc)."""
    policy_cameras = [name[len(IMAGE_PREFIX):] for name in inputs if name.startswith(IMAGE_PREFIX)]
    mapping = dict(cameras or {})
    unknown = [policy for policy in mapping.values() if policy not in policy_cameras]
    if unknown:
        raise ConfigError(f"policy.cameras: {unknown[0]!r} is not one of the policy's cameras; "
                          f"its cameras: {', '.join(policy_cameras) or 'none'}")
    if len(set(mapping.values())) != len(mapping):
        raise ConfigError("policy.cameras: two robot cameras feed the same policy camera; map each once")
    robot_of = {policy: robot for robot, policy in mapping.items()}
    images = [name for name in inputs if name.startswith(IMAGE_PREFIX) or name == "observation.image"]
    names = {}
    for name in inputs:
        if name == "observation.state":
            names[name] = "state"
        elif name in images and len(images) == 1:
            names[name] = "images"
        elif name.startswith(IMAGE_PREFIX):
            camera = name[len(IMAGE_PREFIX):]
            names[name] = f"images.{robot_of.get(camera, camera)}"
        else:
            names[name] = name
    return names


def _renamed(batch: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in batch.items()}


class _Wrapper(nn.Module):
    """A module around ``inner``: what it does not define itself is ``inner``'s."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("inner")
            if inner is None:
                raise
            return getattr(inner, name)


class RobotNamed(_Wrapper):
    """``module`` (and its ``parity_reference``) fed under the robot loop's names (see the module doc).

    ``names``: LeRobot name -> graph name. Everything else the module offers (``package_extras``,
    ``task_inputs``, ``preferred_exporter``, ...) is the module's own.
    """

    def __init__(self, module: nn.Module, names: Mapping[str, str]) -> None:
        super().__init__()
        self.inner = module
        self.lerobot_input_names = dict(names)
        """LeRobot name -> graph name (recorded in the manifest)."""
        self.to_lerobot = {graph: lerobot for lerobot, graph in names.items()}
        reference = getattr(module, "parity_reference", None)
        if reference is not None:
            object.__setattr__(self, "parity_reference", RobotNamedReference(reference, self.to_lerobot))

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.inner(_renamed(batch, self.to_lerobot))

    @property
    def wrapped(self) -> nn.Module:
        """The module under the new names (its class names the policy in the build line and the manifest)."""
        return self.inner

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        inner: Any = self.inner
        return _renamed(inner.sample_input, self.lerobot_input_names)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return _renamed(getattr(self.inner, "input_shapes", {}), self.lerobot_input_names)


class RobotNamedReference(_Wrapper):
    """A parity reference fed under the graph's names; LeRobot's code gets LeRobot's (``to_lerobot``)."""

    def __init__(self, reference: nn.Module, to_lerobot: Mapping[str, str]) -> None:
        super().__init__()
        self.inner = reference
        self.to_lerobot = dict(to_lerobot)
        conditioned = getattr(reference, "conditioned_on", None)
        if conditioned:
            self.conditioned_on = dict(conditioned)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Any:
        return self.inner(_renamed(batch, self.to_lerobot))

    def from_task(self, observation: Mapping[str, torch.Tensor], tasks: Sequence[str], noise: torch.Tensor) -> Any:
        """LeRobot's inference from a task string, the observation under the graph's names."""
        return self.inner.from_task(_renamed(observation, self.to_lerobot), tasks, noise)  # type: ignore[operator]


def check_names(names: str) -> None:
    if names not in NAMES:
        raise ConfigError(f"policy.names: {names!r} is not valid; use robot (the names physicalai's robot loop "
                          "feeds: state, images[.<camera>]) or lerobot (LeRobot's: observation.state, ...)")
