"""A LeRobot ``save_pretrained`` folder read with LeRobot's own loaders, and its normalization as graph constants.

What the ACT/Diffusion source (:mod:`.lerobot`) and the SmolVLA source (:mod:`.smolvla`) share.
:func:`load_folder` gives the policy (eval, CPU) and its pre/post-processor pipelines. LeRobot
normalizes in those pipelines (the pre-processor's normalizer, the post-processor's
unnormalizer), with the dataset stats saved beside the policy; :class:`Stats` holds one such
step's stats as buffers and applies LeRobot's formulas, so the exported graph takes raw
observations and returns raw actions (see :mod:`.lerobot` for why in the graph).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from getiaction.errors import ConfigError


def load_folder(folder: Path, configure: Callable[[Any], None] | None = None,
                preprocessor_overrides: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Any, Any, Any]:
    """LeRobot's config (``configure`` may change it first), policy (eval, CPU) and pre/post-processor pipelines."""
    try:
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    except ImportError as error:
        raise ConfigError(f"policy=lerobot needs LeRobot: pip install 'getiaction-export[lerobot]' ({error})") \
            from error
    config = PreTrainedConfig.from_pretrained(str(folder))
    config.device, config.pretrained_path = "cpu", str(folder)
    if configure is not None:
        configure(config)
    with contextlib.redirect_stdout(io.StringIO()):  # LeRobot prints "Loading weights from local directory", ...
        policy = get_policy_class(config.type).from_pretrained(str(folder), config=config)
    overrides = {"device_processor": {"device": "cpu"}, **(preprocessor_overrides or {})}
    pre, post = make_pre_post_processors(config, pretrained_path=str(folder), preprocessor_overrides=overrides)
    return policy.eval(), pre, post


def normalizer_step(pipeline: Any, name: str) -> Any:
    """The (un)normalizer step of a LeRobot processor pipeline (the one holding the dataset stats)."""
    steps = [step for step in pipeline.steps if hasattr(step, "norm_map") and hasattr(step, "stats")]
    if not steps:
        raise ConfigError(f"policy.path: the {name} has no (un)normalizer step; its stats cannot go into the graph")
    return steps[0]


class Stats(nn.Module):
    """A LeRobot (un)normalizer step's stats and modes as buffers, applied with LeRobot's formulas.

    Modes per feature type: ``MEAN_STD`` ``(x - mean) / (std + eps)``; ``MIN_MAX`` (and the
    quantile modes, with q01/q99 or q10/q90) ``2 (x - lo) / (hi - lo) - 1``; ``IDENTITY`` or no
    stats: unchanged. ``inverse`` undoes them.
    """

    BOUNDS: ClassVar[dict[str, tuple[str, str]]] = {
        "MIN_MAX": ("min", "max"), "QUANTILES": ("q01", "q99"), "QUANTILE10": ("q10", "q90")}

    def __init__(self, step: Any) -> None:
        super().__init__()
        self.eps = float(step.eps)
        self.modes: dict[str, str] = {}
        for key, feature in step.features.items():
            mode = step.norm_map.get(feature.type)
            mode_name = getattr(mode, "value", str(mode))
            stats = (step.stats or {}).get(key)
            if mode is None or mode_name == "IDENTITY" or not stats:
                continue
            wanted = ("mean", "std") if mode_name == "MEAN_STD" else self.BOUNDS.get(mode_name)
            if wanted is None:
                raise ConfigError(f"policy.path: normalization mode {mode_name} of {key!r} is not supported")
            for stat in wanted:
                self.register_buffer(_buffer(key, stat), torch.as_tensor(stats[stat], dtype=torch.float32))
            self.modes[key] = mode_name

    def forward(self, key: str, value: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        mode = self.modes.get(key)
        if mode is None:
            return value
        if mode == "MEAN_STD":
            mean, std = getattr(self, _buffer(key, "mean")), getattr(self, _buffer(key, "std"))
            return value * std + mean if inverse else (value - mean) / (std + self.eps)
        low_name, high_name = self.BOUNDS[mode]
        low, high = getattr(self, _buffer(key, low_name)), getattr(self, _buffer(key, high_name))
        span = torch.where(high - low == 0, torch.full_like(low, self.eps), high - low)
        return (value + 1) / 2 * span + low if inverse else 2 * (value - low) / span - 1


def _buffer(key: str, stat: str) -> str:
    return f"{key.replace('.', '__')}__{stat}"
