"""The Diffusion policy's network: a conditioned 1-D conv denoiser and a DDIM sampler in the forward.

The observation (normalized state plus pooled features of each camera) is encoded once; then
``num_steps`` deterministic DDIM steps (eta = 0) turn the initial noise into a normalized action
chunk, which is un-normalized at the end. The timesteps and every step's coefficients are Python
numbers fixed at construction, so the exported graph is the loop unrolled, with no branch on
tensor values. The initial noise is a (1, chunk, A) buffer drawn from ``config.seed`` and shared
by every batch row, or the graph input ``noise`` (B, chunk, A) when ``config.noise_input``.

Example:
    >>> import torch
    >>> from getiaction.policies.diffusion.config import DiffusionConfig
    >>> model = DiffusionModel(DiffusionConfig(cameras=(), num_steps=4)).eval()
    >>> [step.timestep for step in model.steps]
    [75, 50, 25, 0]
    >>> action = model({"state": torch.zeros(3, 14)})
    >>> action.shape, bool((action[0] == action[2]).all())
    (torch.Size([3, 16, 14]), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from getiaction.policies.act.config import Activation
from getiaction.policies.act.model import (
    ConvEncoder,
    Standardize,
    expand_batch,
    export_args,
    image_key,
    sample_observation,
)
from getiaction.policies.diffusion.config import DiffusionConfig, NoiseSchedule


@dataclass(frozen=True)
class DDIMStep:
    """One deterministic DDIM step from ``timestep`` to the previous one, as plain numbers.

    With ``x`` the current sample and ``eps`` the predicted noise:
    ``x0 = (x - noise * eps) / signal`` and the next sample is ``prev_signal * x0 + prev_noise * eps``.
    """

    timestep: int
    signal: float
    noise: float
    prev_signal: float
    prev_noise: float


def alphas_cumprod(config: DiffusionConfig) -> np.ndarray:
    """Cumulative products of ``1 - beta`` over the training timesteps (float64)."""
    count = config.num_train_timesteps
    if config.noise_schedule is NoiseSchedule.LINEAR:
        betas = np.linspace(config.beta_start, config.beta_end, count, dtype=np.float64)
    else:

        def level(t: float) -> float:
            return math.cos((t / count + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.array([min(1 - level(i + 1) / level(i), 0.999) for i in range(count)])
    return np.cumprod(1.0 - betas)


def ddim_steps(config: DiffusionConfig) -> tuple[DDIMStep, ...]:
    """The ``num_steps`` sampling steps, evenly spaced ("leading") over the training timesteps."""
    alphas = alphas_cumprod(config)
    stride = config.num_train_timesteps // config.num_steps
    steps = []
    for index in reversed(range(config.num_steps)):
        timestep = index * stride
        alpha = float(alphas[timestep])
        prev_alpha = float(alphas[timestep - stride]) if timestep >= stride else 1.0
        steps.append(
            DDIMStep(timestep, math.sqrt(alpha), math.sqrt(1 - alpha), math.sqrt(prev_alpha), math.sqrt(1 - prev_alpha))
        )
    return tuple(steps)


def timestep_embedding(timesteps: list[int], dim: int) -> torch.Tensor:
    """Sinusoidal embeddings (len(timesteps), 2 * (dim // 2)) of integer timesteps."""
    half = dim // 2
    frequencies = np.exp(-math.log(10_000.0) * np.arange(half) / half)
    angles = np.outer(np.asarray(timesteps, dtype=np.float64), frequencies)
    return torch.from_numpy(np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32))


class ChunkConv(nn.Conv1d):
    """A 1-D convolution over the chunk axis, run as a 2-D one with a (1, k) kernel on (B, C, 1, chunk).

    Its parameters are an ``nn.Conv1d``'s (same state_dict keys and shapes, so checkpoints load)
    and its outputs are bit-identical: PyTorch runs a 1-D convolution as this 2-D one. Why not
    ``nn.Conv1d``'s own forward: the denoiser reuses each convolution in every unrolled step, and
    ExecuTorch's XNNPACK lowering (``Conv1dUnsqueezePass``, executorch 1.5.1) rewrites a shared
    1-D weight to 4-D for its first use, then fails on the second.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C_in, 1, chunk) -> (B, C_out, 1, chunk)."""
        padding = self.padding if isinstance(self.padding, str) else (0, self.padding[0])
        return nn.functional.conv2d(
            x, self.weight.unsqueeze(2), self.bias, (1, self.stride[0]), padding, (1, self.dilation[0]), self.groups
        )


class ResidualBlock(nn.Module):
    """Two 1-D convolutions over the chunk axis with FiLM conditioning (scale, shift) between them."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.dim = dim
        self.first = ChunkConv(dim, dim, kernel_size, padding=kernel_size // 2)
        self.second = ChunkConv(dim, dim, kernel_size, padding=kernel_size // 2)
        self.film = nn.Linear(dim, 2 * dim)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``x`` (B, dim, 1, chunk), ``condition`` (B, dim)."""
        # Scale and shift from the two halves of the FiLM weights, not .chunk() of its output: a
        # chunked batch is fixed to its traced size by ExecuTorch's edge conversion, and slices of
        # weights are constants a lowering folds, where slices of activations stay outside XNNPACK.
        weight, bias = self.film.weight, self.film.bias
        scale = nn.functional.linear(condition, weight[: self.dim], bias[: self.dim])[:, :, None, None]
        shift = nn.functional.linear(condition, weight[self.dim :], bias[self.dim :])[:, :, None, None]
        hidden = self.first(self.activation(x)) * (1 + scale) + shift
        return x + self.second(self.activation(hidden))


class DiffusionModel(nn.Module):
    """Maps ``state`` (B, S), ``images.<camera>`` (B, C, H, W) [and ``noise``] to ``action`` (B, chunk, A)."""

    initial_noise: torch.Tensor
    step_embeddings: torch.Tensor

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        dim, stats = config.hidden_dim, config.normalization
        channels = config.image_shape[0]
        self.normalize_state = Standardize(stats.state_mean, stats.state_std, (config.state_dim,))
        self.normalize_image = Standardize(stats.image_mean, stats.image_std, (channels, 1, 1))
        self.unnormalize_action = Standardize(stats.action_mean, stats.action_std, (config.action_dim,))

        self.image_encoders = nn.ModuleDict(
            {camera: ConvEncoder(channels, config.encoder_channels, Activation.GELU) for camera in config.cameras}
        )
        observation_dim = config.state_dim + len(config.cameras) * config.encoder_channels[-1]
        self.observation_encoder = nn.Sequential(nn.Linear(observation_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.steps = ddim_steps(config)
        # Derived from the config, so not saved: rebuilt identically on load.
        self.register_buffer(
            "step_embeddings", timestep_embedding([s.timestep for s in self.steps], dim), persistent=False
        )
        self.step_encoder = nn.Sequential(nn.Linear(self.step_embeddings.shape[1], dim), nn.GELU(), nn.Linear(dim, dim))
        padding = config.kernel_size // 2
        self.input_projection = ChunkConv(config.action_dim, dim, config.kernel_size, padding=padding)
        self.blocks = nn.ModuleList(ResidualBlock(dim, config.kernel_size) for _ in range(config.n_layers))
        self.output_projection = ChunkConv(dim, config.action_dim, config.kernel_size, padding=padding)
        if not config.noise_input:
            # Saved with the weights: the checkpoint then reproduces outputs even if torch's RNG changes.
            generator = torch.Generator().manual_seed(config.seed)
            self.register_buffer(
                "initial_noise", torch.randn(1, config.chunk_size, config.action_dim, generator=generator)
            )

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        """One seeded observation (state, images in [0, 1], then noise if it is an input)."""
        config = self.config
        generator = torch.Generator().manual_seed(0)
        sample = sample_observation(config.state_dim, config.cameras, config.image_shape, generator)
        if config.noise_input:
            sample["noise"] = torch.randn(1, config.chunk_size, config.action_dim, generator=generator)
        return sample

    @property
    def extra_export_args(self) -> dict[str, Any]:
        """Export defaults: the output is called ``action`` and its batch axis is dynamic."""
        return export_args()

    def denoise(self, sample: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Predict the noise in ``sample`` (B, chunk, A) given ``condition`` (B, hidden)."""
        # (B, chunk, A) -> (B, A, 1, chunk) once: the convolutions run in 2-D (see ChunkConv).
        # contiguous(): the transposed layout would look channels-last in 4-D, and oneDNN would
        # then sum in another order than Conv1d (1e-6 apart after 10 steps).
        hidden = self.input_projection(sample.transpose(1, 2).contiguous().unsqueeze(2))
        for block in self.blocks:
            hidden = block(hidden, condition)
        return self.output_projection(hidden).squeeze(2).transpose(1, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        state = self.normalize_state(batch["state"])
        features = [state]
        for camera, encoder in self.image_encoders.items():
            image = batch[image_key(camera, self.config.cameras)]
            features.append(encoder(self.normalize_image(image)).mean(dim=(2, 3)))
        observation = self.observation_encoder(torch.cat(features, dim=1))
        step_features = self.step_encoder(self.step_embeddings)  # (num_steps, hidden)
        sample = batch["noise"] if self.config.noise_input else expand_batch(self.initial_noise, state)
        clip = self.config.clip_sample
        for index, step in enumerate(self.steps):
            noise = self.denoise(sample, observation + step_features[index])
            clean = (sample - step.noise * noise) / step.signal
            if clip:
                clean = clean.clamp(-clip, clip)
            sample = step.prev_signal * clean + step.prev_noise * noise
        return self.unnormalize_action.inverse(sample)
