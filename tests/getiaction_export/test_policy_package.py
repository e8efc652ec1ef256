"""Every ONNX/OpenVINO export folder is a physicalai policy package, checked in the runtime itself.

The export runs through the real pipeline (format=all: ONNX and OpenVINO in one folder); the
checks here load each folder with ``physicalai.inference.InferenceModel`` directly (not through
our own runtime-check code) and hold it to a PyTorch policy rebuilt from the same seed.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from getiaction_export.config.schemas import (
    AllFormatSchema,
    ExportConfig,
    InputSampleSchema,
    OnnxFormatSchema,
    OpenVINOFormatSchema,
    PolicySpec,
)
from getiaction_export.config.validation import validate
from getiaction_export.files import sha256_of
from getiaction_export.job import run_export
from getiaction_export.parity.gate import verification_inputs
from getiaction_export.stages.build import build_policy
from tests.getiaction_export.conftest import read_json

physicalai = pytest.importorskip("physicalai", reason="the [deploy] extra (physicalai) is part of [dev]")
from physicalai.inference import InferenceModel  # noqa: E402
from physicalai.inference.manifest import Manifest  # noqa: E402

TOLERANCE = {"onnx": 1e-5, "openvino": 1e-4}
"""Max abs difference from PyTorch through the runtime (OpenVINO at f32 inference precision)."""
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
VISION = {"state_dim": 6, "action_dim": 4, "chunk_size": 8, "image_shape": [3, 32, 32], "encoder_channels": [8, 16]}
POLICIES: dict[str, PolicySpec] = {
    "dummy": PolicySpec(target="getiaction.policies.Dummy"),
    # two cameras: physicalai's robot loop feeds them as images.top / images.wrist, the graph's own names
    "act": PolicySpec(target="getiaction.policies.ACT", kwargs={"config": {
        **VISION, "cameras": ["top", "wrist"], "dim_model": 32, "n_heads": 2, "n_encoder_layers": 1,
        "n_decoder_layers": 1, "dim_feedforward": 64}}),
    # one camera: the robot loop would feed it as "images" (reported, not failed)
    "diffusion": PolicySpec(target="getiaction.policies.Diffusion", kwargs={"config": {
        **VISION, "cameras": ["top"], "hidden_dim": 32, "n_layers": 1, "num_steps": 3, "num_train_timesteps": 30}}),
}
FAST = {"opset_version": 17, "latency": False, "num_random_inputs": 1, "verify_batch_sizes": [1, 2]}
"""TorchScript exporter (the exporter does not matter here), one random input per batch size."""


def export(name: str, folder: Path, fmt: Any, policy: PolicySpec | None = None) -> dict[str, Any]:
    config = ExportConfig(policy=policy or POLICIES[name], input_sample=InputSampleSchema(), format=fmt,
                          policy_name=name)
    return run_export(config, folder, echo=lambda line: None).report


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any], torch.nn.Module]]:
    """Each policy exported to ONNX and OpenVINO in one folder, with its result and its PyTorch twin."""
    built = {}
    for name in POLICIES:
        folder = tmp_path_factory.mktemp(name)
        result = export(name, folder, AllFormatSchema(formats=["onnx", "openvino"], **FAST))
        assert result["status"] == "ok", result["error"]
        built[name] = (folder, result, build_policy(POLICIES[name]).module)
    return built


def torch_action(module: torch.nn.Module, observation: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return module({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in observation.items()}).numpy()


def batch_one_observations(module: torch.nn.Module) -> list[dict[str, np.ndarray]]:
    """The parity stage's own seeded inputs (stages/verify.py) at batch 1, as numpy."""
    cases = verification_inputs(module.sample_input, [1, 2], True, 2, 0)
    return [{k: v.numpy() for k, v in case.items()} for _, case in cases if next(iter(case.values())).shape[0] == 1]


