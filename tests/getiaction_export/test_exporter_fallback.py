"""No dead ends from the exporter: one clear line when dynamo fails, and a TorchScript fallback for ``auto``."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import read_json, run_cli

REPO = Path(__file__).resolve().parents[2]
MODULES = "tests.getiaction_export.fallback_modules"
ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def export(tmp_path: Path, factory: str, *args: str):  # type: ignore[no-untyped-def]
    return run_cli("policy=module", f"policy._target_={MODULES}.{factory}", "format.latency=false",
                   "format.opset_version=18", *args, "hydra.run.dir=job", cwd=tmp_path, env=ENV)


def test_auto_falls_back_to_torchscript_and_says_so(tmp_path: Path) -> None:
    run = export(tmp_path, "make_checked")
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["exporter"] == "torchscript" and result["opset"] == {"requested": 18, "saved": 18}
    fallback = result["exporter_fallback"]
    assert (fallback["from"], fallback["to"]) == ("dynamo", "torchscript")
    assert "fallback_modules.py:" in fallback["reason"] and "\x1b" not in fallback["reason"]
    notes = [line for line in run.stdout.splitlines() if line.startswith("[export] !")]
    assert len(notes) == 1 and "used the TorchScript exporter at the same opset" in notes[0]
    assert run.stderr == "", run.stderr[:2000]  # torch.export's partial graph goes to export.log only
    assert result["parity"]["action"]["passed"]


def test_dynamo_stays_strict_with_one_clean_line(tmp_path: Path) -> None:
    run = export(tmp_path, "make_checked", "format.exporter=dynamo")
    assert run.returncode == 3, run.output
    errors = [line for line in run.stderr.splitlines() if "✗" in line]
    assert len(errors) == 1, run.stderr[:3000]
    assert errors[0].startswith("[export] ✗ dynamo exporter failed at opset 18: ")
    assert "fallback_modules.py:" in errors[0] and "\x1b" not in errors[0] and "step 1/3" not in errors[0]
    assert len(run.stderr.splitlines()) == 1  # nothing but that line: the trace dump is in export.log
    assert "dynamo" in (tmp_path / "job" / "export.log").read_text()


def test_a_value_read_into_python_is_named_not_a_key_error(tmp_path: Path) -> None:
    run = export(tmp_path, "make_stepped", "format.exporter=torchscript", "format.opset_version=17")
    assert run.returncode == 3, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["error_kind"] == "export" and "KeyError" not in result["error"]
    assert "input 'step' is not in the torchscript graph: the forward reads it as a Python value" in result["error"]


def test_the_dynamo_exporter_follows_a_value_read_into_python(tmp_path: Path) -> None:
    run = export(tmp_path, "make_stepped")  # auto at opset 18: torch.export keeps the lookup as graph ops
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["exporter"] == "dynamo" and "exporter_fallback" not in result
    assert [spec["name"] for spec in result["onnx"]["inputs"]] == ["state", "step"]
