"""The Dummy policy: the smallest real policy, for tests, docs and smoke runs.

Example:
    >>> policy = Dummy(config=DummyConfig(action_shape=(7,)))
    >>> sum(p.numel() for p in policy.parameters())
    487
"""

from __future__ import annotations

from getiaction.export import Export
from getiaction.policies.base import Policy
from getiaction.policies.dummy.config import DummyConfig
from getiaction.policies.dummy.model import DummyModel


class Dummy(Export, Policy):
    """A two-layer MLP policy with trainable weights and an exportable forward."""

    def __init__(self, config: DummyConfig | None = None) -> None:
        super().__init__()
        self.model = DummyModel(config or DummyConfig())
