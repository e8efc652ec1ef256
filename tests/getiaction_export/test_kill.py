"""Kill an export at several points: no file under a final name is ever incomplete or unverified.

Each scenario starts ``python -m getiaction_export`` writing into ``output_dir=out``, reads its
console until a stage line appears (``[build] ✓`` ...), then sends SIGKILL or SIGINT (Ctrl-C).
Afterwards the final artifact either does not exist (or, when one was there before and
``overwrite=true``, still has its old bytes), or it is a complete new file: onnx.checker full
check passes, onnxruntime runs it, and ``result.json`` says ok with its sha256. Staging files
(names starting with ``.``) may stay behind only after SIGKILL, which no process can clean up
after.

The long export is ``bad_modules.make_slow`` (every eager forward sleeps, so check/verify take
seconds) at opset 17, and the real dynamo export of the Dummy policy at opset 18.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

REPO = Path(__file__).resolve().parents[2]
SLOW = ("policy=module", "policy._target_=tests.getiaction_export.bad_modules.make_slow",
        "+policy.delay=0.2", "format.opset_version=17")
DYNAMO = ("policy=dummy", "format.opset_version=18")
FRESH, OVERWRITE = "fresh", "overwrite"


@dataclass(frozen=True)
class Scenario:
    id: str
    args: tuple[str, ...]
    artifact: str
    point: str
    """Console line prefix after which the signal is sent."""
    signal: signal.Signals
    wait: float = 0.0
    """Seconds between seeing ``point`` and sending the signal."""
    before: str = FRESH
    """``fresh``: empty output_dir; ``overwrite``: an older valid artifact there, overwrite=true."""


def _scenarios() -> list[Scenario]:
    points = {"sample": "[sample] ✓", "export": "[export] ✓", "verify": "[verify] ✓ onnxruntime",
              "report": "[report] ✓"}
    kill, intr = signal.SIGKILL, signal.SIGINT
    found = [Scenario(f"kill-after-{p}", SLOW, "make_slow.onnx", points[p], kill)
             for p in ("sample", "export", "verify")]
    found += [Scenario(f"ctrl-c-after-{p}", SLOW, "make_slow.onnx", points[p], intr) for p in ("export", "verify")]
    found += [Scenario(f"{name}-in-dynamo-export", DYNAMO, "dummy.onnx", "[sample] ✓", sig, wait=0.5)
              for name, sig in (("kill", kill), ("ctrl-c", intr))]
    found += [Scenario(f"overwrite-kill-after-{p}", SLOW, "make_slow.onnx", points[p], kill, before=OVERWRITE)
              for p in ("export", "report")]
    found.append(Scenario("overwrite-ctrl-c-after-export", SLOW, "make_slow.onnx", points["export"], intr,
                          before=OVERWRITE))
    return found


SCENARIOS = _scenarios()
CTRL_C_SCENARIO = "ctrl-c-after-export"


@dataclass
class Outcome:
    folder: Path
    returncode: int
    console: str
    signalled: bool
    """False when the job finished before the point was reached (then nothing was sent)."""
    old: bytes | None


def _old_artifact(path: Path) -> bytes:
    """A valid ONNX file of another model, standing for last week's export."""
    from getiaction.policies import Dummy, DummyConfig

    Dummy(config=DummyConfig(action_shape=(3,))).to_onnx(path, opset_version=17)
    return path.read_bytes()


def _prepare(scenario: Scenario, folder: Path) -> bytes | None:
    """The output folder, with an older artifact in it for the overwrite scenarios (in this process:
    the ONNX exporter is not thread-safe, so this runs before the pool)."""
    out = folder / "out"
    out.mkdir(parents=True)
    return _old_artifact(out / scenario.artifact) if scenario.before == OVERWRITE else None


