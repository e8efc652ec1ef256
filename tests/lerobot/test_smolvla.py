"""``policy=lerobot`` on SmolVLA folders: verified packages held to LeRobot's own inference from a task string.

Tiny SmolVLAs built offline (tests/lerobot/smolvla_folder.py): two cameras of different sizes,
or one PushT-shaped camera; state/action sizes, chunk, steps and tokenizer length varied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from getiaction.errors import ConfigError
from getiaction_export.parity.tolerance import DEFAULT_TOLERANCES, compare
from getiaction_export.sources.lerobot import lerobot
from getiaction_export.sources.smolvla import (
    NOISE,
    TOKEN_MASK,
    TOKENIZER_CHECK,
    TOKENS,
    SmolVLAExport,
    smolvla,
)
from tests.lerobot.smolvla_folder import save_smolvla, write_vlm

TASKS = {"short": "pick up the cube", "truncated": "stack the red block on the blue block, then " * 6,
         "non-ascii": "plie la serviette à côté du bol 🍵", "empty": ""}
FP32 = DEFAULT_TOLERANCES["fp32"]
HUB_VLM = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # CI=true: OpenVINO's converter then sends no telemetry (its forked sender can hang without a network)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "true"}
    return subprocess.run([sys.executable, "-m", "getiaction_export", "policy=lerobot", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_vlm(tmp_path_factory.mktemp("vlm"))


@pytest.fixture(scope="module")
def two_cameras(vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """top 48x64 and wrist 40x40 (both resized with padding to 64x64), state 6, action 5, chunk 8, 3 steps, L 16."""
    return save_smolvla(tmp_path_factory.mktemp("smolvla"), vlm, {"top": (3, 48, 64), "wrist": (3, 40, 40)},
                        state=6, action=5)


@pytest.fixture(scope="module")
def package(two_cameras: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``policy.noise=input format=all`` (onnx, openvino), TorchScript: the job folder."""
    cwd = tmp_path_factory.mktemp("job")
    run = run_cli(f"policy.path={two_cameras}", "policy.noise=input", "format=all", "format.formats=[onnx,openvino]",
                  "format.exporter=torchscript", "format.opset_version=17", "format.latency=false",
                  "hydra.run.dir=job", cwd=cwd)
    assert run.returncode == 0, run.stdout + run.stderr
    return cwd / "job"


def observation(module: SmolVLAExport, batch: int, seed: int) -> dict[str, torch.Tensor]:
    """A raw observation: state around the stats, camera frames in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    sample = {key: torch.rand((batch, *shape), generator=generator) for key, shape in module.input_shapes.items()}
    sample["observation.state"] = sample["observation.state"] * 4 - 2
    return sample


def within_fp32(expected: torch.Tensor | np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    figures = compare(np.asarray(expected), np.asarray(actual), FP32.atol, FP32.rtol)
    assert figures["passed"], figures
    return figures


def test_two_camera_folder_exports_to_a_verified_package(package: Path) -> None:
    result = json.loads((package / "result.json").read_text())
    for fmt in ("onnx", "openvino"):
        parity = result["formats"][fmt]["parity"]["action"]
        assert parity["passed"] and parity["max_abs_diff"] < 1e-4, parity
    manifest = json.loads((package / "manifest.json").read_text())
    artifacts = manifest["model"]["artifacts"]
    assert list(artifacts) == ["onnx", "openvino"], artifacts  # ONNX first: the default backend
    graph = onnx.load(str(package / artifacts["onnx"])).graph
    inputs = {i.name: (i.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim])
              for i in graph.input}
    assert inputs == {"observation.state": (onnx.TensorProto.FLOAT, ["batch", 6]),
                      "observation.images.top": (onnx.TensorProto.FLOAT, ["batch", 3, 48, 64]),
                      "observation.images.wrist": (onnx.TensorProto.FLOAT, ["batch", 3, 40, 40]),
                      TOKENS: (onnx.TensorProto.INT64, ["batch", 16]),
                      TOKEN_MASK: (onnx.TensorProto.BOOL, ["batch", 16]),
                      NOISE: (onnx.TensorProto.FLOAT, ["batch", 8, 8])}
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [8, 5]  # the whole chunk
    assert not [n for n in graph.node if n.op_type.startswith("Random")]  # noise=input: deterministic
    checks = manifest["getiaction"]["backends"]
    assert checks["onnx"]["runtime_check"]["passed"] and checks["openvino"]["runtime_check"]["passed"]


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_package_reproduces_lerobot_from_a_task_string(package: Path, two_cameras: Path, backend: str) -> None:
    """physicalai's InferenceModel on a raw observation + our token ids = LeRobot's pre → predict_action_chunk → post
    on the same observation and the task string (LeRobot pads to the longest task; the graph to 16 tokens)."""
    from physicalai.inference import InferenceModel

    module = lerobot(str(two_cameras), noise="input")
    reference = module.parity_reference
    kwargs = {"INFERENCE_PRECISION_HINT": "f32"} if backend == "openvino" else {}
    model = InferenceModel(package, backend=backend, **kwargs)
    for index, (name, task) in enumerate(TASKS.items()):
        raw = observation(module, 1, seed=index)
        noise = torch.randn((1, 8, 8), generator=torch.Generator().manual_seed(index))
        tokens, mask = reference.tokenize([task])
        got = model({**{k: v.numpy() for k, v in raw.items()}, TOKENS: tokens.numpy(), TOKEN_MASK: mask.numpy(),
                     NOISE: noise.numpy()})["action"]
        expected = reference.from_task(raw, [task], noise)
        assert within_fp32(expected, got)["max_abs_diff"] < 1e-4, name


@pytest.fixture(scope="module")
def package_with_tokenizer(package: Path, two_cameras: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package plus its OpenVINO tokenizer, declared as the manifest's pre-processors."""
    folder = tmp_path_factory.mktemp("with_tokenizer") / "package"
    shutil.copytree(package, folder)
    packed = lerobot(str(two_cameras), noise="input").package_extras(folder)  # package_tokenizer
    assert packed["check"]["ids_equal_lerobot"] and set(packed["check"]["tasks"]) == set(TOKENIZER_CHECK)
    assert all((folder / name).is_file() for name in packed["files"])
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model"]["preprocessors"] = [*packed["preprocessors"], *manifest["model"].get("preprocessors", [])]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_package_tokenizes_the_task_itself(package_with_tokenizer: Path, two_cameras: Path, backend: str) -> None:
    """InferenceModel(dir) fed a raw observation and the task string (physicalai's new_line and ov_tokenizer steps)
    = LeRobot's inference from that string, on every string of the set, one at a time and batched."""
    from physicalai.inference import InferenceModel

    module = lerobot(str(two_cameras), noise="input")
    kwargs = {"INFERENCE_PRECISION_HINT": "f32"} if backend == "openvino" else {}
    model = InferenceModel(package_with_tokenizer, backend=backend, **kwargs)
    cases = [[task] for task in TASKS.values()] + [list(TASKS.values())]
    for index, tasks in enumerate(cases):
        raw = observation(module, len(tasks), seed=index)
        noise = torch.randn((len(tasks), 8, 8), generator=torch.Generator().manual_seed(index))
        got = model({**{k: v.numpy() for k, v in raw.items()}, "task": list(tasks), NOISE: noise.numpy()})["action"]
        within_fp32(module.parity_reference.from_task(raw, tasks, noise), got)