def count_runs(model: Any) -> list[int]:
    """A counter of the model's runs (the adapter's predict calls)."""
    calls, predict = [0], model.adapter.predict

    def counted(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls[0] += 1
        return predict(inputs)

    model.adapter.predict = counted
    return calls


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_package_runs_in_physicalai_like_pytorch(packages: dict[str, Any], policy: str, backend: str) -> None:
    folder, _, module = packages[policy]
    model = InferenceModel(folder, backend=backend, **(F32 if backend == "openvino" else {}))
    assert model.backend == backend and model.policy_name == policy
    tolerance = TOLERANCE[backend]

    # the parity stage's seeded inputs, every batch size, through the runtime's whole pipeline
    for _, case in verification_inputs(module.sample_input, [1, 2, 8], True, 2, 0):
        feed = {k: v.numpy() for k, v in case.items()}
        got, want = model(feed)["action"], torch_action(module, feed)
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() <= tolerance

    # predict_action_chunk: the (chunk, A) PyTorch gives at batch 1
    first, second = batch_one_observations(module)[:2]
    expected = torch_action(module, first)[0]
    expected = np.atleast_2d(expected)  # Dummy: one action per call, a chunk of 1
    chunk = model.predict_action_chunk(first)
    assert chunk.shape == expected.shape
    assert np.abs(chunk - expected).max() <= tolerance

    # select_action: the chunk's rows in order from one run, then a new run on the new observation
    runs = count_runs(model)
    model.reset()
    rows = [model.select_action(first) for _ in range(len(expected))]
    assert runs[0] == 1
    for index, row in enumerate(rows):
        assert row.shape == expected.shape[1:]
        assert np.abs(row - expected[index]).max() <= tolerance, f"row {index}"
    following = model.select_action(second)
    assert runs[0] == 2
    assert np.abs(following - np.atleast_2d(torch_action(module, second)[0])[0]).max() <= tolerance


@pytest.mark.parametrize("policy", list(POLICIES))
def test_manifest_is_what_the_runtime_reads_and_records_provenance(packages: dict[str, Any], policy: str) -> None:
    folder, result, _ = packages[policy]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["format"], manifest["version"]) == ("policy_package", "1.0")
    assert manifest["policy"] == {"name": policy, "source": {"class_path": result["policy"]["class_path"]}}
    model = manifest["model"]
    assert model["runner"] == {"type": "single_pass"}
    assert list(model["artifacts"].items()) == [("onnx", f"{policy}.onnx"), ("openvino", f"{policy}.xml")]
    assert model.get("preprocessors", []) == ([] if policy == "dummy" else [{"type": "to_float_tensor"}])
    assert "action" in [f["init_args"]["name"] for f in model["output_features"]]

    ours = manifest["getiaction"]
    assert ours["policy"]["class_path"] == result["policy"]["class_path"]
    assert ours["opset"] == {"requested": 17, "saved": 17} and ours["exporter"] == "torchscript"
    assert ours["versions"]["torch"] == result["versions"]["torch"]
    assert ours["model_config"]["class_path"].endswith("Config")
    assert ours["default_backend"] == "onnx"
    for backend, suffix in (("onnx", ".onnx"), ("openvino", ".xml")):
        record = ours["backends"][backend]
        assert record["sha256"] == sha256_of(folder / f"{policy}{suffix}") == result["artifact_sha256"][backend]
        assert record["parity"]["action"]["passed"] is True
        assert record["runtime_check"]["passed"] is True
    assert ours["backends"]["openvino"]["files"][f"{policy}.bin"] == sha256_of(folder / f"{policy}.bin")

    # the runtime's own parser keeps our section and reads the rest as written
    parsed = Manifest.load(folder)
    assert parsed.model_extra == {"getiaction": ours}
    assert next(iter(parsed.model.artifacts)) == "onnx"
    assert InferenceModel(folder).backend == "onnx"  # the default backend, chosen explicitly

    # the job's own record of the runtime check
    checks = result["runtime_check"]
    assert checks["status"] == "ok" and set(checks["backends"]) == {"onnx", "openvino"}
    for figures in checks["backends"].values():
        assert figures["passed"] and figures["parity"]["action"]["max_abs_diff"] <= 1e-5
        assert figures["model_file"] in (f"{policy}.onnx", f"{policy}.xml")
        assert figures["chunk"]["select_action"]["runs_for_chunk"] == 1
        assert figures["chunk"]["select_action"]["reran_on_new_observation"] is True


