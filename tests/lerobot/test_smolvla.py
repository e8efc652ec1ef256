"""``policy=lerobot`` on SmolVLA folders: verified packages held to LeRobot's own inference from a task string.

Tiny SmolVLAs built offline (tests/lerobot/smolvla_folder.py): two cameras of different sizes,
or one PushT-shaped camera; state/action sizes, chunk, steps and tokenizer length varied.
"""

from __future__ import annotations

import importlib.util
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
from getiaction.export.torch import load_checkpoint
from getiaction_export.parity.tolerance import DEFAULT_TOLERANCES, compare
from getiaction_export.sources.lerobot import lerobot
from getiaction_export.sources.smolvla import (
    NOISE,
    TOKEN_MASK,
    TOKENS,
    SmolVLAExport,
    smolvla,
)
from getiaction_export.sources.smolvla_tokenizer import TOKENIZER_CHECK
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
    """The app's defaults on the folder: ``format=all`` (torch, onnx, openvino here), the graph draws its noise,
    ``format.exporter=auto`` (the policy's preferred TorchScript): the job folder."""
    cwd = tmp_path_factory.mktemp("job")
    run = run_cli(f"policy.path={two_cameras}", "format=all", "format.latency=false", "hydra.run.dir=job", cwd=cwd)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[package] ✓ task: the package tokenizes it itself" in run.stdout, run.stdout
    assert "[package] ✓ noise: the graph draws fresh noise every call" in run.stdout, run.stdout
    return cwd / "job"


