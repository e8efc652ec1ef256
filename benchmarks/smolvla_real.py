"""SmolVLA at the real model's size (issue 21, item 5): build offline, export with our exporter, parity with
LeRobot, batch-1 speed of PyTorch eager / onnxruntime / OpenVINO f32 / OpenVINO INT8 weight compression.

The policy is a LeRobot 0.4.4 ``SmolVLAPolicy`` with random weights at the published sizes, built offline:
its VLM is a SmolVLM2-500M-Video-Instruct written from its published config (text: llama / SmolLM2-360M,
hidden 960, intermediate 2560, 32 layers of which SmolVLA keeps 16, 15 heads / 5 kv heads, head_dim 64,
vocab 49280, rope_theta 1e5; vision: SigLIP 768 wide, 12 layers, 512 px, 16 px patches; pixel shuffle 4:
64 tokens an image; ``text_config.torch_dtype`` bfloat16 as published, so LeRobot builds the text model and
the expert in bfloat16 and saves them so), a byte-level BPE tokenizer trained on a few task strings (the
config's vocabulary stays 49280), and every other SmolVLA setting at LeRobot's defaults (those of
``lerobot/smolvla_base``: chunk 50, 10 flow-matching steps, 512x512 resize with padding, 48 tokens, state and
action padded to 32). The robot is SO-100-like: two cameras ``up`` and ``side`` at 3x480x640, state 6,
action 6, made-up dataset stats far from identity.

Every phase is one child process (``--phase NAME``; peak RSS from ``os.wait4``, wall time from fork to exit,
machine load from ``/proc/loadavg``), so phases neither share memory nor slow each other's thread pools:

- ``build``: the VLM folder and the policy, ``save_pretrained`` (policy and its processors).
- ``reference``: the project's loader (``getiaction_export.sources.smolvla.smolvla(folder, noise="input",
  vlm_path=...)``: LeRobot's own loaders, the policy cast to float32); the verification inputs the app draws
  (``getiaction_export.parity.gate.verification_inputs``: the module's sample, then one seeded random input,
  batch 1) with the start noise as an input; LeRobot's own inference on them (``parity_reference``: its
  pre-processor -> ``predict_action_chunk(noise)`` -> its post-processor) and the exported module in eager;
  then batch-1 latency of both in eager (``torch.no_grad``, ``OMP_WAIT_POLICY=PASSIVE``).
- ``float64``: the same reference in float64 (``getiaction_export.parity.fp32_bound.Float64Reference``), which
  gives the fitted fp32 bound the app's gate would apply (``fitted_atol``; ``--no-float64``: the cap
  ``1e-4 x max|action|`` instead).
- ``export``: ``getiaction.export.onnx.export_onnx`` as the app calls it for this policy
  (``format.exporter=torchscript``, the opset of ``--opset``, dynamic batch), then the file read back: its
  tensors' bytes against the parameters' (a weight stored twice, e.g. once per unrolled step, shows up).
- ``export_bare``: ``torch.onnx.export`` alone with the same arguments, to a file (``--no-bare-export``
  skips it): what the exporter costs before the tool reads the graph back and checks it.
- ``onnxruntime``: the project's session (``getiaction_export.parity.runtimes.OnnxRuntimeModel``) on the
  inputs, then timed batch-1 calls.
- ``convert``: ``getiaction.export.openvino.convert_onnx_to_openvino`` (the app's ONNX -> IR step).
- ``openvino``: the project's ``OpenVINOModel`` (``INFERENCE_PRECISION_HINT=f32``, ``PERFORMANCE_HINT=LATENCY``).
- ``compress``: ``nncf.compress_weights(ir)`` with NNCF's defaults (INT8_ASYM, per-channel, weights only),
  run with ``--int8-python`` when this Python has no nncf; then ``openvino`` again on that IR.

Threads: 2 in every runtime (``--threads``). Latency: one warm-up call, then ``--calls`` timed calls on the
sample, the median; round 1 is timed in the parity phases, rounds 2.. (``--rounds``) in one child per runtime
(``--phase latency``), order reversed every other round; the figure is the median over rounds, and each ratio is
eager's (LeRobot's own pipeline) median over the runtime's. Peak memory: ~12 GB (the export phase).

    HF_HUB_OFFLINE=1 CI=true ~/.cache/getiaction-export/venv-torch-2.8.0/bin/python benchmarks/smolvla_real.py
    ... benchmarks/smolvla_real.py --keep /tmp/smolvla-real   # keep (and reuse) the folder and phase records
    ... benchmarks/smolvla_real.py --report                   # print the markdown table of the recorded JSON
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import REPO, Child, check, load_average, run_child

OUT = Path(__file__).with_name("smolvla_real.json")
CAMERAS = {"up": (3, 480, 640), "side": (3, 480, 640)}
STATE, ACTION = 6, 6
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<global-img>",
    "<image>",
    "<video>",
)
CORPUS = (
    "pick up the cube and place it in the box",
    "push the T-shaped block onto the target",
    "open the top drawer",
    "fold the towel in half",
    "stack the red block on the blue block",
)
TEXT = {
    "model_type": "llama",
    "hidden_size": 960,
    "intermediate_size": 2560,
    "num_hidden_layers": 32,
    "num_attention_heads": 15,
    "num_key_value_heads": 5,
    "head_dim": 64,
    "vocab_size": 49280,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
}
"""SmolVLM2-500M-Video-Instruct's text model (SmolLM2-360M), as published."""
VISION = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 512,
    "patch_size": 16,
}
"""Its vision tower (SigLIP base, patch 16, 512 px), as published."""
SCALE_FACTOR = 4
"""Pixel shuffle: (512 / 16)^2 / 4^2 = 64 tokens an image."""
SEED_INPUTS = 1
"""Seed of the random verification input (the app's verify stage uses its own seed; any seeded draw will do)."""
PHASES = (
    "build",
    "reference",
    "float64",
    "export",
    "export_bare",
    "onnxruntime",
    "convert",
    "openvino",
    "compress",
    "openvino_int8",
)
RUNTIMES = ("eager", "onnxruntime", "openvino", "openvino_int8")
"""Timed again in rounds 2.. (one child each, order reversed every other round)."""
STRICT_INT8 = (0.05, 0.99)
"""A stricter (max share, min cosine) recorded beside the project's INT8 default (``DEFAULT_TOLERANCES["int8"]``)."""