def test_robot_loop_observations_drive_a_two_camera_policy(packages: dict[str, Any]) -> None:
    """physicalai's PolicySource builds the observation from robot state and (H, W, 3) uint8 frames."""
    from physicalai.capture.frame import Frame
    from physicalai.runtime.action_sources.policy import PolicySource

    folder, result, module = packages["act"]
    assert result["package"]["robot_loop"]["ok"] is True
    generator = np.random.default_rng(3)
    frames = {camera: generator.integers(0, 256, (32, 32, 3), dtype=np.uint8) for camera in ("top", "wrist")}
    state = generator.standard_normal(6).astype(np.float32)
    for backend in ("onnx", "openvino"):
        model = InferenceModel(folder, backend=backend, **(F32 if backend == "openvino" else {}))
        fed = PolicySource(model).to_model_input(
            types.SimpleNamespace(state=state, images=None),
            {camera: Frame(data=frame, timestamp=0.0, sequence=0) for camera, frame in frames.items()},
        )
        assert sorted(fed) == ["images.top", "images.wrist", "state"] and fed["images.top"].dtype == np.uint8
        want = torch_action(module, {"state": state[None], **{
            f"images.{camera}": frame.transpose(2, 0, 1)[None].astype(np.float32) / 255
            for camera, frame in frames.items()}})[0]
        assert np.abs(model.predict_action_chunk(fed) - want).max() <= TOLERANCE[backend]
    figures = result["runtime_check"]["backends"]["onnx"]["robot_loop"]
    assert figures["policy_source"]["passed"] and figures["uint8_frames"]["max_abs_diff"] <= 1e-5


def test_a_single_camera_policy_is_drivable_by_the_robot_loop(packages: dict[str, Any]) -> None:
    """The loop feeds one camera as ``images``, and a one-camera graph reads exactly ``images``."""
    _, result, _ = packages["diffusion"]
    loop = result["package"]["robot_loop"]
    assert loop["ok"] is True and loop["reason"] is None
    assert loop["feeds"] == {"state": "state", "images": "images"}
    # uint8 (1, H, W, 3) frames under the graph's own key go through to_float_tensor exactly
    assert result["runtime_check"]["backends"]["onnx"]["robot_loop"]["uint8_frames"]["passed"] is True


def test_openvino_alone_is_its_own_default_backend(tmp_path: Path) -> None:
    result = export("dummy", tmp_path, OpenVINOFormatSchema(**FAST))
    assert result["status"] == "ok", result["error"]
    manifest = read_json(tmp_path / "manifest.json")
    assert manifest["model"]["artifacts"] == {"openvino": "dummy.xml"}
    assert result["runtime_check"]["backends"]["openvino"]["adapter_kwargs"] == F32
    assert InferenceModel(tmp_path, **F32).backend == "openvino"


def test_runtime_check_false_skips_the_runtime_but_still_writes_the_manifest(tmp_path: Path) -> None:
    result = export("dummy", tmp_path, OnnxFormatSchema(**FAST, runtime_check=False))
    assert result["status"] == "ok", result["error"]
    assert result["runtime_check"] == {"status": "skipped", "backends": {}, "reason": "format.runtime_check=false"}
    assert read_json(tmp_path / "manifest.json")["model"]["artifacts"] == {"onnx": "dummy.onnx"}


def test_runtime_check_true_without_physicalai_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf

    from getiaction.errors import ConfigError
    from getiaction.export import extras

    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda module: module != "physicalai" and real(module))
    cfg = OmegaConf.create({"policy": {"_target_": "getiaction.policies.Dummy"},
                            "input_sample": {"name": "from_policy"}, "format": {"name": "onnx", "runtime_check": True}})
    with pytest.raises(ConfigError, match=r"format.runtime_check=true needs the physicalai package: .*\[deploy\]"):
        validate(cfg)


def test_a_package_the_runtime_rejects_never_gets_a_final_name(tmp_path: Path) -> None:
    """Outputs renamed away from ``action``: onnxruntime parity passes, the runtime check does not."""
    fmt = OnnxFormatSchema(**FAST, output_names=["actions"])
    result = export("dummy", tmp_path, fmt)
    assert result["status"] == "failed" and result["exit_code"] == 3 and result["stage"] == "runtime_check"
    assert "output named 'action'" in result["error"] and "['actions']" in result["error"]
    assert result["runtime_check"]["status"] == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "result.json"]  # no model, manifest, replica


