"""ONNX files with external data: the route a model of 2 GB or more takes, forced here on a small model.

``EXTERNAL_DATA_THRESHOLD`` is lowered (monkeypatch in this process; :mod:`tests.getiaction.external_data_modules`
in the app's subprocess), so a ~140 kB MLP is written as ``<stem>.onnx`` + ``<stem>.onnx.data``. Checked: both
files written and nothing else, ``onnx.checker`` full check on the path, onnxruntime = PyTorch, the bytes are the
same on every export, OpenVINO converts it (also from a folder with a comma), a failed check leaves nothing,
and the app stages, hashes, promotes and packages the data file with the model, or removes both on failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from getiaction.errors import ExportError
from getiaction.export import onnx as onnx_export
from getiaction.export import onnx_files
from getiaction.export.onnx import data_file, export_onnx
from getiaction.export.onnx_files import copy_onnx
from getiaction.export.onnx_files import onnx_files as files_of
from getiaction_export.files import sha256_of
from tests.getiaction.external_data_modules import make_mlp
from tests.getiaction_export.conftest import Run, run_cli

MODULES = "tests.getiaction.external_data_modules"
REPO = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
EXPORTERS = [pytest.param("torchscript", 17, id="torchscript"), pytest.param("dynamo", 18, id="dynamo")]


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_THRESHOLD", 64_000)


def _export(folder: Path, exporter: str = "torchscript", opset: int = 17, **kwargs: object) -> Path:
    model = make_mlp()
    export_onnx(model, folder / "mlp.onnx", model.sample_input, opset_version=opset, exporter=exporter, **kwargs)
    return folder / "mlp.onnx"


def _ort(path: Path, state: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"state": state})[0])


@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS)
def test_large_model_is_one_onnx_file_and_one_data_file_that_check_and_run(
    tmp_path: Path, exporter: str, opset: int
) -> None:
    path = _export(tmp_path, exporter, opset)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx", "mlp.onnx.data"]
    assert data_file(path).stat().st_size > 130_000 > path.stat().st_size
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path), load_external_data=False)
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"mlp.onnx.data"}  # one file, relative to the model
    model = make_mlp().eval()
    state = torch.randn(5, 6)
    with torch.no_grad():
        expected = model({"state": state}).numpy()
    np.testing.assert_allclose(_ort(path, state.numpy()), expected, rtol=1e-5, atol=1e-6)


def test_below_the_threshold_the_model_stays_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _export(tmp_path, external_data=True)
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_THRESHOLD", 10**9)
    _export(tmp_path)  # overwrites a large export: its stale data file goes too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx"]
    assert not onnx_files.uses_external_data(onnx.load(str(path)))


@pytest.mark.parametrize(("exporter", "opset"), EXPORTERS)
def test_external_data_export_is_byte_reproducible(tmp_path: Path, exporter: str, opset: int) -> None:
    first, second = _export(tmp_path / "a", exporter, opset), _export(tmp_path / "b", exporter, opset)
    assert first.read_bytes() == second.read_bytes()
    assert data_file(first).read_bytes() == data_file(second).read_bytes()


def test_a_failed_check_leaves_nothing_and_keeps_the_old_files(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = _export(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def refuse(path: Path) -> None:
        assert data_file(path).is_file()  # checked with its data beside it
        raise ExportError("onnx.checker rejected the exported graph: refused on purpose")

    monkeypatch.setattr(onnx_export, "_check_file", refuse)
    model = make_mlp()
    model.net[0].bias.data += 1.0
    with pytest.raises(ExportError, match="refused on purpose"):
        export_onnx(model, path, model.sample_input, opset_version=17, exporter="torchscript")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no hidden folder either


def test_copy_renames_the_data_file_after_the_copy(tmp_path: Path) -> None:
    path = _export(tmp_path / "a")
    copied = copy_onnx(path, tmp_path / "b" / "renamed.onnx")
    assert [p.name for p in copied] == ["renamed.onnx", "renamed.onnx.data"]
    assert files_of(copied[0]) == copied
    state = np.ones((1, 6), np.float32)
    np.testing.assert_array_equal(_ort(copied[0], state), _ort(path, state))


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs the [openvino] extra")
def test_openvino_converts_a_model_with_external_data_even_under_a_comma(tmp_path: Path) -> None:
    from getiaction.export.openvino import convert_onnx_to_openvino
    from getiaction_export.parity.runtimes import OpenVINOModel

    folder = tmp_path / "format=onnx,opset_version=17"  # a Hydra sweep folder: convert_model splits at commas
    path = _export(folder)
    result = convert_onnx_to_openvino(path, folder / "mlp.xml")
    assert sorted(p.name for p in folder.iterdir()) == ["mlp.bin", "mlp.onnx", "mlp.onnx.data", "mlp.xml"]
    state = torch.randn(3, 6)
    got = OpenVINOModel(result.path, result.output_names, 1)({"state": state})[0]
    np.testing.assert_allclose(got, _ort(path, state.numpy()), rtol=1e-5, atol=1e-5)


def cli(tmp_path: Path, *args: str) -> Run:
    """``python -m getiaction_export ARGS`` in ``tmp_path``, this repository importable (for :data:`MODULES`)."""
    return run_cli(*args, cwd=tmp_path, env=ENV)


def _hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.name != ".hydra"
                  and ".hydra" not in p.parts)


def test_app_stages_hashes_promotes_and_packages_the_data_file(tmp_path: Path) -> None:
    run = cli(tmp_path, "policy=module", f"policy._target_={MODULES}.make_mlp", "format=onnx",
              "format.opset_version=17", "output_dir=out")
    assert run.returncode == 0, run.output
    out = tmp_path / "out"
    result = json.loads((out / "result.json").read_text())
    files = result["formats"]["onnx"]["files"]
    assert [Path(name).name for name in files] == ["make_mlp.onnx", "make_mlp.onnx.data"]
    assert {name: sha256_of(name) for name in files} == files
    assert result["artifact_sizes"]["onnx"] == sum(Path(name).stat().st_size for name in files)
    manifest = (out / "manifest.json").read_text()
    assert "make_mlp.onnx.data" in manifest and files[str(out / "make_mlp.onnx.data")] in manifest
    onnx.checker.check_model(str(out / "make_mlp.onnx"), full_check=True)
    assert _hidden(out) == []


def test_app_removes_the_data_file_with_the_model_when_verify_fails(tmp_path: Path) -> None:
    run = cli(tmp_path, "policy=module", f"policy._target_={MODULES}.make_mismatched_mlp", "format=onnx",
              "format.opset_version=17", "output_dir=out")
    assert run.returncode == 4, run.output
    out = tmp_path / "out"
    assert json.loads((out / "result.json").read_text())["stage_failed"] == "verify"
    assert not [p.name for p in out.rglob("*") if p.name.endswith((".onnx", ".data", ".xml", ".bin"))]
    assert _hidden(out) == []


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs the [openvino] extra")
def test_app_converts_openvino_from_a_source_with_external_data(tmp_path: Path) -> None:
    run = cli(tmp_path, "policy=module", f"policy._target_={MODULES}.make_mlp", "format=openvino",
              "format.opset_version=17", "output_dir=out")
    assert run.returncode == 0, run.output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".xml", ".bin", ".onnx", ".data")) == \
        ["make_mlp.bin", "make_mlp.xml"]
    assert _hidden(out) == []