# ------------------------------------------------------------------------------------------------- children


def rss_mb() -> float:
    """This process's peak resident memory so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_vlm(folder: Path, dtype: str) -> dict[str, Any]:
    """SmolVLM2-500M's config and processor (real sizes) and a small byte-level BPE tokenizer in ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        CORPUS * 4,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=8192,
        extra_special_tokens={
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "image_token": "<image>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )
    text = {**TEXT, "pad_token_id": tokenizer.pad_token_id, "torch_dtype": dtype}
    config = SmolVLMConfig(
        text_config=text,
        vision_config=VISION,
        scale_factor=SCALE_FACTOR,
        pad_token_id=tokenizer.pad_token_id,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    config.save_pretrained(folder)
    size = {"longest_edge": VISION["image_size"]}
    tokens = (VISION["image_size"] // VISION["patch_size"]) ** 2 // SCALE_FACTOR**2
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=size, max_image_size=size, do_image_splitting=False),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
        image_seq_len=tokens,
    )
    processor.save_pretrained(folder)
    return {
        "text": text,
        "vision": VISION,
        "scale_factor": SCALE_FACTOR,
        "image_tokens": tokens,
        "tokenizer_size": len(tokenizer),
    }


def made_up_stats() -> dict[str, dict[str, Any]]:
    """Dataset stats far from identity (as tests/lerobot's): a lost normalization moves whole units."""
    import torch

    s, a = torch.arange(STATE, dtype=torch.float32), torch.arange(ACTION, dtype=torch.float32)
    return {
        "observation.state": {"mean": 0.5 + 0.1 * s, "std": 2.0 + 0.25 * s, "min": -3.0 - s, "max": 4.0 + 0.5 * s},
        "action": {"mean": -0.2 + 0.3 * a, "std": 1.5 + 0.1 * a, "min": -5.0 + 0.2 * a, "max": 6.0 + 0.7 * a},
    }


def parameter_groups(policy: Any) -> dict[str, int]:
    """Parameter counts by part (each parameter counted once)."""
    groups: Counter[str] = Counter()
    seen: set[int] = set()
    parts = (
        ("vision_model", "vision"),
        ("connector", "connector"),
        ("embed_tokens", "text_embed"),
        ("lm_head", "lm_head_unused"),
        ("text_model", "text_layers"),
        ("lm_expert", "action_expert"),
    )
    for name, parameter in policy.named_parameters(remove_duplicate=False):
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        group = next((label for key, label in parts if key in name), "other")
        groups[group] += parameter.numel()
    return dict(groups)


def phase_build(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    torch.set_num_threads(settings["threads"])
    started = time.perf_counter()
    vlm = write_vlm(folder / "vlm", settings["vlm_dtype"])
    vlm_s = time.perf_counter() - started
    inputs = {
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE,)),
        **{
            f"observation.images.{name}": PolicyFeature(type=FeatureType.VISUAL, shape=shape)
            for name, shape in CAMERAS.items()
        },
    }
    config = SmolVLAConfig(
        input_features=inputs,
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION,))},
        device="cpu",
        push_to_hub=False,
        vlm_model_name=str(folder / "vlm"),
        load_vlm_weights=False,
    )
    defaults = {
        key: getattr(config, key)
        for key in (
            "chunk_size",
            "n_action_steps",
            "num_steps",
            "max_state_dim",
            "max_action_dim",
            "resize_imgs_with_padding",
            "tokenizer_max_length",
            "num_vlm_layers",
            "num_expert_layers",
            "expert_width_multiplier",
            "self_attn_every_n_layers",
            "attention_mode",
            "use_cache",
            "pad_language_to",
        )
    }
    started = time.perf_counter()
    torch.manual_seed(0)
    policy = SmolVLAPolicy(config)
    build_s = time.perf_counter() - started
    dtypes = Counter(str(p.dtype).replace("torch.", "") for p in policy.parameters())
    groups = parameter_groups(policy)
    total = sum(groups.values())
    started = time.perf_counter()
    pre, post = make_pre_post_processors(config, dataset_stats=made_up_stats())
    for part in (policy, pre, post):
        part.save_pretrained(folder / "policy")
    save_s = time.perf_counter() - started
    stored = sum(f.stat().st_size for f in (folder / "policy").glob("*.safetensors"))
    return {
        "vlm": vlm,
        "smolvla_config": defaults,
        "cameras": {k: list(v) for k, v in CAMERAS.items()},
        "state": STATE,
        "action": ACTION,
        "vlm_write_s": vlm_s,
        "build_s": build_s,
        "save_pretrained_s": save_s,
        "parameters": total,
        "parameters_by_part": groups,
        "parameter_dtypes_as_built": dict(dtypes),
        "parameter_bytes_fp32": total * 4,
        "safetensors_bytes": stored,
        "peak_rss_mb_in_process": rss_mb(),
    }


