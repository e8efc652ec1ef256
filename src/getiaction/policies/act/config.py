"""Config of the ACT policy, and the dataset statistics both real policies normalize with.

``NormalizationStats`` holds float32 numpy arrays; a length-1 array applies to every feature,
so the defaults (mean 0, std 1: no normalization) fit any ``state_dim`` or ``action_dim``.

Example:
    >>> import numpy as np
    >>> config = ACTConfig(cameras=("top", "wrist"), activation="relu")
    >>> config.activation, config.cameras
    (<Activation.RELU: 'relu'>, ('top', 'wrist'))
    >>> stats = NormalizationStats(state_mean=np.full(14, 0.5))
    >>> stats.state_mean.dtype, stats == NormalizationStats(state_mean=np.full(14, 0.5, np.float32))
    (dtype('float32'), True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class Activation(StrEnum):
    """Non-linearity of the image encoder and the transformer's feed-forward layers."""

    RELU = "relu"
    GELU = "gelu"


def _zeros() -> FloatArray:
    return np.zeros(1, dtype=np.float32)


def _ones() -> FloatArray:
    return np.ones(1, dtype=np.float32)


@dataclass(eq=False)
class NormalizationStats:
    """Dataset statistics baked into the exported graph: ``(x - mean) / std`` on the way in,
    ``action * std + mean`` on the way out.

    Each array is 1-D float32 with one value per feature, or one value for all features
    (image stats: per colour channel). Equality compares values and dtypes.
    """

    state_mean: FloatArray = field(default_factory=_zeros)
    state_std: FloatArray = field(default_factory=_ones)
    action_mean: FloatArray = field(default_factory=_zeros)
    action_std: FloatArray = field(default_factory=_ones)
    image_mean: FloatArray = field(default_factory=_zeros)
    image_std: FloatArray = field(default_factory=_ones)

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            values = np.array(getattr(self, item.name), dtype=np.float32)  # a private float32 copy
            if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
                raise ValueError(f"normalization.{item.name}: {values!r} must be a non-empty finite 1-D array")
            if item.name.endswith("_std") and (values <= 0).any():
                raise ValueError(f"normalization.{item.name}: {values!r} must be positive (it divides)")
            setattr(self, item.name, values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NormalizationStats):
            return NotImplemented
        return all(
            getattr(self, name).dtype == getattr(other, name).dtype
            and np.array_equal(getattr(self, name), getattr(other, name))
            for name in (item.name for item in dataclasses.fields(self))
        )

    def check_sizes(self, state_dim: int, action_dim: int, channels: int) -> None:
        """Raise ``ValueError`` unless every array has length 1 or its feature count."""
        sizes = {"state": state_dim, "action": action_dim, "image": channels}
        for item in dataclasses.fields(self):
            size = sizes[item.name.rsplit("_", 1)[0]]
            length = getattr(self, item.name).size
            if length not in (1, size):
                raise ValueError(f"normalization.{item.name}: has {length} values; expected 1 or {size}")


def check_vision(cameras: tuple[str, ...], image_shape: tuple[int, ...], encoder_channels: tuple[int, ...]) -> None:
    """Check the image-side fields shared by the policies' configs.

    Camera names become module names, hence identifiers, and input keys: ``images`` for a single
    camera, ``images.<name>`` for several (the physicalai robot loop's convention).
    """
    if any(not isinstance(name, str) or not name.isidentifier() for name in cameras):
        raise ValueError(f"cameras: {cameras!r} must be identifiers such as 'top' or 'wrist'")
    if len(set(cameras)) != len(cameras):
        raise ValueError(f"cameras: {cameras!r} contains duplicates")
    if len(image_shape) != 3 or any(int(n) < 1 for n in image_shape):
        raise ValueError(f"image_shape: {image_shape!r} must be positive (channels, height, width)")
    if not encoder_channels or any(int(n) < 1 for n in encoder_channels):
        raise ValueError(f"encoder_channels: {encoder_channels!r} must be non-empty positive sizes")


def check_positive(owner: object, *names: str) -> None:
    """Raise ``ValueError`` naming the first of ``names`` whose value is not a positive int."""
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {value!r} must be a positive integer")


@dataclass
class ACTConfig:
    """Action Chunking Transformer: camera images and a state vector in, ``chunk_size`` actions out.

    Inputs: ``state`` (B, state_dim) and ``images`` (one camera) or ``images.<camera>`` (several),
    (B, *image_shape) floats in [0, 1].
    Output: ``action`` (B, chunk_size, action_dim).
    """

    state_dim: int = 14
    action_dim: int = 14
    chunk_size: int = 20
    cameras: tuple[str, ...] = ("top",)
    image_shape: tuple[int, int, int] = (3, 64, 64)
    encoder_channels: tuple[int, ...] = (32, 64, 128)
    """Output channels of the image encoder's stride-2 convolutions (each halves H and W)."""
    dim_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 3
    n_decoder_layers: int = 2
    dim_feedforward: int = 512
    dropout: float = 0.1
    activation: Activation = Activation.GELU
    normalization: NormalizationStats = field(default_factory=NormalizationStats)

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        self.image_shape = tuple(self.image_shape)  # type: ignore[assignment]
        self.encoder_channels = tuple(self.encoder_channels)
        self.activation = Activation(self.activation)
        check_positive(
            self,
            "state_dim",
            "action_dim",
            "chunk_size",
            "dim_model",
            "n_heads",
            "n_encoder_layers",
            "n_decoder_layers",
            "dim_feedforward",
        )
        check_vision(self.cameras, self.image_shape, self.encoder_channels)
        if self.dim_model % self.n_heads:
            raise ValueError(f"n_heads: {self.n_heads} must divide dim_model={self.dim_model}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: {self.dropout!r} must be in [0, 1)")
        self.normalization.check_sizes(self.state_dim, self.action_dim, self.image_shape[0])