def observation(module: SmolVLAExport, batch: int, seed: int) -> dict[str, torch.Tensor]:
    """A raw observation: state around the stats, camera frames in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    sample = {key: torch.rand((batch, *shape), generator=generator) for key, shape in module.input_shapes.items()}
    state = "state" if "state" in sample else "observation.state"  # the robot loop's name, or LeRobot's
    sample[state] = sample[state] * 4 - 2
    return sample


def within_fp32(expected: torch.Tensor | np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    figures = compare(np.asarray(expected), np.asarray(actual), FP32.atol, FP32.rtol)
    assert figures["passed"], figures
    return figures


def test_two_camera_folder_exports_to_a_verified_package(package: Path) -> None:
    result = json.loads((package / "result.json").read_text())
    assert result["exporter"] == "torchscript"  # format.exporter=auto: the policy's preferred exporter
    assert result["formats"]["torch"]["parity"]["action"]["max_abs_diff"] == 0.0  # reloaded, same seed: identical
    checkpoint = load_checkpoint(package / "smolvla.pt")  # the policy's own class and keys, not the robot-name wrapper
    assert checkpoint.policy_class_path == "getiaction_export.sources.smolvla.SmolVLAExport"
    assert not any(key.startswith("inner.") for key in checkpoint.state_dict), list(checkpoint.state_dict)[:3]
    for fmt in ("onnx", "openvino"):
        parity = result["formats"][fmt]["parity"]["action"]
        assert parity["passed"] and parity["max_abs_diff"] < 1e-4, parity
    manifest = json.loads((package / "manifest.json").read_text())
    artifacts = manifest["model"]["artifacts"]
    assert list(artifacts) == ["onnx", "openvino"], artifacts  # ONNX first: the default backend
    graph = onnx.load(str(package / artifacts["onnx"])).graph
    inputs = {i.name: (i.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim])
              for i in graph.input}
    assert inputs == {"state": (onnx.TensorProto.FLOAT, ["batch", 6]),  # the robot loop's names
                      "images.top": (onnx.TensorProto.FLOAT, ["batch", 3, 48, 64]),
                      "images.wrist": (onnx.TensorProto.FLOAT, ["batch", 3, 40, 40]),
                      TOKENS: (onnx.TensorProto.INT64, ["batch", 16]),
                      TOKEN_MASK: (onnx.TensorProto.BOOL, ["batch", 16])}
    assert [o.name for o in graph.output] == ["action", NOISE]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [8, 5]  # the whole chunk
    assert [n.op_type for n in graph.node if n.op_type.startswith("Random")] == ["RandomNormalLike"]
    section = manifest["getiaction"]
    checks = section["backends"]
    assert checks["onnx"]["runtime_check"]["passed"] and checks["openvino"]["runtime_check"]["passed"]
    assert section["noise"]["verified_as_reference_input"] == {NOISE: NOISE}
    assert manifest["model"]["preprocessors"] == [{"type": "to_float_tensor"}, {"type": "new_line"},
                                                  {"type": "ov_tokenizer", "artifact": "openvino_tokenizer.xml"}]
    assert section["robot_loop"]["ok"], section["robot_loop"]  # state, images.top/.wrist and task: all fed
    assert section["input_names"]["from_lerobot"] == {"observation.state": "state",
                                                      "observation.images.top": "images.top",
                                                      "observation.images.wrist": "images.wrist"}
    task = section["task"]
    assert task["writes"] == [TOKENS, TOKEN_MASK] and task["check"]["ids_equal_lerobot"], task
    assert set(task["check"]["tasks"]) == set(TOKENIZER_CHECK) and task["check"]["max_length"] == 16
    for name, digest in task["files"].items():  # promoted beside the model, hashed
        assert digest and (package / name).is_file(), name
    reference = np.load(package / "reference.npz")
    assert {"input/task", "input/noise", "output/noise"} <= set(reference.files)
    assert np.array_equal(reference["input/noise"], reference["output/noise"])
    assert [p.name for p in package.iterdir() if p.name.startswith(".")] == [".hydra"], "no hidden working files left"


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_package_reproduces_lerobot_from_a_task_string(package: Path, two_cameras: Path, backend: str) -> None:
    """InferenceModel(dir) fed a raw observation and task strings (its own new_line and ov_tokenizer steps) draws a
    fresh noise each call and returns it; LeRobot's pre → predict_action_chunk(that noise) → post on the same
    observation and strings gives its action, one string at a time and all of them batched."""
    from physicalai.inference import InferenceModel

    module = lerobot(str(two_cameras))
    kwargs = {"INFERENCE_PRECISION_HINT": "f32"} if backend == "openvino" else {}
    model = InferenceModel(package, backend=backend, **kwargs)
    cases = [[task] for task in TASKS.values()] + [list(TASKS.values())]
    drawn = []
    for index, tasks in enumerate(cases):
        raw = observation(module, len(tasks), seed=index)
        got = model({**{k: v.numpy() for k, v in raw.items()}, "task": list(tasks)})
        assert got[NOISE].shape == (len(tasks), 8, 8)
        within_fp32(module.parity_reference.from_task(raw, tasks, torch.from_numpy(got[NOISE])), got["action"])
        drawn.append(got[NOISE][0])
    assert np.abs(drawn[0] - drawn[1]).min() > 0  # a fresh draw every call


def test_the_package_runs_without_transformers_or_torch(package: Path) -> None:
    """What a robot imports: physicalai, onnxruntime, OpenVINO (and its tokenizer extension); not transformers,
    tokenizers, torch or lerobot: the package runs from a task string, and deploy_check verifies it again there
    (the drawn noise pinned to the stored one)."""
    block = (
        "import sys, runpy, numpy as np\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('transformers', 'tokenizers', 'torch', 'lerobot'):\n"
        "            raise ImportError('not on the robot: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n")
    script = block + (
        "from physicalai.inference import InferenceModel\n"
        "model = InferenceModel(sys.argv[1])\n"
        "feed = {'state': np.zeros((1, 6), np.float32), 'task': ['pick up the cube'],\n"
        "        'images.top': np.zeros((1, 48, 64, 3), np.uint8),\n"
        "        'images.wrist': np.zeros((1, 40, 40, 3), np.uint8)}\n"
        "out = model(feed)\n"
        "print(out['action'].shape, out['noise'].shape)\n")
    env = {**os.environ, "CI": "true"}
    run = subprocess.run([sys.executable, "-c", script, str(package)], capture_output=True, text=True, timeout=120,
                         env=env)
    assert run.returncode == 0 and "(1, 8, 5) (1, 8, 8)" in run.stdout, run.stdout + run.stderr
    check = block + ("sys.argv = ['deploy_check', sys.argv[1]]\n"
                     "runpy.run_module('getiaction_export.deploy_check', run_name='__main__')\n")
    run = subprocess.run([sys.executable, "-c", check, str(package)], capture_output=True, text=True, timeout=300,
                         env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    for backend in ("onnx", "openvino"):
        assert f"✓ {backend}: the graph draws fresh noise every call" in run.stdout, run.stdout
        assert f"✓ {backend} (fp32) verified again on this CPU" in run.stdout, run.stdout
    assert "+ task, predict_action_chunk -> (8, 5)" in run.stdout, run.stdout


def test_the_deploy_check_uses_the_stored_noise(package: Path, tmp_path: Path) -> None:
    """The reference set's noise is what the pinned graph computes from: other noise (the manifest's hash updated
    to match) is refused as a drift."""
    from getiaction_export.files import sha256_of
    from getiaction_export.physicalai.deploy_check import NotDeployable, check
    from getiaction_export.physicalai.reference_set import read_reference, write_reference

    copy = tmp_path / "package"
    shutil.copytree(package, copy)
    stored = read_reference(copy / "reference.npz")
    stored.inputs[NOISE] = stored.inputs[NOISE][:, :, ::-1].copy()  # other noise, same shape and values
    write_reference(copy / "reference.npz", stored)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["getiaction"]["reference"]["sha256"] = sha256_of(copy / "reference.npz")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NotDeployable, match=r"^onnx \(fp32\) drifts on this CPU: action"):
        check(copy)


def test_tokenize_gives_lerobots_ids_at_the_graphs_length(two_cameras: Path) -> None:
    """LeRobot's own pre-processor pads to the longest task; ours to tokenizer_max_length, with the same ids and
    mask where LeRobot has them, padding after, truncation at the same length, the newline appended as LeRobot does."""
    reference = lerobot(str(two_cameras), noise="input", names="lerobot").parity_reference
    raw = observation(lerobot(str(two_cameras), noise="input", names="lerobot"), 1, seed=0)
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


@pytest.fixture(scope="module")
def pusht(vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 96x96 camera, state 2, action 2, chunk 6, 2 steps, 24 tokens: PushT's shapes."""
    return save_smolvla(tmp_path_factory.mktemp("pusht"), vlm, {"top": (3, 96, 96)}, state=2, action=2, chunk_size=6,
                        n_action_steps=6, num_steps=2, tokenizer_max_length=24)


