"""Small LeRobot policies built offline and saved the way lerobot-train saves them (no hub, no downloads).

These tests need LeRobot, which needs torchvision and a torch below 2.11: they run in the
oldest-torch venv (``scripts/test-oldest``), not in ``scripts/test``'s.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STATE, ACTION, IMAGE = 6, 6, (3, 96, 96)


def dataset_stats() -> dict[str, dict[str, torch.Tensor]]:
    """Made-up stats far from identity: a lost normalization changes the actions by whole units."""
    steps = torch.arange(STATE, dtype=torch.float32)
    return {
        "observation.state": {"mean": 0.5 + 0.1 * steps, "std": 2.0 + 0.25 * steps,
                              "min": -3.0 - steps, "max": 4.0 + 0.5 * steps},
        "observation.images.top": {"mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
                                   "std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1),
                                   "min": torch.zeros(3, 1, 1), "max": torch.ones(3, 1, 1)},
        "action": {"mean": -0.2 + 0.3 * steps, "std": 1.5 + 0.1 * steps,
                   "min": -5.0 + 0.2 * steps, "max": 6.0 + 0.7 * steps},
    }


def _features() -> tuple[dict, dict]:  # type: ignore[type-arg]
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE,)),
              "observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE)}
    return inputs, {"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION,))}


def save_policy(policy_cls: type, config: object, folder: Path, stats: dict | None = None) -> Path:  # type: ignore[type-arg]
    """Seeded weights, saved with pre/post-processors for ``stats`` (default :func:`dataset_stats`)."""
    from lerobot.policies.factory import make_pre_post_processors

    torch.manual_seed(0)
    policy = policy_cls(config)
    pre, post = make_pre_post_processors(config, dataset_stats=stats or dataset_stats())
    for part in (policy, pre, post):
        part.save_pretrained(folder)
    return folder


def small_act(inputs: dict, outputs: dict, chunk_size: int = 8, **overrides: object) -> object:  # type: ignore[type-arg]
    """A tiny ACTConfig (no pretrained backbone) for the given features (``overrides``: other ACTConfig fields)."""
    from lerobot.policies.act.configuration_act import ACTConfig

    settings: dict = {"n_action_steps": chunk_size, **overrides}  # type: ignore[type-arg]
    return ACTConfig(input_features=inputs, output_features=outputs, device="cpu", push_to_hub=False,
                     chunk_size=chunk_size, pretrained_backbone_weights=None, dim_model=32,
                     n_heads=4, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1, latent_dim=8,
                     n_vae_encoder_layers=1, **settings)


def small_diffusion(inputs: dict, outputs: dict, **overrides: object) -> object:  # type: ignore[type-arg]
    """A tiny DiffusionConfig (2 observation steps, center crop 84 of 96 as in PushT) for the given features."""
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    settings: dict = {"n_obs_steps": 2, "horizon": 8, "n_action_steps": 4, "drop_n_last_frames": 3,  # type: ignore[type-arg]
                      "pretrained_backbone_weights": None, "crop_shape": (84, 84), "use_group_norm": True,
                      "spatial_softmax_num_keypoints": 8, "down_dims": (16, 32), "kernel_size": 3, "n_groups": 4,
                      "diffusion_step_embed_dim": 16, "num_train_timesteps": 100, "num_inference_steps": 5,
                      **overrides}
    return DiffusionConfig(input_features=inputs, output_features=outputs, device="cpu", push_to_hub=False,
                           **settings)


@pytest.fixture(scope="session")
def act_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lerobot.policies.act.modeling_act import ACTPolicy

    return save_policy(ACTPolicy, small_act(*_features()), tmp_path_factory.mktemp("act"))


@pytest.fixture(scope="session")
def diffusion_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained with DDPM (LeRobot's default)."""
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    return save_policy(DiffusionPolicy, small_diffusion(*_features()), tmp_path_factory.mktemp("diffusion"))
