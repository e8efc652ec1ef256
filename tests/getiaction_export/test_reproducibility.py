"""Same config -> same bytes, across processes and checkouts; re-runs reproduce a result folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tests.getiaction_export.conftest import read_json

REPO = Path(__file__).resolve().parents[2]


def policies() -> list[str]:
    # module needs a factory, lerobot a LeRobot folder (tests/lerobot): both have tests of their own
    return sorted(p.stem for p in (REPO / "conf" / "policy").glob("*.yaml") if p.stem not in ("module", "lerobot"))


@pytest.mark.parametrize("policy", policies())
def test_two_processes_write_identical_artifacts(cli, tmp_path: Path, policy: str) -> None:
    # dynamo (the exporter that records source paths) for dummy; the bigger policies at 17 keep it quick.
    opset = [] if policy == "dummy" else ["format.opset_version=17", "format.num_random_inputs=0"]
    hashes = {}
    for run in ("a", "b"):
        for fmt in ("onnx", "torch"):
            extra = opset if fmt == "onnx" else []
            result = cli(f"policy={policy}", f"format={fmt}", *extra, f"hydra.run.dir={run}-{fmt}")
            assert result.returncode == 0, result.output
            data = read_json(tmp_path / f"{run}-{fmt}" / "result.json")
            hashes[(run, fmt)] = data["artifact_sha256"][fmt]
            assert len(data["provenance"]["config_sha256"]) == 64
    assert hashes[("a", "onnx")] == hashes[("b", "onnx")]
    assert hashes[("a", "torch")] == hashes[("b", "torch")]
    model = onnx.load(str(tmp_path / "a-onnx" / f"{policy}.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["getiaction.config_sha256"] == read_json(tmp_path / "a-onnx" / "result.json")["provenance"][
        "config_sha256"]
    assert "output_dir" not in json.loads(props["getiaction.app_config"])
    # Nothing path-dependent inside the model: not the checkout, not the output folder.
    data = (tmp_path / "a-onnx" / f"{policy}.onnx").read_bytes()
    assert str(REPO).encode() not in data and str(tmp_path).encode() not in data


def test_reproduce_matches_then_names_a_changed_value(cli, tmp_path: Path) -> None:
    assert cli("format.opset_version=17", "hydra.run.dir=job").returncode == 0
    job = tmp_path / "job"
    ok = subprocess.run([sys.executable, "-m", "getiaction_export.reproduce", str(job)],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "✓ onnx: sha256" in ok.stdout and ok.stdout.strip().endswith("reproduced")

    changed = tmp_path / "changed"
    shutil.copytree(job, changed)
    config = changed / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("hidden_dim: 32", "hidden_dim: 16"))
    bad = subprocess.run([sys.executable, "-m", "getiaction_export.reproduce", str(changed)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 5, bad.stdout + bad.stderr
    assert "first difference: config.policy.config.hidden_dim: 32 -> 16" in bad.stdout
    assert "NOT reproduced" in bad.stdout


def test_documented_rerun_command_recreates_the_same_bytes(cli, tmp_path: Path) -> None:
    assert cli("format=torch", "hydra.run.dir=first").returncode == 0
    rerun = cli("--config-path", str(tmp_path / "first" / ".hydra"), "--config-name", "config",
                "hydra.run.dir=second")
    assert rerun.returncode == 0, rerun.output
    first, second = (read_json(tmp_path / d / "result.json") for d in ("first", "second"))
    assert first["artifact_sha256"] == second["artifact_sha256"]
    assert first["provenance"]["config_sha256"] == second["provenance"]["config_sha256"]


def test_seed_changes_the_hash(cli, tmp_path: Path) -> None:
    for name, seed in (("s0", 0), ("s1", 1)):
        assert cli("format=torch", f"policy.seed={seed}", f"hydra.run.dir={name}").returncode == 0
    s0, s1 = (read_json(tmp_path / d / "result.json") for d in ("s0", "s1"))
    assert s0["artifact_sha256"]["torch"] != s1["artifact_sha256"]["torch"]
    assert s0["provenance"]["config_sha256"] != s1["provenance"]["config_sha256"]


def test_sweep_summary_shows_short_hashes(cli, tmp_path: Path) -> None:
    assert cli("-m", "format.opset_version=14,17", "hydra.sweep.dir=sweep").returncode == 0
    rows = read_json(tmp_path / "sweep" / "summary.json")["rows"]
    for row in rows:
        full = read_json(tmp_path / "sweep" / row["job"] / "result.json")["artifact_sha256"]["onnx"]
        assert row["sha256"] == full[:12]
