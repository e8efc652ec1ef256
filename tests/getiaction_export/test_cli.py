"""The application through its real command line (subprocesses, outputs under tmp_path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from getiaction.policies import Dummy, DummyConfig
from tests.getiaction_export.conftest import read_json


def test_single_export_writes_verified_onnx_and_result(cli, tmp_path: Path) -> None:
    run = cli("format=onnx", "policy=dummy", "hydra.run.dir=job")
    assert run.returncode == 0, run.output
    job = tmp_path / "job"
    result = read_json(job / "result.json")
    assert result["schema_version"] == 1
    assert result["status"] == "ok" and result["error"] is None and result["exit_code"] == 0
    assert result["opset"] == {"requested": 18, "saved": 18}
    assert result["exporter"] == "dynamo"
    assert result["parity"]["action"]["passed"] is True
    assert result["parity"]["action"]["max_abs_diff"] <= 1e-5
    assert set(result["timings"]) >= {"build", "sample", "export", "check", "verify"}
    assert {"torch", "onnx", "onnxruntime", "python"} <= set(result["versions"])
    model_path = Path(result["artifacts"]["onnx"])
    assert model_path == job / "dummy.onnx"
    assert onnx.load(str(model_path)).opset_import[0].version == 18
    assert result["artifact_sizes"]["onnx"] == model_path.stat().st_size
    # The page and the package's manifest are written too; Hydra's record stays for reproduction and its log
    # file is complete (the process leaves its objects to the OS at exit, but the atexit handlers still run).
    assert "<svg " in (job / "report.html").read_text() and read_json(job / "manifest.json")
    assert (job / ".hydra" / "config.yaml").is_file()
    assert "[report]" in (job / "export.log").read_text()
    assert not [p for p in job.iterdir() if p.name.startswith(".") and p.name != ".hydra"]
    # Console: a line per stage, the artifact, no exporter chatter, no traceback.
    for stage in ("[build] ✓", "[sample] ✓", "[export] ✓", "[check] ✓", "[verify] ✓ action", "[report] ✓"):
        assert stage in run.stdout
    assert "[torch.onnx]" not in run.output and "Traceback" not in run.output


def test_opset_sweep_honours_every_opset_and_summarises(cli, tmp_path: Path) -> None:
    run = cli("-m", "format=onnx", "policy=dummy", "format.opset_version=14,17,18,20", "hydra.sweep.dir=sweep")
    assert run.returncode == 0, run.output
    sweep = tmp_path / "sweep"
    summary = read_json(sweep / "summary.json")
    assert summary["jobs"] == 4 and summary["ok"] == 4 and summary["exit_code"] == 0
    assert [row["opset"] for row in summary["rows"]] == ["14/14", "17/17", "18/18", "20/20"]
    assert [row["exporter"] for row in summary["rows"]] == ["torchscript", "torchscript", "dynamo", "dynamo"]
    for row in summary["rows"]:
        assert "format.opset_version=" in row["job"]  # job folders are named after the overrides
        opset = int(row["opset"].split("/")[0])
        saved = onnx.load(str(sweep / row["job"] / "dummy.onnx")).opset_import[0].version
        assert saved == opset
    markdown = (sweep / "summary.md").read_text()
    assert markdown.count("✅ ok") == 4
    assert "4/4 jobs ok" in run.stdout


def test_sweep_with_a_bad_opset_keeps_good_jobs_and_exits_non_zero(cli, tmp_path: Path) -> None:
    # ACT needs opset 14 (scaled_dot_product_attention): a valid config that fails only when exported
    run = cli("-m", "policy=act", "format.opset_version=14,13", "hydra.sweep.dir=sweep")
    assert run.returncode == 3, run.output  # export error
    sweep = tmp_path / "sweep"
    good = read_json(sweep / "format.opset_version=14,policy=act" / "result.json")
    bad = read_json(sweep / "format.opset_version=13,policy=act" / "result.json")
    assert good["status"] == "ok" and (sweep / "format.opset_version=14,policy=act" / "act.onnx").is_file()
    assert bad["status"] == "failed" and bad["stage"] == "export" and bad["exit_code"] == 3
    assert "opset" in bad["error"] and ">= 14" in bad["error"]
    assert not (sweep / "format.opset_version=13,policy=act" / "act.onnx").exists()
    summary = read_json(sweep / "summary.json")
    assert (summary["ok"], summary["failed"]) == (1, 1)
    assert "Traceback" not in run.output


def test_export_from_checkpoint_matches_the_original_policy(cli, tmp_path: Path) -> None:
    torch.manual_seed(123)
    policy = Dummy(config=DummyConfig(action_shape=(5,), hidden_dim=16)).eval()
    checkpoint = policy.to_torch(tmp_path / "trained.pt")
    run = cli(f"checkpoint={checkpoint}", "format.opset_version=17", "hydra.run.dir=job")
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["policy"]["source"] == "checkpoint"
    assert result["policy"]["checkpoint"] == str(checkpoint)
    assert len(result["policy"]["checkpoint_sha256"]) == 64
    session = ort.InferenceSession(result["artifacts"]["onnx"])
    state = torch.randn(3, 5)
    expected = policy({"state": state}).detach().numpy()
    (actual,) = session.run(None, {"state": state.numpy()})
    assert np.abs(actual - expected).max() <= 1e-5
    assert Path(result["artifacts"]["onnx"]).name == "trained.onnx"


def test_torch_format_writes_a_checkpoint_that_reloads_bit_exactly(cli, tmp_path: Path) -> None:
    run = cli("format=torch", "policy.config.action_shape=[2,3]", "hydra.run.dir=job")
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["parity"]["action"]["max_abs_diff"] == 0.0
    restored = Dummy.from_torch(result["artifacts"]["torch"])
    assert restored.config == DummyConfig(action_shape=(2, 3))
    torch.load(result["artifacts"]["torch"], weights_only=True)


def test_fresh_policies_are_seeded_from_config(cli, tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert cli("format=torch", f"policy.seed={seed}", f"hydra.run.dir={name}").returncode == 0
    weights = {n: torch.load(tmp_path / n / "dummy.pt", weights_only=True)["state_dict"] for n in "abc"}
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert not all(torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])


def test_existing_artifact_is_not_overwritten_without_overwrite(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "dummy.onnx").write_bytes(b"precious")
    run = cli(f"output_dir={out}", "format.opset_version=14", "hydra.run.dir=job")
    assert run.returncode == 2
    assert "already exists" in run.output and "overwrite=true" in run.output
    assert (out / "dummy.onnx").read_bytes() == b"precious"
    assert cli(f"output_dir={out}", "format.opset_version=14", "overwrite=true", "hydra.run.dir=job2").returncode == 0
    assert onnx.load(str(out / "dummy.onnx")).opset_import[0].version == 14
