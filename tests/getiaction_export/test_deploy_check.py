"""``python -m getiaction_export.deploy_check DIR``: a clear verdict on good, malformed and mismatched packages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from getiaction.errors import ExitCode
from getiaction.policies import Dummy
from getiaction_export.config.schemas import (
    AllFormatSchema,
    ExportConfig,
    InputSampleSchema,
    OpenVINOFormatSchema,
    PolicySpec,
)
from getiaction_export.deploy_check import main
from getiaction_export.files import sha256_of
from getiaction_export.job import run_export
from getiaction_export.machine import isa_features
from getiaction_export.physicalai.deploy_check import NotDeployable, check
from getiaction_export.physicalai.reference_set import REFERENCE_FILE, read_reference, write_reference

pytest.importorskip("physicalai", reason="the [deploy] extra (physicalai) is part of [dev]")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good package: the Dummy policy as ONNX and OpenVINO, exported by the pipeline."""
    folder = tmp_path_factory.mktemp("dummy")
    fmt = AllFormatSchema(formats=["onnx", "openvino"], opset_version=17, latency=False, num_random_inputs=1,
                          verify_batch_sizes=[1, 2], runtime_check=False)
    config = ExportConfig(policy=PolicySpec(target="getiaction.policies.Dummy"),
                          input_sample=InputSampleSchema(), format=fmt, policy_name="dummy")
    assert run_export(config, folder, echo=lambda line: None).status == "ok"
    return folder


