"""physicalai's own robot loop (``RobotRuntime`` + ``PolicySource``) runs our LeRobot packages with no glue code.

A test robot and test cameras implement physicalai's robot/camera interfaces; the loop builds each
tick's input itself (``state`` float32 ``(1, D)``, uint8 ``(1, H, W, 3)`` frames as ``images`` or
``images.<camera>``, ``task``), plays the chunk through its queue (``SyncExecution(request_threshold=0.0)``
and ``ReplaceSmoother``: play the whole chunk, then infer again, as LeRobot's ``select_action`` does) and
sends each action to the robot. Every action sent equals what LeRobot's own ``select_action`` (its
pre-processor -> policy -> post-processor) returns for the same observation stream, within the package's
fp32 bound. SmolVLA draws its start noise in the graph: LeRobot is given the noise each chunk's run drew.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from getiaction_export.parity.tolerance import Tolerance, compare
from tests.lerobot.conftest import ACTION, STATE, dataset_stats, save_policy, small_act
from tests.lerobot.smolvla_folder import save_smolvla, write_vlm

TICKS = 200


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "true"}
    return subprocess.run([sys.executable, "-m", "getiaction_export", "policy=lerobot", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900, env=env)


class TestRobot:
    """A robot whose state at tick ``t`` is ``states(t)``; it keeps every action it is sent."""

    def __init__(self, states: Callable[[int], np.ndarray]) -> None:
        self.states, self.sent = states, []  # type: ignore[var-annotated]

    @property
    def joint_names(self) -> list[str]:
        return [f"joint{index}" for index in range(len(self.states(0)))]

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def get_observation(self) -> Any:
        state = self.states(len(self.sent))
        return types.SimpleNamespace(state=state, images=None, joint_positions=state)

    def send_action(self, action: Any, goal_time: Any = None) -> None:
        self.sent.append(np.array(action, dtype=np.float64))


class TestCamera:
    """A camera whose frame at tick ``t`` (the robot's count of actions sent) is ``frames(t)``, uint8 (H, W, 3)."""

    def __init__(self, robot: TestRobot, frames: Callable[[int], np.ndarray]) -> None:
        self.robot, self.frames = robot, frames

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def read_latest(self) -> Any:
        from physicalai.capture.frame import Frame

        tick = len(self.robot.sent)
        return Frame(data=self.frames(tick), timestamp=float(tick), sequence=tick)


def state_stream(size: int) -> Callable[[int], np.ndarray]:
    return lambda tick: (2.0 * np.sin(0.07 * tick + np.arange(size))).astype(np.float32)


def frame_stream(height: int, width: int, seed: int) -> Callable[[int], np.ndarray]:
    return lambda tick: np.random.default_rng([seed, tick]).integers(0, 256, (height, width, 3), dtype=np.uint8)


def drive(package: Path, robot: TestRobot, cameras: dict[str, TestCamera], task: str | None = None,
          drawn: list[np.ndarray] | None = None, source_class: Any = None) -> list[np.ndarray]:
    """``TICKS`` ticks of physicalai's RobotRuntime on the package (``drawn``: each model run's ``noise``;
    ``source_class``: the action source, physicalai's ``PolicySource`` by default)."""
    from physicalai.inference import InferenceModel
    from physicalai.runtime import ChunkedActionQueue, PolicySource, ReplaceSmoother, RobotRuntime, SyncExecution

    model = InferenceModel(package)
    if drawn is not None:
        original = model.runner.run

        def watched(adapter: Any, inputs: Any) -> Any:
            outputs = original(adapter, inputs)
            drawn.append(np.array(outputs["noise"]))
            return outputs

        model.runner.run = watched
    source = (source_class or PolicySource)(model, execution=SyncExecution(request_threshold=0.0),
                                            action_queue=ChunkedActionQueue(ReplaceSmoother()), task=task)
    budget = types.SimpleNamespace(is_set=lambda: len(robot.sent) >= TICKS)
    runtime = RobotRuntime(robot=robot, action_source=source, fps=1e6, cameras=cameras)
    with runtime:
        runtime.run(stop_event=budget)
    return robot.sent[:TICKS]


def lerobot_actions(folder: Path, observations: Callable[[int], dict[str, Any]],
                    noise_for: Callable[[int], torch.Tensor | None] = lambda tick: None) -> list[np.ndarray]:
    """LeRobot's own pre-processor -> ``select_action`` -> post-processor on the same stream, one tick at a time."""
    from getiaction_export.sources.lerobot_folder import load_folder

    policy, pre, post = load_folder(folder, lambda config: setattr(config, "load_vlm_weights", False)
                                    if hasattr(config, "load_vlm_weights") else None)
    policy = policy.to(torch.float32)
    policy.reset()
    actions = []
    with torch.no_grad():
        for tick in range(TICKS):
            processed = pre(observations(tick))
            batch = {k: v for k, v in processed.items() if k != "action"}
            noise = noise_for(tick)
            action = policy.select_action(batch) if noise is None else policy.select_action(batch, noise=noise)
            actions.append(post(action).numpy()[0].astype(np.float64))
    return actions


def fp32_bound(package: Path) -> Tolerance:
    manifest = json.loads((package / "manifest.json").read_text())
    bound = manifest["getiaction"]["backends"]["onnx"]["tolerance"]["action"]
    return Tolerance(*(bound.get(key) for key in Tolerance._fields))


def assert_same_actions(sent: list[np.ndarray], expected: list[np.ndarray], bound: Tolerance) -> float:
    assert len(sent) == len(expected) == TICKS
    assert np.ptp(np.stack(sent), axis=0).max() > 0.1  # the stream moves the actions: not a constant compared
    figures = compare(np.stack(expected), np.stack(sent), *bound)
    assert figures["passed"], figures
    return float(figures["max_abs_diff"])


def as_float(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize(("cameras", "played"), [(["top"], 3), (["top", "wrist"], 8)],
                         ids=["one-camera-3-of-8", "two-cameras"])
def test_act_runs_in_physicalais_robot_loop_like_lerobots_select_action(cameras: list[str], played: int,
                                                                       tmp_path: Path) -> None:
    """ACT, one camera (fed as ``images``; LeRobot plays n_action_steps=3 of each chunk of 8: the graph returns
    those 3) and two (``images.front`` mapped to the policy's ``top`` by ``policy.cameras``, ``images.wrist``)."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.modeling_act import ACTPolicy

    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE,)),
              **{f"observation.images.{name}": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 64, 80))
                 for name in cameras}}
    stats = dataset_stats()
    stats.update({f"observation.images.{name}": stats["observation.images.top"] for name in cameras})
    folder = save_policy(ACTPolicy, small_act(inputs, {"action": PolicyFeature(type=FeatureType.ACTION,
                                                                                 shape=(ACTION,))},
                                            n_action_steps=played),
                         tmp_path / "act", stats)
    robot_names = {"top": "front", "wrist": "wrist"} if len(cameras) == 2 else {"top": "top"}
    mapping = ["policy.cameras={front: top}"] if len(cameras) == 2 else []
    run = run_cli(f"policy.path={folder}", *mapping, "format=onnx", "format.opset_version=17",
                  "format.latency=false", "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    package = tmp_path / "job"
    section = json.loads((package / "manifest.json").read_text())["getiaction"]
    assert section["robot_loop"]["ok"] and "not fed by the robot loop" not in run.stdout, section["robot_loop"]
    assert section["outputs"][0]["shape"][1:] == [played, ACTION]  # what LeRobot's select_action plays
    frames = {name: frame_stream(64, 80, seed) for seed, name in enumerate(cameras)}
    robot = TestRobot(state_stream(STATE))
    sent = drive(package, robot, {robot_names[name]: TestCamera(robot, frames[name]) for name in cameras})

    def observation(tick: int) -> dict[str, Any]:
        return {"observation.state": torch.from_numpy(robot.states(tick))[None],
                **{f"observation.images.{name}": as_float(frames[name](tick)) for name in cameras}}

    assert_same_actions(sent, lerobot_actions(folder, observation), fp32_bound(package))


def test_smolvla_runs_in_physicalais_robot_loop_with_a_task(tmp_path: Path) -> None:
    """SmolVLA, two cameras and a task string: the loop feeds ``task``, the package tokenizes it and draws its noise;
    LeRobot's select_action given each chunk's drawn noise sends the same actions."""
    vlm = write_vlm(tmp_path / "vlm")
    folder = save_smolvla(tmp_path / "smolvla", vlm, {"top": (3, 48, 64), "wrist": (3, 40, 40)}, state=6, action=5,
                          n_action_steps=5)  # LeRobot plays 5 of each chunk of 8: the graph returns those
    run = run_cli(f"policy.path={folder}", "format=onnx", "format.latency=false", "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    package = tmp_path / "job"
    task = "pick up the cube"
    frames = {"top": frame_stream(48, 64, 0), "wrist": frame_stream(40, 40, 1)}
    robot = TestRobot(state_stream(6))
    drawn: list[np.ndarray] = []
    sent = drive(package, robot, {name: TestCamera(robot, frames[name]) for name in frames}, task, drawn)
    chunk = 5
    assert len(drawn) == TICKS // chunk

    def observation(tick: int) -> dict[str, Any]:
        return {"observation.state": torch.from_numpy(robot.states(tick))[None], "task": [task],
                **{f"observation.images.{name}": as_float(frames[name](tick)) for name in frames}}

    expected = lerobot_actions(folder, observation, lambda tick: torch.from_numpy(drawn[tick // chunk]))
    assert_same_actions(sent, expected, fp32_bound(package))


def test_act_with_temporal_ensembling_exports_with_a_one_line_warning(tmp_path: Path) -> None:
    """LeRobot blends every tick's chunk; physicalai's queue does not: the export says so (the chunk is verified)."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.modeling_act import ACTPolicy

    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE,)),
              "observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 64, 80))}
    folder = save_policy(ACTPolicy, small_act(inputs, {"action": PolicyFeature(type=FeatureType.ACTION,
                                                                                 shape=(ACTION,))},
                                              n_action_steps=1, temporal_ensemble_coeff=0.01),
                         tmp_path / "act", dataset_stats())
    run = run_cli(f"policy.path={folder}", "format=onnx", "format.opset_version=17", "format.latency=false",
                  "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    warning = [line for line in run.stdout.splitlines() if "temporal_ensemble_coeff" in line]
    assert warning == ["[package] ! ACT trained with temporal_ensemble_coeff=0.01: LeRobot's select_action runs the "
                       "model every tick and blends the overlapping chunks; physicalai plays each chunk from its "
                       "queue, so the robot's actions differ from LeRobot's select_action (the chunk itself is "
                       "verified)"], run.stdout
    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    assert "temporal_ensemble_coeff=0.01" in manifest["getiaction"]["play_warning"]
    assert manifest["getiaction"]["outputs"][0]["shape"][1:] == [8, ACTION]  # the whole chunk: LeRobot blends it


def test_diffusion_with_an_observation_history_runs_in_the_loop_through_history_source(tmp_path: Path) -> None:
    """Diffusion (n_obs_steps 2, n_action_steps 4 of horizon 8, DDIM): HistorySource keeps the last 2 observations
    of every tick (the first of the episode repeated); each action sent = LeRobot's select_action, whose queues keep
    the same history, given the start noise the graph holds (policy.noise_seed 0)."""
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    from getiaction_export.physicalai.robot_loop import HistorySource
    from tests.lerobot.conftest import small_diffusion
    from tests.lerobot.test_lerobot_rollout import pusht_features, pusht_stats

    config = small_diffusion(*pusht_features(), noise_scheduler_type="DDIM")
    folder = save_policy(DiffusionPolicy, config, tmp_path / "diffusion", pusht_stats())
    run = run_cli(f"policy.path={folder}", "format=onnx", "format.opset_version=17", "format.latency=false",
                  "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    package = tmp_path / "job"
    section = json.loads((package / "manifest.json").read_text())["getiaction"]
    assert section["robot_loop"]["ok"] and section["history"]["n_obs_steps"] == 2, section["robot_loop"]
    frames = frame_stream(96, 96, 0)
    robot = TestRobot(lambda tick: (256 + 100 * np.sin(0.05 * tick + np.arange(2))).astype(np.float32))
    sent = drive(package, robot, {"top": TestCamera(robot, frames)}, source_class=HistorySource)
    noise = torch.randn((1, 8, 2), generator=torch.Generator().manual_seed(0))

    def observation(tick: int) -> dict[str, Any]:
        return {"observation.state": torch.from_numpy(robot.states(tick))[None],
                "observation.images.top": as_float(frames(tick))}

    assert_same_actions(sent, lerobot_actions(folder, observation, lambda tick: noise), fp32_bound(package))
