"""Every code block of docs/custom_policies.md runs: files are written, commands executed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "custom_policies.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_custom_policy_docs_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    snippets = blocks("python")
    files = [b for b in snippets if b.startswith("# ") and b.split("\n", 1)[0].endswith(".py")]
    inline = [b for b in snippets if b not in files]
    for block in files:  # blocks headed by a file name become that file
        path = tmp_path / block.split("\n", 1)[0][2:].strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block)
    assert (tmp_path / "my_robot" / "models.py").is_file()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    (command,) = blocks("bash")
    argv = shlex.split(command.strip())
    assert argv[:3] == ["python", "-m", "getiaction_export"]
    run = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "tiny_job" / "result.json").read_text())
    assert result["status"] == "ok" and result["parity"]["action"]["passed"]
    assert Path(result["artifacts"]["onnx"]).name == "make_tiny.onnx"

    for index, block in enumerate(inline):  # run as scripts, the way a user would
        script = tmp_path / f"example_{index}.py"
        script.write_text(block)
        ran = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "gripper.onnx").is_file() and (tmp_path / "gripper.pt").is_file()


def test_policy_yaml_in_docs_matches_the_shipped_format() -> None:
    (yaml_block,) = blocks("yaml")
    lines = yaml_block.splitlines()
    assert lines[0].startswith("# python -m getiaction_export policy=")
    assert lines[1].startswith("# example override:")
    assert {"_target_:", "seed:", "config:"} <= {line.split(" ")[0] for line in lines}
