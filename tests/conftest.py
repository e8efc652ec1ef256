"""Fixtures shared by the library and application tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

PARITY_ATOL = 1e-5
"""Max abs difference allowed between onnxruntime and PyTorch (fp32, CPU)."""


@pytest.fixture
def assert_no_leftovers() -> Callable[[Path, bytes | None], None]:
    """Check that a failed write left nothing behind: no temp files, target absent or unchanged.

    Call as ``assert_no_leftovers(path, previous_bytes)``; ``None`` means no file existed before.
    """

    def check(path: Path, previous: bytes | None = None) -> None:
        temps = sorted(p.name for p in path.parent.glob(f".{path.name}.*"))
        assert temps == [], f"temporary files left behind: {temps}"
        if previous is None:
            assert not path.exists(), f"{path} was written although the call failed"
        else:
            assert path.read_bytes() == previous, f"{path} changed although the call failed"
        assert not path.with_name(path.name + ".data").exists()

    return check


@pytest.fixture(scope="session")
def onnx_parity() -> Callable[..., dict[int, float]]:
    """Run an ONNX file in onnxruntime and PyTorch at several batch sizes; assert they agree.

    ``onnx_parity(path, module, {"state": (7,)}, batches=(1, 2, 8))`` feeds seeded float32 inputs
    of shape ``(batch, *shape)`` under the given names, compares every output with
    ``max abs diff <= 1e-5`` and returns ``{batch: max_abs_diff}``.
    """
    import onnxruntime as ort

    def check(
        path: Path,
        module: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        shapes: Mapping[str, Sequence[int]],
        batches: Sequence[int] = (1, 2, 8),
    ) -> dict[int, float]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == list(shapes)
        generator = torch.Generator().manual_seed(1234)
        diffs = {}
        for batch in batches:
            feed = {name: torch.randn(batch, *shape, generator=generator) for name, shape in shapes.items()}
            with torch.no_grad():
                expected = module(feed)
            (actual,) = session.run(None, {name: t.numpy() for name, t in feed.items()})
            assert actual.shape == tuple(expected.shape), f"batch {batch}: shape {actual.shape}"
            diffs[batch] = float(np.abs(actual - expected.numpy()).max())
        assert max(diffs.values()) <= PARITY_ATOL, f"onnxruntime vs torch max abs diff: {diffs}"
        return diffs

    return check
