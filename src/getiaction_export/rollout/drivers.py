"""How each run picks its next action: a policy behind the robot loop's ``select_action``.

Every driver takes the robot-layout observation of one step (``{input: array}`` with a batch axis
of 1, camera frames ``(1, H, W, 3)`` uint8) and returns one action row. A chunking policy runs
once per chunk and its rows are played in order, then it runs again on the observation of that
step: what physicalai's ``InferenceModel.select_action`` does.

- :class:`PackageDriver`: the policy package itself, through physicalai's ``select_action`` (its
  action queue, its ``to_float_tensor`` preprocessing of camera frames): how a robot runs it.
- :class:`QueueDriver`: any runner (PyTorch, a reloaded checkpoint, OpenVINO INT8, ExecuTorch)
  behind the same queue; camera frames become ``(1, 3, H, W)`` float32 ``frame / 255`` first,
  the arithmetic of physicalai's ``to_float_tensor``.
- :class:`ReplayDriver`: PyTorch behind the queue, given what an artifact's policy drew in its own
  run (SmolVLA's start noise, one per chunk): the policy that draws is compared on its own draws.

An artifact's driver can keep every policy run (:class:`PolicyRun`: the step, what the graph was
fed, what it returned), so PyTorch can be run on the very observations the artifact met in closed
loop (the rollout's on-path check).

Example:
    >>> import numpy as np, torch
    >>> calls = []
    >>> def runner(batch):
    ...     calls.append(batch["images"].shape)
    ...     return [np.arange(6, dtype=np.float32).reshape(1, 3, 2)]
    >>> driver = QueueDriver(runner, {"images"})
    >>> frame = {"images": np.zeros((1, 4, 4, 3), np.uint8)}
    >>> [driver.select_action(frame).tolist() for _ in range(4)], calls
    ([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [0.0, 1.0]], [torch.Size([1, 3, 4, 4]), torch.Size([1, 3, 4, 4])])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from getiaction_export.physicalai.runtime import watch_runs


@dataclass
class PolicyRun:
    """One run of the policy in an episode: the step it ran at, what its graph was fed, what it returned
    (in graph-output order)."""

    step: int
    inputs: dict[str, Any]
    outputs: list[np.ndarray]


def chunk_rows(output: np.ndarray) -> np.ndarray:
    """A batch-1 ``action`` as rows to play: ``(1, chunk, A)`` -> ``(chunk, A)``, ``(1, A)`` -> ``(1, A)``."""
    output = np.asarray(output)
    return np.atleast_2d(output[0] if output.ndim == 3 else output)


def to_float_frames(observation: Mapping[str, np.ndarray], cameras: Collection[str]) -> dict[str, Any]:
    """Torch tensors for a runner: camera frames ``(1, H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float32 in [0, 1]."""
    import torch

    batch = {}
    for name, array in observation.items():
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if name in cameras and array.dtype == np.uint8:
            tensor = tensor.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        batch[name] = tensor
    return batch


class QueueDriver:
    """A runner (``batch -> [outputs]``, action first) behind physicalai's action-queue semantics.

    ``extra``: inputs added to every batch (a task's token ids). ``keep``: ``{output name: index}``
    of outputs the policy draws itself (SmolVLA's ``noise``), kept per run in :attr:`drawn` (one
    list per episode) so PyTorch can be run on the same draws (:class:`ReplayDriver`). ``record``:
    keep every run as a :class:`PolicyRun` in :attr:`policy_runs` (one list per episode).
    """

    def __init__(self, runner: Callable[[dict[str, Any]], list[np.ndarray]], cameras: Collection[str],
                 action_index: int = 0, extra: Mapping[str, Any] | None = None,
                 keep: Mapping[str, int] | None = None, record: bool = False) -> None:
        self.runner, self.cameras, self.action_index = runner, set(cameras), action_index
        self.extra, self.keep, self.record = dict(extra or {}), dict(keep or {}), record
        self.queue: deque[np.ndarray] = deque()
        self.runs = self.step = 0
        self.drawn: list[list[dict[str, np.ndarray]]] = []
        self.policy_runs: list[list[PolicyRun]] = []

    def reset(self) -> None:
        self.queue.clear()
        self.drawn.append([])
        self.policy_runs.append([])
        self.step = 0

    def select_action(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        if not self.queue:
            batch = {**to_float_frames(observation, self.cameras), **self.extra}
            outputs = self.runner(batch)
            self.queue.extend(chunk_rows(np.asarray(outputs[self.action_index])))
            self.runs += 1
            if self.keep:
                self.drawn[-1].append({name: np.asarray(outputs[index]) for name, index in self.keep.items()})
            if self.record:
                self.policy_runs[-1].append(PolicyRun(self.step, {k: np.array(v) for k, v in batch.items()},
                                                      [np.asarray(output) for output in outputs]))
        self.step += 1
        return np.asarray(self.queue.popleft(), dtype=np.float32)


class ReplayDriver(QueueDriver):
    """PyTorch behind the queue, run on what another run's policy drew: its k-th run of episode e gets the k-th
    draw of that run's episode e as inputs (``conditioned_on``: drawn output -> reference input).

    A run that needs more draws than were recorded (its episode ran longer) raises: the two runs are no
    longer comparable step for step.
    """

    def __init__(self, runner: Callable[[dict[str, Any]], list[np.ndarray]], cameras: Collection[str],
                 drawn: list[list[dict[str, np.ndarray]]], conditioned_on: Mapping[str, str],
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(self._replayed, cameras, extra=extra)
        self.inner, self.recorded, self.pairs = runner, drawn, dict(conditioned_on)
        self.episode, self.call = -1, 0

    def reset(self) -> None:
        super().reset()
        self.episode, self.call = self.episode + 1, 0

    def _replayed(self, batch: dict[str, Any]) -> list[np.ndarray]:
        import torch

        draws = self.recorded[self.episode]
        if self.call >= len(draws):
            raise ValueError(f"PyTorch's episode {self.episode} needs a policy run more than the artifact's made "
                             f"({len(draws)}); the runs are no longer comparable")
        given = {name: torch.from_numpy(np.array(draws[self.call][output], dtype=np.float32))
                 for output, name in self.pairs.items()}
        self.call += 1
        return self.inner({**batch, **given})


class PackageDriver:
    """A physicalai ``InferenceModel`` loaded from the policy package: its own ``select_action`` and queue.

    ``float_cameras``: camera inputs the package has no ``to_float_tensor`` step for (not named
    ``images[.cam]``); their frames are handed over as float32 NCHW in [0, 1]. ``task``: the task
    string fed every step (a package that tokenizes its task; ``extra``: inputs fed every step, e.g. the task's
    token ids to a package without its tokenizer). ``keep``: outputs the graph draws
    itself, kept per model run in :attr:`drawn` (one list per episode). ``record``: the graph's output names;
    when given, every model run is kept as a :class:`PolicyRun` in :attr:`policy_runs` (what the graph was fed
    after the package's pre-processors, its raw outputs in that order).
    """

    def __init__(self, model: Any, float_cameras: Collection[str] = (), task: str | None = None,
                 keep: Collection[str] = (), extra: Mapping[str, np.ndarray] | None = None,
                 record: Sequence[str] = ()) -> None:
        self.model, self.float_cameras, self.task, self.keep = model, set(float_cameras), task, list(keep)
        self.extra, self.record = dict(extra or {}), list(record)
        self.drawn: list[list[dict[str, np.ndarray]]] = []
        self.policy_runs: list[list[PolicyRun]] = []
        self.step = 0
        if self.keep or self.record:
            watch_runs(model, self._ran)

    def _ran(self, inputs: dict[str, Any], outputs: dict[str, np.ndarray]) -> None:
        if self.keep:
            self.drawn[-1].append({name: outputs[name] for name in self.keep})
        if self.record:
            self.policy_runs[-1].append(PolicyRun(self.step, inputs, [outputs[name] for name in self.record]))

    def reset(self) -> None:
        self.model.reset()
        self.drawn.append([])
        self.policy_runs.append([])
        self.step = 0

    def select_action(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        feed: dict[str, Any] = {**observation, **self.extra}
        if self.float_cameras:
            converted = to_float_frames({k: feed[k] for k in self.float_cameras}, self.float_cameras)
            feed.update({k: v.numpy() for k, v in converted.items()})
        if self.task is not None:
            feed["task"] = [self.task]
        row = np.asarray(self.model.select_action(feed), dtype=np.float32).reshape(-1)
        self.step += 1
        return row


class HistoryDriver:
    """A driver fed the last ``steps`` observations of ``keys`` (stacked on axis 1, the first of an episode repeated:
    :class:`~getiaction_export.physicalai.history.ObservationHistory`), for a policy with an observation history."""

    def __init__(self, driver: Any, steps: int, keys: Collection[str]) -> None:
        from getiaction_export.physicalai.history import ObservationHistory

        self.driver, self.history = driver, ObservationHistory(steps, list(keys))

    @property
    def runs(self) -> int:
        return int(getattr(self.driver, "runs", 0))

    @property
    def drawn(self) -> Any:
        return getattr(self.driver, "drawn", [])

    @property
    def policy_runs(self) -> list[list[PolicyRun]]:
        return list(getattr(self.driver, "policy_runs", []))

    def reset(self) -> None:
        self.history.reset()
        self.driver.reset()

    def select_action(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.driver.select_action(self.history(observation)))
