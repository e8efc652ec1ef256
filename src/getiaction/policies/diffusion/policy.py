"""The Diffusion policy: a denoiser and a fixed-step DDIM sampler, exported as one graph.

Example:
    >>> import torch
    >>> policy = Diffusion(config=DiffusionConfig(num_steps=5))
    >>> 1_000_000 < sum(p.numel() for p in policy.parameters()) < 5_000_000
    True
    >>> sample = policy.sample_input
    >>> torch.equal(policy(sample), policy(sample))  # the initial noise is a fixed buffer
    True
"""

from __future__ import annotations

from getiaction.export import Export
from getiaction.policies.base import Policy
from getiaction.policies.diffusion.config import DiffusionConfig
from getiaction.policies.diffusion.model import DiffusionModel


class Diffusion(Export, Policy):
    """A state vector and camera images in, a denoised chunk of future actions out."""

    def __init__(self, config: DiffusionConfig | None = None) -> None:
        super().__init__()
        self.model = DiffusionModel(config or DiffusionConfig())
