"""``policy=lerobot``: LeRobot folders in, verified packages out, held to LeRobot's own raw-observation inference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from getiaction.errors import ConfigError
from getiaction_export.sources.lerobot import lerobot


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "getiaction_export", "policy=lerobot", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=900)


def test_act_folder_exports_to_a_verified_package(act_folder: Path, tmp_path: Path) -> None:
    run = run_cli(f"policy.path={act_folder}", "format=all", "format.formats=[onnx,openvino]",
                  "format.opset_version=17", "format.latency=false", "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    job = tmp_path / "job"
    result = json.loads((job / "result.json").read_text())
    assert result["parity"]["action"]["passed"] and result["parity"]["action"]["max_abs_diff"] < 1e-4
    bound = result["formats"]["onnx"]["tolerances"]["action"]  # fitted on LeRobot's own float64 run, no fallback
    assert bound["source"] == "fp32 fitted" and bound.get("float64_gap") and not bound.get("fallback"), bound
    graph = onnx.load(str(job / "act.onnx"), load_external_data=False).graph  # named after the policy type
    assert [i.name for i in graph.input] == ["state", "images"]  # what physicalai's robot loop feeds (one camera)
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [8, 6]  # the whole chunk
    manifest = json.loads((job / "manifest.json").read_text())
    assert manifest["model"]["artifacts"] == {"onnx": "act.onnx", "openvino": "act.xml"}
    assert manifest["policy"]["name"] == "act" and result["policy"]["name"] == "act"
    assert "Loading weights" not in run.stdout  # LeRobot's own prints stay off the console
    # the graph is fed under the robot loop's names (RobotNamed); the policy is named by the module it wraps
    wrapped = "getiaction_export.sources.lerobot.LeRobotExport"
    assert result["policy"]["class_path"] == wrapped and manifest["policy"]["source"]["class_path"] == wrapped
    assert manifest["getiaction"]["policy"]["class_path"] == wrapped
    assert "[build] ✓ LeRobotExport from config" in run.stdout, run.stdout


def test_the_gate_compares_with_lerobots_own_normalization(act_folder: Path) -> None:
    module = lerobot(str(act_folder))
    sample = module.sample_input
    with torch.no_grad():
        ours, theirs = module(sample), module.parity_reference(sample)
        assert float((ours - theirs).abs().max()) < 1e-5
        module.normalize.modes.clear()  # a graph that lost the input normalization ...
        module.unnormalize.modes.clear()
        lost = float((module(sample) - theirs).abs().max())
    assert lost > 0.1, lost  # ... is far outside the gate's 1e-5


def test_diffusion_trained_with_ddpm_exports_with_its_own_sampler(diffusion_folder: Path, tmp_path: Path) -> None:
    """DDPM as trained: the graph draws each noisy step's noise (RandomNormalLike) and returns it as step_noise;
    the package's action = LeRobot's own inference (pre -> predict_action_chunk -> post) given those noises."""
    from physicalai.inference import InferenceModel

    from getiaction_export.sources.lerobot import STEP_NOISE, step_noise_from
    from getiaction_export.sources.lerobot_folder import load_folder

    run = run_cli(f"policy.path={diffusion_folder}", "format=onnx", "format.opset_version=17",
                  "format.latency=false", "hydra.run.dir=ddpm", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "ddpm" / "result.json").read_text())
    assert result["parity"]["action"]["passed"] and result["parity"][STEP_NOISE]["passed"], result["parity"]
    assert [o["name"] for o in result["onnx"]["outputs"]] == ["action", STEP_NOISE]
    assert result["onnx"]["outputs"][1]["shape"][1:] == [4, 8, 6]  # 5 DDPM steps, 4 add noise: (steps, horizon, A)
    graph = onnx.load(str(tmp_path / "ddpm" / "diffusion.onnx")).graph
    assert [n.op_type for n in graph.node if n.op_type.startswith("Random")] == ["RandomNormalLike"]
    policy, pre, post = load_folder(diffusion_folder)
    model = InferenceModel(tmp_path / "ddpm")
    generator = torch.Generator().manual_seed(3)
    state = torch.rand((1, 2, 6), generator=generator) * 4 - 2
    image = torch.rand((1, 2, 3, 96, 96), generator=generator)
    drawn = []
    for _ in range(2):
        out = model({"state": state.numpy(), "images": image.numpy()})
        drawn.append(out[STEP_NOISE])
        start = torch.randn((1, 8, 6), generator=torch.Generator().manual_seed(0))  # policy.noise_seed 0
        processed = pre({"observation.state": state, "observation.images.top": image})
        batch = {k: v for k, v in processed.items() if isinstance(v, torch.Tensor)}
        batch["observation.images"] = batch["observation.images.top"].unsqueeze(-4)
        with torch.no_grad(), step_noise_from(torch.from_numpy(out[STEP_NOISE])):
            expected = post(policy.diffusion.generate_actions(batch, noise=start))
        assert float((expected - torch.from_numpy(out["action"])).abs().max()) < 5e-3  # scale 10, fp32 bound
    assert np.abs(drawn[0] - drawn[1]).min() > 0  # fresh noise every call


def test_the_exported_ddpm_step_draws_afresh_in_its_copies_too(diffusion_folder: Path) -> None:
    """``fresh_draws`` is the exported step's constructor argument (a fresh draw per call; the reference's step draws
    the seeded noise): a deep copy and the fp32 bound's float64 copy keep it."""
    import copy

    from getiaction_export.parity.fp32_bound import Float64Requests, double_copy, float64_default
    from getiaction_export.sources.lerobot import STEP_NOISE, DiffusionStep

    module = lerobot(str(diffusion_folder), names="lerobot")
    step, reference_step = module.step, module.parity_reference.infer
    assert isinstance(step, DiffusionStep) and isinstance(reference_step, DiffusionStep)
    assert step.fresh_draws and not reference_step.fresh_draws
    assert copy.deepcopy(step).fresh_draws and double_copy(step).fresh_draws
    assert not double_copy(reference_step).fresh_draws
    double = double_copy(module)
    feed = {name: t.double() if t.is_floating_point() else t for name, t in module.sample_input.items()}
    with float64_default(), Float64Requests(), torch.no_grad():  # as the fp32 bound runs it
        assert not torch.equal(double(feed)[STEP_NOISE], double(feed)[STEP_NOISE])  # drawn afresh in float64 too


