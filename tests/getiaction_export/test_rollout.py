"""Closed-loop parity (``rollout=pusht``) through the real command line and the rollout modules.

The policies are seeded, untrained and small (ACT fitted to PushT by conf/fit/, and the
``Seeker`` of rollout_modules.py); every figure asserted is measured in the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from getiaction.errors import ConfigError
from getiaction_export.rollout.adapter import bind_inputs, fit_problems
from getiaction_export.rollout.drivers import PackageDriver, QueueDriver, ReplayDriver
from getiaction_export.rollout.episodes import compare, run_episode
from getiaction_export.rollout.pusht import PushT
from tests.getiaction_export.conftest import read_json

REPO = Path(__file__).resolve().parents[2]
SEEKER = "policy._target_=tests.getiaction_export.rollout_modules.make_seeker"
QUICK = ["format.latency=false", "rollout.episodes=1", "rollout.steps=60"]


def repo_on_path() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def test_act_format_all_rolls_out_every_artifact(cli, tmp_path: Path) -> None:
    """The issue's command, trimmed for time: every artifact driven, packages through physicalai."""
    run = cli("policy=act", "rollout=pusht", "format=all", "format.formats=[torch,onnx,openvino,openvino_int8]",
              *QUICK, "rollout.steps=80", "hydra.run.dir=job")
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    rollout = result["rollout"]
    assert rollout["task"] == "pusht" and rollout["status"] == "ok" and rollout["unit"] == "px"
    assert rollout["binding"] == {"state": "state", "images": "images"}
    formats = rollout["formats"]
    assert list(formats) == ["torch", "onnx", "openvino", "openvino_int8"]
    for name, record in formats.items():
        (episode,) = record["episodes"]
        assert episode["steps"] == {"torch": 80, "artifact": 80}
        assert len(episode["state_gap"]) == 81 and len(episode["action_gap"]) == 80
        assert len(episode["torch_xy"]) == len(episode["artifact_xy"]) == 81
        assert episode["torch_xy"][0] == episode["artifact_xy"][0]  # the same initial state from the same seed
        assert record["passed"] and record["max_state_gap"] <= record["max_gap"], name
    assert formats["torch"]["max_state_gap"] == 0.0 and formats["torch"]["max_action_gap"] == 0.0
    assert "physicalai select_action" in formats["onnx"]["driver"]
    assert "f32 hint" in formats["openvino"]["driver"]
    assert formats["openvino_int8"]["driver"] == "OpenVINO behind a select_action queue"
    for name in ("onnx", "openvino"):  # fp32: measured ~5e-5 px; the bound is 0.01 px
        assert formats[name]["max_gap"] == 0.01 and formats[name]["max_state_gap"] < 1e-3
    int8 = formats["openvino_int8"]
    assert int8["max_gap"] == 16.0 and int8["max_gap_source"] == "pusht default"
    assert int8["max_state_gap"] > 100 * formats["onnx"]["max_state_gap"]  # INT8 drifts; fp32 does not
    # PyTorch's own float32 closed loop against the same episodes in float64: far inside the 0.01 px default, which
    # it would raise for a model whose rounding compounds (rollout_bound); recorded per fp32 format
    drift = rollout["torch"]["float64_drift"]
    assert isinstance(drift, float) and 0 <= drift < 0.01 / 4 and formats["onnx"]["float64_drift"] == drift
    assert formats["onnx"]["max_gap_source"] == "pusht default" and formats["openvino_int8"]["float64_drift"] is None
    # the fit, PyTorch's runs (float32, float64), formats, and each verified format on its own path
    assert run.stdout.count("[rollout] ✓") == 1 + 1 + 1 + 4 + 3
    for name in ("onnx", "openvino", "openvino_int8"):  # PyTorch on every observation the artifact's policy ran on
        on_path = formats[name]["on_path"]
        assert on_path["passed"] and on_path["runs"] == 80 // 20 == len(on_path["per_run"][0]), name  # chunk 20
        assert [step for step, _ in on_path["per_run"][0]] == list(range(0, 80, 20)), name
        assert max(diff for _, diff in on_path["per_run"][0]) == pytest.approx(on_path["max_abs_diff"], rel=1e-3)
        assert f"[rollout] ✓ {name} on its own path: PyTorch given the {on_path['runs']} observations" in run.stdout
    assert formats["onnx"]["on_path"]["max_abs_diff"] < formats["onnx"]["on_path"]["atol"]
    assert formats["onnx"]["on_path"]["model_bound"] and not formats["openvino_int8"]["on_path"]["model_bound"]
    assert formats["torch"]["on_path"] is None  # the checkpoint is held bit-identical per call instead
    assert "rollout" in result["formats"]["onnx"]["timings"]
    page = (tmp_path / "job" / "report.html").read_text()
    assert 'id="rollout"' in page and 'id="fig-rollout-openvino_int8"' in page


