"""ONNX export: every guarantee checked on the written file (opset, names, dynamic batch, metadata,
reproducible bytes, parity with onnxruntime), and one clear error per bad request."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import getiaction
from getiaction.errors import ConfigError, ExportError, OpsetError
from getiaction.export import Export, OnnxExportResult
from getiaction.export.onnx import export_onnx
from getiaction.export.serialization import from_yaml
from getiaction.policies import Dummy, DummyConfig
from getiaction.policies.base import Policy

REPO_ROOT = Path(getiaction.__file__).resolve().parents[2]
OPSETS = [14, 17, 18, 20]


# --------------------------------------------------------------------------------------------
# test models
# --------------------------------------------------------------------------------------------
class Wrapped(Export, Policy):
    """A policy around any inner model (the contract: ``self.model``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


class TwoInputs(nn.Module):
    """Reads ``observation`` (B, 64) and ``state`` (B, 8), returns (B, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.observation = nn.Linear(64, 4)
        self.state = nn.Linear(8, 4)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tanh(self.observation(batch["observation"])) + self.state(batch["state"])


class Horizon(nn.Module):
    """(B, T, 4) -> (B, T, 4); its export defaults make T dynamic under the default output name."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 4))
        self.defaults = {
            "onnx": {
                "output_names": ["action"],
                "dynamic_axes": {"state": {1: "horizon"}, "action": {1: "horizon"}},
            }
        }

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        return {"state": torch.randn(1, 3, 4)}

    @property
    def extra_export_args(self) -> dict[str, Any]:
        return self.defaults  # the same dict every call: export must not mutate it

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["state"] * self.scale + 1.0


class NoSample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(7, 7)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch["state"])


