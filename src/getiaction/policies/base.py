"""The ``Policy`` contract: an ``nn.Module`` around an inner ``self.model``.

The inner model's forward takes the batch dict and returns the action tensor. It may define
``sample_input`` (a dict of tensors), ``extra_export_args`` (``{"onnx": {...}}``) and ``config``
(a dataclass). Subclasses are built as ``MyPolicy(config=MyConfig(...))``, which is how a
checkpoint rebuilds them.

Example:
    >>> import torch
    >>> from getiaction.policies import Dummy, DummyConfig
    >>> policy = Dummy(config=DummyConfig(action_shape=(2,)))
    >>> policy({"state": torch.zeros(3, 2)}).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Self

import torch
from torch import nn

from getiaction.export.serialization import DEFAULT_ALLOWED_PACKAGES


class Policy(nn.Module):
    """Base class of every policy: holds ``self.model`` and forwards the batch to it."""

    model: nn.Module

    @property
    def config(self) -> Any:
        """The model's config (a dataclass), or ``None`` when the model has none."""
        return getattr(self.model, "config", None)

    @property
    def sample_input(self) -> dict[str, torch.Tensor] | None:
        """The model's example input, used by default for export."""
        return getattr(self.model, "sample_input", None)

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        """Predict actions for a batch of observations."""
        return self.model(batch)

    @classmethod
    def from_torch(
        cls, path: str | os.PathLike[str], *, allowed_packages: Iterable[str] = DEFAULT_ALLOWED_PACKAGES
    ) -> Self:
        """Rebuild this policy class from a checkpoint written by ``to_torch`` (or an older release)."""
        from getiaction.export.torch import load_policy

        policy: Self = load_policy(path, cls, allowed_packages=allowed_packages)
        return policy
