"""The redesigned job: Hydra-free, typed state, nothing computed twice, one folder per job, errors on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from getiaction_export.config.schemas import AllFormatSchema, ExportConfig, InputSampleSchema, PolicySpec
from getiaction_export.job import ExportJob

from .conftest import read_json


def test_format_all_runs_pytorch_once_per_distinct_input(tmp_path: Path) -> None:
    pytest.importorskip("openvino")  # the [dev] extra installs it; this test is about sharing, not OpenVINO
    fmt = AllFormatSchema(formats=["onnx", "openvino"], opset_version=17, latency=False, runtime_check=False,
                          num_random_inputs=2, verify_batch_sizes=[1, 2])
    config = ExportConfig(policy=PolicySpec(target="getiaction.policies.Dummy"), input_sample=InputSampleSchema(),
                          format=fmt, policy_name="dummy")
    job = ExportJob(config, tmp_path, echo=lambda line: None)
    result = job.run()
    assert result.status == "ok", result.error
    onnx, openvino = job.state.formats["onnx"].verification, job.state.formats["openvino"].verification
    assert onnx is not None and openvino is not None
    assert onnx.reference is openvino.reference is job.state.reference
    assert len(onnx.cases) == len(openvino.cases) == 1 + 2 * 2  # the sample, then 2 random inputs at b=1 and b=2
    assert job.state.reference is not None and job.state.reference.runs == len(onnx.cases)
    assert result.report["formats"]["openvino"]["parity"]["action"]["passed"] is True


def test_the_job_and_reproduce_do_not_import_the_cli() -> None:
    code = ("import sys, getiaction_export.job, getiaction_export.reproduce\n"
            "print('getiaction_export.cli' in sys.modules, 'hydra.main' in dir(sys.modules.get('hydra')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[0] == "False", done.stderr


def test_a_stage_failure_puts_its_line_on_stderr(cli) -> None:
    run = cli("format.opset_version=14", "format.atol=0", "format.rtol=0", "format.latency=false",
              "format.verify_batch_sizes=[1,2]", "hydra.run.dir=job")
    failed = [line for line in run.stderr.splitlines() if "✗" in line]
    assert run.returncode == 4, run.output
    assert failed and failed[-1].startswith("[verify] ✗ parity failed (onnxruntime vs PyTorch): action")
    assert read_json(run.cwd / "job" / "result.json")["error"] in failed[-1]


def test_output_dir_holds_the_whole_record_and_reproduces(cli, tmp_path: Path) -> None:
    run = cli("format.opset_version=14", "format.latency=false", "output_dir=out")
    assert run.returncode == 0, run.output
    out = tmp_path / "out"
    assert {"dummy.onnx", "result.json", "export.log", ".hydra", "manifest.json"} <= {p.name for p in out.iterdir()}
    assert not (tmp_path / "outputs").exists()  # nothing left in Hydra's default folder
    again = subprocess.run([sys.executable, "-m", "getiaction_export.reproduce", str(out)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "✓ onnx: sha256" in again.stdout and again.stdout.strip().endswith("reproduced")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("policy=module", "policy._target_=does.not.exist", "input_sample=random",
          "+input_sample.inputs.state.shape=[1,8]"), "policy._target_: cannot import 'does.not.exist'"),
        (("checkpoint=.",), "checkpoint: . is a directory; give the path of a to_torch checkpoint file"),
        (("output_dir=/proc/no/such/out",), "output_dir: cannot create /proc/no/such/out: /proc is not writable"),
    ],
    ids=["whole-target", "checkpoint-dir", "unwritable-output"],
)
def test_bad_input_named_precisely(cli, args: tuple[str, ...], fragment: str) -> None:
    run = cli(*args, "hydra.run.dir=job")
    assert run.returncode == 2, run.output
    lines = [line for line in run.output.splitlines() if fragment in line]
    assert lines, run.output
    assert "Traceback" not in run.output and ".staging" not in run.output
