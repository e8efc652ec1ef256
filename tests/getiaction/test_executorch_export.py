"""ExecuTorch export: the shipped policies lower to XNNPACK and match PyTorch at every batch the
program accepts; the batch range is read from the program and a narrowed one is an error; a model
that cannot be lowered fails on one line naming the pass or operator; nothing partial is left."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from getiaction.errors import ConfigError, ExportError
from getiaction.export import ExportFormat
from getiaction.export.executorch import ExecutorchExportResult, ExecutorchModel, export_executorch
from getiaction.export.executorch_program import program_batch_range, read_metadata
from getiaction.policies import ACT, ACTConfig, Diffusion, DiffusionConfig, Dummy, DummyConfig

MAX_BATCH = 20
"""Above 16, where a convolution traced at a smaller batch would narrow the range (see executorch.py)."""
ATOL = 1e-5


def _dummy() -> nn.Module:
    return Dummy(config=DummyConfig(action_shape=(6,), hidden_dim=32))


def _act() -> nn.Module:
    return ACT(config=ACTConfig(chunk_size=5, encoder_channels=(8, 16), dim_model=32, dim_feedforward=64,
                                n_encoder_layers=1, n_decoder_layers=1, image_shape=(3, 32, 32)))


def _diffusion() -> nn.Module:
    return Diffusion(config=DiffusionConfig(chunk_size=8, cameras=("top", "wrist"), encoder_channels=(8, 16),
                                            hidden_dim=32, n_layers=2, num_steps=3, image_shape=(3, 32, 32)))


POLICIES: dict[str, Callable[[], nn.Module]] = {"dummy": _dummy, "act": _act, "diffusion": _diffusion}


def random_batch(sample: dict[str, torch.Tensor], batch: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: (torch.rand if name.startswith("images") else torch.randn)(batch, *t.shape[1:], generator=generator)
            for name, t in sample.items()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, ExecutorchExportResult]]:
    """Each policy exported once (by ``export(path, "executorch")``), with the policy it came from."""
    folder = tmp_path_factory.mktemp("executorch")
    results = {}
    for name, make in POLICIES.items():
        torch.manual_seed(0)
        policy = make().eval()
        results[name] = (policy, policy.export(folder / f"{name}.pte", ExportFormat.EXECUTORCH, max_batch=MAX_BATCH))
    return results


@pytest.mark.parametrize("name", list(POLICIES))
def test_policy_lowers_and_matches_pytorch_at_every_batch_it_accepts(
    name: str, exported: dict[str, tuple[Any, ExecutorchExportResult]]
) -> None:
    policy, result = exported[name]
    sample = policy.model.sample_input
    assert result.path.is_file() and result.size_bytes == result.path.stat().st_size
    assert sorted(p.name for p in result.path.parent.iterdir()) == sorted(f"{n}.pte" for n in POLICIES)  # no temp files
    assert (result.input_names, result.output_names) == (list(sample), ["action"])
    assert (result.batch_range, result.traced_batch) == ((1, MAX_BATCH), MAX_BATCH)
    assert program_batch_range(result.path) == (1, MAX_BATCH)  # read from the file again
    delegation = result.delegation
    assert delegation.backend == "XnnpackBackend" and delegation.subgraphs >= 1
    # Every matmul and convolution runs in XNNPACK (the diffusion policy's 1-D convolutions included);
    # what is left outside is views, layer norms and attention-mask bookkeeping.
    assert not {op for op in delegation.not_delegated if "conv" in op or "mm" in op or "linear" in op}
    assert delegation.delegated_nodes + delegation.other_nodes == delegation.total_nodes > 0
    model = ExecutorchModel(result.path)
    assert (model.input_names, model.output_names, model.runtime) == (result.input_names, ["action"], "executorch")
    errors = {}
    for batch in (1, 2, 8, MAX_BATCH):
        inputs = random_batch(sample, batch, seed=batch)
        with torch.no_grad():
            expected = policy.model(inputs).numpy()
        (actual,) = model(inputs)
        assert actual.dtype == np.float32 and actual.shape == expected.shape
        errors[batch] = float(np.abs(actual - expected).max())
    assert max(errors.values()) <= ATOL, errors  # measured: dummy 1e-7, act 5e-7, diffusion 2e-6


def test_program_records_its_names_policy_and_versions(exported: dict[str, tuple[Any, ExecutorchExportResult]]) -> None:
    _, result = exported["diffusion"]
    metadata = read_metadata(result.path)
    assert metadata == result.metadata
    assert metadata["getiaction.inputs"] == ["state", "images.top", "images.wrist"]
    assert metadata["getiaction.outputs"] == ["action"]
    assert (metadata["getiaction.max_batch"], metadata["getiaction.traced_batch"]) == (MAX_BATCH, MAX_BATCH)
    assert metadata["policy.class_path"] == "getiaction.policies.diffusion.policy.Diffusion"
    assert "hidden_dim: 32" in metadata["policy.config"]
    assert metadata["versions.executorch"] == "1.5.1" and metadata["versions.torch"] == torch.__version__


def test_model_loads_from_its_file_after_the_exporting_objects_are_gone(
    exported: dict[str, tuple[Any, ExecutorchExportResult]], tmp_path: Path
) -> None:
    policy, result = exported["act"]
    copy = tmp_path / "copy.pte"
    copy.write_bytes(result.path.read_bytes())
    inputs = random_batch(policy.model.sample_input, 3, seed=7)
    first = ExecutorchModel(copy, ["state", "images"], ["action"])(inputs)[0]
    gc.collect()
    model = ExecutorchModel(copy)
    for _ in range(3):  # the runtime holds no dangling buffer: repeated calls stay equal
        gc.collect()
        np.testing.assert_array_equal(model(inputs)[0], first)
    call = model.timed_call(inputs)
    assert np.array_equal(call()[0].numpy(), first)
    assert model.settings()["backend"] == "XnnpackBackend" and model.settings()["threads"] >= 1
    with pytest.raises(ConfigError, match=r"takes 2 input\(s\) and returns 1 output\(s\); got names \['state'\]"):
        ExecutorchModel(copy, ["state"], ["action"])


# --------------------------------------------------------------------------------------------
# the batch range: read, run, and never silently narrowed
# --------------------------------------------------------------------------------------------
class Conv(nn.Module):
    """A convolution: XNNPACK's channels-last pass narrows a batch traced below 16 to 1..15."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.conv(batch["state"].reshape(-1, 2, 4, 4)).flatten(1)


