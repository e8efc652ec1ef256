"""The ACT policy's network: per-camera conv encoders, a transformer encoder-decoder, an action head.

Every camera image becomes a grid of tokens, the state one more token; the encoder mixes them,
and ``chunk_size`` learned queries cross-attend to the result in the decoder, one query per
future action. Normalization is part of the graph, so an exported file takes raw observations
and returns actions in dataset units.

Example:
    >>> import torch
    >>> from getiaction.policies.act.config import ACTConfig
    >>> model = ACTModel(ACTConfig(cameras=("top", "wrist"), chunk_size=5)).eval()
    >>> sorted(model.sample_input)
    ['images.top', 'images.wrist', 'state']
    >>> model(model.sample_input).shape
    torch.Size([1, 5, 14])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from getiaction.policies.act.config import ACTConfig, Activation, FloatArray


def export_args() -> dict[str, Any]:
    """Export defaults of both real policies: the output is ``action`` and its batch axis is dynamic."""
    return {"onnx": {"output_names": ["action"], "dynamic_axes": {"action": {0: "batch"}}}}


def image_key(camera: str, cameras: tuple[str, ...]) -> str:
    """The input key of one camera's image: ``images`` when it is the only one, else ``images.<camera>``.

    The same convention as the physicalai robot loop, so a deployed package is fed without renaming.

    Example:
        >>> image_key("top", ("top",)), image_key("top", ("top", "wrist"))
        ('images', 'images.top')
    """
    return "images" if len(cameras) == 1 else f"images.{camera}"


def sample_observation(
    state_dim: int, cameras: tuple[str, ...], image_shape: tuple[int, ...], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A batch-1 observation: ``state`` from a normal distribution, then each camera's image in [0, 1]."""
    sample = {"state": torch.randn(1, state_dim, generator=generator)}
    for camera in cameras:
        sample[image_key(camera, cameras)] = torch.rand(1, *image_shape, generator=generator)
    return sample


def make_activation(activation: Activation) -> nn.Module:
    """A fresh module for ``activation``."""
    return nn.GELU() if activation is Activation.GELU else nn.ReLU()


