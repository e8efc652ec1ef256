"""The fp32 parity bound fitted to the policy (:mod:`getiaction_export.parity.fp32_bound`).

Its arithmetic; the float64 run; and the gate through ``run_export`` and the CLI: a policy whose
float32 forward is far from exact passes with a fitted bound where the fixed 1e-5 refuses it,
while an error of 1e-3 of the output's scale, a lost normalization and an operator with another
opset's semantics are still refused, and a user's own bound still wins. The policies are in
``fp32_modules.py``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from getiaction_export.config.schemas import (
    AllFormatSchema,
    ExportConfig,
    InputSampleSchema,
    OnnxFormatSchema,
    PolicySpec,
)
from getiaction_export.job import run_export
from getiaction_export.parity import fp32_bound
from getiaction_export.parity.fp32_bound import (
    CEILING_SHARE,
    FLOOR_ATOL,
    MULTIPLE,
    RTOL,
    Float64Reference,
    fitted,
    fitted_atol,
    float64_default,
    float64_gaps,
)
from tests.getiaction_export.conftest import read_json
from tests.getiaction_export.fp32_modules import Chain, Float32Only
from tests.getiaction_export.test_formats import repo_on_path

MODULES = "tests.getiaction_export.fp32_modules"
DERIVATION = ("float64_gap", "scale", "multiple", "ceiling_share", "floor_atol", "float64_seconds")


def export(tmp_path: Path, factory: str, fmt: Any = None, **kwargs: Any) -> tuple[dict[str, Any], list[str]]:
    """``run_export`` of one ``fp32_modules`` factory; its result.json and console lines."""
    config = ExportConfig(policy=PolicySpec(target=f"{MODULES}.{factory}", kwargs=kwargs),
                          input_sample=InputSampleSchema(),
                          format=fmt or OnnxFormatSchema(latency=False, runtime_check=False), policy_name="chain")
    lines: list[str] = []
    result = run_export(config, tmp_path, echo=lines.append)
    return result.report, lines


def bound(report: dict[str, Any], fmt: str = "onnx") -> dict[str, Any]:
    tolerances: dict[str, Any] = report["formats"][fmt]["tolerances"]["action"]
    return tolerances


# --- the arithmetic ---------------------------------------------------------------------------------


def test_fitted_atol_is_the_floor_a_multiple_of_the_gap_or_the_ceiling() -> None:
    assert (FLOOR_ATOL, MULTIPLE, CEILING_SHARE, RTOL) == (1e-5, 4.0, 1e-4, 1e-4)
    assert fitted_atol(1e-7, 2.0) == 1e-5  # the shipped policies: the floor, as before
    assert fitted_atol(0.0, 0.0) == 1e-5
    assert fitted_atol(3.5e-5, 8.88) == pytest.approx(1.4e-4)  # default-size LeRobot Diffusion: 4 x its own
    assert fitted_atol(5.33e-5, 9.10) == pytest.approx(2.132e-4)
    assert fitted_atol(1e-2, 8.88) == pytest.approx(8.88e-4)  # capped at 1e-4 of the scale
    assert fitted_atol(math.inf, 8.88) == pytest.approx(8.88e-4)
    assert fitted_atol(1e-6, 1e3, multiple=8.0, ceiling_share=1e-3, floor=0.0) == pytest.approx(8e-6)


@pytest.mark.parametrize("scale", [0.02, 0.1, 1.0, 8.88, 1e3, 1e6])
@pytest.mark.parametrize("gap", [0.0, 1e-7, 1e-4, 1.0, math.inf])
def test_an_error_of_a_thousandth_of_the_scale_is_never_within_the_fitted_bound(gap: float, scale: float) -> None:
    """Whatever the float64 gap: ``atol + rtol * |output|`` stays below 1e-3 of the scale (above 0.011)."""
    assert 1e-3 * scale > fitted_atol(gap, scale) + RTOL * scale


def test_only_the_fp32_default_is_fitted() -> None:
    from getiaction_export.config.format_plan import tolerances
    from getiaction_export.config.schemas import ToleranceSchema

    assert tolerances(OnnxFormatSchema(), "action")["source"] == fp32_bound.FITS == "fp32 default"
    assert tolerances(OnnxFormatSchema(precision="fp16"), "action")["source"] != fp32_bound.FITS
    assert tolerances(OnnxFormatSchema(rtol=1e-3), "action")["source"] == "format.atol/rtol"
    own = OnnxFormatSchema(output_tolerances={"action": ToleranceSchema(max_share=0.5)})
    assert tolerances(own, "action")["source"] == "format.output_tolerances.action"


def test_the_record_says_how_the_bound_was_derived() -> None:
    default = {"atol": 1e-5, "rtol": 1e-4, "max_share": None, "min_cosine": None, "source": "fp32 default"}
    record = fitted(default, 5.33e-5, 9.10, 323.3)
    assert record == {"atol": pytest.approx(2.132e-4), "rtol": 1e-4, "max_share": None, "min_cosine": None,
                      "source": "fp32 fitted", "float64_gap": 5.33e-5, "scale": 9.10, "multiple": 4.0,
                      "ceiling_share": 1e-4, "floor_atol": 1e-5, "float64_seconds": 323.3}
    assert fp32_bound.describe("action", record) == (
        "action: atol 2.1e-04 fitted = 4x PyTorch's own float32 error (5.33e-05 from a float64 run, 323.3 s)")
    capped = fitted(default, 1e-2, 8.88, 1.0)
    assert capped["atol"] == pytest.approx(8.88e-4)
    assert fp32_bound.describe("action", capped) == (
        "action: atol 8.9e-04 fitted = the ceiling 0.0001 of the largest |action| 8.88 "
        "(PyTorch's own float32 error: 1.00e-02 from a float64 run, 1.0 s)")


def test_float64_gaps_are_the_worst_case_over_inputs() -> None:
    f32 = [[np.array([[1.0, -2.0]], np.float32), np.array([0.5], np.float32)],
           [np.array([[3.0, 0.25]], np.float32), np.array([-4.0], np.float32)]]
    f64 = [[np.array([[1.0 + 2e-7, -2.0]]), np.array([0.5])],
           [np.array([[3.0, 0.25 - 5e-7]]), np.array([-4.0 + 1e-6])]]
    gaps, why = float64_gaps(f32, f64, ["action", "value"])
    assert why is None and gaps is not None
    assert gaps["action"] == (pytest.approx(5e-7), 3.0)
    assert gaps["value"] == (pytest.approx(1e-6), 4.0)
    assert float64_gaps(f32, [f64[0], [np.array([[np.inf, 0.0]]), f64[1][1]]], ["action", "value"]) == (
        None, "the float64 run gave non-finite action")
    assert float64_gaps(f32, [[np.zeros((2, 2)), f64[0][1]], f64[1]], ["action", "value"]) == (
        None, "the float64 run gave action shaped [2, 2], not [1, 2]")


class _DefaultDtype(torch.nn.Module):
    """Builds a tensor from the default dtype in its forward (as a diffusion timestep embedding does)."""

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return state / 3.0 + torch.linspace(0.0, 1.0, state.shape[-1]) / 7.0


def test_the_float64_run_is_exact_arithmetic_and_leaves_the_job_module_alone() -> None:
    module = _DefaultDtype()
    exact = Float64Reference(module, "kwargs")
    cases = [("a", {"state": torch.tensor([[1.0, 2.0, 4.0]])}), ("b", {"state": torch.tensor([[0.1, 0.2, 0.3]])})]
    outputs = exact.outputs(cases)
    assert outputs is not None and exact.runs == 2 and exact.failure is None
    want = np.array([[1.0, 2.0, 4.0]]) / 3.0 + np.linspace(0.0, 1.0, 3) / 7.0
    assert outputs[0][0].dtype == np.float64
    assert np.abs(outputs[0][0] - want).max() < 1e-15  # float64 throughout, the linspace included
    assert exact.outputs(cases[::-1]) is not None and exact.runs == 2  # each input once per job
    assert torch.get_default_dtype() == torch.float32
    linear = torch.nn.Linear(2, 2)
    Float64Reference(linear, "kwargs").outputs([("c", {"input": torch.ones(1, 2)})])
    assert linear.weight.dtype == torch.float32  # a copy was cast, not the job's module


class _NamesFloat32(torch.nn.Module):
    """Names float32 outright and holds its layer through a bound method, as LeRobot's ACT reference does."""

    def __init__(self) -> None:
        super().__init__()
        self.infer = torch.nn.Linear(3, 3).forward  # not a registered submodule

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        latent = torch.zeros(state.shape, dtype=torch.float32).to(state.device)
        return self.infer(state + latent) + torch.full((3,), 1 / 3).to(torch.float32) + state.float() / 7