class Chunked(nn.Module):
    """``.chunk`` of a batched tensor: ExecuTorch's edge conversion fixes the batch to the traced one."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(32, 64)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        scale, shift = self.linear(batch["state"]).unsqueeze(-1).chunk(2, dim=1)
        return (scale * shift).squeeze(-1)


SAMPLE = {"state": torch.randn(1, 32)}


def test_a_batch_range_narrowed_by_lowering_is_one_line_error(tmp_path: Path) -> None:
    target = tmp_path / "conv.pte"
    with pytest.raises(ExportError) as caught:
        export_executorch(Conv(), target, SAMPLE, max_batch=32, trace_batch=2)
    assert caught.value.one_line() == str(caught.value) == (
        "max_batch=32: the ExecuTorch program accepts batch 1..15 only "
        "(its inputs are planned for at most 15 rows: the lowering narrowed the batch traced at 2)"
    )
    assert list(tmp_path.iterdir()) == []
    # Traced at max_batch (the default), the same module keeps 1..32.
    assert export_executorch(Conv(), target, SAMPLE, max_batch=32).batch_range == (1, 32)


def test_a_batch_fixed_by_lowering_is_one_line_error_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "chunked.pte"
    target.write_bytes(b"old")
    with pytest.raises(ExportError) as caught:
        export_executorch(Chunked(), target, SAMPLE, max_batch=16)
    assert str(caught.value) == (
        "max_batch=16: the ExecuTorch program accepts batch 16..16 only (its inputs have a fixed batch of 16, "
        "the traced one: the lowering fixed it, as it does for a .chunk of a batched tensor)"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["chunked.pte"] and target.read_bytes() == b"old"


def test_a_static_program_reports_its_one_batch(tmp_path: Path) -> None:
    sample = {"state": torch.randn(4, 32)}
    module = Conv().eval()
    result = export_executorch(module, tmp_path / "static.pte", sample, dynamic_batch=False)
    assert (result.batch_range, result.traced_batch) == (None, 4)
    assert program_batch_range(result.path) == (4, 4)
    with pytest.raises(ExportError, match=r"^max_batch=8: the ExecuTorch program accepts batch 4\.\.4 only "
                                          r"\(its inputs have a fixed batch of 4\)$"):
        program_batch_range(result.path, max_batch=8)
    (actual,) = ExecutorchModel(result.path)(sample)
    with torch.no_grad():
        assert np.abs(actual - module(sample).numpy()).max() <= ATOL


# --------------------------------------------------------------------------------------------
# what cannot be lowered, or asked for
# --------------------------------------------------------------------------------------------
class SharedConv1d(nn.Module):
    """One Conv1d used twice, as an unrolled denoiser does: XNNPACK's Conv1dUnsqueezePass fails."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["state"].reshape(-1, 4, 8)
        return self.conv(self.conv(x)).flatten(1)


