"""The ACT policy (see :mod:`getiaction.policies.act.policy`)."""

from getiaction.policies.act.config import ACTConfig, Activation, NormalizationStats
from getiaction.policies.act.policy import ACT

__all__ = ["ACT", "ACTConfig", "Activation", "NormalizationStats"]
