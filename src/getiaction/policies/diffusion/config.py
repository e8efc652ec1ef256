"""Config of the Diffusion policy.

Example:
    >>> config = DiffusionConfig(noise_schedule="linear", num_steps=5)
    >>> config.noise_schedule, config.num_steps, config.cameras
    (<NoiseSchedule.LINEAR: 'linear'>, 5, ('top',))
    >>> DiffusionConfig(num_steps=200)
    Traceback (most recent call last):
    ...
    ValueError: num_steps: 200 must be at most num_train_timesteps=100
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from getiaction.policies.act.config import NormalizationStats, check_positive, check_vision


class NoiseSchedule(StrEnum):
    """How the noise level grows over the training timesteps (the betas)."""

    LINEAR = "linear"
    """Betas evenly spaced from ``beta_start`` to ``beta_end`` (DDPM)."""
    COSINE = "cosine"
    """Squared-cosine cumulative alphas (improved DDPM); the betas are not used."""


@dataclass
class DiffusionConfig:
    """A denoiser over action chunks, run for ``num_steps`` deterministic DDIM steps in the forward.

    Inputs: ``state`` (B, state_dim); camera images (B, *image_shape) in [0, 1] as ``images`` (one
    camera) or ``images.<camera>`` for each of ``cameras`` (none is fine); and ``noise``
    (B, chunk_size, action_dim) when ``noise_input``.
    Output: ``action`` (B, chunk_size, action_dim).
    """

    state_dim: int = 14
    action_dim: int = 14
    chunk_size: int = 16
    cameras: tuple[str, ...] = ("top",)
    image_shape: tuple[int, int, int] = (3, 64, 64)
    encoder_channels: tuple[int, ...] = (32, 64, 128)
    """Output channels of the image encoder's stride-2 convolutions; features are then pooled."""
    hidden_dim: int = 256
    n_layers: int = 3
    """Residual 1-D convolution blocks of the denoiser, each conditioned on observation and step."""
    kernel_size: int = 3
    num_steps: int = 10
    num_train_timesteps: int = 100
    noise_schedule: NoiseSchedule = NoiseSchedule.COSINE
    beta_start: float = 1e-4
    beta_end: float = 0.02
    clip_sample: float = 1.0
    """Clamp each step's estimate of the clean (normalized) actions to [-clip, clip]; 0 turns it off."""
    seed: int = 0
    """Seeds the fixed initial noise, so the forward is a deterministic function of the observation."""
    noise_input: bool = False
    """Take the initial noise as a graph input ``noise`` instead of the fixed seeded buffer."""
    normalization: NormalizationStats = field(default_factory=NormalizationStats)

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        self.image_shape = tuple(self.image_shape)  # type: ignore[assignment]
        self.encoder_channels = tuple(self.encoder_channels)
        self.noise_schedule = NoiseSchedule(self.noise_schedule)
        check_positive(
            self,
            "state_dim",
            "action_dim",
            "chunk_size",
            "hidden_dim",
            "n_layers",
            "kernel_size",
            "num_steps",
            "num_train_timesteps",
        )
        check_vision(self.cameras, self.image_shape, self.encoder_channels)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: {self.kernel_size} must be odd (keeps the chunk length)")
        if self.num_steps > self.num_train_timesteps:
            raise ValueError(
                f"num_steps: {self.num_steps} must be at most num_train_timesteps={self.num_train_timesteps}"
            )
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(f"beta_start, beta_end: {self.beta_start}, {self.beta_end} need 0 < start < end < 1")
        if self.clip_sample < 0:
            raise ValueError(f"clip_sample: {self.clip_sample} must be >= 0 (0 turns clipping off)")
        self.normalization.check_sizes(self.state_dim, self.action_dim, self.image_shape[0])
