"""Sweep job folders: named after the overrides, bounded whatever the values (conf/config.yaml's subdir)."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from getiaction_export.config.folders import FOLDER_NAME_BYTES, short_folder_name
from tests.getiaction_export.conftest import read_json
from tests.getiaction_export.dotted_modules import INPUTS

REPO = Path(__file__).resolve().parents[2]
CAMERA = "{shape: [1,3,8,8], dtype: uint8, low: 0, high: 255}"
THREE_INPUTS = ("+input_sample.inputs={observation.state: {shape: [1,6], dtype: float32, low: -2.0, high: 2.0}, "
                f"observation.images.top: {CAMERA}, observation.images.wrist: {CAMERA}}}")


def test_short_names_stay_exactly_as_hydra_wrote_them() -> None:
    for name in ("format.opset_version=14", "format.opset_version=14,policy=act", "checkpoint=NAME.pt",
                 "checkpoint=runs/a.pt,format=onnx", "+input_sample.inputs.state.shape=[1,7]", ""):
        assert short_folder_name(name) == name


def test_long_values_become_a_stable_hash_and_short_parts_stay_readable() -> None:
    long = f"format.opset_version=17,{THREE_INPUTS},policy=module"
    name = short_folder_name(long)
    assert name.startswith("+input_sample.inputs=sha256-") or "+input_sample.inputs=sha256-" in name
    assert name.split(",")[0] == "format.opset_version=17" and name.endswith(",policy=module")
    assert len(name.encode()) <= FOLDER_NAME_BYTES and "/" not in name
    assert short_folder_name(long) == name  # the same overrides, the same folder
    assert short_folder_name(long.replace("[1,6]", "[1,7]")) != name  # another value, another folder


def test_any_name_fits_one_folder() -> None:
    many = ",".join(f"format.key_{i}=value_{i}" for i in range(60))
    for name in (many, "x=" + "é" * 300, "checkpoint=../../escape.pt", "k=" + "/".join(["d" * 200] * 3)):
        short = short_folder_name(name)
        assert len(short.encode()) <= FOLDER_NAME_BYTES and "/" not in short and short not in (".", "..")
    assert short_folder_name(many).startswith("format.key_0=value_0,format.key_1=value_1,")
    quoted = "a=[1,2],b={x: 'long,' },c=" + "v" * 200  # commas inside brackets and quotes split nothing
    assert short_folder_name(quoted).startswith("a=[1,2],b={x: 'long,' },c=sha256-")


def test_sweep_with_a_three_input_dict_ends_with_its_summary(cli, tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    run = cli("-m", "policy=module", "policy._target_=tests.getiaction_export.dotted_modules.make_lerobot_like",
              "input_sample=random", THREE_INPUTS, "format.opset_version=16,17", "format.latency=false",
              "hydra.sweep.dir=sweep", env=env)
    assert run.returncode == 0, run.output
    assert "Traceback" not in run.output and "2/2 jobs ok" in run.stdout
    sweep = tmp_path / "sweep"
    summary = read_json(sweep / "summary.json")
    assert (summary["jobs"], summary["ok"], summary["exit_code"]) == (2, 2, 0)
    assert (sweep / "summary.md").is_file()
    jobs = sorted(p.parent for p in sweep.glob("*/result.json"))
    assert [row["job"] for row in summary["rows"]] == [job.name for job in jobs]
    for job, opset in zip(jobs, (16, 17), strict=True):
        assert len(job.name.encode()) <= 255 and len(job.name.encode()) <= FOLDER_NAME_BYTES
        assert job.name.startswith("+input_sample.inputs=sha256-") and f"format.opset_version={opset}" in job.name
        result = read_json(job / "result.json")
        assert result["status"] == "ok" and result["opset"] == {"requested": opset, "saved": opset}
        assert list(result["input_sample"]) == list(INPUTS)
        assert [i.name for i in ort.InferenceSession(result["artifacts"]["onnx"]).get_inputs()] == list(INPUTS)