def load_module(folder: Path, threads: int) -> tuple[Any, float]:
    """The project's SmolVLA source on the saved folder (noise=input), as the app loads it."""
    import torch

    from getiaction_export.sources.smolvla import smolvla

    torch.set_num_threads(threads)
    started = time.perf_counter()
    module = smolvla(folder / "policy", noise="input", vlm_path=str(folder / "vlm"))
    return module.eval(), time.perf_counter() - started


def save_cases(path: Path, cases: list[tuple[str, dict[str, Any]]]) -> None:
    import numpy as np

    arrays = {
        f"{index}|{name}": tensor.numpy() for index, (_, batch) in enumerate(cases) for name, tensor in batch.items()
    }
    np.savez(path, **arrays)
    (path.with_suffix(".json")).write_text(json.dumps([label for label, _ in cases]))


def load_cases(path: Path) -> list[tuple[str, dict[str, Any]]]:
    import numpy as np
    import torch

    labels = json.loads(path.with_suffix(".json").read_text())
    data = np.load(path)
    cases: list[tuple[str, dict[str, Any]]] = [(label, {}) for label in labels]
    for key in data.files:
        index, name = key.split("|", 1)
        cases[int(index)][1][name] = torch.from_numpy(data[key])
    return cases


def save_outputs(path: Path, outputs: list[Any]) -> None:
    import numpy as np

    np.savez(
        path,
        *[np.asarray(output, dtype=np.float64 if output.dtype == np.float64 else np.float32) for output in outputs],
    )


def time_call(call: Any, calls: int) -> dict[str, Any]:
    """One warm-up call, then ``calls`` timed calls (seconds each)."""
    started = time.perf_counter()
    call()
    warm = time.perf_counter() - started
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return {
        "ms": statistics.median(times) * 1000,
        "min_ms": min(times) * 1000,
        "max_ms": max(times) * 1000,
        "calls": calls,
        "warmup_ms": warm * 1000,
        "samples_ms": [t * 1000 for t in times],
    }