def test_pusht_shaped_folder_exports_a_graph_that_takes_its_noise(pusht: Path, tmp_path: Path) -> None:
    """``policy.noise=input``: the graph takes ``noise`` (for the user's own sampler), verified as is."""
    run = run_cli(f"policy.path={pusht}", "policy.noise=input", "format=onnx", "format.latency=false",
                  "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "job" / "result.json").read_text())
    assert result["parity"]["action"]["passed"], result["parity"]
    assert result["onnx"]["outputs"][0]["shape"][1:] == [6, 2] and len(result["onnx"]["outputs"]) == 1
    assert result["input_sample"][TOKENS]["shape"] == [1, 24] and result["input_sample"][NOISE]["shape"] == [1, 6, 8]


def test_a_pusht_shaped_smolvla_rolls_out_with_a_task_string(pusht: Path, tmp_path: Path) -> None:
    """``rollout=pusht rollout.task=...``: the checkpoint, the ONNX and OpenVINO packages (physicalai select_action,
    fed the task string) each drive PushT; PyTorch (LeRobot's inference) replays each one's drawn noise."""
    task = "push the T-shaped block onto the target"
    run = run_cli(f"policy.path={pusht}", "format=all", "format.latency=false", "rollout=pusht",
                  "rollout.episodes=1", "rollout.steps=24", f"rollout.task='{task}'", "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "job" / "result.json").read_text())
    rollout = result["rollout"]
    assert rollout["task_string"] == task and rollout["torch_on_drawn"] == [NOISE]
    int8 = {"openvino_int8"} if importlib.util.find_spec("nncf") else set()  # format=all: INT8 where nncf is
    assert set(rollout["formats"]) == {"torch", "onnx", "openvino", *int8}
    for name, record in rollout["formats"].items():
        assert record["passed"] and record["episodes"][0]["steps"] == {"torch": 24, "artifact": 24}, (name, record)
        if name in int8:  # weights compressed: its own bound (16 px), and on its path within the INT8 scale bound
            assert record["precision"] == "int8" and record["max_state_gap"] <= 16 and record["on_path"]["passed"]
            continue
        assert record["max_state_gap"] <= 0.01 and record["max_action_gap"] < 1e-4, (name, record)
    for name in ("onnx", "openvino"):  # LeRobot on the package's own observations, task ids and drawn noise
        on_path = rollout["formats"][name]["on_path"]
        assert on_path["passed"] and on_path["runs"] >= 1 and on_path["max_abs_diff"] < 1e-4, (name, on_path)
    assert "physicalai select_action on the package" in rollout["formats"]["onnx"]["driver"]
    html = (tmp_path / "job" / "report.html").read_text()
    assert "<h2>Task and noise</h2>" in html and task in html and "non-ASCII" in html
    missing = run_cli(f"policy.path={pusht}", "format=onnx", "rollout=pusht", "hydra.run.dir=job2", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].endswith(
        "rollout.task: this policy reads a task string; give one, e.g. rollout=pusht "
        "rollout.task='push the T-shaped block onto the target'"), missing.stderr


def test_int8_compresses_smolvlas_weights_and_refuses_what_openvino_cannot_compile(two_cameras: Path,
                                                                                    tmp_path: Path) -> None:
    """``format.precision=int8`` on a SmolVLA folder: its weights compressed (the policy's choice, as for language
    models), verified against LeRobot on the noise the graph drew, packaged with its tokenizer. NNCF's
    post-training quantization (``method=quantize``) gives an IR OpenVINO cannot compile: one line, no file."""
    run = run_cli(f"policy.path={two_cameras}", "format=openvino", "format.precision=int8", "format.latency=false",
                  "hydra.run.dir=job", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads((tmp_path / "job" / "result.json").read_text())["formats"]["openvino"]
    assert record["int8"]["method"] == "weights" and record["int8"]["method_reason"].startswith("SmolVLA's choice")
    action = record["parity"]["action"]
    assert action["passed"] and action["share"] < 0.02 and action["cosine"] > 0.9999, action  # measured 0.34%
    assert record["parity"]["noise"]["max_abs_diff"] == 0.0  # the reference ran on the noise the graph drew
    assert (tmp_path / "job" / "openvino_tokenizer.xml").is_file()
    refused = run_cli(f"policy.path={two_cameras}", "format=openvino", "format.precision=int8", "format.latency=false",
                      "format.calibration.method=quantize", "hydra.run.dir=job2", cwd=tmp_path)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("[export] ✗ OpenVINO cannot compile the INT8 IR NNCF made ("), last
    assert refused.stderr.strip().endswith("try format.calibration.method=weights (weight compression)")
    assert not list((tmp_path / "job2").glob("*.xml"))


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


def test_other_types_are_refused_naming_smolvla_as_supported(tmp_path: Path, act_folder: Path) -> None:
    (tmp_path / "config.json").write_text('{"type": "vqbet"}')
    with pytest.raises(ConfigError, match="supported: act, diffusion, smolvla"):
        lerobot(str(tmp_path))
    for kind in ("pi0", "pi05", "pi0_fast"):  # one line that says why
        (tmp_path / "config.json").write_text(f'{{"type": "{kind}"}}')
        with pytest.raises(ConfigError, match=rf"^policy\.path: LeRobot's {kind} cannot be built here: .*patched "
                                              r"transformers.*not on the package registry.*supported: act, diffusion, "
                                              r"smolvla$"):
            lerobot(str(tmp_path))
    with pytest.raises(ConfigError, match=r"^policy\.noise: 'fresh' is not valid"):
        smolvla(tmp_path, noise="fresh")
    with pytest.raises(ConfigError, match=r"^policy\.noise: a SmolVLA option; this folder.s policy is act"):
        lerobot(str(act_folder), noise="input")