def test_float32_named_or_held_outside_the_tree_still_runs_in_float64() -> None:
    module = _NamesFloat32()
    exact = Float64Reference(module, "kwargs")
    state = torch.tensor([[0.1, 0.2, 0.3]])
    outputs = exact.outputs([("a", {"state": state})])
    assert exact.failure is None and outputs is not None
    layer = module.infer.__self__
    weight, bias = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
    x = state.double().numpy()
    want = x @ weight.T + bias + 1 / 3 + x / 7
    assert np.abs(outputs[0][0] - want).max() < 1e-15
    assert layer.weight.dtype == torch.float32 and torch.zeros(1, dtype=torch.float32).dtype == torch.float32


def test_a_module_that_cannot_run_in_float64_is_remembered_in_one_phrase() -> None:
    exact = Float64Reference(Float32Only(), "dict")
    assert exact.outputs([("a", {"state": torch.ones(2, 4)})]) is None
    assert exact.failure is not None and "\n" not in exact.failure
    assert exact.failure.startswith("the float64 run failed: RuntimeError: expected m1 and m2 to have the same dtype")
    assert exact.outputs([("b", {"state": torch.zeros(2, 4)})]) is None and exact.runs == 0  # not retried
    assert torch.get_default_dtype() == torch.float32
    with float64_default():
        assert torch.get_default_dtype() == torch.float64
    assert torch.get_default_dtype() == torch.float32