def _run(scenario: Scenario, folder: Path, old: bytes | None) -> Outcome:
    args = [*scenario.args, "output_dir=out", "hydra.run.dir=job", f"overwrite={scenario.before == OVERWRITE}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "getiaction_export", *args], cwd=folder, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(180, process.kill)  # a hung export must not hang the suite
    watchdog.start()
    lines, signalled = [], False
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith(scenario.point):
                time.sleep(scenario.wait)
                process.send_signal(scenario.signal)
                signalled = True
                break
        lines.append(process.stdout.read())
        process.wait()
    finally:
        watchdog.cancel()
    return Outcome(folder, process.returncode, "".join(lines), signalled, old)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every selected scenario, three at a time (they mostly sleep)."""
    mine = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    selected = {item.callspec.params["scenario"].id for item in mine
                if hasattr(item, "callspec") and "scenario" in item.callspec.params}
    if any(item.name == test_ctrl_c_reports_one_line_and_records_the_interruption.__name__ for item in mine):
        selected.add(CTRL_C_SCENARIO)
    root = tmp_path_factory.mktemp("kills")
    chosen = [s for s in SCENARIOS if s.id in selected]
    olds = [_prepare(s, root / s.id) for s in chosen]
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = pool.map(lambda job: _run(job[0], root / job[0].id, job[1]), zip(chosen, olds, strict=True))
        return dict(zip([s.id for s in chosen], runs, strict=True))


def _assert_complete_and_verified(path: Path, result: dict | None) -> None:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: np.zeros([d if isinstance(d, int) else 2 for d in i.shape], np.float32)
            for i in session.get_inputs()}
    assert all(np.isfinite(o).all() for o in session.run(None, feed))
    assert result is not None, f"{path.name} exists but no result.json records it"
    assert result["status"] == "ok", result["error"]
    assert next(iter(result["artifact_sha256"].values())) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_no_incomplete_or_unverified_artifact_after_a_kill(scenario: Scenario, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[scenario.id]
    shown = f"\n--- console (exit {outcome.returncode}) ---\n{outcome.console[-2500:]}"
    assert outcome.signalled or outcome.returncode == 0, f"the job died before {scenario.point!r}" + shown
    out = outcome.folder / "out"
    final = out / scenario.artifact
    result_path = out / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else None  # never half-written

    if final.exists() and final.read_bytes() != outcome.old:
        _assert_complete_and_verified(final, result)
    elif outcome.old is None:
        assert not final.exists()
    assert not (out / f"{scenario.artifact}.data").exists(), "external data beside a final name"

    # output_dir is the job's folder: its record (.hydra/, export.log) sits beside the artifacts
    staging = sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".hydra")
    if scenario.signal is signal.SIGINT:
        assert staging == [], f"Ctrl-C left staging files: {staging}" + shown
    # After SIGKILL hidden staging files may stay (nothing can clean up after it); they never
    # carry a final name, which the check below makes sure of.
    record = (scenario.artifact, "result.json", "report.html", "manifest.json", "reference.npz", "export.log")
    others = sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.name not in record)
    assert others == [], f"unexpected files in output_dir: {others}"
    if (out / "manifest.json").exists():  # the policy package's manifest: complete, and naming the final file
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["model"]["artifacts"] == {"onnx": scenario.artifact}
        assert final.exists() and final.read_bytes() != outcome.old


def test_ctrl_c_reports_one_line_and_records_the_interruption(outcomes: dict[str, Outcome]) -> None:
    """Ctrl-C is a normal way to stop: a line saying so, a result.json saying so, no traceback."""
    outcome = outcomes[CTRL_C_SCENARIO]
    shown = f"\n--- console (exit {outcome.returncode}) ---\n{outcome.console[-2500:]}"
    assert outcome.signalled, shown
    assert outcome.returncode != 0, shown
    assert "Traceback" not in outcome.console, shown
    result_path = outcome.folder / "out" / "result.json"
    assert result_path.exists(), "no result.json after Ctrl-C" + shown
    result = json.loads(result_path.read_text())
    assert result["status"] == "failed" and "interrupt" in str(result["error"]).lower(), result["error"]
