"""``policy=lerobot rollout=pusht``: a LeRobot folder shaped for PushT, exported and driven in closed loop.

PyTorch's runs are LeRobot's own pre-processor -> policy -> post-processor on raw observations
(the parity reference); the ONNX package is driven through physicalai's ``select_action`` under the
robot loop's names (``state``, ``images``: uint8 frames through the package's ``to_float_tensor``).
Runs in scripts/test-oldest's venv (LeRobot, gym-pusht).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.lerobot.conftest import save_policy, small_act, small_diffusion
from tests.lerobot.test_lerobot import run_cli

IMAGE = (3, 96, 96)


def pusht_stats() -> dict[str, dict[str, torch.Tensor]]:
    """PushT-like statistics: positions in pixels of the 512x512 workspace."""
    position = {"mean": torch.full((2,), 256.0), "std": torch.full((2,), 128.0),
                "min": torch.zeros(2), "max": torch.full((2,), 512.0)}
    image = {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25),
             "min": torch.zeros(3, 1, 1), "max": torch.ones(3, 1, 1)}
    return {"observation.state": position, "observation.images.top": image, "action": dict(position)}


def pusht_features() -> tuple[dict, dict]:  # type: ignore[type-arg]
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(2,)),
              "observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE)}
    return inputs, {"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))}


@pytest.fixture(scope="module")
def pusht_act(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lerobot.policies.act.modeling_act import ACTPolicy

    return save_policy(ACTPolicy, small_act(*pusht_features(), chunk_size=10), tmp_path_factory.mktemp("pusht_act"),
                       pusht_stats())


def test_a_lerobot_act_folder_drives_pusht_like_lerobot(pusht_act: Path, tmp_path: Path) -> None:
    run = run_cli(f"policy.path={pusht_act}", "rollout=pusht", "rollout.steps=60", "format.opset_version=17",
                  "format.latency=false", "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    rollout = json.loads((tmp_path / "job" / "result.json").read_text())["rollout"]
    assert rollout["binding"] == {"state": "state", "images": "images"}  # the robot loop's names: no mapping
    assert rollout["torch"]["float64_drift"] is not None, rollout["torch"]  # LeRobot's inference ran in float64 too
    record = rollout["formats"]["onnx"]
    assert "physicalai select_action" in record["driver"]
    assert record["passed"] and record["max_state_gap"] < 0.01  # fp32: LeRobot's inference and the package agree
    assert record["on_path"]["passed"] and record["on_path"]["runs"] == 2 * 60 // 10 and "parted" not in record
    assert [e["steps"] for e in record["episodes"]] == [{"torch": 60, "artifact": 60}] * 2
    moved = record["episodes"][0]["torch_xy"]
    assert moved[0] != moved[-1]  # the agent was driven somewhere


def test_a_lerobot_diffusion_with_an_observation_history_rolls_out_like_lerobot(tmp_path: Path) -> None:
    """Diffusion reads the last 2 observations (``n_obs_steps``): the rollout keeps them per episode (the first
    repeated, as LeRobot's queues do) for PyTorch and the package alike; the manifest names the history source."""
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    config = small_diffusion(*pusht_features(), noise_scheduler_type="DDIM")
    folder = save_policy(DiffusionPolicy, config, tmp_path / "diffusion", pusht_stats())
    run = run_cli(f"policy.path={folder}", "rollout=pusht", "rollout.episodes=1", "rollout.steps=24",
                  "format.opset_version=17", "format.latency=false", "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "job" / "result.json").read_text())
    record = result["rollout"]["formats"]["onnx"]
    assert record["passed"] and record["max_state_gap"] < 0.01, record
    assert record["episodes"][0]["steps"] == {"torch": 24, "artifact": 24}
    # LeRobot's inference on the very 2-step histories the package's graph was fed in its own episode
    assert record["on_path"]["passed"] and record["on_path"]["runs"] == 24 // 4, record["on_path"]  # n_action_steps 4
    assert [step for step, _ in record["on_path"]["per_run"][0]] == [0, 4, 8, 12, 16, 20]
    # at export, the package ran behind physicalai's own robot-loop source that keeps the history (HistorySource)
    loop = result["runtime_check"]["backends"]["onnx"]["robot_loop"]
    assert loop["ok"] and loop["uint8_frames"] is None, loop
    assert loop["policy_source"]["source"] == "HistorySource" and loop["policy_source"]["passed"], loop
    assert loop["policy_source"]["keys"] == ["images", "state"] and loop["feeds"]["history"].startswith(
        "getiaction_export.physicalai.robot_loop.HistorySource keeps the last 2")
    history = json.loads((tmp_path / "job" / "manifest.json").read_text())["getiaction"]["history"]
    assert history["n_obs_steps"] == 2 and history["action_source"].endswith("robot_loop.HistorySource")
    assert set(history["inputs"]) == {"state", "images"}
