"""Diffusion: the DDIM sampler's numbers, fixed vs input noise, ONNX parity per opset, round trip, YAML."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from getiaction.policies.act import NormalizationStats
from getiaction.policies.diffusion import Diffusion, DiffusionConfig, NoiseSchedule
from getiaction.policies.diffusion.model import alphas_cumprod, ddim_steps
from tests.getiaction.policies.test_act import (
    build,
    check_defaults,
    check_export,
    check_hydra_yaml,
    check_low_opset,
    check_round_trip,
    repeat_batch,
)

SHORT = DiffusionConfig(num_steps=3, image_shape=(3, 32, 32))
"""The default network with a 3-step loop and smaller images: the opset sweep exports this one
(export time grows with the steps unrolled; every operator is there with 3)."""


@pytest.fixture(scope="module")
def policy() -> Diffusion:
    return build(Diffusion)


def test_default_size_and_shapes(policy: Diffusion) -> None:
    check_defaults(policy, parameters=1_924_942)
    assert list(policy.sample_input) == ["state", "images"]
    # The seeded noise is saved with the weights; the step embeddings follow from the config.
    assert "model.initial_noise" in policy.state_dict() and "model.step_embeddings" not in policy.state_dict()


def test_ddim_schedule_numbers() -> None:
    steps = ddim_steps(DiffusionConfig())
    assert [s.timestep for s in steps] == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert all(math.isclose(s.signal**2 + s.noise**2, 1.0) for s in steps)
    assert all(a.prev_signal == b.signal for a, b in itertools.pairwise(steps))
    assert (steps[-1].prev_signal, steps[-1].prev_noise) == (1.0, 0.0)  # the last step lands on clean actions
    for schedule in NoiseSchedule:
        alphas = alphas_cumprod(DiffusionConfig(noise_schedule=schedule))
        assert alphas.shape == (100,) and (np.diff(alphas) < 0).all() and 0 < alphas[-1] < alphas[0] < 1
    linear = alphas_cumprod(DiffusionConfig(noise_schedule="linear"))
    assert math.isclose(linear[0], 1 - 1e-4) and math.isclose(linear[-1], np.prod(1 - np.linspace(1e-4, 0.02, 100)))
    assert [s.timestep for s in ddim_steps(DiffusionConfig(num_steps=3, num_train_timesteps=10))] == [6, 3, 0]


def test_sampler_recovers_the_clean_actions_from_a_perfect_denoiser(policy: Diffusion) -> None:
    """With the true noise as prediction, deterministic DDIM returns exactly the clean sample."""
    stats = NormalizationStats(action_mean=np.arange(14), action_std=[2.0])
    model = Diffusion(dataclasses.replace(policy.config, normalization=stats)).model.eval()
    clean = torch.linspace(-0.9, 0.9, 16 * 14).reshape(1, 16, 14)
    first = model.steps[0]
    true_noise = (model.initial_noise - first.signal * clean) / first.noise
    model.denoise = lambda sample, condition: true_noise.expand_as(sample)
    with torch.no_grad():
        action = model(repeat_batch(model.sample_input, 2))
    torch.testing.assert_close(action, (clean * 2.0 + torch.arange(14.0)).expand(2, -1, -1), atol=1e-5, rtol=0)


def test_fixed_noise_is_deterministic_and_seeded(policy: Diffusion) -> None:
    sample = policy.sample_input
    with torch.no_grad():
        first, second = policy(sample), policy(sample)
        rows = policy(repeat_batch(sample, 4))
    assert torch.equal(first, second)
    # One noise for every row of a batch: equal observations, equal actions (up to batched kernels).
    torch.testing.assert_close(rows, first.expand(4, -1, -1), atol=1e-5, rtol=0)
    expected_noise = torch.randn(1, 16, 14, generator=torch.Generator().manual_seed(0))
    assert torch.equal(policy.model.initial_noise, expected_noise)
    reseeded = build(Diffusion, DiffusionConfig(seed=1))
    assert not torch.equal(reseeded.model.initial_noise, policy.model.initial_noise)
    with torch.no_grad():
        assert float((reseeded(sample) - first).abs().max()) > 1e-3


def test_noise_input_switch(tmp_path: Path, onnx_parity: Callable) -> None:
    policy = build(Diffusion, DiffusionConfig(noise_input=True))
    sample = policy.sample_input
    assert list(sample) == ["state", "images", "noise"] and sample["noise"].shape == (1, 16, 14)
    assert "model.initial_noise" not in policy.state_dict()
    with torch.no_grad():
        assert float((policy(sample) - policy({**sample, "noise": -sample["noise"]})).abs().max()) > 1e-3
    result = check_export(policy, tmp_path / "noise.onnx", 17, onnx_parity, batches=(1, 3))
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    feed = {k: v.numpy() for k, v in sample.items()}
    (with_noise,) = session.run(None, feed)
    (with_other,) = session.run(None, {**feed, "noise": -feed["noise"]})
    assert float(np.abs(with_noise - with_other).max()) > 1e-3


def test_state_only(tmp_path: Path, onnx_parity: Callable) -> None:
    policy = build(Diffusion, DiffusionConfig(cameras=()))
    assert list(policy.sample_input) == ["state"]
    check_export(policy, tmp_path / "state.onnx", 14, onnx_parity, batches=(1, 4))


def test_config_validation() -> None:
    assert DiffusionConfig(noise_schedule="linear").noise_schedule is NoiseSchedule.LINEAR
    cases: list[tuple[dict[str, Any], str]] = [
        ({"num_steps": 101}, "num_steps: 101 must be at most num_train_timesteps=100"),
        ({"kernel_size": 4}, "kernel_size: 4 must be odd"),
        ({"beta_start": 0.5}, "need 0 < start < end < 1"),
        ({"clip_sample": -1.0}, "clip_sample: -1.0 must be >= 0"),
        ({"noise_schedule": "sigmoid"}, "not a valid NoiseSchedule"),
        ({"cameras": ("a", "a")}, "contains duplicates"),
        ({"normalization": NormalizationStats(action_mean=np.zeros(5))}, "action_mean: has 5 values; expected 1 or 14"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            DiffusionConfig(**kwargs)


def test_default_config_exports(policy: Diffusion, tmp_path: Path, onnx_parity: Callable) -> None:
    check_export(policy, tmp_path / "diffusion.onnx", 17, onnx_parity)


@pytest.mark.parametrize("opset", [14, 17, 18, 20, 23])
def test_onnx_parity_per_opset(opset: int, tmp_path: Path, onnx_parity: Callable) -> None:
    check_export(build(Diffusion, SHORT), tmp_path / "diffusion.onnx", opset, onnx_parity)


@pytest.mark.parametrize("opset", [11, 13])
def test_low_opsets_export(opset: int, tmp_path: Path) -> None:
    assert check_low_opset(build(Diffusion, SHORT), tmp_path / "diffusion.onnx", opset) is None


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    stats = NormalizationStats(state_std=np.linspace(0.5, 2, 14), action_mean=[0.25], image_mean=[0.4, 0.5, 0.6])
    config = DiffusionConfig(noise_schedule=NoiseSchedule.LINEAR, seed=7, num_steps=4, normalization=stats)
    check_round_trip(build(Diffusion, config, seed=3), tmp_path / "diffusion.pt")


def test_hydra_yaml() -> None:
    check_hydra_yaml("diffusion", Diffusion, DiffusionConfig, {"num_steps": 20})
