"""Dotted input names (LeRobot's ``observation.state``) in every input sample, through the real CLI.

OmegaConf splits override keys at dots; a per-key override of a dotted name is joined back into the
name, and an override that lacks its ``+`` is refused in the pre-flight with the exact override to use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from getiaction.errors import ConfigError
from getiaction_export.config.preflight import CONFIG_MODULE, preflight
from getiaction_export.config.validation import validate
from tests.getiaction_export.conftest import read_json
from tests.getiaction_export.dotted_modules import INPUTS

REPO = Path(__file__).resolve().parents[2]
MODULE = ("policy=module", "policy._target_=tests.getiaction_export.dotted_modules.make_lerobot_like")
PER_KEY = ("+input_sample.inputs.observation.state.shape=[1,6]",
           "+input_sample.inputs.observation.images.top.shape=[1,3,8,8]",
           "+input_sample.inputs.observation.images.top.dtype=uint8",
           "+input_sample.inputs.observation.images.top.low=0", "+input_sample.inputs.observation.images.top.high=255",
           "+input_sample.inputs.observation.images.wrist.shape=[1,3,8,8]")
FAST = ("format.opset_version=17", "format.latency=false")  # TorchScript: a fraction of dynamo's time


def repo_on_path() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def composed(*overrides: str):  # type: ignore[no-untyped-def]
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        preflight(list(overrides), [])
    message = str(caught.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------
# config: per-key dotted names are joined back, refusals name the working override
# ------------------------------------------------------------------------------------------------
def test_per_key_dotted_names_are_joined_back_into_the_names() -> None:
    config = validate(composed("input_sample=random", *PER_KEY))
    specs = config.input_sample.inputs
    assert list(specs) == list(INPUTS)
    assert specs["observation.state"].shape == [1, 6] and specs["observation.state"].dtype == "float32"
    assert (specs["observation.images.top"].shape, specs["observation.images.top"].dtype) == ([1, 3, 8, 8], "uint8")


def test_a_per_key_override_refines_an_input_given_as_a_dict() -> None:
    config = validate(composed("input_sample=random", "+input_sample.inputs={observation.state: {shape: [1,6]}}",
                               "+input_sample.inputs.observation.state.dtype=int64"))
    assert list(config.input_sample.inputs) == ["observation.state"]
    assert config.input_sample.inputs["observation.state"].shape == [1, 6]
    assert config.input_sample.inputs["observation.state"].dtype == "int64"


def test_a_uint8_camera_without_its_range_is_a_config_error_not_a_crash() -> None:
    from getiaction_export.stages.sample import random_sample

    with pytest.raises(ConfigError, match=r"observation\.images\.top: low\.\.high -1\.0\.\.1\.0 .* uint8's 0\.\.255"):
        random_sample({"observation": {"images": {"top": {"shape": [1, 3, 8, 8], "dtype": "uint8"}}}}, seed=0)
    sample = random_sample({"observation.images.top": {"shape": [1, 3, 8, 8], "dtype": "uint8", "low": 0, "high": 255}},
                           seed=0)
    assert sample["observation.images.top"].dtype == torch.uint8 and int(sample["observation.images.top"].max()) > 200


def test_a_misspelt_spec_key_under_a_dotted_name_is_still_named() -> None:
    message = error_of("input_sample=random", "+input_sample.inputs.observation.state.shap=[1,6]")
    assert "input_sample.inputs.observation.state.shap: unknown key (did you mean 'shape'?)" in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (("input_sample=random", "input_sample.inputs.state.shape=[1,8]"),
         "input_sample.inputs.state.shape: not in the config yet; add '+' in front to add it: "
         "'+input_sample.inputs.state.shape=[1,8]'"),
        (("input_sample=random", "input_sample.inputs={state: {shape: [1,8]}}"),
         "input_sample.inputs: not in the config yet; add '+' in front to add it: "
         "'+input_sample.inputs={state: {shape: [1,8]}}'"),
        (("input_sample=random", "input_sample.inputs.observation.state.shape=[1,6]"),
         "add '+' in front to add it: '+input_sample.inputs.observation.state.shape=[1,6]'"),
        (("input_sample=random", "input_sample.inputs={observation.state: {shape: [1,6]}}"),
         "add '+' in front to add it: '+input_sample.inputs={observation.state: {shape: [1,6]}}'"),
        (("input_sample.inputs.observation.state.shape=[1,6]",),  # input_sample=from_policy reads no inputs
         "read only by input_sample=random, not input_sample=from_policy; "
         "use input_sample=random '+input_sample.inputs.observation.state.shape=[1,6]'"),
        (("+input_sample.inputs.state.shape=[1,8]",),
         "input_sample.inputs: read only by input_sample=random, not input_sample=from_policy; "
         "add input_sample=random"),
        (("input_sample=random", "input_sample.path=obs.npz"),
         "input_sample.path: read only by input_sample=file, not input_sample=random; "
         "use input_sample=file input_sample.path=obs.npz"),
        (("format.output_tolerances.action.atol=1e-4",),
         "add '+' in front to add it: +format.output_tolerances.action.atol=1e-4"),
    ],
)
def test_an_override_without_its_plus_is_refused_with_the_working_one(overrides: tuple, fragment: str) -> None:
    assert fragment in error_of(*overrides)


def test_misspelt_keys_keep_their_closest_match_not_a_plus() -> None:
    assert error_of("format.opset=14").startswith("format.opset: unknown key (did you mean 'opset_version'?)")
    assert error_of("policy.config.hiden_dim=3").startswith("policy.config.hiden_dim: unknown key (did you mean")
    assert error_of("format.foo.bar=1").startswith("format.foo: unknown key; valid: name, opset_version")


# ------------------------------------------------------------------------------------------------
# through the real CLI
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "fix"),
    [
        ("input_sample.inputs.observation.state.shape=[1,6]", "'+input_sample.inputs.observation.state.shape=[1,6]'"),
        ("input_sample.inputs={observation.state: {shape: [1,6]}}",
         "'+input_sample.inputs={observation.state: {shape: [1,6]}}'"),
        ("input_sample.inputs.state.shape=[1,8]", "'+input_sample.inputs.state.shape=[1,8]'"),
    ],
)
def test_cli_refuses_a_missing_plus_before_anything_runs(cli, tmp_path: Path, override: str, fix: str) -> None:
    run = cli(*MODULE, "input_sample=random", override, "hydra.run.dir=job", env=repo_on_path())
    assert run.returncode == 2, run.output
    (line,) = [line for line in run.stderr.splitlines() if line.strip()]
    assert line.startswith("error: input_sample.inputs") and line.endswith(f"add '+' in front to add it: {fix}")
    assert "Traceback" not in run.output and not (tmp_path / "job").exists()  # refused in the pre-flight


def test_per_key_dotted_overrides_export_end_to_end(cli, tmp_path: Path) -> None:
    """Dynamo (opset 18): the graph's inputs, result.json and the manifest keep LeRobot's names."""
    run = cli(*MODULE, "input_sample=random", *PER_KEY, "format.latency=false", "hydra.run.dir=job",
              env=repo_on_path())
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["status"] == "ok" and result["exporter"] == "dynamo"
    assert result["input_sample"] == {
        "observation.state": {"shape": [1, 6], "dtype": "float32"},
        "observation.images.top": {"shape": [1, 3, 8, 8], "dtype": "uint8"},
        "observation.images.wrist": {"shape": [1, 3, 8, 8], "dtype": "float32"},
    }
    session = ort.InferenceSession(result["artifacts"]["onnx"])
    assert [i.name for i in session.get_inputs()] == list(INPUTS)
    feed = {"observation.state": np.ones((3, 6), np.float32),
            "observation.images.top": np.full((3, 3, 8, 8), 255, np.uint8),
            "observation.images.wrist": np.zeros((3, 3, 8, 8), np.float32)}
    (action,) = session.run(None, feed)
    assert action.shape == (3, 6)
    manifest = read_json(tmp_path / "job" / "manifest.json")
    assert [i["name"] for i in manifest["getiaction"]["inputs"]] == list(INPUTS)
    assert "observation.state" in [f["init_args"]["name"] for f in manifest["model"]["input_features"]]


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_file_sample_with_dotted_keys_exports_end_to_end(cli, tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    arrays = {"observation.state": rng.normal(size=(2, 6)).astype(np.float32),
              "observation.images.top": rng.integers(0, 255, size=(2, 3, 8, 8), dtype=np.uint8),
              "observation.images.wrist": rng.random(size=(2, 3, 8, 8)).astype(np.float32)}
    path = tmp_path / f"obs{suffix}"
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        torch.save({name: torch.from_numpy(array) for name, array in arrays.items()}, path)
    run = cli(*MODULE, "input_sample=file", f"input_sample.path={path}", *FAST, "hydra.run.dir=job", env=repo_on_path())
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert list(result["input_sample"]) == list(INPUTS)
    assert result["input_sample"]["observation.images.top"] == {"shape": [2, 3, 8, 8], "dtype": "uint8"}
    assert result["parity"]["action"]["passed"] and result["parity_cases"][0]["case"] == "sample b=2"
    session = ort.InferenceSession(result["artifacts"]["onnx"])
    assert [i.name for i in session.get_inputs()] == list(INPUTS)