def test_a_perturbed_artifact_fails_the_rollout_and_is_not_kept(cli, tmp_path: Path) -> None:
    """Per-call parity loosened to let a 0.5 px offset through: the closed loop still catches it."""
    args = ["policy=module", SEEKER, "+policy.export_offset=0.5", "format.opset_version=17", "format.atol=1",
            "rollout=pusht", *QUICK]
    run = cli(*args, "hydra.run.dir=bad", env=repo_on_path())
    assert run.returncode == 4, run.output
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("[rollout] ✗ rollout: onnx's agent strayed ")
    assert "bound 0.01 px for fp32, pusht default; override with rollout.max_gap.fp32=..." in last
    folder = tmp_path / "bad"
    result = read_json(folder / "result.json")
    assert result["exit_code"] == 4 and result["stage_failed"] == "rollout"
    record = result["rollout"]["formats"]["onnx"]
    assert not record["passed"] and record["max_state_gap"] > 0.01
    assert record["episodes"][0]["action_gap"][0] == pytest.approx(0.5, abs=1e-3)  # the offset, before feedback
    assert result["rollout"]["status"] == "failed"
    assert result["parity"]["action"]["passed"]  # the per-call gate let it through (atol 1)
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".onnx", ".json") or p.name.startswith(".")) == \
        [".hydra", "result.json"]  # no model, no manifest, no staging or package leftovers

    run = cli(*args, "+rollout.max_gap.fp32=50", "hydra.run.dir=loose", env=repo_on_path())
    assert run.returncode == 0, run.output
    record = read_json(tmp_path / "loose" / "result.json")["rollout"]["formats"]["onnx"]
    assert record["passed"] and record["max_gap"] == 50 and record["max_gap_source"] == "rollout.max_gap.fp32"
    assert (tmp_path / "loose" / "make_seeker.onnx").is_file()


def test_an_artifact_that_differs_only_on_closed_loop_observations_fails_on_its_own_path(cli, tmp_path: Path) -> None:
    """0.5 px off only on frames as bright as PushT's: the parity gate's random frames miss it, the on-path check
    (PyTorch on every observation the artifact met) does not; named in one line, nothing kept."""
    run = cli("policy=module", SEEKER, "+policy.export_trap=0.5", "format.opset_version=17", "rollout=pusht", *QUICK,
              "+rollout.max_gap.fp32=1000", "hydra.run.dir=trap", env=repo_on_path())
    assert run.returncode == 4, run.output
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("[rollout] ✗ rollout: onnx differs from PyTorch on an observation it met in closed loop "
                           "(step 0 of episode seed 0: action: max abs diff 0.5 > atol "), last
    assert last.endswith("beyond the per-call bound it met on the parity gate's inputs"), last
    result = read_json(tmp_path / "trap" / "result.json")
    assert result["parity"]["action"]["passed"] and result["parity"]["action"]["max_abs_diff"] < 1e-3
    record = result["rollout"]["formats"]["onnx"]
    on_path = record["on_path"]
    assert not record["passed"] and not on_path["passed"] and on_path["worst"] == {"seed": 0, "step": 0}
    assert on_path["max_abs_diff"] == pytest.approx(0.5, abs=1e-3) and on_path["runs"] == 60 // 8 + 1
    assert record["max_state_gap"] < 1000  # the trajectory gate alone would have let it through
    assert not (tmp_path / "trap" / "make_seeker.onnx").exists()


