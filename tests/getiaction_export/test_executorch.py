"""format=executorch through the real command line: a verified ``.pte`` whose batch range is read from the
program and recorded, a capped program refused, and what is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

from getiaction.errors import ExitCode
from getiaction.export.executorch_program import program_batch_range
from tests.getiaction_export.conftest import read_json
from tests.getiaction_export.test_formats import repo_on_path


def test_diffusion_program_is_verified_at_every_batch_up_to_the_largest_it_accepts(cli, tmp_path: Path) -> None:
    # 3 DDIM steps instead of 10: the same operators, a third of the graph to lower (CI time)
    run = cli("policy=diffusion", "policy.config.num_steps=3", "format=executorch", "format.max_batch=12",
              "output_dir=job")
    assert run.returncode == 0, run.output
    job = tmp_path / "job"
    result = read_json(job / "result.json")
    record = result["formats"]["executorch"]
    assert record["status"] == "ok" and record["runtime"] == "ExecuTorch" and record["precision"] == "fp32"
    assert record["batch_range"] == [1, 12]
    assert program_batch_range(job / "diffusion.pte") == (1, 12)  # what was recorded is what the file accepts
    assert {case["batch"] for case in result["parity_cases"]} == {1, 2, 8, 12}
    assert record["parity"]["action"]["passed"] and record["parity"]["action"]["max_abs_diff"] < 1e-5
    assert record["latency"]["runtime"] == "executorch" and record["latency"]["runtime_ms"] > 0
    delegation = result["executorch"]["delegation"]
    assert delegation["backend"] == "XnnpackBackend" and delegation["delegated_nodes"] > delegation["other_nodes"]
    assert "batch 1..12" in run.stdout and "ExecuTorch (XNNPACK) vs PyTorch" in run.stdout
    assert "Copying constant nodes" not in run.output  # ExecuTorch's chatter goes to the debug log
    assert not [p.name for p in job.iterdir() if p.name.startswith(".") and p.name != ".hydra"]


def test_a_program_that_accepts_fewer_batches_than_asked_is_refused_in_one_line(cli, tmp_path: Path) -> None:
    # chunk() on a batched tensor makes the lowering fix the batch at the traced size
    run = cli("policy=module", "policy._target_=tests.getiaction_export.executorch_modules.make_chunked",
              "format=executorch", "format.max_batch=8", "format.latency=false", "output_dir=job", env=repo_on_path())
    assert run.returncode == ExitCode.EXPORT, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["error"].startswith("format.max_batch=8: the ExecuTorch program accepts batch 8..8 only")
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.output
    assert not list((tmp_path / "job").glob("*.pte"))


def test_executorch_refuses_reduced_precision_before_anything_runs(cli, tmp_path: Path) -> None:
    run = cli("format=executorch", "format.precision=fp16", "output_dir=job")
    assert run.returncode == ExitCode.CONFIG, run.output
    assert "format.precision=fp16: format=executorch writes fp32 programs" in run.stderr
    assert not (tmp_path / "job").exists()