def phase_reference(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from getiaction_export.parity.gate import verification_inputs

    module, load_s = load_module(folder, settings["threads"])
    sample = module.sample_input
    cases = verification_inputs(sample, [1], False, 1, SEED_INPUTS)
    save_cases(folder / "cases.npz", cases)
    reference: Any = module.parity_reference
    expected, eager = [], []
    started = time.perf_counter()
    with torch.no_grad():
        for _, batch in cases:
            expected.append(reference(batch).numpy())
            eager.append(module(batch).numpy())
    run_s = time.perf_counter() - started
    save_outputs(folder / "out_lerobot.npz", expected)
    save_outputs(folder / "out_module_eager.npz", eager)
    first = cases[0][1]

    def lerobot() -> Any:
        return reference(first)

    def exported() -> Any:
        with torch.no_grad():
            return module(first)

    timings = {"lerobot": time_call(lerobot, settings["calls"]), "module": time_call(exported, settings["calls"])}
    return {
        "load_s": load_s,
        "cases": [label for label, _ in cases],
        "run_cases_s": run_s,
        "inputs": {name: [list(t.shape), str(t.dtype).replace("torch.", "")] for name, t in first.items()},
        "max_abs_action": float(max(np.abs(e).max() for e in expected)),
        "latency": timings,
        "torch_threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "peak_rss_mb_in_process": rss_mb(),
    }


def phase_float64(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    from getiaction_export.parity.fp32_bound import Float64Reference

    module, load_s = load_module(folder, settings["threads"])
    cases = load_cases(folder / "cases.npz")
    exact = Float64Reference(module.parity_reference, "dict", list(cases[0][1]))
    outputs = exact.outputs(cases)
    if outputs is None:
        return {"load_s": load_s, "failure": exact.failure, "seconds": exact.seconds}
    save_outputs(folder / "out_float64.npz", [per_case[0] for per_case in outputs])
    return {"load_s": load_s, "seconds": exact.seconds, "runs": exact.runs, "peak_rss_mb_in_process": rss_mb()}


def onnx_tensors(path: Path) -> dict[str, Any]:
    """What the written file holds: tensor bytes (initializers and Constant nodes), duplicates, nodes."""
    import onnx
    import onnx.numpy_helper

    model = onnx.load(str(path))
    sizes, hashes = [], Counter()
    big: dict[str, int] = {}

    def tensor(t: Any) -> None:
        data = t.raw_data
        count = len(data) if data else onnx.numpy_helper.to_array(t).nbytes
        sizes.append(count)
        if count >= 65536 and data:
            digest = hashlib.sha1(data).hexdigest()
            hashes[digest] += 1
            big[digest] = count

    for initializer in model.graph.initializer:
        tensor(initializer)
    initializers = len(sizes)
    constants = 0
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    tensor(attribute.t)
                    constants += 1
    duplicated = sum(big[d] * (n - 1) for d, n in hashes.items() if n > 1)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    ops = Counter(node.op_type for node in model.graph.node)
    shapes = Counter("x".join(map(str, t.dims)) for t in model.graph.initializer if len(t.raw_data) >= 65536)
    return {
        "tensor_bytes": sum(sizes),
        "initializers": initializers,
        "constant_tensors": constants,
        "big_tensors": sum(hashes.values()),
        "big_tensors_distinct": len(hashes),
        "duplicated_bytes": duplicated,
        "external_data": external,
        "nodes": len(model.graph.node),
        "top_ops": dict(ops.most_common(8)),
        "big_initializer_shapes": dict(shapes.most_common()),
        "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")],
    }


