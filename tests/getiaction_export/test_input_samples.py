"""input_sample=random|file and policy=module through the real CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from tests.getiaction_export.conftest import read_json


def test_random_sample_is_seeded_and_shaped_by_config(cli, tmp_path: Path) -> None:
    args = ["input_sample=random", "+input_sample.inputs.state.shape=[3,7]", "format.opset_version=17"]
    for name in ("a", "b"):
        assert cli(*args, f"hydra.run.dir={name}").returncode == 0
    a, b = (read_json(tmp_path / n / "result.json") for n in "ab")
    assert a["input_sample"] == {"state": {"shape": [3, 7], "dtype": "float32"}}
    assert a["parity"]["action"]["passed"]
    assert a["parity_cases"] == b["parity_cases"]  # same seed, same inputs, same figures


def test_file_sample_from_npz_and_pt(cli, tmp_path: Path) -> None:
    states = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    np.savez(tmp_path / "obs.npz", state=states)
    torch.save({"state": torch.from_numpy(states)}, tmp_path / "obs.pt")
    for name in ("obs.npz", "obs.pt"):
        run = cli("input_sample=file", f"input_sample.path={tmp_path / name}", "format.opset_version=17",
                  f"hydra.run.dir=run-{name}")
        assert run.returncode == 0, run.output
        result = read_json(tmp_path / f"run-{name}" / "result.json")
        assert result["input_sample"]["state"]["shape"] == [4, 7]
        assert result["parity_cases"][0]["case"] == "sample b=4"


def test_file_sample_that_the_forward_rejects_is_reported(cli, tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong.npz", state=np.zeros((1, 5), dtype=np.float32))
    run = cli("input_sample=file", f"input_sample.path={tmp_path / 'wrong.npz'}", "hydra.run.dir=job")
    assert run.returncode == 2  # the user's sample is at fault, not the export
    assert "input_sample=file: forward failed on the input sample (state[1, 5] float32)" in run.output
    assert "the policy's own sample_input is state[1, 7] float32" in run.output
    np.savez(tmp_path / "keys.npz", observation=np.zeros((1, 7), dtype=np.float32))
    run = cli("input_sample=file", f"input_sample.path={tmp_path / 'keys.npz'}", "hydra.run.dir=job2")
    assert run.returncode == 2
    assert "the forward reads key 'state', which the sample lacks (sample has ['observation'])" in run.output


def test_any_module_with_keyword_inputs(cli, tmp_path: Path) -> None:
    run = cli("policy=module", "policy._target_=torch.nn.Linear", "+policy.in_features=4", "+policy.out_features=2",
              "policy.call_style=kwargs", "input_sample=random", "+input_sample.inputs.input.shape=[1,4]",
              "hydra.run.dir=job")
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["policy"]["class_path"] == "torch.nn.modules.linear.Linear"
    session = ort.InferenceSession(result["artifacts"]["onnx"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    (out,) = session.run(None, {"input": np.ones((5, 4), dtype=np.float32)})
    assert out.shape == (5, 2)
