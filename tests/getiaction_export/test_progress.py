"""Progress: a live spinner on a terminal, plain stage lines otherwise (CI logs)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path


def test_terminal_shows_a_spinner_for_long_stages(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "getiaction_export", "format.opset_version=17", "hydra.run.dir=job"],
        cwd=tmp_path, stdin=secondary, stdout=secondary, stderr=secondary, env={**os.environ, "TERM": "xterm"},
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
    screen = b"".join(chunks).decode(errors="replace")
    assert "running…" in screen and "[export] ✓" in screen


def test_plain_lines_without_a_terminal(cli, tmp_path: Path) -> None:
    run = cli("format.opset_version=17", "hydra.run.dir=job")
    assert run.returncode == 0
    assert "running…" not in run.output and "\x1b[" not in run.output
    assert run.stdout.count("[verify] ✓") == 2  # the output line and the summary line
