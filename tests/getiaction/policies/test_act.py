"""ACT: shapes, normalization in the graph, ONNX parity per opset, checkpoint round trip, Hydra YAML.

The ``check_*`` helpers take any policy with the ``state`` / ``images.<camera>`` inputs and an
``action`` (B, chunk, A) output; test_diffusion.py uses them too.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from getiaction.errors import OpsetError
from getiaction.export import load_policy
from getiaction.export.serialization import from_plain, import_object
from getiaction.policies.act import ACT, ACTConfig, Activation, NormalizationStats
from getiaction.policies.act.model import image_key

CONF = Path(__file__).parents[3] / "conf" / "policy"
SHALLOW = ACTConfig(n_encoder_layers=1, n_decoder_layers=1, image_shape=(3, 32, 32))
"""Every operator of the default in less than half the nodes: the opset sweep exports this one."""
TWO_CAMERAS = ACTConfig(cameras=("top", "wrist"), image_shape=(3, 32, 48))


def build(policy_cls: type, config: Any = None, seed: int = 0) -> Any:
    """A policy with weights drawn from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return policy_cls(config).eval()


def input_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Graph input names and their shapes without the batch axis, in input order."""
    images = {image_key(c, config.cameras): config.image_shape for c in config.cameras}
    shapes = {"state": (config.state_dim,), **images}
    if getattr(config, "noise_input", False):
        shapes["noise"] = (config.chunk_size, config.action_dim)
    return shapes


def repeat_batch(sample: dict[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
    """A batch-1 sample repeated to ``batch`` identical rows."""
    return {name: tensor.expand(batch, *tensor.shape[1:]) for name, tensor in sample.items()}


def check_defaults(policy: Any, parameters: int) -> None:
    """Parameter count, a seeded float32 batch-1 sample_input (same every call), action shape."""
    config = policy.config
    assert sum(p.numel() for p in policy.parameters()) == parameters
    assert 1_000_000 < parameters < 5_000_000
    sample = policy.sample_input
    assert {k: tuple(v.shape) for k, v in sample.items()} == {k: (1, *s) for k, s in input_shapes(config).items()}
    assert all(v.dtype == torch.float32 for v in sample.values())
    assert all(torch.equal(sample[k], v) for k, v in policy.sample_input.items())
    images = [v for k, v in sample.items() if k.startswith("images")]
    assert all(float(v.min()) >= 0.0 and float(v.max()) <= 1.0 for v in images)
    with torch.no_grad():
        assert policy(repeat_batch(sample, 3)).shape == (3, config.chunk_size, config.action_dim)


def check_export(
    policy: Any, path: Path, opset: int, onnx_parity: Callable, batches: tuple[int, ...] = (1, 2, 8)
) -> Any:
    """Export at ``opset``; check the file's opset, exporter, names and shapes, and parity at ``batches``."""
    config = policy.config
    result = policy.to_onnx(path, opset_version=opset)
    assert (result.opset, result.exporter) == (opset, "torchscript" if opset < 18 else "dynamo")
    assert result.output_names == ["action"]
    assert {spec.name: spec.shape for spec in result.inputs} == {
        name: ["batch", *shape] for name, shape in input_shapes(config).items()
    }
    assert result.outputs[0].shape == ["batch", config.chunk_size, config.action_dim]
    diffs = onnx_parity(result.path, policy, input_shapes(config), batches=batches)
    assert max(diffs.values()) <= 1e-5
    return result


def check_low_opset(policy: Any, path: Path, opset: int) -> str | None:
    """Export at a low opset: it is honoured, or OpsetError names the operator and a working opset."""
    try:
        result = policy.to_onnx(path, opset_version=opset)
    except OpsetError as error:
        assert re.fullmatch(
            rf"opset_version={opset}: operator aten::\w+ needs opset >= \d+; "
            r"the lowest opset that works for this model is \d+",
            str(error),
        ), str(error)
        assert not path.exists()
        return str(error)
    assert result.opset == opset
    return None


def check_round_trip(policy: Any, path: Path) -> None:
    """to_torch, then from_torch and load_policy: equal config (float32 arrays), bit-identical output."""
    policy.to_torch(path)
    with torch.no_grad():
        expected = policy(policy.sample_input)
    for restored in (type(policy).from_torch(path), load_policy(path)):
        assert type(restored) is type(policy) and restored.config == policy.config
        stats = restored.config.normalization
        assert {getattr(stats, f.name).dtype for f in dataclasses.fields(stats)} == {np.dtype(np.float32)}
        with torch.no_grad():
            assert torch.equal(restored(restored.sample_input), expected)


