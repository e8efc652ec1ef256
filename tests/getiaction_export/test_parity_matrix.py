"""The parity matrix: every shipped policy x opset x batch either matches PyTorch or is refused up front.

Each cell exports with the saved opset equal to the request and fp32 max abs diff <= 1e-5 in
onnxruntime at batches 1, 2 and 8, or raises OpsetError naming the operator and the opset it
needs. Zero silent mismatches. Policies are built from the shipped conf/policy/*.yaml.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from getiaction.errors import OpsetError
from getiaction.export.onnx import call_with_batch
from getiaction_export.config.schemas import PolicySpec
from getiaction_export.parity.runtimes import onnxruntime_session
from getiaction_export.stages.build import build_policy

REPO = Path(__file__).resolve().parents[2]
POLICIES = ("dummy", "act", "diffusion")
OPSETS = (14, 17, 18, 20, 23)
LOW_OPSETS = (11, 13)
BATCHES = (1, 2, 8)


@cache
def policy(name: str) -> torch.nn.Module:
    spec = yaml.safe_load((REPO / "conf" / "policy" / f"{name}.yaml").read_text())
    kwargs = {k: v for k, v in spec.items() if k not in ("_target_", "seed", "call_style")}
    return build_policy(PolicySpec(target=spec["_target_"], seed=spec.get("seed", 0), kwargs=kwargs)).module


def batch_of(sample: dict[str, torch.Tensor], size: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.rand((size, *v.shape[1:]), generator=generator).to(v.dtype) for k, v in sample.items()}


def assert_parity(model: torch.nn.Module, path: Path) -> float:
    session = onnxruntime_session(path)
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for size in BATCHES:
        inputs = batch_of(model.sample_input, size, seed=size)
        with torch.no_grad():
            expected = call_with_batch(model.model, inputs, "dict").numpy()
        (actual,) = session.run(None, {n: inputs[n].numpy() for n in names})
        assert actual.shape == expected.shape
        worst = max(worst, float(np.abs(actual - expected).max()))
    assert worst <= 1e-5, f"{path.name}: max abs diff {worst}"
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", POLICIES)
def test_cell_matches_pytorch_at_the_requested_opset(name: str, opset: int, tmp_path: Path) -> None:
    model = policy(name)
    path = tmp_path / f"{name}_{opset}.onnx"
    result = model.to_onnx(path, opset_version=opset)
    assert result.opset == opset
    assert onnx.load(str(path)).opset_import[0].version == opset
    assert result.exporter == ("dynamo" if opset >= 18 else "torchscript")
    assert_parity(model, path)


@pytest.mark.parametrize("opset", LOW_OPSETS)
@pytest.mark.parametrize("name", POLICIES)
def test_low_opsets_work_or_are_refused_with_the_operator(name: str, opset: int, tmp_path: Path) -> None:
    model = policy(name)
    path = tmp_path / f"{name}_{opset}.onnx"
    try:
        result = model.to_onnx(path, opset_version=opset)
    except OpsetError as error:
        message = str(error)
        assert message.startswith(f"opset_version={opset}: operator ") and "needs opset >=" in message
        assert "lowest opset that works for this model is" in message
        assert not path.exists()
        return
    assert result.opset == opset == onnx.load(str(path)).opset_import[0].version
    assert_parity(model, path)