def phase_export(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    from getiaction.export.onnx import TWO_GIGABYTES, export_onnx

    module, load_s = load_module(folder, settings["threads"])
    groups = parameter_groups(module)
    loaded_rss = rss_mb()
    sample = module.sample_input
    path = folder / "smolvla.onnx"
    started = time.perf_counter()
    result = export_onnx(
        module,
        path,
        sample,
        opset_version=settings["opset"],
        exporter="torchscript",
        dynamic_batch=True,
        call_style="dict",
    )
    export_s = time.perf_counter() - started
    export_rss = rss_mb()
    del module, sample
    gc.collect()
    total = sum(groups.values())
    used = total - groups.get("lm_head_unused", 0)
    files = sorted(p.name for p in folder.iterdir() if p.name.startswith("smolvla.onnx") or p.suffix == ".data")
    size = sum((folder / name).stat().st_size for name in files)
    read_back = onnx_tensors(path)
    return {
        "load_s": load_s,
        "export_s": export_s,
        "exporter": result.exporter,
        "opset": result.opset,
        "dynamic_axes": result.dynamic_axes,
        "inputs": [vars(spec) for spec in result.inputs],
        "outputs": [vars(spec) for spec in result.outputs],
        "files": files,
        "file_bytes": size,
        "over_two_gigabytes": size >= TWO_GIGABYTES,
        "parameters": total,
        "parameters_used": used,
        "parameter_bytes_fp32": total * 4,
        "used_parameter_bytes_fp32": used * 4,
        "file_over_parameter_bytes": size / (total * 4),
        "file_over_used_parameter_bytes": size / (used * 4),
        "read_back": read_back,
        "rss_after_load_mb": loaded_rss,
        "rss_after_export_mb": export_rss,
        "peak_rss_mb_in_process": rss_mb(),
    }


def phase_export_bare(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """``torch.onnx.export`` alone (TorchScript, same opset, inputs, batch-2 trace and dynamic batch) to a file:
    what the exporter itself costs, beside ``export_onnx`` (which also reads the graph back and checks it)."""
    import torch

    module, load_s = load_module(folder, settings["threads"])
    sample = {name: torch.cat([t, t]) for name, t in module.sample_input.items()}  # as trace_sample does
    names = list(sample)
    path = folder / "bare.onnx"
    loaded_rss = rss_mb()
    started = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(
            module,
            (sample, {}),
            str(path),
            input_names=names,
            output_names=["action"],
            opset_version=settings["opset"],
            dynamic_axes={n: {0: "batch"} for n in [*names, "action"]},
            dynamo=False,
        )
    export_s = time.perf_counter() - started
    size = path.stat().st_size
    path.unlink()
    return {
        "load_s": load_s,
        "export_s": export_s,
        "file_bytes": size,
        "rss_after_load_mb": loaded_rss,
        "peak_rss_mb_in_process": rss_mb(),
    }


def phase_latency(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """One more round of batch-1 timing of one runtime (``settings["runtime"]``), no parity."""
    runtime = settings["runtime"]
    cases = load_cases(folder / "cases.npz")
    first = cases[0][1]
    if runtime == "eager":
        import torch

        module, _ = load_module(folder, settings["threads"])
        reference: Any = module.parity_reference

        def exported() -> Any:
            with torch.no_grad():
                return module(first)

        return {
            "lerobot": time_call(lambda: reference(first), settings["calls"]),
            "module": time_call(exported, settings["calls"]),
        }
    from getiaction_export.parity.runtimes import OnnxRuntimeModel, OpenVINOModel

    if runtime == "onnxruntime":
        model: Any = OnnxRuntimeModel(folder / "smolvla.onnx", settings["threads"])
    else:
        xml = "smolvla.xml" if runtime == "openvino" else "smolvla_int8.xml"
        model = OpenVINOModel(folder / xml, ["action"], settings["threads"])
    return {runtime: time_call(model.timed_call(first), settings["calls"])}


def phase_onnxruntime(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    from getiaction_export.parity.runtimes import OnnxRuntimeModel

    cases = load_cases(folder / "cases.npz")
    started = time.perf_counter()
    model = OnnxRuntimeModel(folder / "smolvla.onnx", settings["threads"])
    session_s = time.perf_counter() - started
    session_rss = rss_mb()
    save_outputs(folder / "out_onnxruntime.npz", [model(batch)[0] for _, batch in cases])
    timing = time_call(model.timed_call(cases[0][1]), settings["calls"])
    return {
        "session_s": session_s,
        "rss_after_session_mb": session_rss,
        "latency": timing,
        "settings": model.settings(),
        "peak_rss_mb_in_process": rss_mb(),
    }


def phase_convert(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    from getiaction.export.openvino import convert_onnx_to_openvino

    started = time.perf_counter()
    result = convert_onnx_to_openvino(folder / "smolvla.onnx", folder / "smolvla.xml")
    seconds = time.perf_counter() - started
    return {
        "convert_s": seconds,
        "xml_bytes": result.path.stat().st_size,
        "bin_bytes": result.bin_path.stat().st_size,
        "inputs": [vars(spec) for spec in result.inputs],
        "peak_rss_mb_in_process": rss_mb(),
    }


def phase_openvino(folder: Path, settings: dict[str, Any], xml: str, out: str) -> dict[str, Any]:
    from getiaction_export.parity.runtimes import OpenVINOModel

    cases = load_cases(folder / "cases.npz")
    started = time.perf_counter()
    model = OpenVINOModel(folder / xml, ["action"], settings["threads"])
    compile_s = time.perf_counter() - started
    compiled_rss = rss_mb()
    save_outputs(folder / out, [model(batch)[0] for _, batch in cases])
    timing = time_call(model.timed_call(cases[0][1]), settings["calls"])
    effective = {
        key: str(model.compiled.get_property(key))
        for key in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT")
    }
    return {
        "compile_s": compile_s,
        "rss_after_compile_mb": compiled_rss,
        "latency": timing,
        "settings": {k: str(v) for k, v in model.settings()["compile_config"].items()},
        "effective": effective,
        "peak_rss_mb_in_process": rss_mb(),
    }


def phase_compress(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """NNCF weight compression of the f32 IR with its defaults (INT8_ASYM); torch-free, may run in another venv."""
    import inspect
    from importlib.metadata import version

    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(folder / "smolvla.xml"))
    default_mode = inspect.signature(nncf.compress_weights).parameters["mode"].default
    started = time.perf_counter()
    compressed = nncf.compress_weights(model)
    compress_s = time.perf_counter() - started
    ov.save_model(compressed, str(folder / "smolvla_int8.xml"), compress_to_fp16=False)
    types = Counter(
        str(op.get_output_element_type(0)) for op in compressed.get_ops() if op.get_type_name() == "Constant"
    )
    return {
        "compress_s": compress_s,
        "mode": str(default_mode.value),
        "nncf": version("nncf"),
        "openvino": version("openvino"),
        "python": sys.executable,
        "bin_bytes": (folder / "smolvla_int8.bin").stat().st_size,
        "constant_types": dict(types),
        "peak_rss_mb_in_process": rss_mb(),
    }


def run_phase(name: str, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    if name == "build":
        return phase_build(folder, settings)
    if name == "reference":
        return phase_reference(folder, settings)
    if name == "float64":
        return phase_float64(folder, settings)
    if name == "export":
        return phase_export(folder, settings)
    if name == "export_bare":
        return phase_export_bare(folder, settings)
    if name == "latency":
        return phase_latency(folder, settings)
    if name == "onnxruntime":
        return phase_onnxruntime(folder, settings)
    if name == "convert":
        return phase_convert(folder, settings)
    if name == "openvino":
        return phase_openvino(folder, settings, "smolvla.xml", "out_openvino.npz")
    if name == "compress":
        return phase_compress(folder, settings)
    if name == "openvino_int8":
        return phase_openvino(folder, settings, "smolvla_int8.xml", "out_openvino_int8.npz")
    raise SystemExit(f"unknown phase {name}")


# --------------------------------------------------------------------------------------------------- parent


def int8_python(asked: str | None) -> str:
    """A Python with nncf: ``--int8-python``, else this one if it has nncf, else the repo's .venv."""
    if asked:
        return asked
    if importlib.util.find_spec("nncf") is not None:
        return sys.executable
    fallback = REPO / ".venv" / "bin" / "python"
    if fallback.exists():
        return str(fallback)
    raise SystemExit("no nncf here: pass --int8-python PATH (a Python with nncf and the same openvino)")


def child_env(name: str, settings: dict[str, Any]) -> dict[str, str]:
    env = {
        "PYTHONPATH": settings["src"],
        "HF_HUB_OFFLINE": "1",
        "PYTHONWARNINGS": "ignore",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if name == "reference" or settings.get("runtime") == "eager":
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # eager's OpenMP workers otherwise busy-wait (edge_speed.py)
    return env


def phase_child(name: str, folder: Path, settings: dict[str, Any], python: str, label: str = "") -> dict[str, Any]:
    """Run one phase in a child (or reuse its record in ``folder/phases``); its record with the child's figures."""
    label = label or name
    record_path = folder / "phases" / f"{label}.json"
    if record_path.exists():
        print(f"  {label}: reused {record_path}", file=sys.stderr, flush=True)
        return json.loads(record_path.read_text())
    print(f"  {label} ... (load {load_average()})", file=sys.stderr, flush=True)
    argv = [python, __file__, "--phase", name, "--folder", str(folder), "--settings", json.dumps(settings)]
    child: Child = check(run_child(argv, env=child_env(name, settings)), f"phase {label}")
    record = json.loads(child.stdout.strip().splitlines()[-1])
    record["child"] = {
        "seconds": child.seconds,
        "peak_rss_mb": child.peak_mb,
        "cpu_s": child.cpu_s,
        "runnable": round(child.runnable, 2),
        "python": python,
    }
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))
    print(
        f"  {label}: {child.seconds:.1f} s, peak {child.peak_mb / 1024:.2f} GB, runnable {child.runnable:.2f}",
        file=sys.stderr,
        flush=True,
    )
    return record


def worst(
    expected: list[Any],
    actual: list[Any],
    atol: float | None,
    rtol: float | None,
    max_share: float | None = None,
    min_cosine: float | None = None,
) -> dict[str, Any]:
    """The project's ``compare`` over every case (one at a time, as the gate): the worst figures."""
    from getiaction_export.parity.tolerance import compare

    out = {"max_abs_diff": 0.0, "share": 0.0, "cosine": 1.0, "max_abs_expected": 0.0, "passed": True}
    for e, a in zip(expected, actual, strict=True):
        stats = compare(e, a, atol, rtol, max_share, min_cosine)
        out = {
            "max_abs_diff": max(out["max_abs_diff"], stats["max_abs_diff"]),
            "share": max(out["share"], stats["share"]),
            "cosine": min(out["cosine"], stats["cosine"]),
            "max_abs_expected": max(out["max_abs_expected"], stats["max_abs_expected"]),
            "passed": out["passed"] and stats["passed"],
        }
    return out


def round_one(phases: dict[str, Any]) -> dict[str, Any]:
    """The timings the parity phases took (round 1)."""
    timed = {
        "pytorch_eager_lerobot": phases["reference"]["latency"]["lerobot"],
        "pytorch_eager_module": phases["reference"]["latency"]["module"],
    }
    timed.update({name: phases[name]["latency"] for name in ("onnxruntime", "openvino", "openvino_int8")})
    for key, value in timed.items():  # the machine's load over the whole phase (parity runs included)
        value["runnable"] = phases["reference" if key.startswith("pytorch") else key]["child"]["runnable"]
    return timed


def summarize(folder: Path, phases: dict[str, Any], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    from getiaction_export.parity.fp32_bound import CEILING_SHARE, FLOOR_ATOL, MULTIPLE, RTOL, fitted_atol
    from getiaction_export.parity.tolerance import DEFAULT_TOLERANCES

    def outputs(name: str) -> list[Any]:
        data = np.load(folder / f"out_{name}.npz")
        return [data[f"arr_{i}"] for i in range(len(data.files))]

    expected = outputs("lerobot")
    scale = float(max(np.abs(e).max() for e in expected))
    bound: dict[str, Any] = {
        "scale": scale,
        "multiple": MULTIPLE,
        "ceiling_share": CEILING_SHARE,
        "floor_atol": FLOOR_ATOL,
        "rtol": RTOL,
    }
    if (folder / "out_float64.npz").exists():
        exact = outputs("float64")
        gap = float(max(np.abs(e.astype(np.float64) - x).max() for e, x in zip(expected, exact, strict=True)))
        bound.update(source="fp32 fitted", float64_gap=gap, atol=fitted_atol(gap, scale))
    else:
        bound.update(source="cap (no float64 run)", float64_gap=None, atol=max(FLOOR_ATOL, CEILING_SHARE * scale))
    fixed = DEFAULT_TOLERANCES["fp32"]
    int8 = DEFAULT_TOLERANCES["int8"]
    parity = {}
    for name in ("module_eager", "onnxruntime", "openvino", "openvino_int8"):
        if not (folder / f"out_{name}.npz").exists():
            continue
        got = outputs(name)
        if name == "openvino_int8":
            parity[name] = {
                **worst(expected, got, None, None, int8.max_share, int8.min_cosine),
                "bound": int8.describe(),
                "source": "DEFAULT_TOLERANCES['int8']",
            }
            strict = worst(expected, got, None, None, *STRICT_INT8)
            parity[name]["passed_share_5pct_cosine_0.99"] = strict["passed"]
            if (folder / "out_openvino.npz").exists():
                parity[name]["vs_openvino_f32"] = worst(outputs("openvino"), got, None, None)
        else:
            parity[name] = {
                **worst(expected, got, bound["atol"], RTOL),
                "bound": f"atol {bound['atol']:.3g}, rtol {RTOL:g} ({bound['source']})",
                "passed_fixed_1e-5": worst(expected, got, fixed.atol, fixed.rtol)["passed"],
            }
    eager = statistics.median(r["pytorch_eager_lerobot"]["ms"] for r in rounds)
    latency = {}
    for key in rounds[0]:
        per_round = [r[key]["ms"] for r in rounds if key in r]
        ms = statistics.median(per_round)
        latency[key] = {
            "ms": ms,
            "rounds_ms": per_round,
            "min_ms": min(min(r[key]["samples_ms"]) for r in rounds if key in r),
            "calls_per_round": rounds[0][key]["calls"],
            "speedup_vs_eager": eager / ms,
            "speedup_per_round": [r["pytorch_eager_lerobot"]["ms"] / r[key]["ms"] for r in rounds if key in r],
            "runnable_per_round": [r[key].get("runnable") for r in rounds if key in r],
        }
    return {"fp32_bound": bound, "parity": parity, "latency": latency}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    src = Path(args.src).resolve()
    sys.path.insert(0, str(src))
    from getiaction_export.machine import cpu_line, describe_machine

    machine = describe_machine()
    settings = {
        "rounds": args.rounds,
        "threads": args.threads,
        "calls": args.calls,
        "opset": args.opset,
        "vlm_dtype": args.vlm_dtype,
        "src": str(src),
    }
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    commit = args.src_commit or head.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True, text=True
    ).stdout.split("\n")
    with tempfile.TemporaryDirectory(prefix="bench-smolvla-real-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        load_start = load_average()
        phases: dict[str, Any] = {}
        nncf_python = int8_python(args.int8_python)
        for name in PHASES:
            if (name == "float64" and args.no_float64) or (name == "export_bare" and args.no_bare_export):
                continue
            python = nncf_python if name == "compress" else sys.executable
            phases[name] = phase_child(name, folder, settings, python)
        rounds = [round_one(phases)]
        for index in range(2, args.rounds + 1):
            order = RUNTIMES if index % 2 else RUNTIMES[::-1]
            timed: dict[str, Any] = {}
            for runtime in order:
                record = phase_child(
                    "latency",
                    folder,
                    {**settings, "runtime": runtime, "round": index},
                    sys.executable,
                    f"latency_{runtime}_{index}",
                )
                for key, value in record.items():
                    if key != "child":
                        value["runnable"] = record["child"]["runnable"]
                        timed["pytorch_eager_" + key if runtime == "eager" else key] = value
            rounds.append(timed)
        summary = summarize(folder, phases, rounds)
    return {
        "what": "SmolVLA at real size (issue 21 item 5)",
        "machine": machine,
        "cpu_line": cpu_line(machine["cpu"]),
        "load_average": {"start": load_start, "end": load_average()},
        "commit": commit.strip(),
        "src": str(src),
        "src_modified_in_checkout": [line for line in dirty if line.strip()],
        "settings": settings,
        "phases": phases,
        "latency_rounds": rounds,
        **summary,
        "total_s": time.perf_counter() - started,
        "command": " ".join(sys.argv),
    }


# --------------------------------------------------------------------------------------------------- report


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def report(result: dict[str, Any]) -> str:
    """The markdown table of RESULTS.md section 8."""
    p = result["phases"]
    b, e, back = p["build"], p["export"], p["export"]["read_back"]
    load = result["load_average"]
    rows = [
        f"Machine: {result['cpu_line']}; load average {load['start']} -> {load['end']}; "
        f"whole run {result['total_s'] / 60:.1f} min.",
        "",
        "| what | figure |",
        "|---|---|",
    ]

    def row(what: str, *figure: str) -> None:
        rows.append(f"| {what} | {''.join(figure).replace('|', chr(92) + '|')} |")

    parts = ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in b["parameters_by_part"].items())
    dtypes = "/".join(b["parameter_dtypes_as_built"])
    row(
        "parameters",
        f"{b['parameters'] / 1e6:.1f} M ({parts}); fp32 {_gb(b['parameter_bytes_fp32'])}; ",
        f"saved as built ({dtypes}) {_gb(b['safetensors_bytes'])}",
    )
    row(
        "build + save_pretrained",
        f"{b['vlm_write_s']:.1f} s VLM files + {b['build_s']:.1f} s build + ",
        f"{b['save_pretrained_s']:.1f} s save; peak RSS {_peak(b)}",
    )
    row(
        f"export ({e['exporter']}, opset {e['opset']}, dynamic batch)",
        f"{e['export_s']:.1f} s (+ {e['load_s']:.1f} s load); peak RSS {_peak(e)}",
    )
    if "export_bare" in p:
        bare = p["export_bare"]
        row(
            "torch.onnx.export alone (same call, to a file)",
            f"{bare['export_s']:.1f} s (+ {bare['load_s']:.1f} s load); peak RSS {_peak(bare)}",
        )
    row(
        "ONNX file",
        f"{_gb(e['file_bytes'])} in {len(e['files'])} file, external data ",
        f"{'yes' if back['external_data'] else 'no'}; {back['nodes']:,} nodes; tensors {_gb(back['tensor_bytes'])}",
        f", duplicated {back['duplicated_bytes'] / 1e6:.1f} MB",
    )
    row(
        "file / parameter bytes",
        f"{e['file_over_parameter_bytes']:.3f} of all ({_gb(e['parameter_bytes_fp32'])}); ",
        f"{e['file_over_used_parameter_bytes']:.3f} of those the graph uses ({_gb(e['used_parameter_bytes_fp32'])}",
        ", without the unused lm_head)",
    )
    bound = result["fp32_bound"]
    gap = f"float64 gap {bound['float64_gap']:.2e}" if bound["float64_gap"] is not None else "no float64 run"
    row("fp32 bound", f"atol {bound['atol']:.3g} ({bound['source']}: {gap}, max |action| {bound['scale']:.3g})")
    labels = {
        "module_eager": "exported module, eager",
        "onnxruntime": "onnxruntime",
        "openvino": "OpenVINO f32",
        "openvino_int8": "OpenVINO INT8 weights",
    }
    for name, figures in result["parity"].items():
        verdict = "pass" if figures["passed"] else "FAIL"
        row(
            f"parity vs LeRobot: {labels[name]}",
            f"{figures['max_abs_diff']:.2e} ({figures['share']:.2e} of max ",
            f"|action|), cosine {figures['cosine']:.6f}: {verdict} ({figures['bound']})",
        )
    names = {
        "pytorch_eager_lerobot": "PyTorch eager, LeRobot pre -> predict_action_chunk -> post",
        "pytorch_eager_module": "PyTorch eager, exported module",
        "onnxruntime": "onnxruntime",
        "openvino": "OpenVINO f32",
        "openvino_int8": "OpenVINO INT8 weight compression",
    }
    for name, t in result["latency"].items():
        row(
            f"batch 1, {names[name]}",
            f"{t['ms'] / 1000:.2f} s (rounds {', '.join(f'{ms / 1000:.2f}' for ms in t['rounds_ms'])}; ",
            f"{t['calls_per_round']} calls each), {t['speedup_vs_eager']:.2f}x eager",
        )
    return "\n".join(rows)


def _peak(record: dict[str, Any]) -> str:
    return f"{record['child']['peak_rss_mb'] / 1024:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5, help="timed batch-1 calls per runtime (after 1 warm-up)")
    parser.add_argument("--opset", type=int, default=18, help="the app's default opset, TorchScript exporter")
    parser.add_argument(
        "--vlm-dtype",
        default="bfloat16",
        choices=("bfloat16", "float32"),
        help="text_config.torch_dtype (SmolVLM2 publishes bfloat16)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds (round 1 is the parity phases')")
    parser.add_argument("--no-bare-export", action="store_true", help="skip torch.onnx.export alone (peak RSS)")
    parser.add_argument("--no-float64", action="store_true", help="skip the float64 run (cap the fp32 bound)")
    parser.add_argument("--src", default=str(REPO / "src"), help="the project's src on the children's PYTHONPATH")
    parser.add_argument("--src-commit", default=None, help="the commit --src was taken from (default: HEAD)")
    parser.add_argument("--int8-python", default=None, help="a Python with nncf (default: this, else .venv)")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep; phases recorded there reused")
    parser.add_argument("--json", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true", help="print the table of the recorded --json and exit")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        record = run_phase(args.phase, args.folder, json.loads(args.settings))
        print(json.dumps(record, default=str))
        return
    if args.report:
        print(report(json.loads(args.json.read_text())))
        return
    result = measure(args)
    args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(report(result))


if __name__ == "__main__":
    main()
