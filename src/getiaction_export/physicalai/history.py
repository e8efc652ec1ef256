"""Observation history for policies that read the last n observations (LeRobot Diffusion's ``n_obs_steps``).

A Diffusion policy conditions on the last ``n_obs_steps`` observations: its graph takes ``state``
``(B, n, D)`` and camera frames ``(B, n, 3, H, W)`` float32 in [0, 1]. A robot hands over one
observation per tick, so something must keep the last n. It cannot be a pre-processor of the
package: ``InferenceModel`` runs its pre-processors only when the model runs (once a chunk), and
LeRobot's history holds the observations of the *last n ticks*. :class:`ObservationHistory` is
called every tick and does what LeRobot's ``populate_queues`` does: the first observation of an
episode fills every slot (repeated), each later one pushes the oldest out. Camera frames as the
loop delivers them (uint8 ``(1, H, W, 3)``) become float32 ``(1, 3, H, W)`` ``frame / 255`` (the
arithmetic of physicalai's ``to_float_tensor``) before they are stacked.

- physicalai's robot loop: :class:`~getiaction_export.physicalai.robot_loop.HistorySource`, a
  ``PolicySource`` that keeps the history (name it as the loop's action source; needs
  ``getiaction-export`` on the robot, torch-free);
- your own loop or ``InferenceModel.select_action``: call ``history(observation)`` every tick and
  feed what it returns; ``history.reset()`` at the start of an episode.

Torch-free.

Example:
    >>> history = ObservationHistory(2, ["state", "images"])
    >>> first = history({"state": np.array([[1.0]], np.float32), "images": np.zeros((1, 2, 2, 3), np.uint8)})
    >>> first["state"].tolist(), first["images"].shape, first["images"].dtype
    ([[[1.0], [1.0]]], (1, 2, 3, 2, 2), dtype('float32'))
    >>> history({"state": np.array([[2.0]], np.float32), "images": np.zeros((1, 2, 2, 3), np.uint8)})["state"].tolist()
    [[[1.0], [2.0]]]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

HISTORY_SOURCE = "getiaction_export.physicalai.robot_loop.HistorySource"
"""The action source that keeps the history in physicalai's robot loop (recorded in the manifest)."""


def as_float_frame(frame: np.ndarray) -> np.ndarray:
    """A uint8 ``(1, H, W, 3)`` frame as float32 ``(1, 3, H, W)`` in [0, 1] (``frame / 255``); float CHW unchanged."""
    if frame.dtype == np.uint8:
        return np.transpose(frame.astype(np.float32) / 255.0, (0, 3, 1, 2))
    return np.asarray(frame, dtype=np.float32)


class ObservationHistory:
    """The last ``steps`` observations of each of ``keys``, stacked on axis 1 (see the module doc).

    Keys starting with ``images`` are camera frames; other keys not in ``keys`` (a task string)
    pass through as they are.
    """

    def __init__(self, steps: int, keys: Sequence[str]) -> None:
        self.steps, self.keys = int(steps), list(keys)
        self.slots: dict[str, deque[np.ndarray]] = {key: deque(maxlen=self.steps) for key in self.keys}

    def reset(self) -> None:
        """Start a new episode: the next observation fills every slot."""
        for slot in self.slots.values():
            slot.clear()

    def __call__(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(observation)
        for key in self.keys:
            value = np.asarray(observation[key])
            value = as_float_frame(value) if key.startswith("images") else value.astype(np.float32)
            slot = self.slots[key]
            while len(slot) < self.steps - 1:  # the first of an episode: repeated, as LeRobot's queues do
                slot.append(value)
            slot.append(value)
            out[key] = np.stack(list(slot), axis=1)
        return out


def in_history(name: str) -> bool:
    """Whether a graph input of that name carries the observation history (``state``, ``images[.cam]``)."""
    return name == "state" or name.startswith("images")


def single_step(inputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The input specs as the robot loop feeds one tick: the history axis (1) dropped from the history inputs.

    >>> single_step([{"name": "state", "shape": [1, 2, 7]}, {"name": "task_ids", "shape": [1, 9]}])
    [{'name': 'state', 'shape': [1, 7]}, {'name': 'task_ids', 'shape': [1, 9]}]
    """
    return [{**spec, "shape": [spec["shape"][0], *spec["shape"][2:]]} if in_history(str(spec["name"])) else dict(spec)
            for spec in inputs]


def history_of(inputs: Sequence[Mapping[str, Any]], steps: int) -> dict[str, Any] | None:
    """``getiaction.history`` of a graph whose inputs carry ``steps`` observations on axis 1 (None: no such axis)."""
    if steps < 1:
        return None
    keys = [str(spec["name"]) for spec in inputs if in_history(str(spec["name"]))]
    return {"n_obs_steps": steps, "inputs": keys, "action_source": HISTORY_SOURCE,
            "helper": "getiaction_export.physicalai.history.ObservationHistory",
            "start": "the first observation of an episode fills every step (LeRobot's populate_queues)"}