@pytest.fixture
def copy(package: Path, tmp_path: Path) -> Callable[..., Path]:
    """A copy of the good package, its manifest edited by ``edit(manifest)`` when given."""

    def make(edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        folder = tmp_path / "pkg"
        shutil.copytree(package, folder)
        if edit is not None:
            manifest = json.loads((folder / "manifest.json").read_text())
            edit(manifest)
            (folder / "manifest.json").write_text(json.dumps(manifest))
        return folder

    return make


def verdict(folder: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main([str(folder), *args])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_a_good_package_is_deployable(package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = verdict(package, capsys)
    assert code == ExitCode.OK, err
    assert "✓ manifest.json: backends onnx, openvino (default onnx)" in out
    assert "✓ physicalai 0.3" in out and "runs onnx (default): inputs ['state'], predict_action_chunk -> (1, 7)" in out
    assert "runs openvino" in out and out.rstrip().endswith("runs in physicalai")
    assert err == ""
    # each backend verified again here, on the package's own reference inputs, to its recorded tolerance
    for backend in ("onnx", "openvino"):
        assert f"✓ {backend} (fp32) verified again on this CPU: action " in out
    assert "off PyTorch on the 2 reference inputs, within atol 1e-05, rtol 0.0001" in out


def _with_reference_outputs(folder: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite the package's reference outputs (and their recorded sha256), as if the runtime drifted."""
    reference = read_reference(folder / REFERENCE_FILE)
    reference.outputs = {name: change(array) for name, array in reference.outputs.items()}
    write_reference(folder / REFERENCE_FILE, reference)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["getiaction"]["reference"]["sha256"] = sha256_of(folder / REFERENCE_FILE)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_the_reference_set_is_small_reproducible_and_recorded(package: Path, tmp_path: Path) -> None:
    manifest = json.loads((package / "manifest.json").read_text())["getiaction"]
    recorded = manifest["reference"]
    assert recorded["file"] == REFERENCE_FILE and recorded["cases"] == 2 and recorded["inputs"] == ["state"]
    assert recorded["labels"] == ["sample b=1", "random#0 b=1"] and recorded["outputs"] == ["action"]
    assert recorded["sha256"] == sha256_of(package / REFERENCE_FILE) and recorded["bytes"] < 300_000
    reference = read_reference(package / REFERENCE_FILE)
    torch.manual_seed(0)  # the pipeline builds the policy from its config with seed 0
    expected = Dummy().eval()({"state": torch.from_numpy(reference.inputs["state"][0])}).detach().numpy()
    assert np.array_equal(reference.outputs["action"][0], expected)  # PyTorch's own output for the sample
    for backend in ("onnx", "openvino"):
        record = manifest["backends"][backend]
        assert record["tolerance"]["action"]["atol"] == 1e-5 and record["tolerance"]["action"]["rtol"] == 1e-4
        assert 0 <= record["reference"]["action"]["max_abs_diff"] < 1e-5
    assert manifest["machine"]["cpu"]["isa"] == isa_features()
    # the same export again: the same bytes
    fmt = AllFormatSchema(formats=["onnx"], opset_version=17, latency=False, num_random_inputs=1,
                          verify_batch_sizes=[1, 2], runtime_check=False)
    config = ExportConfig(policy=PolicySpec(target="getiaction.policies.Dummy"),
                          input_sample=InputSampleSchema(), format=fmt, policy_name="dummy")
    assert run_export(config, tmp_path, echo=lambda line: None).status == "ok"
    assert sha256_of(tmp_path / REFERENCE_FILE) == recorded["sha256"]


def test_a_backend_that_drifts_from_its_reference_outputs_is_not_deployable(
    copy: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy()
    _with_reference_outputs(folder, lambda action: action + 1e-3)
    code, out, err = verdict(folder, capsys)
    assert code == ExitCode.NOT_DEPLOYABLE and out == "NOT deployable\n", out
    assert err.count("\n") == 1, err
    assert "onnx (fp32) drifts on this CPU: action: max abs diff 0.001 > atol 1e-05 on the package's 2 reference " \
           "inputs (at export 0.00%" in err
    assert "; same ISA features and runtime versions as the export machine (" in err


def test_a_package_without_a_reference_set_is_deployable_with_a_warning(
    copy: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy(lambda m: m["getiaction"].pop("reference"))
    code, out, err = verdict(folder, capsys)
    assert code == ExitCode.OK, err
    assert "! onnx: the package has no reference set (made by an older getiaction-export): its numbers are not " \
           "verified again on this machine" in out


def _two_models(folder: Path) -> None:
    shutil.copyfile(folder / "dummy.onnx", folder / "old.onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["policy"]["name"]  # nothing picks dummy.onnx: the runtime loads whichever it lists first
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _hand_made_onnx(folder: Path, write: Callable[[Path], None]) -> None:
    """Replace the package by an ONNX file ``write`` makes and a manifest without our records (no sha256)."""
    for name in ("dummy.xml", "dummy.bin", "dummy.onnx"):
        (folder / name).unlink()
    write(folder / "dummy.onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model"]["artifacts"] = {"onnx": "dummy.onnx"}
    del manifest["getiaction"]
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _rename_action(folder: Path) -> None:
    """Outputs not called ``action``."""
    _hand_made_onnx(folder, lambda path: Dummy().to_onnx(path, opset_version=17, output_names=["actions"]))


def _float64_input(folder: Path) -> None:
    """A float64 model (our exporter refuses float64 inputs), by the legacy exporter."""

    def write(path: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript-based ONNX export"
            torch.onnx.export(torch.nn.Linear(7, 7).double(), (torch.zeros(1, 7, dtype=torch.float64),), str(path),
                              input_names=["state"], output_names=["action"], opset_version=17, dynamo=False)

    _hand_made_onnx(folder, write)


def _replace_model(folder: Path) -> None:
    torch.manual_seed(1)
    Dummy().to_onnx(folder / "dummy.onnx", opset_version=17)  # a valid model, not the exported one


BROKEN: dict[str, tuple[Callable[[Path], None] | None, Callable[[dict[str, Any]], None] | None, str]] = {
    "wrong backend key": (None, lambda m: m["model"].update(artifacts={"model": "dummy.onnx"}),
                          "model.artifacts: first key 'model' is not a backend (the runtime reads it as the backend "
                          "name); use one of onnx, openvino"),
    "unknown second backend": (None, lambda m: m["model"]["artifacts"].update(tensorrt="dummy.engine"),
                               "model.artifacts: key 'tensorrt' is not a backend"),
    "two models": (_two_models, None, "two onnx models in"),
    "missing model file": (lambda f: (f / "dummy.onnx").unlink(), None,
                           "model.artifacts.onnx: dummy.onnx is missing from"),
    "missing OpenVINO weights": (lambda f: (f / "dummy.bin").unlink(), None,
                                 "dummy.bin (the weights of dummy.xml) is missing"),
    "suffix of another backend": (None, lambda m: m["model"].update(artifacts={"onnx": "dummy.xml"}),
                                  "model.artifacts.onnx: dummy.xml is not a .onnx file"),
    "no manifest": (lambda f: (f / "manifest.json").unlink(), None, "no manifest.json in"),
    "manifest not JSON": (lambda f: (f / "manifest.json").write_text('{"model": {"artifacts": '), None,
                          "manifest.json is not valid JSON: Expecting value: line 1"),
    "manifest not an object": (lambda f: (f / "manifest.json").write_text("[]"), None,
                               "manifest.json holds a JSON list, not an object"),
    "schema violation": (None, lambda m: m["model"].update(runner={}), "manifest.json: model.runner"),
    "another format": (None, lambda m: m.update(format="lerobot"), "format is 'lerobot', not 'policy_package'"),
    "unsafe policy.name": (None, lambda m: m["policy"].update(name="../dummy"),
                           "policy.name '../dummy': the runtime accepts only"),
    "model changed since export": (_replace_model, None, "dummy.onnx changed since export: sha256"),
    "outputs not named action": (_rename_action, None,
                                 "onnx: the model's outputs are ['actions']; the runtime's select_action"),
    "float64 input": (_float64_input, None, "onnx: input 'state' is float64"),
    "reference set missing": (lambda f: (f / "reference.npz").unlink(), None,
                              "getiaction.reference: reference.npz is missing from"),
    "reference set changed": (lambda f: (f / "reference.npz").write_bytes(b"PK"), None,
                              "reference.npz changed since export: sha256"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_package_is_reported_in_one_line(
    case: str, copy: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    change_files, edit, message = BROKEN[case]
    folder = copy(edit)
    if change_files is not None:
        change_files(folder)
    code, out, err = verdict(folder, capsys)
    assert code == ExitCode.NOT_DEPLOYABLE, out
    assert err.count("\n") == 1 and err.startswith(f"error: {folder}: "), err
    assert message in err
    assert "Traceback" not in out + err and out == "NOT deployable\n"


def test_another_model_beside_the_one_policy_name_picks_is_deployable(
    copy: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``format=all`` leaves the INT8 IR (``<name>_int8.xml``) beside the package's f32 one: policy.name makes the
    runtime load the declared file, so the other is named, not refused."""
    folder = copy(None)
    shutil.copyfile(folder / "dummy.xml", folder / "dummy_int8.xml")
    shutil.copyfile(folder / "dummy.bin", folder / "dummy_int8.bin")
    code, out, err = verdict(folder, capsys)
    assert code == ExitCode.OK, err
    assert "one model per backend (policy.name picks it; also here, not loaded: dummy_int8.xml)" in out


def test_a_manifest_naming_another_file_than_policy_name_loads(copy: Callable[..., Path]) -> None:
    """policy.name picks the file; one that names no file of the backend falls back to the only one."""
    folder = copy(lambda m: m["policy"].update(name="renamed"))
    report = check(folder)
    assert {key: report.backends["onnx"][key] for key in ("chunk", "default")} == {"chunk": [1, 7], "default": True}
    assert report.backends["onnx"]["reference"]["action"]["passed"] is True


def test_a_single_camera_package_deploys_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = ExportConfig(
        policy=PolicySpec(target="getiaction.policies.ACT", kwargs={"config": {
            "state_dim": 4, "action_dim": 3, "chunk_size": 5, "image_shape": [3, 16, 16], "encoder_channels": [8],
            "dim_model": 16, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1, "dim_feedforward": 32}}),
        input_sample=InputSampleSchema(), policy_name="act",
        format=AllFormatSchema(formats=["onnx"], opset_version=17, latency=False, num_random_inputs=1,
                               verify_batch_sizes=[1], runtime_check=False))
    assert run_export(config, tmp_path, echo=lambda line: None).status == "ok"
    code, out, _ = verdict(tmp_path, capsys)
    assert code == ExitCode.OK
    assert "predict_action_chunk -> (5, 3)" in out  # uint8 (1, 16, 16, 3) frames through to_float_tensor
    assert "! robot loop" not in out  # one camera is fed as `images`, the graph's own key


def test_check_only_one_backend(package: Path) -> None:
    assert set(check(package, "openvino").backends) == {"openvino"}
    with pytest.raises(NotDeployable, match="--backend torch: the manifest declares only onnx, openvino"):
        check(package, "torch")


def test_the_command_line_exit_codes(package: Path, copy: Callable[..., Path]) -> None:
    def run(folder: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "getiaction_export.deploy_check", str(folder)],
                              capture_output=True, text=True, timeout=120)

    good = run(package)
    assert good.returncode == ExitCode.OK, good.stderr
    assert "deployable" in good.stdout and "INFO" not in good.stdout + good.stderr  # the runtime's log is quiet
    bad = run(copy(lambda m: m["model"].update(artifacts={"model": "dummy.onnx"})))
    assert bad.returncode == ExitCode.NOT_DEPLOYABLE
    assert bad.stderr.count("\n") == 1 and "first key 'model' is not a backend" in bad.stderr


# --- OpenVINO loaded as a robot does, with no hints ----------------------------------------------

CPU_BF16 = "BF16" in __import__("openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
"""This machine's CPU computes bfloat16: OpenVINO then compiles in bf16 unless told f32."""
F32_CALL = 'InferenceModel(dir, backend="openvino", INFERENCE_PRECISION_HINT="f32")'


@pytest.fixture(scope="module")
def openvino_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dummy policy as an OpenVINO-only package (runtime check on): OpenVINO is its default backend."""
    folder = tmp_path_factory.mktemp("dummy_ov")
    fmt = OpenVINOFormatSchema(opset_version=17, latency=False, num_random_inputs=1, verify_batch_sizes=[1, 2])
    config = ExportConfig(policy=PolicySpec(target="getiaction.policies.Dummy"),
                          input_sample=InputSampleSchema(), format=fmt, policy_name="dummy")
    assert run_export(config, folder, echo=lambda line: None).status == "ok"
    return folder


def test_an_openvino_only_package_says_what_it_computes_in(
    openvino_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bf16 CPU: a ``!`` line naming bf16 and the f32 call; otherwise a ✓ line saying f32."""
    code, out, err = verdict(openvino_package, capsys)
    assert code == ExitCode.OK and err == "", err
    assert out.rstrip().endswith("runs in physicalai")
    report = check(openvino_package)
    loaded = report.backends["openvino"]["default_load"]
    assert loaded["call"] == "InferenceModel(dir)" and loaded["cpu_bf16"] is CPU_BF16
    if CPU_BF16:
        assert loaded["precision"] == "bf16" and 0 < loaded["relative"] <= 0.05
        (warning,) = [line for line in out.splitlines() if line.startswith("! openvino:")]
        assert warning.startswith("! openvino: InferenceModel(dir) (no hints) computes in bf16 on this CPU, not f32: "
                                  "its action chunk is ")
        assert "of the largest |action| off the f32 one (at export: " in warning  # the manifest's figure
        assert warning.endswith(f"; for f32: {F32_CALL}")
        assert not any(line.startswith("✓ openvino: InferenceModel(dir)") for line in out.splitlines())
    else:
        assert loaded["precision"] == "f32" and loaded["max_abs_diff_from_f32"] <= 1e-5
        assert "✓ openvino: InferenceModel(dir) (no hints) computes in f32 on this CPU, as the export verified" in out
        assert "! openvino" not in out


def test_a_mixed_package_warns_about_the_openvino_call_without_the_hint(
    package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ONNX is the default (f32); asking for OpenVINO without the hint is what the warning is about."""
    code, out, _ = verdict(package, capsys)
    assert code == ExitCode.OK
    warnings = [line for line in out.splitlines() if line.startswith("! openvino:")]
    if CPU_BF16:
        assert len(warnings) == 1
        assert warnings[0].startswith('! openvino: InferenceModel(dir, backend="openvino") (no hints) computes in bf16')
        assert warnings[0].endswith(f"; for f32: {F32_CALL}")
    else:
        assert warnings == []
    assert "default_load" not in check(package, "onnx").backends["onnx"]  # ONNX: f32, as before


def test_a_default_openvino_load_beyond_the_tolerance_is_not_deployable(
    openvino_package: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from getiaction_export.physicalai import default_load

    monkeypatch.setattr(default_load, "REDUCED_PRECISION_TOLERANCE", 1e-9)
    code, out, err = verdict(openvino_package, capsys)
    if not CPU_BF16:  # f32: nothing to hold to the reduced-precision tolerance
        assert code == ExitCode.OK, err
        return
    assert code == ExitCode.NOT_DEPLOYABLE and out == "NOT deployable\n"
    assert err.startswith(f"error: {openvino_package}: openvino: InferenceModel(dir) (no hints) computes in bf16 on "
                          "this CPU and its action chunk is ")
    assert err.rstrip().endswith(f"(tolerance 0%); load {F32_CALL}") and err.count("\n") == 1
