"""Config of the Dummy policy.

Example:
    >>> DummyConfig(action_shape=(7,)).hidden_dim
    32
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DummyConfig:
    """A state vector of ``action_shape`` in, an action of ``action_shape`` out."""

    action_shape: tuple[int, ...] = (7,)
    hidden_dim: int = 32

    def __post_init__(self) -> None:
        self.action_shape = tuple(self.action_shape)
        if not self.action_shape or any(int(n) < 1 for n in self.action_shape):
            raise ValueError(f"action_shape: {self.action_shape!r} must be non-empty positive sizes")
        if self.hidden_dim < 1:
            raise ValueError(f"hidden_dim: {self.hidden_dim!r} must be positive")
