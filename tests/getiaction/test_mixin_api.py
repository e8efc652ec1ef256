"""The documented API block runs verbatim, and the Export mixin's dispatch and defaults hold."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from torch import nn

from getiaction.errors import ConfigError, SerializationError
from getiaction.export import Export, ExportFormat, OnnxExportResult, load_policy
from getiaction.export.serialization import from_yaml
from getiaction.policies import Dummy, DummyConfig
from getiaction.policies.base import Policy

# Copied from the issue (and the README): users paste exactly this.
API_BLOCK = textwrap.dedent(
    """
    import torch
    from getiaction.export import Export
    from getiaction.policies.base import Policy
    from getiaction.policies import Dummy, DummyConfig

    policy = Dummy(config=DummyConfig(action_shape=(7,)))
    policy.to_torch("checkpoint.pt")
    policy.to_onnx("model.onnx")
    policy.to_onnx("model_14.onnx", opset_version=14, output_names=["predictions"])
    policy.to_onnx("model_b4.onnx", input_sample={"state": torch.randn(4, 7)})
    """
)


@pytest.fixture(scope="module")
def api_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run the API block once in a fresh folder; return the folder and the block's namespace."""
    folder = tmp_path_factory.mktemp("api")
    namespace: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        exec(compile(API_BLOCK, "api_block", "exec"), namespace)
    return folder, namespace


def opset_of(model: onnx.ModelProto) -> int:
    return next(int(e.version) for e in model.opset_import if e.domain in ("", "ai.onnx"))


def test_api_block_writes_exactly_the_four_files(api_run: tuple[Path, dict[str, Any]]) -> None:
    folder, namespace = api_run
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt", "model.onnx", "model_14.onnx", "model_b4.onnx"]
    assert isinstance(namespace["policy"], Dummy)
    assert issubclass(Dummy, Export) and issubclass(Dummy, Policy)


def test_api_block_checkpoint(api_run: tuple[Path, dict[str, Any]]) -> None:
    folder, namespace = api_run
    policy = namespace["policy"]
    raw = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert raw["policy_class_path"] == "getiaction.policies.dummy.policy.Dummy"
    assert from_yaml(raw["model_config"]) == DummyConfig(action_shape=(7,))
    restored = Dummy.from_torch(folder / "checkpoint.pt")
    assert restored.config == policy.config
    for name, tensor in policy.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor)


@pytest.mark.parametrize(
    ("name", "opset", "output"),
    [("model.onnx", 18, "action"), ("model_14.onnx", 14, "predictions"), ("model_b4.onnx", 18, "action")],
)
def test_api_block_onnx_files(
    name: str,
    opset: int,
    output: str,
    api_run: tuple[Path, dict[str, Any]],
    onnx_parity: Callable[..., dict[int, float]],
) -> None:
    folder, namespace = api_run
    model = onnx.load(str(folder / name))
    onnx.checker.check_model(model, full_check=True)
    assert opset_of(model) == opset
    assert [o.name for o in model.graph.output] == [output]
    assert [i.name for i in model.graph.input] == ["state"]
    for value in list(model.graph.input) + list(model.graph.output):
        batch_dim = value.type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param, f"{name}: {value.name} has a static batch ({batch_dim.dim_value})"
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["getiaction.outputs"])[0]["name"] == output
    onnx_parity(folder / name, namespace["policy"], {"state": (7,)}, batches=(1, 2, 8))


# --------------------------------------------------------------------------------------------
# the mixin
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dummy() -> Dummy:
    torch.manual_seed(3)
    return Dummy(config=DummyConfig(action_shape=(2, 3), hidden_dim=8))


def test_export_dispatches_by_format(dummy: Dummy, tmp_path: Path) -> None:
    path = dummy.export(tmp_path / "p.pt", "torch")
    assert path == tmp_path / "p.pt"
    assert torch.equal(load_policy(path).state_dict()["model.net.0.weight"], dummy.state_dict()["model.net.0.weight"])
    result = dummy.export(tmp_path / "p.onnx", ExportFormat.ONNX, opset_version=16)
    assert isinstance(result, OnnxExportResult)
    assert (result.opset, result.exporter) == (16, "torchscript")
    assert opset_of(onnx.load(str(tmp_path / "p.onnx"))) == 16


def test_export_unknown_format_lists_the_valid_ones(dummy: Dummy, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        dummy.export(tmp_path / "p.xml", "openvino_ir")
    valid = [f.value for f in ExportFormat]
    assert {"torch", "onnx"} <= set(valid)
    assert str(caught.value) == f"export_format: 'openvino_ir' is not valid; use one of {valid}"
    assert list(tmp_path.iterdir()) == []


def test_to_onnx_result_and_kwargs_win_over_model_defaults(dummy: Dummy, tmp_path: Path) -> None:
    defaults_before = dummy.model.extra_export_args
    result = dummy.to_onnx(tmp_path / "m.onnx", opset_version=15, output_names=["predictions"], dynamo=False)
    assert result.path == tmp_path / "m.onnx"
    assert (result.opset, result.exporter) == (15, "torchscript")
    assert result.input_names == ["state"]
    assert result.output_names == ["predictions"]
    assert [(s.name, s.shape, s.dtype) for s in result.outputs] == [("predictions", ["batch", 2, 3], "float32")]
    assert result.dynamic_axes == {"state": {0: "batch"}, "predictions": {0: "batch"}}
    assert dummy.model.extra_export_args == defaults_before


def test_to_onnx_uses_the_models_sample_when_none_is_given(dummy: Dummy, tmp_path: Path) -> None:
    result = dummy.to_onnx(tmp_path / "m.onnx", opset_version=17)
    assert [(s.name, s.shape, s.dtype) for s in result.inputs] == [("state", ["batch", 2, 3], "float32")]
    assert dummy.sample_input is not None and dummy.sample_input["state"].shape == (1, 2, 3)


def test_overwrite_replaces_an_existing_file(dummy: Dummy, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"stale")
    dummy.to_onnx(path, opset_version=17)
    assert opset_of(onnx.load(str(path))) == 17
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


# --------------------------------------------------------------------------------------------
# an unserializable config: both formats refuse it, naming the field, and write nothing
# --------------------------------------------------------------------------------------------
@dataclass
class EncoderConfig:
    norm: Any = "layer"


@dataclass
class BadConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)


class BadModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = BadConfig(encoder=EncoderConfig(norm=nn.LayerNorm(4)))
        self.linear = nn.Linear(4, 4)

    @property
    def sample_input(self) -> dict[str, torch.Tensor]:
        return {"state": torch.randn(1, 4)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch["state"])


class BadPolicy(Export, Policy):
    def __init__(self) -> None:
        super().__init__()
        self.model = BadModel()


@pytest.mark.parametrize("target", ["checkpoint.pt", "model.onnx"])
@pytest.mark.parametrize("existing", [False, True], ids=["new_file", "over_existing"])
def test_unserializable_config_names_the_field(
    target: str, existing: bool, tmp_path: Path, assert_no_leftovers: Callable[..., None]
) -> None:
    path = tmp_path / target
    previous = b"previous" if existing else None
    if previous is not None:
        path.write_bytes(previous)
    policy = BadPolicy()
    with pytest.raises(SerializationError) as caught:
        policy.to_torch(path) if target.endswith(".pt") else policy.to_onnx(path)
    assert str(caught.value).startswith("config.encoder.norm: cannot serialize LayerNorm(")
    assert str(caught.value).endswith("of type LayerNorm")
    assert_no_leftovers(path, previous)
