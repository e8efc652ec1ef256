"""Helpers for running the real CLI in a subprocess with its output under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> Run:
    """``python -m getiaction_export ARGS`` in ``cwd`` (so outputs/ and multirun/ land there)."""
    completed = subprocess.run(
        [sys.executable, "-m", "getiaction_export", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Run(completed.returncode, completed.stdout, completed.stderr, cwd)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    def call(*args: str, **kwargs: Any) -> Run:
        return run_cli(*args, cwd=kwargs.pop("cwd", tmp_path), **kwargs)

    return call