def test_runs_that_part_while_the_artifact_acts_as_pytorch_pass_with_a_warning(cli, tmp_path: Path) -> None:
    """An artifact 1e-4 px off per call (inside the fp32 bound PyTorch's own rounding sets) against a trajectory
    bound of 1e-6 px: the runs part, but PyTorch given the artifact's observations does what it did, so the
    artifact passes, with a ``!`` line saying where the runs parted and how PyTorch itself answers there."""
    run = cli("policy=module", SEEKER, "+policy.export_offset=1e-4", "format.opset_version=17", "rollout=pusht",
              *QUICK, "+rollout.max_gap.fp32=1e-6", "hydra.run.dir=parted", env=repo_on_path())
    assert run.returncode == 0, run.output
    record = read_json(tmp_path / "parted" / "result.json")["rollout"]["formats"]["onnx"]
    assert record["passed"] and record["max_state_gap"] > 1e-6 and record["on_path"]["passed"]
    assert record["on_path"]["model_bound"] and 5e-5 < record["on_path"]["max_abs_diff"] < 3e-4  # float32 near 256
    parted = record["parted"]
    gaps = record["episodes"][0]["state_gap"]
    assert parted["seed"] == 0 and gaps[parted["step"]] > 1e-6 and max(gaps[:parted["step"]]) <= 1e-6
    witness = parted["witness"]
    # the witness: the chunk that played the action before the runs parted, PyTorch's own answer to both observations
    assert witness["step"] == 8 * ((parted["step"] - 1) // 8)
    assert witness["state_gap"] == pytest.approx(gaps[witness["step"]], rel=1e-3)
    assert 0 <= witness["action_gap"] < 1  # observations ~1e-4 px apart (a smooth policy)
    line = next(line for line in run.stdout.splitlines() if line.startswith("[rollout] ! onnx: the runs parted"))
    assert f"at step {parted['step']} of episode seed 0" in line and "acted as PyTorch on every observation" in line
    assert f"PyTorch itself answers the two runs' observations at step {witness['step']}" in line
    assert (tmp_path / "parted" / "make_seeker.onnx").is_file()
    page = (tmp_path / "parted" / "report.html").read_text()
    assert "<th>on its own path</th>" in page and f"&gt; 1e-06 px, parted at step {parted['step']}" in page


def test_a_sweep_over_precisions_writes_one_comparing_report(cli, tmp_path: Path) -> None:
    run = cli("-m", "policy=module", SEEKER, "format=openvino", "format.precision=fp32,fp16,int8",
              "rollout=pusht", *QUICK, "hydra.sweep.dir=sweep", env=repo_on_path())
    assert run.returncode == 0, run.output
    for number in (1, 2, 3):  # where the sweep stands, job by job
        assert f"[sweep] ▶ job {number}/3: " in run.stdout and f"[sweep] ✓ job {number}/3 ok in " in run.stdout
    sweep = tmp_path / "sweep"
    gaps = {}
    for job in sweep.iterdir():
        if (job / "result.json").is_file():
            record = read_json(job / "result.json")["rollout"]["formats"]["openvino"]
            gaps[record["precision"]] = record["max_state_gap"]
    assert set(gaps) == {"fp32", "fp16", "int8"}
    assert gaps["fp32"] < 0.01 and gaps["fp32"] <= gaps["int8"]
    page = (sweep / "report.html").read_text()
    assert 'id="fig-sweep-rollout"' in page
    summary = (sweep / "summary.md").read_text()
    assert "rollout gap" in summary and summary.count(" px ") >= 3


def test_a_policy_that_does_not_fit_the_task_is_refused_before_any_export(cli, tmp_path: Path) -> None:
    run = cli("policy=act", "rollout=pusht", "policy.config.state_dim=14", "policy.config.image_shape=[3,64,64]",
              "hydra.run.dir=job")
    assert run.returncode == 2, run.output
    last = run.stderr.strip().splitlines()[-1]
    assert last == ("[rollout] ✗ rollout=pusht: the policy does not fit pusht: state (B, 14) vs (B, 2); images "
                    "(B, 3, 64, 64) vs (B, 3, 96, 96) (set the policy's shapes to the task's; "
                    "conf/fit/pusht_<policy>.yaml does it for a shipped policy)")
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == [".hydra", "export.log", "report.html",
                                                                    "result.json"]


@pytest.mark.parametrize(("override", "message"), [
    ("+rollout.max_gap.fp8=1", "rollout.max_gap.fp8: not a precision; use fp32, fp16, int8"),
    ("rollout.episodes=0", "rollout.episodes=0: must be positive"),
    ("rollout.adapter=no_such_module.Task", "rollout.adapter: cannot import 'no_such_module'"),
    ("rollout.adapter=getiaction_export.rollout.pusht.ENV_ID", "is not a TaskAdapter subclass"),
    ("rollout.adapter=tests.getiaction_export.rollout_modules.NeedsMissing",
     "rollout=pusht needs the no_such_simulator_here package: pip install no_such_simulator_here"),
    ("rollout.adapter=PushT", "rollout.adapter: 'PushT' is not an import path (module.Class"),
    ("rollout.adapter=getiaction_export.rollout.adapter.TaskAdapter", "defines make_env, observation and tracked"),
    ("rollout.task=push", "rollout.task: this policy reads no task string (only vision-language-action policies "
                          "such as SmolVLA do); remove rollout.task='push'"),
    ("rollout.adapter=tests.getiaction_export.rollout_modules.Unbounded",
     "rollout.max_gap.fp32: Unbounded has no fp32 bound; set +rollout.max_gap.fp32=<largest gap in m>"),
])
def test_bad_rollout_settings_are_one_line_errors(cli, override: str, message: str) -> None:
    run = cli("rollout=pusht", override, env=repo_on_path())
    assert run.returncode == 2, run.output
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_static_batch_other_than_1_is_refused_before_any_export(cli, tmp_path: Path) -> None:
    run = cli("policy=module", SEEKER, "input_sample=random", "+input_sample.inputs.state.shape=[2,2]",
              "+input_sample.inputs.images.shape=[2,3,96,96]", "format.dynamic_batch=false", "rollout=pusht",
              "hydra.run.dir=job", env=repo_on_path())
    assert run.returncode == 2, run.output
    assert run.stderr.strip().splitlines()[-1] == (
        "[rollout] ✗ rollout=pusht: the robot loop feeds batch 1, but input 'state' is [2, 2] with "
        "format.dynamic_batch=false; give a batch-1 input sample or set format.dynamic_batch=true")
    assert not list((tmp_path / "job").glob("*.onnx"))


def test_an_unknown_task_names_the_shipped_ones(cli) -> None:
    run = cli("rollout=pushT")
    assert run.returncode == 2
    assert "rollout" in run.stderr and "pusht" in run.stderr and "none" in run.stderr


def test_another_gymnasium_task_is_one_adapter(cli, tmp_path: Path) -> None:
    """rollout_modules.Pendulum (the README's example) with a Pendulum-shaped module, ONNX and OpenVINO INT8."""
    run = cli("policy=module", "policy._target_=tests.getiaction_export.rollout_modules.make_swinger",
              "rollout=pusht", "rollout.name=pendulum",
              "rollout.adapter=tests.getiaction_export.rollout_modules.Pendulum", "format=all",
              "format.formats=[onnx,openvino]", "format.opset_version=17", *QUICK, "rollout.episodes=2",
              "hydra.run.dir=job", env=repo_on_path())
    assert run.returncode == 0, run.output
    rollout = read_json(tmp_path / "job" / "result.json")["rollout"]
    assert rollout["task"] == "pendulum" and rollout["unit"] == "m" and rollout["plane"] == ["cos θ", "sin θ"]
    for record in rollout["formats"].values():
        assert record["passed"] and record["max_gap"] == 1e-4 and len(record["episodes"]) == 2
    assert "[rollout] ✓ onnx: pendulum tip within" in run.stdout


def test_lerobot_input_names_are_fed_through_the_package(cli, tmp_path: Path) -> None:
    """A camera input not named images[.cam] gets no to_float_tensor step in the package: the driver converts."""
    run = cli("policy=module", "policy._target_=tests.getiaction_export.rollout_modules.make_lerobot_named",
              "format.opset_version=17", "rollout=pusht", *QUICK, "hydra.run.dir=job", env=repo_on_path())
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["rollout"]["binding"] == {"observation.state": "state", "observation.image": "images"}
    manifest = read_json(tmp_path / "job" / "manifest.json")
    assert "preprocessors" not in manifest["model"] or not manifest["model"]["preprocessors"]
    record = result["rollout"]["formats"]["onnx"]
    assert "physicalai select_action" in record["driver"] and record["max_state_gap"] < 1e-3


# -- the modules, without the app


def seeker_runner(offset: float = 0.0):  # type: ignore[no-untyped-def]
    import torch

    from getiaction_export.parity.runtimes import torch_runner
    from tests.getiaction_export.rollout_modules import Seeker

    torch.manual_seed(0)
    module = Seeker().eval()
    run = torch_runner(module, "dict")
    return (lambda batch: [out + offset for out in run(batch)]) if offset else run


def test_the_same_seed_and_policy_replay_bit_identically() -> None:
    """The premise of comparing runs: any gap between two runs from one seed is the policies'."""
    task = PushT()
    env = task.make_env()
    binding = {"state": "state", "images": "images"}
    first, second = (run_episode(task, env, QueueDriver(seeker_runner(), {"images"}), binding, 3, 50)
                     for _ in range(2))
    env.close()
    figures = compare(first, second)
    assert figures["max_state_gap"] == 0.0 and figures["max_action_gap"] == 0.0
    assert first.steps == 50 and np.ptp(np.stack(first.tracked), axis=0).max() > 1.0  # the agent moved


def test_a_constant_action_offset_shows_as_a_state_gap() -> None:
    task = PushT()
    env = task.make_env()
    binding = {"state": "state", "images": "images"}
    reference = run_episode(task, env, QueueDriver(seeker_runner(), {"images"}), binding, 0, 40)
    shifted = run_episode(task, env, QueueDriver(seeker_runner(0.5), {"images"}), binding, 0, 40)
    env.close()
    figures = compare(reference, shifted)
    assert figures["action_gap"][0] == pytest.approx(0.5, abs=1e-4)
    assert 0.05 < figures["max_state_gap"] < 40


def test_a_nan_gap_fails_the_gate_and_a_nan_action_stops_the_episode() -> None:
    from getiaction.errors import VerificationError
    from getiaction_export.rollout.episodes import Run

    reference = Run(tracked=[np.zeros(2)] * 3, actions=[np.zeros(2)] * 2, rewards=[0.0, 0.0])
    broken = Run(tracked=[np.zeros(2), np.zeros(2), np.full(2, np.nan)], actions=[np.zeros(2)] * 2, rewards=[0.0] * 2)
    assert np.isnan(compare(reference, broken)["max_state_gap"])  # max() would have said 0.0
    task = PushT()
    env = task.make_env()
    with pytest.raises(VerificationError, match=r"the action at step 0 of episode seed 0 is not finite"):
        run_episode(task, env, QueueDriver(seeker_runner(float("nan")), {"images"}),
                    {"state": "state", "images": "images"}, 0, 5)
    env.close()


def test_queue_driver_plays_chunks_like_physicalai(tmp_path: Path) -> None:
    """QueueDriver and physicalai's select_action give the same rows from the same package."""
    from physicalai.inference import InferenceModel

    from getiaction_export.config.schemas import ExportConfig, InputSampleSchema, OnnxFormatSchema, PolicySpec
    from getiaction_export.job import run_export
    from getiaction_export.parity.runtimes import OnnxRuntimeModel

    config = ExportConfig(policy=PolicySpec(target="tests.getiaction_export.rollout_modules.make_seeker"),
                          input_sample=InputSampleSchema(), format=OnnxFormatSchema(opset_version=17, latency=False),
                          policy_name="seeker")
    assert run_export(config, tmp_path, echo=lambda line: None).status == "ok"
    package = PackageDriver(InferenceModel(tmp_path))
    queue = QueueDriver(OnnxRuntimeModel(tmp_path / "seeker.onnx", 1), {"images"})
    rng = np.random.default_rng(0)
    for driver in (package, queue):
        driver.reset()
    for _ in range(20):  # 2.5 chunks of 8, each observation new
        observation = {"state": rng.uniform(0, 512, (1, 2)).astype(np.float32),
                       "images": rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)}
        np.testing.assert_array_equal(package.select_action(observation), queue.select_action(observation))
    assert queue.runs == 3


