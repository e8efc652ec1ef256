"""Packages that read their task as a string: the tokenizer a package ships, and the feeds that give it task strings.

A vision-language-action policy (SmolVLA) is conditioned on a task ("pick up the cube"). Its graph
takes the task's token ids; its package ships the tokenizer as physicalai pre-processors
(:meth:`~getiaction_export.sources.smolvla.SmolVLAExport.package_extras`: ``new_line`` then
``ov_tokenizer``), so a robot calls ``InferenceModel(dir)({..., "task": ["pick up the cube"]})``.
Such a package cannot be fed token ids (its tokenizer step requires ``task``), so every check
that runs it feeds task strings: :class:`TaskFeed` swaps each case's token inputs for a task
string's tokens (the same tokenization LeRobot's pre-processor does) and feeds the runtime the
strings themselves, so the package's own tokenizer is part of what is held to LeRobot.

Example:
    >>> import torch
    >>> def tokenize(tasks):
    ...     return {"ids": torch.tensor([[len(task)] for task in tasks])}
    >>> feed = TaskFeed(tokenize, ("ids",), ["pick", "place it"])
    >>> cases = feed.with_tasks([("sample", {"state": torch.zeros(2, 1), "ids": torch.zeros(2, 1)})])
    >>> cases[0][1]["ids"].tolist()
    [[4], [8]]
    >>> sorted(feed(cases[0][1])), feed(cases[0][1])["task"]
    (['state', 'task'], ['pick', 'place it'])
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from getiaction_export.state import JobState

TASK = "task"
"""The key physicalai's robot loop and tokenizer pre-processors read the task strings under (a list of str)."""

ROBOT_TASK = "pick up the cube"
"""The task string ``deploy_check`` sends with its robot-loop observation."""

Feed = Callable[[Mapping[str, "torch.Tensor"]], dict[str, Any]]
"""A case (graph inputs as tensors) -> what ``InferenceModel`` is called with."""


def numpy_feed(batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The plain feed: every tensor as a numpy array under its own name."""
    return {name: tensor.numpy() for name, tensor in batch.items()}


@dataclass
class TaskFeed:
    """Cases with task strings for a package that tokenizes its task itself (see the module doc).

    ``tokenize``: task strings -> the graph's token inputs (``token_inputs``), as LeRobot makes them.
    """

    tokenize: Callable[[list[str]], Mapping[str, torch.Tensor]]
    token_inputs: tuple[str, ...]
    tasks: Sequence[str]
    _seen: dict[bytes, list[str]] = field(default_factory=dict, repr=False)

    def with_tasks(self, cases: Sequence[tuple[str, dict[str, torch.Tensor]]]
                   ) -> list[tuple[str, dict[str, torch.Tensor]]]:
        """Each case with its token inputs made from task strings (cycling through :attr:`tasks`)."""
        out = []
        offset = 0
        for label, case in cases:
            size = int(next(iter(case.values())).shape[0])
            tasks = [self.tasks[(offset + row) % len(self.tasks)] for row in range(size)]
            offset += size
            tokens = dict(self.tokenize(tasks))
            self._seen[self._key(tokens)] = tasks
            out.append((label, {**case, **tokens}))
        return out

    def tasks_of(self, batch: Mapping[str, torch.Tensor]) -> list[str]:
        """The task strings a case made by :meth:`with_tasks` stands for."""
        try:
            return self._seen[self._key(batch)]
        except KeyError:
            raise KeyError("a case without task strings reached a package that tokenizes its task") from None

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        feed: dict[str, Any] = {name: tensor.numpy() for name, tensor in batch.items()
                                if name not in self.token_inputs}
        feed[TASK] = list(self.tasks_of(batch))
        return feed

    def _key(self, batch: Mapping[str, torch.Tensor]) -> bytes:
        return b"".join(batch[name].numpy().tobytes() for name in self.token_inputs)


def task_feed(state: JobState) -> TaskFeed | None:
    """The job's :class:`TaskFeed` when its package tokenizes the task (None otherwise)."""
    extras = package_extras(state)
    if not extras or not extras.get("task"):
        return None
    if state.task_feed is None:
        module: Any = state.built.module if state.built else None
        task = extras["task"]
        state.task_feed = TaskFeed(module.task_inputs, tuple(task["inputs"]), list(task["tasks"]))
    return state.task_feed


def package_extras(state: JobState) -> dict[str, Any] | None:
    """What the package carries besides the model (a task's tokenizer), made once per job in a hidden folder.

    The policy module declares it with ``package_extras(folder) -> {"preprocessors", "files",
    ...}``; the files are written to ``.<policy>.extras/`` beside the artifacts, linked into every
    staged package, and moved beside the model when the first package format is promoted
    (:func:`promote_extras`). Returns None for a policy without extras.
    """
    module = state.built.module if state.built else None
    make = getattr(module, "package_extras", None)
    if make is None:
        return None
    if state.package_extras is None:
        folder = extras_folder(state)
        shutil.rmtree(folder, ignore_errors=True)  # left by a killed run
        folder.mkdir(parents=True)
        state.package_extras = {**make(folder), "folder": str(folder), "sha256": {}}
    return state.package_extras


def extras_folder(state: JobState) -> Path:
    """The hidden folder the package's extra files are made in (removed when the job ends)."""
    return state.out_dir / f".{state.config.policy_name}.extras"


def extra_files(state: JobState) -> list[tuple[Path, str]]:
    """``(where the file is now, its name in the package)`` for each extra file."""
    extras = state.package_extras or {}
    if extras.get("sha256"):  # promoted: beside the model
        return [(state.out_dir / name, name) for name in extras["files"]]
    return [(Path(extras["folder"]) / name, name) for name in extras.get("files", [])]


def promote_extras(state: JobState) -> None:
    """Move the extra files beside the model (once); record their hashes."""
    from getiaction_export.files import sha256_of

    extras = state.package_extras
    if not extras or extras.get("sha256"):
        return
    folder = Path(extras["folder"])
    for name in extras["files"]:
        (folder / name).replace(state.out_dir / name)
    extras["sha256"] = {name: sha256_of(state.out_dir / name) for name in extras["files"]}
    shutil.rmtree(folder, ignore_errors=True)


def reference_feed(inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """A reference-set row as ``InferenceModel`` takes it: a stored ``task`` array becomes a list of str."""
    return {name: ([str(text) for text in value] if name == TASK else value) for name, value in inputs.items()}
