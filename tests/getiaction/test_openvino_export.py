"""The library's OpenVINO export, float16 conversion and simplification (in-process, Dummy-sized)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
import torch

from getiaction.errors import ConfigError, ExportError, OpsetError
from getiaction.export import OpenVINOExportResult
from getiaction.export.onnx import export_onnx
from getiaction.export.openvino import F32_CONFIG, convert_onnx_to_openvino
from getiaction.export.transforms import convert_to_fp16, simplify_onnx, sort_topologically
from getiaction.policies import Dummy, DummyConfig
from tests.getiaction_export.fp16_modules import make_overflowing


@pytest.fixture
def policy() -> Dummy:
    torch.manual_seed(0)
    return Dummy(config=DummyConfig(action_shape=(6,), hidden_dim=64)).eval()


def run_ir(xml: Path, state: torch.Tensor) -> np.ndarray:
    compiled = ov.Core().compile_model(str(xml), "CPU", F32_CONFIG)
    return np.asarray(compiled({"state": state.numpy()})[compiled.output("action")])


def test_to_openvino_writes_xml_and_bin_that_match_pytorch(policy: Dummy, tmp_path: Path) -> None:
    result = policy.to_openvino(tmp_path / "dummy.xml", opset_version=17)
    assert isinstance(result, OpenVINOExportResult)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dummy.bin", "dummy.xml"]  # nothing else left behind
    assert (result.path, result.bin_path) == (tmp_path / "dummy.xml", tmp_path / "dummy.bin")
    assert (result.input_names, result.output_names, result.opset, result.exporter) == (
        ["state"], ["action"], 17, "torchscript")
    assert result.inputs[0].shape == ["batch", 6] and result.compressed_to_fp16 is False
    for batch in (1, 5):  # the batch axis stays dynamic in the IR
        state = torch.randn(batch, 6)
        expected = policy({"state": state}).detach().numpy()
        assert np.abs(run_ir(result.path, state) - expected).max() <= 1e-5
    model = ov.Core().read_model(str(result.path))
    keys = ("policy.class_path", "getiaction.precision")
    info = {key: model.get_rt_info(["getiaction", key]).astype(str) for key in keys}
    assert info == {"policy.class_path": "getiaction.policies.dummy.policy.Dummy", "getiaction.precision": "fp32"}


def test_compressed_weights_halve_the_bin_and_stay_close(policy: Dummy, tmp_path: Path) -> None:
    full = policy.to_openvino(tmp_path / "full.xml", opset_version=17)
    half = policy.export(tmp_path / "half.xml", "openvino", compress_to_fp16=True, opset_version=17)
    assert half.compressed_to_fp16 is True
    assert half.bin_path.stat().st_size < 0.6 * full.bin_path.stat().st_size
    state = torch.randn(4, 6)
    expected = policy({"state": state}).detach().numpy()
    assert 0 < np.abs(run_ir(half.path, state) - expected).max() <= 5e-3


def test_failed_openvino_export_keeps_the_old_files(policy: Dummy, tmp_path: Path) -> None:
    (tmp_path / "dummy.xml").write_text("old xml")
    (tmp_path / "dummy.bin").write_text("old bin")
    with pytest.raises(OpsetError):
        policy.to_openvino(tmp_path / "dummy.xml", opset_version=99)
    assert (tmp_path / "dummy.xml").read_text() == "old xml" and (tmp_path / "dummy.bin").read_text() == "old bin"
    with pytest.raises(ConfigError, match=r"must end in \.xml"):
        policy.to_openvino(tmp_path / "dummy.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dummy.bin", "dummy.xml"]


def test_conversion_from_a_folder_with_commas_in_its_name(policy: Dummy, tmp_path: Path) -> None:
    folder = tmp_path / "format=openvino,opset_version=17"  # how Hydra names sweep jobs
    exported = policy.to_onnx(folder / "dummy.onnx", opset_version=17)
    converted = convert_onnx_to_openvino(exported.path, folder / "dummy.xml", source=exported)
    state = torch.randn(2, 6)
    assert np.abs(run_ir(converted.path, state) - policy({"state": state}).detach().numpy()).max() <= 1e-5


def test_fp16_onnx_keeps_float32_io_and_parity(policy: Dummy, tmp_path: Path) -> None:
    result = policy.to_onnx(tmp_path / "half.onnx", opset_version=17, precision="fp16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.onnx"]
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    assert {init.data_type for init in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    state = torch.randn(3, 6)
    (actual,) = ort.InferenceSession(str(result.path)).run(None, {"state": state.numpy()})
    assert actual.dtype == np.float32
    assert np.abs(actual - policy({"state": state}).detach().numpy()).max() <= 5e-3
    with pytest.raises(ConfigError, match=r"precision: 'fp8' is not valid; use one of \['fp32', 'fp16', 'int8'\]"):
        policy.to_onnx(tmp_path / "bad.onnx", precision="fp8")


def test_fp16_overflow_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    module = make_overflowing().eval()
    sample = {"state": torch.linspace(-1, 1, 8).reshape(2, 4)}
    export_onnx(module, tmp_path / "fp32.onnx", sample, opset_version=17)
    with pytest.raises(ExportError, match=r"precision=fp16: output 'action' is NaN/Inf in float16"):
        convert_to_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx", sample)
    assert not (tmp_path / "fp16.onnx").exists()
    convert_to_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx")  # without a sample: no check


def test_topological_sort_restores_checker_order(policy: Dummy, tmp_path: Path) -> None:
    model = onnx.load(str(policy.to_onnx(tmp_path / "m.onnx", opset_version=17).path))
    nodes = list(model.graph.node)
    random.Random(0).shuffle(nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model)
    sort_topologically(model.graph)
    onnx.checker.check_model(model, full_check=True)


def test_simplify_keeps_outputs_metadata_and_opset(policy: Dummy, tmp_path: Path) -> None:
    exported = policy.to_onnx(tmp_path / "m.onnx", opset_version=17)
    result = simplify_onnx(exported.path, tmp_path / "slim.onnx")
    assert result.nodes_after <= result.nodes_before == len(onnx.load(str(exported.path)).graph.node)
    slim = onnx.load(str(result.path))
    props = {p.key: p.value for p in slim.metadata_props}
    assert props["policy.class_path"] == "getiaction.policies.dummy.policy.Dummy"
    assert props["getiaction.simplified"] == "onnxslim" and slim.opset_import[0].version == 17
    state = torch.randn(5, 6)
    (a,) = ort.InferenceSession(str(exported.path)).run(None, {"state": state.numpy()})
    (b,) = ort.InferenceSession(str(result.path)).run(None, {"state": state.numpy()})
    assert np.abs(a - b).max() <= 1e-6


BLOCKED = """
import sys, pathlib

class BlockOpenVINO:
    def find_spec(self, name, path=None, target=None):
        if name == "openvino" or name.startswith("openvino."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, BlockOpenVINO())
import getiaction.export.openvino  # the module itself imports without openvino
from getiaction.errors import ConfigError
from getiaction.policies import Dummy
try:
    Dummy().to_openvino(pathlib.Path(sys.argv[1]) / "dummy.xml")
except ConfigError as error:
    print(error)
"""


def test_missing_openvino_raises_one_line_with_the_install_hint(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-c", BLOCKED, str(tmp_path)], capture_output=True, text=True,
                               timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "to_openvino needs the openvino package: pip install 'getiaction-export[openvino]'\n"
    assert not list(tmp_path.iterdir())  # refused before the ONNX export