def test_cli_sweep_summary_has_the_runtime_check_column(cli, tmp_path: Path) -> None:
    run = cli("-m", "policy=dummy", "format=onnx", "format.opset_version=17", "format.latency=false",
              "hydra.sweep.dir=sweep")
    assert run.returncode == 0, run.output
    assert "[runtime_check] ✓ physicalai" in run.stdout and "[package] ✓ manifest.json" in run.stdout
    summary = read_json(tmp_path / "sweep" / "summary.json")
    (row,) = summary["rows"]
    assert row["runtime_check"].startswith("ok ") and float(row["runtime_check"][3:]) <= 1e-5
    assert "| physicalai check |" in (tmp_path / "sweep" / "summary.md").read_text()
    job = tmp_path / "sweep" / row["job"]
    assert read_json(job / "manifest.json")["getiaction"]["config"]["format"]["runtime_check"] is None


# --- what a robot loads by default: InferenceModel(dir) with no hints -----------------------------

REPO = Path(__file__).resolve().parents[2]
CPU_BF16 = "BF16" in __import__("openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
"""This machine's CPU computes bfloat16: OpenVINO then compiles in bf16 unless told f32."""
DEFAULT_PRECISION = "bf16" if CPU_BF16 else "f32"
F32_CALL = 'InferenceModel(dir, backend="openvino", INFERENCE_PRECISION_HINT="f32")'


def shipped(name: str) -> PolicySpec:
    """The policy as ``conf/policy/<name>.yaml`` ships it (default config, seed 0)."""
    import yaml

    spec = yaml.safe_load((REPO / "conf" / "policy" / f"{name}.yaml").read_text())
    kwargs = {k: v for k, v in spec.items() if k not in ("_target_", "seed", "call_style")}
    return PolicySpec(target=spec["_target_"], seed=spec.get("seed", 0), kwargs=kwargs)


def relative_off(model: Any, module: torch.nn.Module) -> float:
    """Max abs diff from PyTorch / the largest |PyTorch action|, worst over the parity stage's inputs."""
    worst = 0.0
    for _, case in verification_inputs(module.sample_input, [1, 2], True, 1, 0):
        feed = {k: v.numpy() for k, v in case.items()}
        want = torch_action(module, feed)
        worst = max(worst, float(np.abs(model(feed)["action"] - want).max() / np.abs(want).max()))
    return worst


@pytest.fixture(scope="module")
def openvino_only(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any], Any, list[str]]]:
    """The shipped ACT and diffusion (default configs) as OpenVINO-only packages: folder, result, module, console."""
    built = {}
    for name in ("act", "diffusion"):
        folder, lines = tmp_path_factory.mktemp(f"{name}_ov"), []
        config = ExportConfig(policy=shipped(name), input_sample=InputSampleSchema(),
                              format=OpenVINOFormatSchema(**FAST), policy_name=name)
        result = run_export(config, folder, echo=lines.append).report
        assert result["status"] == "ok", result["error"]
        built[name] = (folder, result, build_policy(shipped(name)).module, lines)
    return built