def test_lerobot_input_names_bind_to_the_task() -> None:
    shapes = PushT.observation_shapes
    assert bind_inputs({"observation.state": [1, 2], "observation.image": [1, 3, 96, 96]}, shapes) == \
        {"observation.state": "state", "observation.image": "images"}
    with pytest.raises(ConfigError, match=r"input 'observation.environment_state' has no counterpart"):
        bind_inputs({"observation.environment_state": [1, 16]}, shapes)
    assert fit_problems({"observation.state": [1, 2], "observation.image": [1, 3, 96, 96]}, [1, 100, 2],
                        PushT()) == []
    assert fit_problems({"state": [1, 2], "images": [1, 3, 96, 96]}, [1, 2, 2, 2], PushT()) == []


def test_result_json_stays_small(cli, tmp_path: Path) -> None:
    """Per-step figures are rounded: 2 episodes x 300 steps of one format stay well under 200 kB."""
    run = cli("policy=module", SEEKER, "format.opset_version=17", "format.latency=false", "rollout=pusht",
              "hydra.run.dir=job", env=repo_on_path())
    assert run.returncode == 0, run.output
    size = (tmp_path / "job" / "result.json").stat().st_size
    assert size < 200_000, size
    record = json.loads((tmp_path / "job" / "result.json").read_text())["rollout"]["formats"]["onnx"]
    assert len(record["episodes"]) == 2 and record["episodes"][1]["seed"] == 1