# --- the gate, through run_export -------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    """The correct chain exported with default settings."""
    return export(tmp_path_factory.mktemp("chain"), "make_chain")


def test_a_policy_far_from_float64_passes_with_a_fitted_bound(chain: tuple[dict[str, Any], list[str]]) -> None:
    report, lines = chain
    assert report["status"] == "ok", report["error"]
    chosen = bound(report)
    assert chosen["source"] == "fp32 fitted"
    derivation = (chosen["multiple"], chosen["ceiling_share"], chosen["floor_atol"], chosen["rtol"])
    assert derivation == (4.0, 1e-4, 1e-5, 1e-4)
    gap, scale = chosen["float64_gap"], chosen["scale"]
    assert gap > 2.5e-6 and gap / scale > 1e-6  # far from exact (2.9e-4 at a scale of 31 here): 4x is above 1e-5
    assert chosen["atol"] == pytest.approx(4 * gap) and chosen["atol"] < 1e-4 * scale  # 4x, below the ceiling
    assert 0 < chosen["float64_seconds"] < 60
    parity = report["parity"]["action"]
    assert parity["atol"] == chosen["atol"] and parity["passed"]
    assert 1e-5 < parity["max_abs_diff"] < chosen["atol"]  # beyond the old fixed bound, within the fitted one
    assert parity["max_abs_expected"] == pytest.approx(scale)
    fitted_line = [line for line in lines if line.startswith("[verify] action: atol") and "fitted = 4x" in line]
    assert len(fitted_line) == 1 and f"({gap:.2e} from a float64 run" in fitted_line[0]


@pytest.mark.parametrize(("factory", "least_share"), [
    ("make_offset", 1e-3),               # an error of 1e-3 of the output's scale
    ("make_lost_normalization", 0.5),    # the graph skips the input normalization
    ("make_old_upsample", 0.1),          # ONNX Upsample-9 coordinates instead of PyTorch's half-pixel ones
])
def test_what_the_fitted_bound_still_refuses(chain: tuple[dict[str, Any], list[str]], tmp_path: Path,
                                             factory: str, least_share: float) -> None:
    clean = bound(chain[0])
    kwargs = {"offset": 1e-3 * clean["scale"]} if factory == "make_offset" else {}
    report, _ = export(tmp_path, factory, **kwargs)
    assert report["status"] == "failed" and report["exit_code"] == 4, report["error"]
    assert report["error"].startswith("parity failed (onnxruntime vs PyTorch): action: max abs diff")
    chosen = bound(report)  # PyTorch's side is the clean chain: the same fitted bound
    assert chosen["source"] == "fp32 fitted" and chosen["atol"] == pytest.approx(clean["atol"])
    parity = report["parity"]["action"]
    assert not parity["passed"]
    assert parity["max_abs_diff"] >= 0.99 * least_share * clean["scale"] > 10 * chosen["atol"]
    assert not (tmp_path / "chain.onnx").exists()


