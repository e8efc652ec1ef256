"""The baseline: the same work as ``python -m getiaction_export format=onnx`` done by hand, nothing else.

Import, build the policy with the same seed, ``torch.onnx.export`` with the settings the tool uses
(dynamo exporter from opset 18, TorchScript below; dynamic batch traced at batch 2; one file),
``onnx.checker`` full check, write the file, then the same verification runs in onnxruntime as the
tool: the sample plus 3 seeded random inputs at batches 1, 2 and 8 (10 runs) against PyTorch.
Several ``--opsets`` export one after another in the one process (the sweep baseline).
``--freeze-exit`` ends the script as the tool's CLI ends (``gc.freeze()`` before exit, so Python's
teardown does not walk torch's objects): the baseline for what the tool costs beyond that choice.

    python benchmarks/bare_export.py --policy dummy --opsets 18 --out /tmp/bare
"""

from __future__ import annotations

import argparse
import gc
import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from getiaction.policies import Dummy, DummyConfig
from getiaction.policies.act import ACT, ACTConfig


def build(policy: str) -> torch.nn.Module:
    torch.manual_seed(0)
    module = Dummy(config=DummyConfig()) if policy == "dummy" else ACT(config=ACTConfig())
    return module.eval()


def export(module: torch.nn.Module, sample: dict[str, torch.Tensor], opset: int, path: Path) -> None:
    names = list(sample)
    traced = {k: torch.cat([v, v]) for k, v in sample.items()}  # batch >= 2: a size-1 dim would be fixed
    if opset >= 18:
        batch = torch.export.Dim("batch")
        program = torch.onnx.export(module, (), kwargs={"batch": traced},
                                    dynamic_shapes={"batch": {k: {0: batch} for k in names}},
                                    input_names=names, output_names=["action"], opset_version=opset, dynamo=True,
                                    external_data=False, verbose=False, optimize=True)
        assert program is not None
        model = program.model_proto
    else:
        buffer = io.BytesIO()
        torch.onnx.export(module, (traced, {}), buffer, input_names=names, output_names=["action"],
                          opset_version=opset, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in [*names, "action"]})
        model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())


def verify(module: torch.nn.Module, sample: dict[str, torch.Tensor], path: Path) -> float:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    cases = [sample]
    for batch in (1, 2, 8):
        for _ in range(3):
            cases.append({k: torch.rand(batch, *v.shape[1:], generator=generator) * (v.max() - v.min()) + v.min()
                          for k, v in sample.items()})
    worst = 0.0
    for inputs in cases:
        with torch.no_grad():
            expected = module(inputs).numpy()
        (actual,) = session.run(["action"], {k: v.numpy() for k, v in inputs.items()})
        assert np.allclose(actual, expected, atol=1e-5, rtol=1e-4)
        worst = max(worst, float(np.abs(actual - expected).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", choices=["dummy", "act"], default="dummy")
    parser.add_argument("--opsets", default="18", help="comma-separated, exported one after another")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--freeze-exit", action="store_true", help="gc.freeze() before exit, as the tool's CLI")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for opset in (int(o) for o in args.opsets.split(",")):
        module = build(args.policy)
        sample = module.sample_input
        path = args.out / f"{args.policy}_{opset}.onnx"
        export(module, sample, opset, path)
        print(f"opset {opset}: max abs diff {verify(module, sample, path):.2e}")
    if args.freeze_exit:
        gc.freeze()


if __name__ == "__main__":
    main()