def test_pytorch_replayed_on_an_artifacts_draws_plays_the_same_actions() -> None:
    """A policy that draws its noise (a fresh draw per chunk, returned as an output): the artifact's draws are kept
    per episode and run, chunk by chunk, through PyTorch (given them as an input) - the same rows; an episode of
    PyTorch that needs more chunks than the artifact drew is refused, and so are other draws."""
    import torch

    rng = np.random.default_rng(0)

    def drawing(batch):  # type: ignore[no-untyped-def]
        noise = rng.standard_normal((1, 4, 2)).astype(np.float32)
        return [batch["state"].numpy()[:, None, :] + noise, noise]

    def reference(batch):  # type: ignore[no-untyped-def]
        noise = batch["noise"]
        assert isinstance(noise, torch.Tensor)
        return [batch["state"].numpy()[:, None, :] + noise.numpy()]

    artifact = QueueDriver(drawing, (), keep={"noise": 1})
    observations = [{"state": np.full((1, 2), float(step), np.float32)} for step in range(10)]
    played = {}
    for episode in range(2):
        artifact.reset()
        played[episode] = [artifact.select_action(o) for o in observations]
    assert [len(draws) for draws in artifact.drawn] == [3, 3]  # 10 steps of chunks of 4: 3 runs an episode
    replay = ReplayDriver(reference, (), artifact.drawn, {"noise": "noise"})
    for episode in range(2):
        replay.reset()
        assert all(np.array_equal(replay.select_action(o), row) for o, row in zip(observations, played[episode],
                                                                                 strict=True))
    replay.reset()
    with pytest.raises(IndexError):  # a third episode the artifact never ran
        replay.select_action(observations[0])
    short = ReplayDriver(reference, (), [artifact.drawn[0][:1]], {"noise": "noise"})
    short.reset()
    with pytest.raises(ValueError, match="needs a policy run more than the artifact's made"):
        [short.select_action(o) for o in observations]