def test_the_float64_run_is_made_once_per_job_and_only_when_a_default_bound_needs_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    calls: list[int] = []
    run = Float64Reference._run

    def counted(self: Float64Reference, missing: list[Any]) -> None:
        calls.append(len(missing))
        run(self, missing)

    monkeypatch.setattr(Float64Reference, "_run", counted)
    both = AllFormatSchema(formats=["onnx", "openvino"], latency=False, runtime_check=False)
    report, _ = export(tmp_path / "all", "make_chain", both)
    assert report["status"] == "ok", report["error"]
    assert calls == [10]  # the sample + 3 random inputs at batches 1, 2, 8; shared by both formats
    onnx, openvino = bound(report, "onnx"), bound(report, "openvino")
    assert onnx == openvino and onnx["source"] == "fp32 fitted"
    calls.clear()
    user = AllFormatSchema(formats=["onnx", "openvino"], latency=False, runtime_check=False, atol=1e-3, rtol=1e-4)
    report, lines = export(tmp_path / "user", "make_chain", user)
    assert report["status"] == "ok", report["error"]
    assert calls == []  # no format uses the default: no float64 run
    assert bound(report)["source"] == "format.atol/rtol" and not set(DERIVATION) & set(bound(report))
    assert not [line for line in lines if "fitted" in line]


def test_a_module_that_cannot_run_in_float64_keeps_the_fixed_bound(tmp_path: Path) -> None:
    report, lines = export(tmp_path, "make_float32_only")
    assert report["status"] == "ok", report["error"]
    chosen = bound(report)
    assert (chosen["atol"], chosen["rtol"], chosen["source"]) == (1e-5, 1e-4, "fp32 default")
    assert chosen["fallback"].startswith("the float64 run failed: RuntimeError:")
    assert "[verify] action: atol 1e-05 kept, not fitted (the float64 run failed: RuntimeError:" in "\n".join(lines)


@pytest.mark.parametrize("policy", ["dummy", "act", "diffusion"])
def test_the_shipped_policies_keep_the_floor(tmp_path: Path, policy: str) -> None:
    """Their float32 forwards are 1e-7..2e-6 from float64: 4x that is below 1e-5, so nothing changes."""
    import yaml

    from tests.getiaction_export.test_parity_matrix import REPO

    spec = yaml.safe_load((REPO / "conf" / "policy" / f"{policy}.yaml").read_text())
    kwargs = {k: v for k, v in spec.items() if k not in ("_target_", "seed", "call_style")}
    config = ExportConfig(policy=PolicySpec(target=spec["_target_"], kwargs=kwargs), input_sample=InputSampleSchema(),
                          format=OnnxFormatSchema(latency=False, runtime_check=False), policy_name=policy)
    report = run_export(config, tmp_path, echo=lambda line: None).report
    assert report["status"] == "ok", report["error"]
    chosen = bound(report)
    assert chosen["source"] == "fp32 fitted" and chosen["float64_gap"] < 2.5e-6 and chosen["atol"] == 1e-5
    assert report["parity"]["action"]["max_abs_diff"] < 1e-5


# --- user bounds win, through the CLI ---------------------------------------------------------------


def test_a_user_atol_wins_and_the_fixed_bound_refuses_the_chain(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = cli("policy=module", f"policy._target_={MODULES}.make_chain", "format.atol=1e-5", "format.rtol=1e-4",
              "format.latency=false", "hydra.run.dir=job", env=repo_on_path())
    assert run.returncode == 4, run.output
    result = read_json(tmp_path / "job" / "result.json")
    chosen = result["formats"]["onnx"]["tolerances"]["action"]
    assert (chosen["atol"], chosen["source"]) == (1e-5, "format.atol/rtol") and "float64_gap" not in chosen
    assert result["parity"]["action"]["max_abs_diff"] > 1e-5
    assert "fitted" not in run.output


def test_a_per_output_tolerance_wins(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A bound the user loosened on purpose: the 1e-3-of-scale error the fitted bound refuses passes."""
    offset = 1e-3 * 31.0
    run = cli("policy=module", f"policy._target_={MODULES}.make_offset", f"+policy.offset={offset}",
              "+format.output_tolerances.action.atol=0.1", "format.latency=false", "hydra.run.dir=job",
              env=repo_on_path())
    assert run.returncode == 0, run.output
    result = read_json(tmp_path / "job" / "result.json")
    chosen = result["formats"]["onnx"]["tolerances"]["action"]
    assert (chosen["atol"], chosen["source"]) == (0.1, "format.output_tolerances.action")
    assert "float64_gap" not in chosen and "fitted" not in run.output
    assert result["parity"]["action"]["max_abs_diff"] == pytest.approx(offset, rel=0.05)


def test_chain_module_is_what_the_docstring_says() -> None:
    """The chain's float32 forward really is far from float64 (checked here without any export)."""
    module = Chain().eval()
    double = copy.deepcopy(module).double()
    state = module.sample_input["state"]
    with torch.no_grad():
        f32 = module({"state": state}).double()
        with float64_default():
            f64 = double({"state": state.double()})
    gap = float((f32 - f64).abs().max())
    assert 1e-6 < gap / float(f64.abs().max()) < 1e-4