def test_the_package_runs_without_transformers_or_torch(package_with_tokenizer: Path) -> None:
    """What a robot imports: physicalai, onnxruntime, OpenVINO (and its tokenizer extension); not transformers."""
    script = (
        "import sys, numpy as np\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('transformers', 'tokenizers', 'torch', 'lerobot'):\n"
        "            raise ImportError('not on the robot: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from physicalai.inference import InferenceModel\n"
        "model = InferenceModel(sys.argv[1])\n"
        "feed = {'observation.state': np.zeros((1, 6), np.float32), 'task': ['pick up the cube'],\n"
        "        'observation.images.top': np.zeros((1, 3, 48, 64), np.float32),\n"
        "        'observation.images.wrist': np.zeros((1, 3, 40, 40), np.float32),\n"
        "        'noise': np.zeros((1, 8, 8), np.float32)}\n"
        "print(model(feed)['action'].shape)\n")
    run = subprocess.run([sys.executable, "-c", script, str(package_with_tokenizer)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "(1, 8, 5)" in run.stdout, run.stdout + run.stderr


def test_tokenize_gives_lerobots_ids_at_the_graphs_length(two_cameras: Path) -> None:
    """LeRobot's own pre-processor pads to the longest task; ours to tokenizer_max_length, with the same ids and
    mask where LeRobot has them, padding after, truncation at the same length, the newline appended as LeRobot does."""
    reference = lerobot(str(two_cameras), noise="input").parity_reference
    raw = observation(lerobot(str(two_cameras), noise="input"), 1, seed=0)
    for name, task in TASKS.items():
        theirs = reference.pre({**raw, "task": [task]})
        ids, mask = theirs["observation.language.tokens"], theirs["observation.language.attention_mask"]
        ours_ids, ours_mask = reference.tokenize([task])
        assert ours_ids.shape == (1, 16) and ours_ids.dtype == torch.int64 and ours_mask.dtype == torch.bool
        length = ids.shape[1]
        assert torch.equal(ours_ids[:, :length], ids) and torch.equal(ours_mask[:, :length], mask), name
        assert not ours_mask[:, length:].any(), name
    assert reference.tokenize([TASKS["truncated"]])[1].all()  # truncated: every position is a real token
    assert reference.tokenize(["open the drawer\n"])[0].equal(reference.tokenize(["open the drawer"])[0])


def test_default_graph_draws_its_noise_and_equals_lerobot_for_the_noise_it_drew(two_cameras: Path,
                                                                                tmp_path: Path) -> None:
    """``noise=graph``: a fresh start noise every call (RandomNormalLike in the graph), returned as ``noise``;
    LeRobot given that noise computes the graph's ``action``, in onnxruntime and OpenVINO f32, at batch 1 and 2."""
    import onnxruntime as ort
    import openvino as ov

    from getiaction.export.onnx import export_onnx

    module = smolvla(two_cameras, noise="graph")
    assert module.parity_reference.conditioned_on == {NOISE: NOISE}
    exported = export_onnx(module, tmp_path / "smolvla.onnx", module.sample_input, opset_version=17,
                           exporter="torchscript")
    assert exported.output_names == ["action", NOISE] and NOISE not in exported.input_names
    assert [n.op_type for n in onnx.load(str(exported.path)).graph.node if n.op_type.startswith("Random")] \
        == ["RandomNormalLike"]
    session = ort.InferenceSession(str(exported.path))
    compiled = ov.Core().compile_model(str(exported.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    runtimes = {"onnxruntime": lambda feed: session.run(None, feed),
                "openvino": lambda feed: [np.asarray(v) for v in compiled(feed).values()]}
    for runtime, run in runtimes.items():
        for batch in (1, 2):
            raw = observation(module, batch, seed=batch)
            tokens, mask = module.parity_reference.tokenize([TASKS["short"], TASKS["non-ascii"]][:batch])
            feed = {**{k: v.numpy() for k, v in raw.items()}, TOKENS: tokens.numpy(), TOKEN_MASK: mask.numpy()}
            drawn = []
            for _ in range(2):
                action, noise = run(feed)
                assert noise.shape == (batch, 8, 8) and abs(float(noise.mean())) < 0.5 and 0.6 < noise.std() < 1.4
                expected = module.parity_reference.from_task(raw, [TASKS["short"], TASKS["non-ascii"]][:batch],
                                                             torch.from_numpy(noise))
                within_fp32(expected, action)
                drawn.append(noise)
            assert np.abs(drawn[0] - drawn[1]).min() > 0, runtime  # fresh noise every call


def test_pusht_shaped_folder_exports(vlm: Path, tmp_path: Path) -> None:
    """One 96x96 camera, state 2, action 2, chunk 6, 2 steps, 24 tokens: the ONNX package passes the gate."""
    folder = save_smolvla(tmp_path / "pusht", vlm, {"top": (3, 96, 96)}, state=2, action=2, chunk_size=6,
                          n_action_steps=6, num_steps=2, tokenizer_max_length=24)
    run = run_cli(f"policy.path={folder}", "policy.noise=input", "format=onnx", "format.exporter=torchscript",
                  "format.latency=false", "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "job" / "result.json").read_text())
    assert result["parity"]["action"]["passed"], result["parity"]
    assert result["onnx"]["outputs"][0]["shape"][1:] == [6, 2]
    assert result["input_sample"][TOKENS]["shape"] == [1, 24]


def test_a_vlm_that_is_not_available_offline_is_named_with_the_override(two_cameras: Path, vlm: Path,
                                                                        tmp_path: Path) -> None:
    folder = tmp_path / "hub_vlm"
    folder.mkdir()
    for path in two_cameras.iterdir():
        text = path.read_bytes()
        if path.suffix == ".json":
            text = text.replace(str(vlm).encode(), HUB_VLM.encode())
        (folder / path.name).write_bytes(text)
    with pytest.raises(ConfigError, match=r"^policy\.path: ") as caught:
        lerobot(str(folder))
    message = str(caught.value)
    assert HUB_VLM in message and "policy.vlm_path" in message and "\n" not in message, message
    with pytest.raises(ConfigError, match=r"^policy\.vlm_path: "):
        lerobot(str(folder), vlm_path=str(tmp_path / "nowhere"))
    module = lerobot(str(folder), vlm_path=str(vlm), noise="input")  # the local copy: the same policy
    sample = module.sample_input
    with torch.no_grad():
        within_fp32(lerobot(str(two_cameras), noise="input").parity_reference(sample), module(sample).numpy())


def test_the_app_refuses_the_graph_that_draws_its_noise_until_the_gate_can_verify_it(two_cameras: Path,
                                                                                     tmp_path: Path) -> None:
    run = run_cli(f"policy.path={two_cameras}", "policy.noise=graph", "format=onnx", "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "policy.noise=graph: the graph that draws its own start noise cannot be verified" in run.stderr
    assert not list((tmp_path / "job").glob("*.onnx"))


def test_other_types_are_refused_naming_smolvla_as_supported(tmp_path: Path, act_folder: Path) -> None:
    (tmp_path / "config.json").write_text('{"type": "pi0"}')
    with pytest.raises(ConfigError, match="supported: act, diffusion, smolvla"):
        lerobot(str(tmp_path))
    with pytest.raises(ConfigError, match=r"^policy\.noise: 'fresh' is not valid"):
        smolvla(tmp_path, noise="fresh")
    with pytest.raises(ConfigError, match=r"^policy\.noise: a SmolVLA option; this folder.s policy is act"):
        lerobot(str(act_folder), noise="graph")