def check_hydra_yaml(name: str, policy_cls: type, config_cls: type, changed_by_example: dict[str, Any]) -> None:
    """conf/policy/<name>.yaml: launch command, a working example override, every config default."""
    path = CONF / f"{name}.yaml"
    lines = path.read_text().splitlines()
    assert lines[0] == f"# python -m getiaction_export policy={name}"
    override = lines[1].removeprefix(f"# example override: python -m getiaction_export policy={name} ")
    plain = typing.cast(dict[str, Any], OmegaConf.to_container(OmegaConf.load(path)))
    assert plain == yaml.safe_load(path.read_text())
    assert import_object(plain["_target_"], ["getiaction"]) is policy_cls and plain["seed"] == 0
    assert list(plain["config"]) == [f.name for f in dataclasses.fields(config_cls)]
    assert list(plain["config"]["normalization"]) == [f.name for f in dataclasses.fields(NormalizationStats)]
    assert from_plain(plain["config"], config_cls) == config_cls()
    merged = OmegaConf.merge(OmegaConf.create({"policy": plain}), OmegaConf.from_dotlist([override]))
    changed = from_plain(typing.cast(dict[str, Any], OmegaConf.to_container(merged))["policy"]["config"], config_cls)
    assert changed == dataclasses.replace(config_cls(), **changed_by_example)


@pytest.fixture(scope="module")
def policy() -> ACT:
    return build(ACT)


def test_default_size_and_shapes(policy: ACT) -> None:
    check_defaults(policy, parameters=1_248_334)
    assert list(policy.sample_input) == ["state", "images"]  # one camera: the robot loop's key
    assert policy.sample_input["images"].shape == (1, 3, 64, 64)


def test_two_cameras_and_a_non_square_image(tmp_path: Path, onnx_parity: Callable) -> None:
    two = build(ACT, TWO_CAMERAS)
    assert list(two.sample_input) == ["state", "images.top", "images.wrist"]
    # 32x48 -> 4x6 tokens per camera after three stride-2 convolutions, plus the state token.
    assert two.model.token_positions.shape == (1, 1 + 2 * 4 * 6, 128)
    assert 1_000_000 < sum(p.numel() for p in two.parameters()) < 5_000_000
    check_export(two, tmp_path / "act2.onnx", 17, onnx_parity, batches=(2, 5))


def test_normalization_is_inside_the_forward(policy: ACT) -> None:
    stats = NormalizationStats(
        state_mean=np.linspace(-1, 1, 14),
        state_std=np.full(14, 2.0),
        action_mean=np.arange(14),
        action_std=[3.0],  # one value for every action dimension
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.25],
    )
    normalized = ACT(dataclasses.replace(policy.config, normalization=stats)).eval()
    normalized.load_state_dict({k: v for k, v in policy.state_dict().items() if "normalize" not in k}, strict=False)
    raw = policy.sample_input
    scaled = {
        "state": torch.from_numpy(stats.state_mean) + 2.0 * raw["state"],
        "images": torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1) + 0.25 * raw["images"],
    }
    with torch.no_grad():
        expected = policy(raw) * 3.0 + torch.arange(14.0)
        torch.testing.assert_close(normalized(scaled), expected, atol=2e-5, rtol=1e-5)


def test_config_validation() -> None:
    assert ACTConfig(activation="relu").activation is Activation.RELU
    assert ACTConfig(cameras=["top"]).cameras == ("top",)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"n_heads": 3}, "n_heads: 3 must divide dim_model=128"),
        ({"cameras": ("top", "top")}, "contains duplicates"),
        ({"cameras": ("top.left",)}, "must be identifiers"),
        ({"chunk_size": 0}, "chunk_size: 0 must be a positive integer"),
        ({"activation": "tanh"}, "not a valid Activation"),
        ({"normalization": NormalizationStats(state_mean=np.zeros(3))}, "state_mean: has 3 values; expected 1 or 14"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            ACTConfig(**kwargs)
    with pytest.raises(ValueError, match=r"action_std.*must be positive"):
        NormalizationStats(action_std=np.array([1.0, 0.0]))


def test_default_config_exports(policy: ACT, tmp_path: Path, onnx_parity: Callable) -> None:
    check_export(policy, tmp_path / "act.onnx", 17, onnx_parity)


@pytest.mark.parametrize("opset", [14, 17, 18, 20, 23])
def test_onnx_parity_per_opset(opset: int, tmp_path: Path, onnx_parity: Callable) -> None:
    check_export(build(ACT, SHALLOW), tmp_path / "act.onnx", opset, onnx_parity)


@pytest.mark.parametrize(
    ("opset", "operator", "needed"), [(11, "aten::unflatten", 13), (13, "aten::scaled_dot_product_attention", 14)]
)
def test_low_opset_names_the_operator(policy: ACT, opset: int, operator: str, needed: int, tmp_path: Path) -> None:
    message = check_low_opset(policy, tmp_path / "act.onnx", opset)
    assert message is not None and f"operator {operator} needs opset >= {needed};" in message
    assert message.endswith("the lowest opset that works for this model is 14")


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    stats = NormalizationStats(state_mean=np.arange(14) / 7, action_std=np.linspace(0.5, 2, 14))
    config = ACTConfig(chunk_size=8, activation=Activation.RELU, cameras=("front", "wrist"), normalization=stats)
    check_round_trip(build(ACT, config, seed=3), tmp_path / "act.pt")


def test_hydra_yaml() -> None:
    check_hydra_yaml("act", ACT, ACTConfig, {"chunk_size": 50})
