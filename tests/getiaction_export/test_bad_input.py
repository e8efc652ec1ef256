"""Bad input through the real command line: one clear line, the right exit code, nothing left behind.

Each case runs ``python -m getiaction_export`` in its own folder and asserts:

* the exit code (README: 2 config/input, 3 export, 4 parity);
* one console line (stdout or stderr) that names the config key or file at fault (``must``) and
  says what would be valid (one of ``valid``);
* no traceback and none of Hydra's multi-line error blocks on the console;
* no model artifact (``*.onnx``, ``*.pt``, staging files) anywhere under the case folder;
  ``result.json`` and the job log are allowed.

The cases run concurrently (one subprocess each) in a module fixture; each is its own test.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.getiaction_export.conftest import Run

REPO = Path(__file__).resolve().parents[2]
BAD = "tests.getiaction_export.bad_modules"
OPSETS = f"7..{onnx.defs.onnx_opset_version()}"
MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".data", ".xml", ".bin")
OLD_ARTIFACT = b"old artifact bytes, not to be replaced without overwrite=true"

# Runs the CLI with some imports made impossible, the way a missing package behaves:
# ``import x`` raises ImportError and importlib.util.find_spec("x") returns None.
BLOCKING_LAUNCHER = (
    "import runpy, sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = ['getiaction_export', *sys.argv[2:]]\n"
    "runpy.run_module('getiaction_export', run_name='__main__', alter_sys=True)\n"
)


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    must: tuple[str, ...]
    """Every fragment appears on one error line."""
    valid: tuple[str, ...] = ()
    """At least one appears on that line: what the user should write instead."""
    block: tuple[str, ...] = ()
    """Modules whose import fails in the subprocess (a missing optional dependency)."""
    prepare: Callable[[Path], None] | None = None
    """Called with the case folder before the run."""
    keep: tuple[str, ...] = field(default_factory=tuple)
    """Model files (relative to the case folder) that were there before and must stay unchanged."""


def _existing_artifact(folder: Path) -> None:
    (folder / "out").mkdir()
    (folder / "out" / "dummy.onnx").write_bytes(OLD_ARTIFACT)


R = ("input_sample=random",)  # + the inputs of each case
MODULE = ("policy=module",)

CASES = [
    # --- names: unknown group options and keys, with the closest valid one -----------------
    Case("unknown-policy", ("policy=dumy",), 2, ("policy=dumy",), ("did you mean 'dummy'",)),
    Case("unknown-format", ("format=onx",), 2, ("format=onx",), ("did you mean 'onnx'",)),
    Case("unknown-input-sample", ("input_sample=randm",), 2, ("input_sample=randm",), ("did you mean 'random'",)),
    Case("unknown-launcher", ("-m", "hydra/launcher=joblb", "hydra.sweep.dir=sweep"), 2,
         ("hydra/launcher", "joblb"), ("did you mean 'joblib'", "joblib_local")),
    Case("unknown-key", ("format.opset=14",), 2, ("format.opset",), ("opset_version",)),
    Case("sweep-without-multirun", ("format.opset_version=14,17",), 2, ("format.opset_version",),
         ("--multirun", "-m ")),
    Case("unknown-policy-config-field", ("policy.config.hiden_dim=3",), 2,
         ("policy.config.hiden_dim",), ("hidden_dim",)),
    Case("unknown-exporter", ("format.exporter=fast",), 2, ("format.exporter", "fast"), ("dynamo",)),
    # --- wrong types and values --------------------------------------------------------------
    Case("opset-not-int", ("format.opset_version=abc",), 2, ("format.opset_version", "abc"), ("int",)),
    Case("overwrite-not-bool", ("overwrite=maybe",), 2, ("overwrite", "maybe"), ("bool",)),
    Case("atol-not-float", ("format.atol=tiny",), 2, ("format.atol", "tiny"), ("float",)),
    Case("batch-sizes-not-positive", ("format.verify_batch_sizes=[0]",), 2,
         ("format.verify_batch_sizes",), ("positive",)),
    Case("policy-config-wrong-type", ("policy.config.hidden_dim=big",), 2,
         ("policy.config.hidden_dim", "big"), ("int",)),
    Case("policy-config-bad-value", ("policy.config.action_shape=[-1]",), 2,
         ("action_shape",), ("positive",)),
    Case("factory-kwarg-wrong-type", (*MODULE, f"policy._target_={BAD}.make_slow", "+policy.delay=fast"), 2,
         ("policy.delay", "fast"), ("float",)),
    Case("sample-dtype-name", (*R, "+input_sample.inputs.state.shape=[1,7]",
                               "+input_sample.inputs.state.dtype=float33"), 2,
         ("input_sample.inputs.state.dtype", "float33"), ("float32",)),
    # --- missing values ----------------------------------------------------------------------
    Case("missing-target", MODULE, 2, ("policy._target_",), ("policy._target_=",)),
    Case("missing-sample-path", ("input_sample=file",), 2, ("input_sample.path",), (".npz",)),
    Case("missing-random-inputs", R, 2, ("input_sample.inputs",), ("shape=",)),
    # --- opsets and exporters the installed torch/onnx cannot honour ------------------------
    Case("opset-too-low", ("format.opset_version=6",), 2, ("opset_version=6",), (OPSETS,)),
    Case("opset-too-high", ("format.opset_version=29",), 2, ("opset_version=29",), (OPSETS,)),
    Case("dynamo-below-18", ("format.exporter=dynamo", "format.opset_version=14"), 2,
         ("opset_version=14", "dynamo"), ("exporter=torchscript", "exporter=auto")),
    Case("torchscript-above-20", ("format.exporter=torchscript", "format.opset_version=24"), 2,
         ("opset_version=24", "torchscript"), ("exporter=dynamo", "exporter=auto")),
    # --- samples the forward rejects -----------------------------------------------------------
    Case("sample-wrong-shape", (*R, "+input_sample.inputs.state.shape=[1,5]"), 2,
         ("input_sample", "state[1, 5]"), ("[1, 7]", "7x32")),
    Case("sample-wrong-dtype", (*R, "+input_sample.inputs.state.shape=[1,7]", "+input_sample.inputs.state.dtype=int64"),
         2, ("input_sample", "state"), ("int64", "Long")),
    Case("sample-wrong-key", (*R, "+input_sample.inputs.obs.shape=[1,7]"), 2,
         ("input_sample", "obs"), ("'state'",)),
    Case("file-wrong-keys", ("input_sample=file", "input_sample.path={inputs}/wrong_keys.npz"), 2,
         ("input_sample", "obs"), ("'state'",)),
    Case("file-wrong-shape", ("input_sample=file", "input_sample.path={inputs}/wrong_shape.npz"), 2,
         ("input_sample", "state[1, 3]"), ("[1, 7]", "7x32")),
    Case("file-not-npz", ("input_sample=file", "input_sample.path={inputs}/garbage.npz"), 2,
         ("input_sample.path", "garbage.npz"), ("savez", "not an .npz", "zip archive", "not a valid .npz")),
    # --- policies whose forward cannot be exported -------------------------------------------
    Case("target-not-importable", (*MODULE, "policy._target_=nopkg.make_policy"), 2,
         ("policy._target_", "nopkg"), ("No module named", "cannot import")),
    Case("target-missing-attribute", (*MODULE, f"policy._target_={BAD}.make_nope"), 2,
         ("policy._target_", "make_nope"), ("no attribute",)),
    Case("target-not-a-module", (*MODULE, f"policy._target_={BAD}.make_not_a_module"), 2,
         ("policy._target_", "make_not_a_module"), ("nn.Module",)),
    Case("forward-raises", (*MODULE, f"policy._target_={BAD}.make_raising"), 3,
         ("forward", "deliberately broken forward"), ("state[2, 4]",)),
    Case("forward-inf", (*MODULE, f"policy._target_={BAD}.make_inf"), 3, ("NaN/Inf",), ("policy",)),
    # --- parity ------------------------------------------------------------------------------------
    Case("parity-zero-tolerance", ("format.opset_version=17", "format.atol=0", "format.rtol=0"), 4,
         ("parity", "max abs diff"), ("atol",)),
    # --- checkpoints -------------------------------------------------------------------------------
    Case("checkpoint-missing", ("checkpoint={inputs}/missing.pt",), 2, ("checkpoint", "missing.pt"), ("to_torch",)),
    Case("checkpoint-empty", ("checkpoint={inputs}/empty.pt",), 2, ("checkpoint", "empty.pt"), ("empty",)),
    Case("checkpoint-truncated", ("checkpoint={inputs}/truncated.pt",), 2,
         ("checkpoint", "truncated.pt"), ("truncated", "corrupt")),
    Case("checkpoint-random-bytes", ("checkpoint={inputs}/random.pt",), 2,
         ("checkpoint", "random.pt"), ("not a readable torch checkpoint", "corrupt")),
    Case("checkpoint-other-library", ("checkpoint={inputs}/other_library.pt",), 2,
         ("checkpoint", "other_library.pt", "not a getiaction checkpoint"), ("model_config",)),
    Case("checkpoint-newer-format", ("checkpoint={inputs}/newer.pt",), 2,
         ("checkpoint", "newer.pt", "99"), ("upgrade",)),
    Case("checkpoint-class-not-allowed", ("checkpoint={inputs}/os_system.pt",), 2,
         ("checkpoint", "os.system"), ("allowed_packages",)),
    # --- output folders --------------------------------------------------------------------------
    Case("output-dir-under-a-file", ("output_dir={inputs}/a_file/out",), 2,
         ("output_dir", "a_file"), ("not a folder", "is a file")),
    Case("existing-artifact", ("output_dir=out",), 2, ("output_dir", "dummy.onnx", "already exists"),
         ("overwrite=true",), prepare=_existing_artifact, keep=("out/dummy.onnx",)),
    # --- optional dependencies that are not installed --------------------------------------------
    Case("no-onnxruntime", ("format=onnx", "format.opset_version=17"), 2, ("onnxruntime",), ("pip install",),
         block=("onnxruntime",)),
    Case("no-onnxscript-for-dynamo", ("format.opset_version=18",), 2, ("onnxscript",),
         ("pip install", "exporter=torchscript"), block=("onnxscript",)),
    Case("no-launcher-plugin", ("-m", "hydra/launcher=joblib_local", "hydra.sweep.dir=sweep"), 2,
         ("joblib",), ("pip install",), block=("hydra_plugins.hydra_joblib_launcher",)),
]
assert len({case.id for case in CASES}) == len(CASES)


# ------------------------------------------------------------------------------------------------
# inputs and runs
# ------------------------------------------------------------------------------------------------
def _write_inputs(folder: Path) -> None:
    """Sample files, checkpoints good and bad, and a regular file to put an output_dir under."""
    from getiaction.policies import Dummy, DummyConfig

    np.savez(folder / "wrong_keys.npz", obs=np.zeros((1, 7), np.float32))
    np.savez(folder / "wrong_shape.npz", state=np.zeros((1, 3), np.float32))
    (folder / "garbage.npz").write_bytes(b"these bytes are no zip archive")
    (folder / "a_file").write_text("a regular file, not a folder\n")

    torch.manual_seed(0)
    good = Dummy(config=DummyConfig(action_shape=(7,))).to_torch(folder / "good.pt")
    data = good.read_bytes()
    (folder / "empty.pt").write_bytes(b"")
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({"weights": torch.randn(3, 3)}, folder / "other_library.pt")
    for name, key, value in (("newer.pt", "format_version", 99), ("os_system.pt", "policy_class_path", "os.system")):
        payload = torch.load(good, weights_only=True)
        payload[key] = value
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        (folder / name).write_bytes(buffer.getvalue())


def _run(case: Case, folder: Path, inputs: Path) -> Run:
    folder.mkdir(parents=True)
    if case.prepare:
        case.prepare(folder)
    args = [arg.format(inputs=inputs) for arg in case.args]
    if "-m" not in args:
        args.append("hydra.run.dir=job")
    if case.block:
        command = [sys.executable, "-c", BLOCKING_LAUNCHER, ",".join(case.block), *args]
    else:
        command = [sys.executable, "-m", "getiaction_export", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    return Run(done.returncode, done.stdout, done.stderr, folder)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Run every selected case once, two (or more, with more cores) at a time."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and hasattr(item, "callspec") and "case" in item.callspec.params
    }
    inputs = tmp_path_factory.mktemp("inputs")
    _write_inputs(inputs)
    root = tmp_path_factory.mktemp("cases")
    cases = [case for case in CASES if case.id in selected]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        runs = pool.map(lambda case: _run(case, root / case.id, inputs), cases)
        return {case.id: run for case, run in zip(cases, runs, strict=True)}


# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------
def _error_lines(console: str) -> list[str]:
    return [line for line in console.splitlines() if "✗" in line or line.startswith("error:")]


def _model_files(folder: Path) -> list[str]:
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and (path.name.endswith(MODEL_SUFFIXES) or ".staging" in path.name)
    )


def test_the_table_covers_every_kind_of_bad_input() -> None:
    assert len(CASES) >= 25
    assert {case.code for case in CASES} == {2, 3, 4}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_clear_line(case: Case, outcomes: dict[str, Run]) -> None:
    run = outcomes[case.id]
    console = run.output
    problems = []
    if run.returncode != case.code:
        problems.append(f"exit code {run.returncode}, expected {case.code}")
    if "Traceback" in console:
        problems.append("a traceback on the console")
    if "Error executing job" in console or "HYDRA_FULL_ERROR" in console:
        problems.append("Hydra's multi-line job error on the console")
    lines = _error_lines(console)
    naming = [line for line in lines if all(fragment in line for fragment in case.must)]
    if not lines:
        problems.append("no error line ('error: ...' or '[stage] ✗ ...') on the console")
    elif not naming:
        problems.append(f"no error line names all of {list(case.must)}")
    elif case.valid and not any(hint in line for line in naming for hint in case.valid):
        problems.append(f"the error line does not say what would be valid (any of {list(case.valid)})")
    leftovers = [name for name in _model_files(run.cwd) if name not in case.keep]
    if leftovers:
        problems.append(f"model files left behind: {leftovers}")
    changed = [kept for kept in case.keep if (run.cwd / kept).read_bytes() != OLD_ARTIFACT]
    if changed:
        problems.append(f"pre-existing files changed: {changed}")
    assert not problems, "; ".join(problems) + f"\n--- console (exit {run.returncode}) ---\n{console[-3000:]}"
