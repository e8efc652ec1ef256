"""Progress: a live spinner on a terminal, plain stage lines otherwise (CI logs)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def on_a_terminal(*args: str, cwd: Path) -> str:
    """Run the app with a pseudo-terminal as stdin/stdout/stderr; return everything it drew."""
    primary, secondary = pty.openpty()
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "getiaction_export", *args], cwd=cwd, stdin=secondary, stdout=secondary,
        stderr=secondary, env={**os.environ, "TERM": "xterm", "COLUMNS": "120", "PYTHONPATH": path},
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert process.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_terminal_shows_a_spinner_for_long_stages(tmp_path: Path) -> None:
    screen = on_a_terminal("format.opset_version=17", "hydra.run.dir=job", cwd=tmp_path)
    assert "running…" in screen and "[export] ✓" in screen


def test_a_rollout_shows_a_progress_bar_per_run(tmp_path: Path) -> None:
    screen = on_a_terminal("policy=module", "policy._target_=tests.getiaction_export.rollout_modules.make_seeker",
                           "format.opset_version=17", "format.latency=false", "rollout=pusht", "rollout.steps=50",
                           "hydra.run.dir=job", cwd=tmp_path)
    for label in ("[rollout] PyTorch", "[rollout] onnx"):  # one bar per run: PyTorch's, then the artifact's
        assert label in screen
    assert "100/100" in screen  # 2 episodes x 50 steps, counted step by step
    assert "[rollout] ✓ onnx: agent within" in screen


def test_plain_lines_without_a_terminal(cli, tmp_path: Path) -> None:
    run = cli("format.opset_version=17", "hydra.run.dir=job")
    assert run.returncode == 0
    assert "running…" not in run.output and "\x1b[" not in run.output
    assert run.stdout.count("[verify] ✓") == 2  # the output line and the summary line
