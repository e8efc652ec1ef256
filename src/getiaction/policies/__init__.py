"""Policies: each one folder with ``config.py``, ``model.py`` and ``policy.py``.

Example:
    >>> from getiaction.policies import Dummy, DummyConfig
    >>> Dummy(config=DummyConfig(action_shape=(7,))).config
    DummyConfig(action_shape=(7,), hidden_dim=32)
"""

from getiaction.export.torch import load_policy
from getiaction.policies.act import ACT, ACTConfig
from getiaction.policies.base import Policy
from getiaction.policies.diffusion import Diffusion, DiffusionConfig
from getiaction.policies.dummy import Dummy, DummyConfig

__all__ = ["ACT", "ACTConfig", "Diffusion", "DiffusionConfig", "Dummy", "DummyConfig", "Policy", "load_policy"]