def expand_batch(tensor: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """``tensor`` (1, T, D) repeated along the batch axis of ``state`` (B, S), which may be dynamic.

    A broadcasting add of zeros rather than ``tensor.expand(B, -1, -1)``: the TorchScript exporter
    writes that Expand with every axis symbolic, so the file would not say the output is (B, T, D).
    """
    return tensor + torch.zeros_like(state[:, :1, None])


class Standardize(nn.Module):
    """``(x - mean) / std`` with statistics held as buffers (so they are saved and exported).

    ``shape`` is the buffers' shape, e.g. ``(state_dim,)``, or ``(channels, 1, 1)`` for images; a
    length-1 statistic is broadcast to it.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: FloatArray, std: FloatArray, shape: tuple[int, ...]) -> None:
        super().__init__()
        for name, values in (("mean", mean), ("std", std)):
            column = values.astype(np.float32).reshape(-1, *[1] * (len(shape) - 1))
            self.register_buffer(name, torch.from_numpy(np.broadcast_to(column, shape).copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Back to dataset units."""
        return x * self.std + self.mean


class ConvEncoder(nn.Module):
    """3x3 stride-2 convolutions, each halving height and width (rounding up)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], activation: Activation) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), make_activation(activation)]
            in_channels = out_channels
        self.net = nn.Sequential(*layers)

    @staticmethod
    def output_size(size: int, n_layers: int) -> int:
        """Height (or width) after ``n_layers`` convolutions."""
        for _ in range(n_layers):
            size = (size - 1) // 2 + 1
        return size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class Attention(nn.Module):
    """Multi-head attention of ``x`` (B, T, D) over ``context`` (B, S, D).

    Written out with ``scaled_dot_product_attention`` rather than ``nn.MultiheadAttention``: in
    eval mode without grad, torch's transformer layers switch to fused kernels
    (``aten::_transformer_encoder_layer_fwd``) that the TorchScript exporter cannot convert.
    """

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.heads = (n_heads, dim // n_heads)
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.output = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        query = self.query(x).unflatten(-1, self.heads).transpose(1, 2)  # (B, heads, T, head_dim)
        key, value = self.key_value(context).unflatten(-1, (2, *self.heads)).permute(2, 0, 3, 1, 4).unbind(0)
        attended = nn.functional.scaled_dot_product_attention(query, key, value)
        return self.output(attended.transpose(1, 2).flatten(2))


class EncoderLayer(nn.Module):
    """Post-norm transformer layer: self-attention, then a feed-forward block, each residual."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__()
        dim = config.dim_model
        self.self_attention = Attention(dim, config.n_heads)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, config.dim_feedforward),
            make_activation(config.activation),
            nn.Dropout(config.dropout),
            nn.Linear(config.dim_feedforward, dim),
        )
        self.dropout = nn.Dropout(config.dropout)
        self.attention_norm = nn.LayerNorm(dim)
        self.feed_forward_norm = nn.LayerNorm(dim)

    def attend(self, x: torch.Tensor, context: torch.Tensor, attention: nn.Module, norm: nn.Module) -> torch.Tensor:
        return norm(x + self.dropout(attention(x, context)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attend(x, x, self.self_attention, self.attention_norm)
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


class DecoderLayer(EncoderLayer):
    """An encoder layer with cross-attention to the encoder's output between its two blocks."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__(config)
        self.cross_attention = Attention(config.dim_model, config.n_heads)
        self.cross_attention_norm = nn.LayerNorm(config.dim_model)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = self.attend(x, x, self.self_attention, self.attention_norm)
        x = self.attend(x, memory, self.cross_attention, self.cross_attention_norm)
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


class ACTModel(nn.Module):
    """Maps ``state`` (B, S) and ``images.<camera>`` (B, C, H, W) to ``action`` (B, chunk, A)."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__()
        self.config = config
        dim, stats = config.dim_model, config.normalization
        channels, height, width = config.image_shape
        self.normalize_state = Standardize(stats.state_mean, stats.state_std, (config.state_dim,))
        self.normalize_image = Standardize(stats.image_mean, stats.image_std, (channels, 1, 1))
        self.unnormalize_action = Standardize(stats.action_mean, stats.action_std, (config.action_dim,))

        self.state_projection = nn.Linear(config.state_dim, dim)
        self.image_encoders = nn.ModuleDict(
            {
                camera: nn.Sequential(
                    ConvEncoder(channels, config.encoder_channels, config.activation),
                    nn.Conv2d(config.encoder_channels[-1], dim, 1),  # to token width
                )
                for camera in config.cameras
            }
        )
        depth = len(config.encoder_channels)
        grid = ConvEncoder.output_size(height, depth) * ConvEncoder.output_size(width, depth)
        # One learned position per token: the state token, then each camera's grid in order.
        self.token_positions = nn.Parameter(0.02 * torch.randn(1, 1 + len(config.cameras) * grid, dim))
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_decoder_layers))
        self.action_queries = nn.Parameter(0.02 * torch.randn(1, config.chunk_size, dim))
        self.action_head = nn.Linear(dim, config.action_dim)

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        """One seeded observation (state, then images in [0, 1]); the same every call."""
        config = self.config
        return sample_observation(
            config.state_dim, config.cameras, config.image_shape, torch.Generator().manual_seed(0)
        )

    @property
    def extra_export_args(self) -> dict[str, Any]:
        """Export defaults: the output is called ``action`` and its batch axis is dynamic."""
        return export_args()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        state = self.normalize_state(batch["state"])
        tokens = [self.state_projection(state).unsqueeze(1)]
        for camera, encoder in self.image_encoders.items():
            features = encoder(self.normalize_image(batch[image_key(camera, self.config.cameras)]))
            tokens.append(features.flatten(2).transpose(1, 2))  # (B, D, h, w) -> (B, h*w, D)
        memory = torch.cat(tokens, dim=1) + self.token_positions
        for encoder_layer in self.encoder:
            memory = encoder_layer(memory)
        queries = expand_batch(self.action_queries, state)
        for decoder_layer in self.decoder:
            queries = decoder_layer(queries, memory)
        return self.unnormalize_action.inverse(self.action_head(queries))