class FixedBatch(nn.Module):
    """A forward that bakes the batch size into a reshape or view."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.linear = nn.Linear(8, 8)

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        return {"state": torch.randn(2 if self.kind == "reshape" else 1, 8)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.linear(batch["state"])
        return x.reshape(2, -1) if self.kind == "reshape" else x.view(1, -1)


class Attention(nn.Module):
    """Uses scaled_dot_product_attention, which the TorchScript exporter supports from opset 14."""

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        return {"state": torch.randn(1, 3, 8)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["state"]
        return F.scaled_dot_product_attention(x, x, x)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def dims(values: Any) -> dict[str, list[int | str]]:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def default_opset(model: onnx.ModelProto) -> int:
    (version_,) = [e.version for e in model.opset_import if e.domain in ("", "ai.onnx")]
    return int(version_)


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def dummy() -> Dummy:
    torch.manual_seed(0)
    return Dummy(config=DummyConfig(action_shape=(7,)))


@pytest.fixture(scope="module", params=OPSETS, ids=[f"opset{o}" for o in OPSETS])
def exported(
    request: pytest.FixtureRequest, dummy: Dummy, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, Path, OnnxExportResult]:
    opset = request.param
    path = tmp_path_factory.mktemp(f"opset{opset}") / "dummy.onnx"
    result = dummy.to_onnx(path, opset_version=opset)
    return opset, path, result


# --------------------------------------------------------------------------------------------
# the file, at every opset we promise
# --------------------------------------------------------------------------------------------
def test_saved_opset_equals_request(exported: tuple[int, Path, OnnxExportResult]) -> None:
    opset, path, result = exported
    model = onnx.load(str(path))
    assert default_opset(model) == opset
    assert result.opset == opset
    assert result.path == path
    assert result.exporter == ("dynamo" if opset >= 18 else "torchscript")


def test_single_valid_file(exported: tuple[int, Path, OnnxExportResult]) -> None:
    _, path, _ = exported
    assert sorted(p.name for p in path.parent.iterdir()) == ["dummy.onnx"]  # no .onnx.data, no temp
    model = onnx.load(str(path), load_external_data=False)
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)


def test_metadata_describes_the_artifact(exported: tuple[int, Path, OnnxExportResult], dummy: Dummy) -> None:
    opset, path, result = exported
    meta = props(onnx.load(str(path)))
    assert meta["versions.getiaction"] == getiaction.__version__
    assert meta["versions.torch"] == version("torch")
    assert meta["versions.onnx"] == version("onnx")
    assert meta["policy.class_path"] == "getiaction.policies.dummy.policy.Dummy"
    assert from_yaml(meta["policy.config"]) == dummy.config
    assert meta["getiaction.opset"] == str(opset)
    assert meta["getiaction.exporter"] == result.exporter
    assert json.loads(meta["getiaction.inputs"]) == [{"name": "state", "shape": ["batch", 7], "dtype": "float32"}]
    assert json.loads(meta["getiaction.outputs"]) == [{"name": "action", "shape": ["batch", 7], "dtype": "float32"}]


def test_no_source_locations_in_the_file(exported: tuple[int, Path, OnnxExportResult]) -> None:
    _, path, _ = exported
    data = path.read_bytes()
    model = onnx.load_from_string(data)
    nodes = list(model.graph.node) + [node for function in model.functions for node in function.node]
    assert nodes
    node_metadata = [(p.key, p.value) for node in nodes for p in node.metadata_props]
    assert node_metadata == []
    assert [node.doc_string for node in nodes if node.doc_string] == []
    assert all("/" not in key + value for key, value in node_metadata)
    assert model.doc_string == model.graph.doc_string == ""
    for folder in (REPO_ROOT, Path(torch.__file__).parent, Path(getiaction.__file__).parent):
        assert str(folder).encode() not in data
    assert b".py:" not in data


def test_dynamic_batch_and_parity(
    exported: tuple[int, Path, OnnxExportResult], dummy: Dummy, onnx_parity: Callable[..., dict[int, float]]
) -> None:
    _, path, result = exported
    model = onnx.load(str(path))
    assert dims(model.graph.input) == {"state": ["batch", 7]}
    (output,) = model.graph.output
    assert output.name == "action"
    assert isinstance(dims(model.graph.output)["action"][0], str)  # symbolic batch
    assert result.dynamic_axes == {"state": {0: "batch"}, "action": {0: "batch"}}
    diffs = onnx_parity(path, dummy, {"state": (7,)}, batches=(1, 2, 8))
    assert sorted(diffs) == [1, 2, 8]


def test_same_policy_gives_same_bytes_under_any_path(
    exported: tuple[int, Path, OnnxExportResult], dummy: Dummy, tmp_path: Path
) -> None:
    opset, path, _ = exported
    other = tmp_path / "elsewhere" / "renamed_model.onnx"
    dummy.to_onnx(other, opset_version=opset)
    assert other.read_bytes() == path.read_bytes()


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def test_two_inputs_in_sample_order(tmp_path: Path, onnx_parity: Callable[..., dict[int, float]]) -> None:
    torch.manual_seed(1)
    policy = Wrapped(TwoInputs())
    result = policy.to_onnx(
        tmp_path / "two.onnx", input_sample={"observation": torch.randn(1, 64), "state": torch.randn(1, 8)}
    )
    model = onnx.load(str(tmp_path / "two.onnx"))
    assert [i.name for i in model.graph.input] == result.input_names == ["observation", "state"]
    assert dims(model.graph.input) == {"observation": ["batch", 64], "state": ["batch", 8]}
    onnx_parity(tmp_path / "two.onnx", policy, {"observation": (64,), "state": (8,)})


def test_unused_sample_key_warns_and_is_not_an_input(tmp_path: Path) -> None:
    torch.manual_seed(2)
    policy = Wrapped(TwoInputs())
    sample = {"observation": torch.randn(1, 64), "extra": torch.randn(1, 3), "state": torch.randn(1, 8)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = policy.to_onnx(tmp_path / "two.onnx", input_sample=sample)
    user_warnings = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert user_warnings == [
        "input_sample keys ['extra'] are not read by the forward; they are left out of the ONNX inputs"
    ]
    assert result.input_names == ["observation", "state"]
    sess = session(tmp_path / "two.onnx")
    assert [i.name for i in sess.get_inputs()] == ["observation", "state"]
    feed = {"observation": np.ones((3, 64), np.float32), "state": np.ones((3, 8), np.float32)}
    (actual,) = sess.run(None, feed)
    with torch.no_grad():
        expected = policy({k: torch.from_numpy(v) for k, v in feed.items()}).numpy()
    assert np.abs(actual - expected).max() <= 1e-5


# --------------------------------------------------------------------------------------------
# dynamic axes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_model_default_axes_follow_an_output_rename(exporter: str, tmp_path: Path) -> None:
    policy = Wrapped(Horizon())
    defaults = copy.deepcopy(policy.model.defaults)
    path = tmp_path / "horizon.onnx"
    result = policy.to_onnx(path, output_names=["predictions"], exporter=exporter)
    assert result.dynamic_axes == {
        "state": {0: "batch", 1: "horizon"},
        "predictions": {0: "batch", 1: "horizon"},
    }
    shapes = dims(onnx.load(str(path)).graph.output)
    assert list(shapes) == ["predictions"]
    assert [isinstance(d, str) for d in shapes["predictions"]] == [True, True, False]
    x = torch.randn(3, 5, 4)
    (actual,) = session(path).run(["predictions"], {"state": x.numpy()})
    assert actual.shape == (3, 5, 4)
    with torch.no_grad():
        assert np.abs(actual - policy({"state": x}).numpy()).max() <= 1e-5
    assert policy.model.defaults == defaults  # the model's dict was not mutated


def test_caller_dynamic_axes_add_to_the_default(tmp_path: Path) -> None:
    policy = Wrapped(Horizon())
    policy.model.defaults = {"onnx": {}}
    result = policy.to_onnx(
        tmp_path / "h.onnx", exporter="torchscript", dynamic_axes={"state": [1], "action": {1: "steps"}}
    )
    assert result.dynamic_axes == {"state": {0: "batch", 1: "state_dim1"}, "action": {0: "batch", 1: "steps"}}
    assert dims(onnx.load(str(tmp_path / "h.onnx")).graph.output)["action"] == ["batch", "steps", 4]


def test_unknown_dynamic_axes_key_is_refused(
    dummy: Dummy, tmp_path: Path, assert_no_leftovers: Callable[..., None]
) -> None:
    path = tmp_path / "m.onnx"
    with pytest.raises(ConfigError) as caught:
        dummy.to_onnx(path, dynamic_axes={"actions": {0: "batch"}})
    assert str(caught.value) == "dynamic_axes: 'actions' is neither an input nor an output; valid: ['state', 'action']"
    assert_no_leftovers(path, None)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_dynamic_batch_false_gives_a_static_file(exporter: str, dummy: Dummy, tmp_path: Path) -> None:
    path = tmp_path / "static.onnx"
    result = dummy.to_onnx(path, dynamic_batch=False, exporter=exporter)
    model = onnx.load(str(path))
    assert dims(model.graph.input) == {"state": [1, 7]}
    assert dims(model.graph.output) == {"action": [1, 7]}
    assert result.dynamic_axes == {}
    sess = session(path)
    sess.run(None, {"state": np.zeros((1, 7), np.float32)})
    with pytest.raises(Exception, match=r"(?i)invalid"):
        sess.run(None, {"state": np.zeros((2, 7), np.float32)})


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize(("kind", "size"), [("reshape", 2), ("view", 1)])
def test_forward_that_fixes_the_batch_is_an_error(
    kind: str, size: int, exporter: str, tmp_path: Path, assert_no_leftovers: Callable[..., None]
) -> None:
    path = tmp_path / "fixed.onnx"
    with pytest.raises(ExportError) as caught:
        Wrapped(FixedBatch(kind)).to_onnx(path, exporter=exporter)
    assert str(caught.value) == (
        f"dynamic axis 0 of 'action' came out static (size {size}): the forward fixes that size "
        "(e.g. a reshape with a constant); fix it or pass dynamic_batch=False"
    )
    assert_no_leftovers(path, None)
    assert Wrapped(FixedBatch(kind)).to_onnx(path, exporter=exporter, dynamic_batch=False).dynamic_axes == {}


# --------------------------------------------------------------------------------------------
# bad requests: one clear error each, nothing written, an existing file untouched
# --------------------------------------------------------------------------------------------
def _dummy() -> Wrapped | Dummy:
    torch.manual_seed(0)
    return Dummy(config=DummyConfig(action_shape=(7,)))


BAD_REQUESTS: dict[str, tuple[Callable[[], Any], dict[str, Any], type[Exception], str]] = {
    "no_sample_input": (
        lambda: Wrapped(NoSample()),
        {},
        ConfigError,
        "input_sample: Wrapped has no sample_input; pass input_sample=",
    ),
    "sample_lacks_a_key": (
        _dummy,
        {"input_sample": {"observation": torch.randn(1, 7)}},
        ConfigError,
        "input_sample: the forward reads key 'state', which the sample lacks (sample has ['observation'])",
    ),
    "float64_sample": (
        _dummy,
        {"input_sample": {"state": torch.randn(1, 7, dtype=torch.float64)}},
        ConfigError,
        "input_sample['state']: float64 inputs are not fed by deploy runtimes; use float32",
    ),
    "opset_6": (_dummy, {"opset_version": 6}, OpsetError, "opset_version=6 is not supported"),
    "opset_99": (_dummy, {"opset_version": 99}, OpsetError, "opset_version=99 is not supported"),
    "dynamo_at_opset_14": (
        _dummy,
        {"opset_version": 14, "exporter": "dynamo"},
        OpsetError,
        "opset_version=14: the dynamo exporter writes opset 18 or higher; use exporter=torchscript",
    ),
    "torchscript_above_20": (
        _dummy,
        {"opset_version": 21, "exporter": "torchscript"},
        OpsetError,
        "opset_version=21: the torchscript exporter supports up to 20",
    ),
    "unknown_exporter": (
        _dummy,
        {"exporter": "tensorrt"},
        ConfigError,
        "exporter: 'tensorrt' is not valid; use one of ['auto', 'dynamo', 'torchscript']",
    ),
    "input_output_same_name": (
        _dummy,
        {"output_names": ["state"]},
        ConfigError,
        "output_names: ['state'] also name inputs",
    ),
    "too_many_output_names": (
        _dummy,
        {"output_names": ["a", "b"]},
        ConfigError,
        "output_names: ['a', 'b'] has 2 name(s) but the forward returns 1 output(s)",
    ),
    "operator_needs_higher_opset": (
        lambda: Wrapped(Attention()),
        {"opset_version": 13},
        OpsetError,
        "opset_version=13: operator aten::scaled_dot_product_attention needs opset >= 14; "
        "the lowest opset that works for this model is 14",
    ),
    "fixed_batch_found_after_export": (
        lambda: Wrapped(FixedBatch("reshape")),
        {"opset_version": 14},
        ExportError,
        "dynamic axis 0 of 'action' came out static (size 2)",
    ),
}


@pytest.mark.parametrize("existing", [False, True], ids=["new_file", "over_existing"])
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gives_one_clear_error(
    case: str, existing: bool, tmp_path: Path, assert_no_leftovers: Callable[..., None]
) -> None:
    make_policy, kwargs, error_type, fragment = BAD_REQUESTS[case]
    path = tmp_path / "model.onnx"
    previous = b"an earlier export" if existing else None
    if previous is not None:
        path.write_bytes(previous)
    with pytest.raises(error_type) as caught:
        make_policy().to_onnx(path, **copy.deepcopy(kwargs))
    message = str(caught.value)
    assert message.startswith(fragment) or fragment in message, message
    assert "\n" not in message
    assert_no_leftovers(path, previous)


def test_path_must_end_in_onnx(dummy: Dummy, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^path: '.*model\.pt' must end in \.onnx$"):
        dummy.to_onnx(tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []


class _QueryChunk(nn.Module):
    """An ACT-like chunk: learned queries repeated over the batch (TorchScript names their fixed dims)."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(5, 4))
        self.linear = nn.Linear(3, 4)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.linear(batch["state"])
        return self.queries.unsqueeze(0).repeat(hidden.shape[0], 1, 1) + hidden.unsqueeze(1)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_only_the_batch_axis_is_dynamic_and_recorded_shapes_are_real(exporter: str, tmp_path: Path) -> None:
    opset = 17 if exporter == "torchscript" else 18
    result = export_onnx(_QueryChunk(), tmp_path / "c.onnx", {"state": torch.randn(1, 3)}, opset_version=opset,
                         exporter=exporter)
    assert [(spec.name, spec.shape) for spec in result.outputs] == [("action", ["batch", 5, 4])]
    dims = onnx.load(str(tmp_path / "c.onnx")).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 5, 4]
