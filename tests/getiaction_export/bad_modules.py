"""Small factories for ``policy=module`` that misbehave on purpose (used by the CLI tests).

Import path from a subprocess whose cwd is not the repo: put the repo root on ``PYTHONPATH``
and name e.g. ``policy._target_=tests.getiaction_export.bad_modules.make_raising``.
Every forward takes the sample dict (``call_style=dict``) and reads its ``state`` entry.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn

if os.environ.get("BAD_MODULES_IMPORT_MARKER"):
    # Proof for the hostile-checkpoint tests: a refused class path must not even be imported.
    Path(os.environ["BAD_MODULES_IMPORT_MARKER"]).write_text(f"imported by pid {os.getpid()}\n")


class _Linear(nn.Module):
    """``action = state @ W + b``; ``sample_input`` makes ``input_sample=from_policy`` work."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.layer = nn.Linear(dim, dim)
        self.sample_input = {"state": torch.linspace(-1.0, 1.0, 2 * dim).reshape(2, dim)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.layer(batch["state"])


class _Raising(_Linear):
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise RuntimeError("deliberately broken forward (bad_modules.make_raising)")


class _Scaled(_Linear):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.layer(batch["state"]) * self.factor


class _Slow(_Linear):
    """Sleeps in every forward call (tracing and verification included): a long export to kill."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            time.sleep(self.delay)
        return self.layer(batch["state"])


def make_raising() -> nn.Module:
    """A module whose forward raises RuntimeError."""
    return _Raising()


def make_inf() -> nn.Module:
    """A module whose forward returns ``x * inf``."""
    return _Scaled(float("inf"))


def make_not_a_module() -> object:
    """A factory that returns something other than an nn.Module."""
    return {"not": "a module"}


def make_slow(delay: float = 0.4) -> nn.Module:
    """A module whose eager forward sleeps ``delay`` seconds (the traced graph does not)."""
    return _Slow(delay)


def make_marker(config: object = None) -> nn.Module:
    """A module that, when built, writes the file ``$BAD_MODULES_CALL_MARKER``: proof that it ran.

    Takes ``config`` like a policy class, so a checkpoint naming it would call it.
    """
    if os.environ.get("BAD_MODULES_CALL_MARKER"):
        Path(os.environ["BAD_MODULES_CALL_MARKER"]).write_text(f"called by pid {os.getpid()}\n")
    return _Linear()
