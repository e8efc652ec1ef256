"""The Diffusion policy (see :mod:`getiaction.policies.diffusion.policy`)."""

from getiaction.policies.diffusion.config import DiffusionConfig, NoiseSchedule
from getiaction.policies.diffusion.policy import Diffusion

__all__ = ["Diffusion", "DiffusionConfig", "NoiseSchedule"]