class Erfinv(nn.Module):
    """An operator outside the Core ATen opset."""

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.special.erfinv(batch["state"].clamp(-0.5, 0.5))


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (SharedConv1d, "ExecuTorch lowering failed in Conv1dUnsqueezePass at aten.convolution.default: RuntimeError: "
                       "Expected 4-dimensional input for 4-dimensional weight [4, 4, 3, 1], but got 3-dimensional "
                       "input of size ["),
        (Erfinv, "ExecuTorch lowering failed in to_edge_transform_and_lower (edge dialect verifier): operator "
                 "aten.erfinv.default is not in the Core ATen opset it runs"),
    ],
)
def test_an_unlowerable_model_fails_on_one_line_naming_the_pass_or_operator(
    module: type[nn.Module], message: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ExportError) as caught:
        export_executorch(module(), tmp_path / "model.pte", SAMPLE, max_batch=16)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text
    assert list(tmp_path.iterdir()) == []
    assert capfd.readouterr().err == ""  # torch.export's and ExecuTorch's stderr went to the debug log


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^path: '.*model\.onnx' must end in \.pte$"):
        export_executorch(Conv(), tmp_path / "model.onnx", SAMPLE)
    with pytest.raises(ConfigError, match=r"^max_batch: 1 must be an integer >= 2 for a dynamic batch"):
        export_executorch(Conv(), tmp_path / "model.pte", SAMPLE, max_batch=1)
    with pytest.raises(ConfigError, match=r"^trace_batch: 40 must be an integer in 2\.\.max_batch=32$"):
        export_executorch(Conv(), tmp_path / "model.pte", SAMPLE, max_batch=32, trace_batch=40)
    with pytest.raises(ConfigError, match=r"^input_sample: the inputs' batch sizes differ"):
        export_executorch(Conv(), tmp_path / "model.pte", {"state": torch.randn(1, 32), "other": torch.randn(2, 3)})
    assert list(tmp_path.iterdir()) == []


def test_without_executorch_the_error_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "executorch", None)  # what an uninstalled package looks like to import
    with pytest.raises(ConfigError) as caught:
        _dummy().to_executorch(tmp_path / "dummy.pte")
    hint = "pip install 'getiaction-export[executorch]'"
    assert str(caught.value) == f"to_executorch needs the executorch package: {hint}"
    (tmp_path / "x.pte").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^the ExecuTorch runtime needs the executorch package: pip install"):
        ExecutorchModel(tmp_path / "x.pte")