@pytest.mark.parametrize("policy", ["act", "diffusion"])
def test_an_openvino_only_package_is_verified_as_the_robot_loads_it(openvino_only: dict[str, Any], policy: str) -> None:
    """``InferenceModel(dir)``, no hints: bf16 on a CPU with bfloat16, held to the stated tolerance; else f32."""
    from getiaction_export.physicalai.default_load import REDUCED_PRECISION_TOLERANCE

    folder, result, module, lines = openvino_only[policy]
    figures = result["runtime_check"]["backends"]["openvino"]
    assert figures["adapter_kwargs"] == F32 and figures["parity"]["action"]["max_abs_diff"] <= 1e-5  # as before
    loaded = figures["default_load"]
    assert loaded["call"] == "InferenceModel(dir)" and loaded["adapter_kwargs"] == {}
    assert loaded["precision"] == DEFAULT_PRECISION and loaded["cpu_bf16"] is CPU_BF16
    assert loaded["gated"] is True and loaded["passed"] is True and loaded["cases"] == figures["cases"]
    action = loaded["outputs"]["action"]
    assert loaded["max_abs_diff"] == action["max_abs_diff"] and loaded["relative"] == action["relative"]
    assert action["max_abs_output"] > 0
    if CPU_BF16:
        assert loaded["tolerance"] == {"relative": REDUCED_PRECISION_TOLERANCE} == {"relative": 0.05}
        assert 1e-4 < loaded["relative"] <= REDUCED_PRECISION_TOLERANCE  # measurably bf16, within the gate
    else:
        assert loaded["tolerance"] == {"atol": 1e-5, "rtol": 1e-4} and loaded["max_abs_diff"] <= 1e-5

    # the runtime itself, loaded exactly as a robot does, agrees with the recorded figures
    model = InferenceModel(folder)
    assert model.backend == "openvino" and model.adapter.config == {}
    assert model.adapter.compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name() == DEFAULT_PRECISION
    measured = relative_off(model, module)
    assert measured <= (REDUCED_PRECISION_TOLERANCE if CPU_BF16 else 1e-5)
    assert measured <= loaded["relative"] * 1.5 + 1e-6  # the same inputs' worst, from a subset of them
    assert relative_off(InferenceModel(folder, **F32), module) <= 1e-5  # the f32 call the warnings give

    # the manifest records it under getiaction.backends.openvino.default_load
    recorded = read_json(folder / "manifest.json")["getiaction"]["backends"]["openvino"]["default_load"]
    assert recorded["call"] == "InferenceModel(dir)" and recorded["checked"] is True
    assert recorded["precision"] == DEFAULT_PRECISION and recorded["export_cpu_bf16"] is CPU_BF16
    assert (recorded["max_abs_diff"], recorded["relative"], recorded["passed"]) == (
        loaded["max_abs_diff"], loaded["relative"], True)
    assert recorded["tolerance"] == loaded["tolerance"] and recorded["f32_call"] == F32_CALL

    # and the console says so
    (package_line,) = [line for line in lines if line.startswith("[package] ✓")]
    assert f"backends openvino (default openvino); InferenceModel(dir) computes in {DEFAULT_PRECISION}" in package_line
    warnings = [line for line in lines if line.startswith("[package] !")]
    if CPU_BF16:
        assert "on this CPU" in package_line and f"{loaded['relative']:.2%} of the largest |action|" in package_line
        assert warnings == [f"[package] ! InferenceModel(dir) computes in bf16 on this CPU (OpenVINO's default where "
                            f"the CPU has bfloat16), not the f32 the parity gate verified; for f32: {F32_CALL}"]
        assert any(line.startswith("[runtime_check] ✓ InferenceModel(dir) with no hints (bf16 on this CPU)")
                   for line in lines)
    else:
        assert warnings == [] and "on this CPU" not in package_line


@pytest.mark.parametrize("policy", list(POLICIES))
def test_each_backend_records_its_default_load(packages: dict[str, Any], policy: str) -> None:
    """ONNX + OpenVINO: InferenceModel(dir) loads ONNX (f32, unchanged); OpenVINO's hint-free load is recorded."""
    from getiaction_export.physicalai.default_load import REDUCED_PRECISION_TOLERANCE

    folder, result, _ = packages[policy]
    backends = result["runtime_check"]["backends"]
    onnx = backends["onnx"]["default_load"]
    assert onnx["call"] == "InferenceModel(dir)" and onnx["precision"] == "f32" and onnx["gated"] is True
    assert onnx["passed"] is True and onnx["max_abs_diff"] <= 1e-5 and "cpu_bf16" not in onnx
    assert onnx["max_abs_diff"] == pytest.approx(backends["onnx"]["parity"]["action"]["max_abs_diff"], abs=1e-7)
    openvino = backends["openvino"]["default_load"]
    assert openvino["call"] == 'InferenceModel(dir, backend="openvino")' and openvino["gated"] is False
    assert openvino["precision"] == DEFAULT_PRECISION and openvino["passed"] is True
    assert openvino["relative"] <= (REDUCED_PRECISION_TOLERANCE if CPU_BF16 else 1e-5)
    manifest = read_json(folder / "manifest.json")["getiaction"]["backends"]
    assert {b: manifest[b]["default_load"]["precision"] for b in manifest} == {"onnx": "f32",
                                                                               "openvino": DEFAULT_PRECISION}
    assert InferenceModel(folder).adapter.__class__.__name__ == "ONNXAdapter"  # the default load is f32


