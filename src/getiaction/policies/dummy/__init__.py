"""The Dummy policy (see :mod:`getiaction.policies.dummy.policy`)."""

from getiaction.policies.dummy.config import DummyConfig
from getiaction.policies.dummy.policy import Dummy

__all__ = ["Dummy", "DummyConfig"]
