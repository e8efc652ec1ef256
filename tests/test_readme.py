"""The README's Python examples run, in order, in a scratch folder: the docs cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_quick_start_commands() -> None:
    quick_start = README.read_text().split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.splitlines() if line.startswith("scripts/")]
    assert commands == ["scripts/run format=onnx policy=dummy", "scripts/test"]


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    # The result.json example reads the newest single run: make one, as the README's run command would.
    run = subprocess.run([sys.executable, "-m", "getiaction_export", "format.opset_version=14"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "model_14.onnx").is_file() and (tmp_path / "checkpoint.pt").is_file()