def test_a_default_load_beyond_its_tolerance_fails_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a tolerance bf16 cannot meet, an OpenVINO-only package fails on a bf16 CPU (and passes in f32)."""
    from getiaction_export.physicalai import default_load

    monkeypatch.setattr(default_load, "REDUCED_PRECISION_TOLERANCE", 1e-9)
    result = export("act", tmp_path, OpenVINOFormatSchema(**FAST))
    if not CPU_BF16:  # the default load computes in f32 and is held to the f32 tolerance, not this one
        assert result["status"] == "ok", result["error"]
        assert result["runtime_check"]["backends"]["openvino"]["default_load"]["precision"] == "f32"
        return
    assert result["status"] == "failed" and result["exit_code"] == 4 and result["stage"] == "runtime_check"
    assert result["error"].startswith("runtime check failed (physicalai openvino, InferenceModel(dir) with no hints, "
                                      "bf16 on this CPU): action ")
    assert "export format=all to make ONNX (f32) the package's default backend" in result["error"]
    figures = result["runtime_check"]["backends"]["openvino"]
    assert figures["passed"] is False and figures["parity"]["action"]["passed"] is True  # f32 was fine
    assert figures["default_load"]["precision"] == "bf16" and figures["default_load"]["passed"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "result.json"]  # nothing got a final name


def test_without_the_runtime_check_the_manifest_still_says_what_the_default_load_computes_in(tmp_path: Path) -> None:
    lines: list[str] = []
    config = ExportConfig(policy=POLICIES["dummy"], input_sample=InputSampleSchema(), policy_name="dummy",
                          format=OpenVINOFormatSchema(**FAST, runtime_check=False))
    assert run_export(config, tmp_path, echo=lines.append).status == "ok"
    recorded = read_json(tmp_path / "manifest.json")["getiaction"]["backends"]["openvino"]["default_load"]
    assert recorded == {"call": "InferenceModel(dir)", "precision": DEFAULT_PRECISION, "checked": False}
    (package_line,) = [line for line in lines if line.startswith("[package] ✓")]
    assert package_line.endswith(f"(default openvino); InferenceModel(dir) computes in {DEFAULT_PRECISION}"
                                 f"{' on this CPU' if CPU_BF16 else ''} (not checked: no runtime check)")
    assert any(line.startswith("[package] ! InferenceModel(dir) computes in bf16") for line in lines) is CPU_BF16


def _timed(**runtime_ms: float | None) -> SimpleNamespace:
    return SimpleNamespace(formats={name: SimpleNamespace(latency=None if ms is None else {"runtime_ms": ms})
                                    for name, ms in runtime_ms.items()})


@pytest.mark.parametrize(("unhinted", "timed", "default", "phrase"), [
    ("f32", {"onnx": 2.0, "openvino": 1.0}, "openvino", "the fastest verified backend at batch 1 on the export "
                                                         "machine (fastest first: openvino, then onnx)"),
    ("f32", {"onnx": 1.95, "openvino": 3.07}, "onnx", "(fastest first: onnx, then openvino)"),
    ("f32", {"onnx": 2.0, "openvino": 1.9}, "onnx", "onnx: the others are less than 10% faster"),
    ("bf16", {"onnx": 2.0, "openvino": 1.0}, "onnx", "openvino is faster but InferenceModel(dir) would compute it "
                                                     "in bf16 on this CPU"),
    ("f32", {"onnx": 2.0, "openvino": None}, "onnx", "latency not measured (format.latency=false)"),
    ("f32", {"openvino": 3.0}, "openvino", "the only backend in the package"),
])
def test_the_default_backend_is_the_fastest_one_whose_hint_free_load_computes_what_was_verified(
    monkeypatch: pytest.MonkeyPatch, unhinted: str, timed: dict[str, float | None], default: str, phrase: str
) -> None:
    from getiaction_export.physicalai import precision
    from getiaction_export.physicalai.manifest import default_backend

    monkeypatch.setattr(precision, "openvino_default_precision", lambda: unhinted)
    chosen, reason = default_backend(_timed(**timed), list(timed))  # type: ignore[arg-type]
    assert chosen == default and phrase in reason, reason
