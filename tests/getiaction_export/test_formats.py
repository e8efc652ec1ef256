"""Formats beyond ONNX fp32 through the real command line: OpenVINO, fp16, simplification, format=all,
the latency report and the benchmark table of a sweep. Opset 17 (TorchScript exporter, fast) where
the exporter does not matter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import pytest
import torch

from getiaction.errors import ExitCode
from getiaction.export.transforms import SimplifyResult
from getiaction.policies import Dummy, DummyConfig
from getiaction_export.config.schemas import ExportConfig, InputSampleSchema, OnnxFormatSchema, PolicySpec
from getiaction_export.job import run_export
from tests.getiaction_export.conftest import read_json

REPO = Path(__file__).resolve().parents[2]
FAST = "format.opset_version=17"
INSTALL_HINT = "needs the openvino package: pip install 'getiaction-export[openvino]'"


def repo_on_path() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def assert_latency(latency: dict, runtime: str) -> None:
    assert latency["runtime"] == runtime and latency["batch"] == 1
    assert latency["torch_ms"] > 0 and latency["runtime_ms"] > 0 and latency["speedup"] > 0
    assert latency["speedup"] == pytest.approx(latency["torch_ms"] / latency["runtime_ms"], rel=1e-2)
    assert latency["threads"] >= 1 and 10 <= latency["runs"] <= 100


def no_hidden_files(job: Path) -> None:
    assert not [p.name for p in job.iterdir() if p.name.startswith(".") and p.name != ".hydra"]


def test_act_to_openvino_writes_a_verified_ir_with_latency(cli, tmp_path: Path) -> None:
    run = cli("policy=act", "format=openvino", FAST, "hydra.run.dir=job")
    assert run.returncode == 0, run.output
    job = tmp_path / "job"
    result = read_json(job / "result.json")
    assert result["status"] == "ok" and result["format"] == "openvino" and result["precision"] == "fp32"
    assert result["artifacts"] == {"openvino": str(job / "act.xml")}
    files = [job / "act.xml", job / "act.bin"]
    assert result["artifact_sizes"]["openvino"] == sum(p.stat().st_size for p in files)
    assert set(result["formats"]["openvino"]["files"]) == {str(p) for p in files}
    assert result["openvino"]["converted_from"] == "onnx" and result["openvino"]["compressed_to_fp16"] is False
    assert result["opset"] == {"requested": 17, "saved": 17}
    parity = result["parity"]["action"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-5 and parity["cosine"] > 0.99999
    assert not parity["nonfinite_expected"] and not parity["nonfinite_actual"]
    assert len(result["parity_cases"]) == 1 + 3 * 3  # the sample + 3 random inputs at batches 1, 2, 8
    assert {case["batch"] for case in result["parity_cases"]} == {1, 2, 8}
    assert_latency(result["latency"], "openvino")
    assert result["latency"]["compile_config"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert result["latency"]["compile_config"]["PERFORMANCE_HINT"] == "LATENCY"
    assert "[latency] ✓ OpenVINO" in run.stdout and "[verify] ✓ OpenVINO (CPU, f32)" in run.stdout
    no_hidden_files(job)

    model = ov.Core().read_model(str(job / "act.xml"))  # the IR is self-describing and names its ports
    assert model.get_rt_info(["getiaction", "policy.class_path"]).astype(str) == "getiaction.policies.act.policy.ACT"
    assert {"state", "images"} <= set().union(*(port.get_names() for port in model.inputs))
    assert model.inputs[0].get_partial_shape()[0].is_dynamic


def test_fp16_onnx_gets_its_own_tolerance_and_keeps_float32_io(cli, tmp_path: Path) -> None:
    run = cli("format.precision=fp16", FAST, "format.latency=false", "hydra.run.dir=job")
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert result["status"] == "ok" and result["precision"] == "fp16"
    assert result["formats"]["onnx"]["tolerances"]["action"] == {"atol": 5e-3, "rtol": 1e-2, "max_share": None,
                                                                  "min_cosine": None, "source": "fp16 default"}
    parity = result["parity"]["action"]
    assert parity["atol"] == 5e-3 and parity["passed"]
    assert 0 < parity["max_abs_diff"] <= 5e-3  # float16 weights: close, not exact
    assert result["latency"] is None and "latency" not in result["timings"]
    model = onnx.load(result["artifacts"]["onnx"])
    assert {init.data_type for init in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    io = list(model.graph.input) + list(model.graph.output)
    assert {value.type.tensor_type.elem_type for value in io} == {onnx.TensorProto.FLOAT}
    assert {p.key: p.value for p in model.metadata_props}["getiaction.precision"] == "fp16"


def test_simplify_shrinks_the_graph_and_verifies_it_again(cli, tmp_path: Path) -> None:
    run = cli("format.simplify=true", FAST, "+format.output_tolerances.action.rtol=1e-3", "hydra.run.dir=job")
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    simplify = result["simplify"]
    assert simplify["applied"] is True and simplify["reason"] is None
    assert simplify["nodes_after"] <= simplify["nodes_before"]
    model = onnx.load(result["artifacts"]["onnx"])
    assert len(model.graph.node) == simplify["nodes_after"] == result["onnx"]["nodes"]
    assert {p.key: p.value for p in model.metadata_props}["getiaction.simplified"] == "onnxslim"
    assert simplify["parity"]["action"]["passed"] and result["parity"]["action"]["max_abs_diff"] <= 1e-5
    assert result["formats"]["onnx"]["tolerances"]["action"] == {
        "atol": 1e-5, "rtol": 1e-3, "max_share": None, "min_cosine": None, "source": "format.output_tolerances.action"}
    assert_latency(result["latency"], "onnxruntime")
    assert result["latency"]["session_options"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert f"[simplify] ✓ onnxslim: {simplify['nodes_before']} -> {simplify['nodes_after']} nodes" in run.stdout
    no_hidden_files(tmp_path / "job")


def test_a_simplified_graph_that_fails_parity_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process: the 'simplifier' writes a different model; the verified original must stay."""

    def wrong_simplifier(source: Path, destination: Path) -> SimplifyResult:
        torch.manual_seed(99)  # other weights, same inputs and outputs
        Dummy(config=DummyConfig(action_shape=(7,))).to_onnx(destination, opset_version=17)
        return SimplifyResult(Path(destination), len(onnx.load(str(source)).graph.node), 3)

    monkeypatch.setattr("getiaction.export.transforms.simplify_onnx", wrong_simplifier)
    config = ExportConfig(policy=PolicySpec(target="getiaction.policies.Dummy"),
                          input_sample=InputSampleSchema(), policy_name="dummy",
                          format=OnnxFormatSchema(opset_version=17, simplify=True, latency=False))
    result = run_export(config, tmp_path).report
    assert result["status"] == "ok", result["error"]
    assert result["simplify"]["applied"] is False and "max abs diff" in result["simplify"]["reason"]
    assert result["simplify"]["parity"]["action"]["passed"] is False
    assert result["parity"]["action"]["max_abs_diff"] <= 1e-5  # the shipped (original) file's figures
    assert len(onnx.load(str(tmp_path / "dummy.onnx")).graph.node) == result["simplify"]["nodes_before"]
    assert [p.name for p in tmp_path.glob("*.onnx")] == ["dummy.onnx"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sweep_over_formats_and_precisions_is_a_benchmark_table(cli, tmp_path: Path) -> None:
    run = cli("-m", "format=onnx,openvino,all", "format.precision=fp32,fp16", FAST, "hydra.sweep.dir=sweep")
    # the Dummy MLP's INT8 IR is 20-35% of the largest |action| off on inputs it was not calibrated on: format=all
    # leaves it out (exit 7, partial) and delivers everything else
    assert run.returncode == ExitCode.PARTIAL, run.output
    sweep = tmp_path / "sweep"
    summary = read_json(sweep / "summary.json")
    assert (summary["jobs"], summary["ok"], summary["exit_code"]) == (6, 4, 7)
    rows = summary["rows"]
    assert len(rows) == 1 + 1 + 5 + 1 + 1 + 5  # format=all: one row per format (every extra is installed here)
    assert sorted((row["format"], row["precision"]) for row in rows) == sorted(
        [("onnx", p) for p in ("fp32", "fp16")] * 2 + [("openvino", p) for p in ("fp32", "fp16")] * 2
        + [("torch", "fp32"), ("openvino_int8", "int8"), ("executorch", "fp32")] * 2
    )
    for row in rows:
        if row["precision"] == "int8":  # judged by scale: share of the largest |action| and cosine
            assert row["status"] == "parity" and (row["share"] > 0.1 or row["cosine"] < 0.999), row
            continue
        assert row["status"] == "ok" and row["size"]
        if row["format"] == "torch":
            assert row["max_abs_diff"] == 0.0 and row["latency_ms"] is None and row["opset"] == ""
            continue
        assert row["latency_ms"] > 0 and row["speedup"] > 0
        assert row["max_abs_diff"] <= (5e-3 if row["precision"] == "fp16" else 1e-5)
        if row["format"] != "executorch":
            assert row["opset"] == "17/17"
    markdown = (sweep / "summary.md").read_text()
    assert "| precision |" in markdown and "| latency ms (b=1) | speed-up vs eager |" in markdown
    assert "| cosine |" in markdown and markdown.count("✅ ok") == 12 and markdown.count("❎ parity failed") == 2
    assert "4/6 jobs ok" in run.stdout

    (folder,) = sweep.glob("*format.precision=fp16,format=all")
    combined = read_json(folder / "result.json")
    delivered = {"torch", "onnx", "openvino", "executorch"}
    assert combined["status"] == "partial" and set(combined["artifacts"]) == delivered
    assert {case["format"] for case in combined["parity_cases"]} == delivered | {"openvino_int8"}
    assert combined["parity"]["action"]["format"] == "openvino_int8"  # the worst of them
    assert combined["formats"]["executorch"]["batch_range"] == [1, 8]
    assert combined["formats"]["openvino_int8"]["int8"]["samples"] == 100
    assert combined["latency"]["speedup"] == max(combined["formats"][f]["latency"]["speedup"]
                                                 for f in delivered - {"torch"})
    assert {p.name for p in folder.glob("dummy*")} == {"dummy.pt", "dummy.onnx", "dummy.xml", "dummy.bin", "dummy.pte"}


def test_fp16_overflow_is_refused_and_parity_failure_is_marked(cli, tmp_path: Path) -> None:
    overflowing = "policy._target_=tests.getiaction_export.fp16_modules.make_overflowing"
    run = cli("-m", "policy=module", overflowing, "format.precision=fp32,fp16", FAST, "format.latency=false",
              "hydra.sweep.dir=sweep", env=repo_on_path())
    assert run.returncode == 3, run.output
    sweep = tmp_path / "sweep"
    (fine_dir,) = sweep.glob("*format.precision=fp32*")
    (refused_dir,) = sweep.glob("*format.precision=fp16*")
    fine, refused = read_json(fine_dir / "result.json"), read_json(refused_dir / "result.json")
    assert fine["status"] == "ok"  # ~1e10 is fine in float32
    assert refused["status"] == "failed" and refused["stage"] == "export" and refused["exit_code"] == 3
    assert refused["error"].startswith("format.precision=fp16: output 'action' is NaN/Inf in float16")
    assert "format.precision=fp32" in refused["error"]
    assert not list(refused_dir.glob("*.onnx"))
    markdown = (sweep / "summary.md").read_text()
    assert "✅ ok" in markdown and "❌ failed" in markdown and "Traceback" not in run.output

    strict = cli("-m", "format.precision=fp16", "format.atol=0", "format.rtol=0", FAST, "format.latency=false",
                 "hydra.sweep.dir=strict")
    assert strict.returncode == 4, strict.output  # exported, but float16 is not bit-exact
    assert "❎ parity failed" in (tmp_path / "strict" / "summary.md").read_text()


BLOCKED_OPENVINO = """
import sys

class BlockOpenVINO:
    def find_spec(self, name, path=None, target=None):
        if name == "openvino" or name.startswith("openvino."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, BlockOpenVINO())
from getiaction_export.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize(("overrides", "feature"), [(["format=openvino"], "format=openvino"),
                                                    (["format=all", "format.formats=[onnx,openvino]"],
                                                     "format=all with openvino in format.formats")])
def test_missing_openvino_is_one_line_with_the_install_hint(tmp_path: Path, overrides: list[str], feature: str) -> None:
    completed = subprocess.run([sys.executable, "-c", BLOCKED_OPENVINO, *overrides, "hydra.run.dir=job"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip() == f"error: {feature} {INSTALL_HINT}"
    assert not (tmp_path / "job").exists()


def test_format_all_runs_the_formats_whose_extras_are_installed_and_says_which_it_left_out(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-c", BLOCKED_OPENVINO, "format=all", FAST, "format.latency=false",
                                "hydra.run.dir=job"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    result = read_json(tmp_path / "job" / "result.json")
    assert list(result["formats"]) == ["torch", "onnx", "executorch"]
    for left_out in ("openvino", "openvino_int8"):
        assert f"[prepare] - format=all: no {left_out} ({left_out} {INSTALL_HINT})" in completed.stdout


def test_format_all_without_openvino_can_name_its_formats(cli, tmp_path: Path) -> None:
    run = cli("format=all", "format.formats=[onnx,torch]", FAST, "format.latency=false", "hydra.run.dir=job")
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    assert list(result["formats"]) == ["torch", "onnx"]  # always in the order torch, onnx, openvino
    reloaded = Dummy.from_torch(result["artifacts"]["torch"])
    import onnxruntime as ort

    state = torch.randn(3, 7)
    (actual,) = ort.InferenceSession(result["artifacts"]["onnx"]).run(None, {"state": state.numpy()})
    np.testing.assert_allclose(actual, reloaded({"state": state}).detach().numpy(), atol=1e-5)


def test_help_lists_every_format_and_the_composed_config(cli) -> None:
    run = cli("--help", "format=openvino")
    assert run.returncode == 0, run.output
    assert "format: all, executorch, onnx, openvino, torch" in run.stdout
    assert "  name: openvino\n" in run.stdout and "  precision: fp32\n" in run.stdout
    assert "Use --hydra-help" in run.stdout
