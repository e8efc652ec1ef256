"""A wheel built from the repo runs from any folder: its config tree ships inside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_installs_and_runs_from_another_directory(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("getiaction_export-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    conf = "getiaction_export/conf"
    for required in (f"{conf}/config.yaml", f"{conf}/policy/dummy.yaml", f"{conf}/format/onnx.yaml",
                     f"{conf}/hydra/job_logging/getiaction.yaml", f"{conf}/hydra/launcher/slurm.yaml",
                     f"{conf}/policy/act.yaml", "getiaction/policies/dummy/policy.py"):
        assert required in names, required

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import getiaction_export; print(getiaction_export.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip().startswith(str(site)), where.stdout  # the wheel, not the source tree

    for command in ([str(site / "bin" / "getiaction-export")], [sys.executable, "-m", "getiaction_export"]):
        job = elsewhere / f"job{len(command)}"
        run = subprocess.run([*command, "format.opset_version=14", f"hydra.run.dir={job}"],
                             cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        result = json.loads((job / "result.json").read_text())
        assert result["status"] == "ok" and result["opset"]["saved"] == 14
    assert not (elsewhere / "conf").exists()
