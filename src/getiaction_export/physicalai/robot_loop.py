"""physicalai's robot loop with an observation history: :class:`HistorySource`.

physicalai's ``PolicySource`` turns each tick's robot state and camera frames into the model's
input (``state``, ``images[.<camera>]``, ``task``). A policy that reads the last n observations
(LeRobot Diffusion, ``n_obs_steps`` 2) needs them every tick, so this subclass keeps them
(:class:`~getiaction_export.physicalai.history.ObservationHistory`) and feeds the stacked history;
``reset()`` (a new episode) clears it. Use it where you would use ``PolicySource``::

    from getiaction_export.physicalai.robot_loop import HistorySource
    source = HistorySource(InferenceModel(package), n_obs_steps=2, execution=SyncExecution(request_threshold=0.0),
                           action_queue=ChunkedActionQueue(ReplaceSmoother()))

or name ``getiaction_export.physicalai.robot_loop.HistorySource`` as the action source's class in
physicalai's runtime config. ``n_obs_steps`` defaults to the package's (``getiaction.history``).

Torch-free; imports physicalai (``pip install 'getiaction-export[deploy]'``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from physicalai.runtime import PolicySource

from getiaction_export.physicalai.history import ObservationHistory

_HISTORY_KEYS = ("state", "images")


class HistorySource(PolicySource):
    """A ``PolicySource`` that feeds the last ``n_obs_steps`` observations (see the module doc)."""

    def __init__(self, model: Any, *args: Any, n_obs_steps: int | None = None, **kwargs: Any) -> None:
        super().__init__(model, *args, **kwargs)
        self._history_steps = int(n_obs_steps or package_history(model) or 0)  # 0: no history axis
        self._history: ObservationHistory | None = None

    def reset(self, *, reset_model: bool = True) -> None:
        super().reset(reset_model=reset_model)
        self._history = None

    def _to_model_input(self, robot_obs: Any, camera_frames: Mapping[str, Any]) -> dict[str, Any]:
        model_input = super()._to_model_input(robot_obs, camera_frames)
        if self._history_steps < 1:
            return model_input
        if self._history is None:
            keys = [key for key in model_input if key.split(".")[0] in _HISTORY_KEYS]
            self._history = ObservationHistory(self._history_steps, keys)
        return self._history(model_input)


def package_history(model: Any) -> int | None:
    """``n_obs_steps`` the package's manifest records (``getiaction.history``), if any."""
    folder = getattr(model, "export_dir", None)
    manifest = Path(folder) / "manifest.json" if folder else None
    if manifest is None or not manifest.is_file():
        return None
    history = (json.loads(manifest.read_text()).get("getiaction") or {}).get("history") or {}
    steps = history.get("n_obs_steps")
    return int(steps) if steps else None