def test_policy_noise_scheduler_ddim_samples_a_ddpm_folder_deterministically(diffusion_folder: Path) -> None:
    """``policy.noise_scheduler=DDIM`` stays an option: one action output, no draw, equal to LeRobot with DDIM."""
    module = lerobot(str(diffusion_folder), noise_scheduler="DDIM")
    sample = module.sample_input
    with torch.no_grad():
        ours, again, theirs = module(sample), module(sample), module.parity_reference(sample)
    assert isinstance(ours, torch.Tensor) and torch.equal(ours, again)  # deterministic: nothing drawn
    assert float((ours - theirs).abs().max()) < 1e-3  # LeRobot's own DDIM inference (scale ~10)
    assert not getattr(module.parity_reference, "conditioned_on", None)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda folder: None, "is not a folder"),
        (lambda folder: folder.mkdir(), "has no config.json"),
        (lambda folder: (folder.mkdir(), (folder / "config.json").write_text('{"type": "vqbet"}')),
         "LeRobot policy type 'vqbet' is not supported yet; supported: act, diffusion"),
    ],
    ids=["missing", "not-lerobot", "other-type"],
)
def test_folders_it_cannot_export_get_one_line(make, fragment: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "policy"
    make(folder)
    with pytest.raises(ConfigError, match=r"^policy\.path: ") as caught:
        lerobot(str(folder))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
