"""Sweeps on Hydra's launcher plugins (conf/hydra/launcher/), through the real command line.

joblib runs jobs in worker processes; Ray runs them as tasks of a throw-away local Ray instance
inside a fresh network namespace that holds only ``lo`` (Ray binds to the machine's own address
even when told 127.0.0.1, and tests may only talk to loopback); Slurm is checked to compose
(no ``srun`` here). The summary must look the same whichever launcher ran the jobs.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx
import pytest
import yaml

from tests.getiaction_export.conftest import read_json, run_cli

REPO = Path(__file__).resolve().parents[2]
LAUNCHERS = REPO / "conf" / "hydra" / "launcher"
PLUGIN_TARGETS = {
    "joblib_local.yaml": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "ray_local.yaml": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
    "slurm.yaml": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
}
RAY_DAEMONS = "raylet|gcs_server"


def _plugin_installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _assert_ok_sweep(sweep: Path, opsets: list[int]) -> dict:
    summary = read_json(sweep / "summary.json")
    assert (summary["jobs"], summary["ok"], summary["failed"], summary["exit_code"]) == (len(opsets), len(opsets), 0, 0)
    assert [row["opset"] for row in summary["rows"]] == [f"{o}/{o}" for o in opsets]
    for opset in opsets:
        job = sweep / f"format.opset_version={opset}"
        result = read_json(job / "result.json")
        assert result["status"] == "ok" and result["exit_code"] == 0, result["error"]
        assert result["opset"] == {"requested": opset, "saved": opset}
        assert onnx.load(str(job / "dummy.onnx")).opset_import[0].version == opset
        assert (job / ".hydra" / "config.yaml").is_file()
    return summary


def _launcher_target(sweep: Path) -> str:
    multirun = yaml.safe_load((sweep / "multirun.yaml").read_text())
    return str(multirun["hydra"]["launcher"]["_target_"])


# ------------------------------------------------------------------------------------------------
# joblib
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not _plugin_installed("hydra_plugins.hydra_joblib_launcher"), reason="pip install .[joblib]")
def test_joblib_sweep_runs_jobs_in_parallel_processes(cli, tmp_path: Path) -> None:
    run = cli("-m", "format.opset_version=14,17", "hydra/launcher=joblib_local", "hydra.sweep.dir=sweep")
    assert run.returncode == 0, run.output
    sweep = tmp_path / "sweep"
    _assert_ok_sweep(sweep, [14, 17])
    assert _launcher_target(sweep).endswith("JoblibLauncher")
    assert yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["launcher"]["n_jobs"] == 2
    assert "2/2 jobs ok" in run.stdout and "Traceback" not in run.output


@pytest.mark.skipif(not _plugin_installed("hydra_plugins.hydra_joblib_launcher"), reason="pip install .[joblib]")
def test_joblib_sweep_with_a_failing_job_keeps_the_other_and_exits_3(cli, tmp_path: Path) -> None:
    # ACT needs opset 14 (scaled_dot_product_attention): a valid config that fails only when exported
    run = cli("-m", "policy=act", "format.opset_version=14,13", "hydra/launcher=joblib",
              "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep")
    assert run.returncode == 3, run.output  # the failed job's export error, not Hydra's generic 1
    sweep = tmp_path / "sweep"
    good, bad = sweep / "format.opset_version=14,policy=act", sweep / "format.opset_version=13,policy=act"
    assert read_json(good / "result.json")["status"] == "ok" and (good / "act.onnx").is_file()
    failed = read_json(bad / "result.json")
    assert (failed["status"], failed["stage"], failed["exit_code"]) == ("failed", "export", 3)
    assert not (bad / "act.onnx").exists()
    summary = read_json(sweep / "summary.json")
    assert (summary["jobs"], summary["ok"], summary["failed"], summary["exit_code"]) == (2, 1, 1, 3)
    rows = {row["job"]: row for row in summary["rows"]}
    assert rows["format.opset_version=14,policy=act"]["status"] == "ok"
    assert rows["format.opset_version=13,policy=act"]["status"] == "failed"
    assert ">= 14" in rows["format.opset_version=13,policy=act"]["error"]
    assert "❌ failed" in (sweep / "summary.md").read_text()
    assert "Traceback" not in run.output


# ------------------------------------------------------------------------------------------------
# Ray, in a network namespace of its own
# ------------------------------------------------------------------------------------------------
def _can_isolate_network() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=30)
    return probe.returncode == 0


def _ray_daemons() -> set[int]:
    found = subprocess.run(["pgrep", "-f", RAY_DAEMONS], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def _processes_mentioning(text: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


@pytest.mark.slow
@pytest.mark.skipif(not _plugin_installed("hydra_plugins.hydra_ray_launcher"), reason="pip install .[ray]")
@pytest.mark.skipif(not _can_isolate_network(), reason="needs `unshare -n` (root or user namespaces) and `ip`")
def test_ray_sweep_in_a_loopback_only_namespace_leaves_no_ray_process(tmp_path: Path) -> None:
    before = _ray_daemons()
    # Ray's unix socket paths must stay under ~107 characters: a short folder, not tmp_path.
    ray_tmp = tempfile.mkdtemp(prefix="gx-ray-", dir="/tmp")
    try:
        app = [sys.executable, "-m", "getiaction_export", "-m", "format.opset_version=14,17",
               "hydra/launcher=ray_local", f"+hydra.launcher.ray.init._temp_dir={ray_tmp}", "hydra.sweep.dir=sweep"]
        script = f"ip link set lo up && RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 exec {shlex.join(app)}"
        run = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
        output = run.stdout + run.stderr
        assert run.returncode == 0, output
        sweep = tmp_path / "sweep"
        _assert_ok_sweep(sweep, [14, 17])
        assert _launcher_target(sweep).endswith("RayLauncher")
        assert "Started a local Ray instance" in output and "2/2 jobs ok" in output
        assert "Traceback" not in output

        deadline = time.monotonic() + 15  # Ray's daemons exit shortly after the driver
        while (_ray_daemons() - before or _processes_mentioning(ray_tmp)) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert _ray_daemons() - before == set(), "Ray daemons outlived the sweep"
        assert _processes_mentioning(ray_tmp) == [], "processes of this Ray session are still running"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Slurm: composes (no srun here)
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not _plugin_installed("hydra_plugins.hydra_submitit_launcher"), reason="pip install .[slurm]")
def test_slurm_launcher_composes_with_the_documented_values(cli) -> None:
    run = cli("--cfg", "hydra", "-p", "hydra.launcher", "hydra/launcher=slurm", "hydra.launcher.partition=cpu")
    assert run.returncode == 0, run.output
    launcher = yaml.safe_load(run.stdout)
    assert launcher["_target_"] == PLUGIN_TARGETS["slurm.yaml"]
    assert launcher["partition"] == "cpu"
    assert (launcher["timeout_min"], launcher["cpus_per_task"], launcher["mem_gb"]) == (30, 2, 8)
    assert launcher["gpus_per_node"] is None and launcher["max_num_timeout"] == 0
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"

    shipped = cli("--cfg", "hydra", "-p", "hydra.launcher", "hydra/launcher=slurm")
    assert yaml.safe_load(shipped.stdout)["partition"] is None  # the cluster's default partition


# ------------------------------------------------------------------------------------------------
# every launcher YAML: its documented commands are the real ones
# ------------------------------------------------------------------------------------------------
def _first_value(override: str) -> str:
    key, _, value = override.partition("=")
    return f"{key}={value.split(',')[0]}" if "," in value and not value.startswith("[") else override


@pytest.mark.parametrize("name", sorted(PLUGIN_TARGETS))
def test_launcher_yaml_headers_are_commands_that_compose(name: str, tmp_path: Path) -> None:
    first, second = (LAUNCHERS / name).read_text().splitlines()[:2]
    assert first.startswith("# python -m getiaction_export "), first
    assert second.startswith("# example override: python -m getiaction_export "), second
    plugin = PLUGIN_TARGETS[name].rsplit(".", 2)[0]
    if not _plugin_installed(plugin):
        pytest.skip(f"{plugin} is not installed")
    for line in (first, second):
        command = shlex.split(line.split("python -m getiaction_export", 1)[1])
        assert f"hydra/launcher={name.removesuffix('.yaml')}" in command
        # --cfg prints one job's config and refuses -m: keep the first value of each sweep
        overrides = [_first_value(arg) for arg in command if arg != "-m"]
        run = run_cli("--cfg", "hydra", "-p", "hydra.launcher", *overrides, cwd=tmp_path)
        assert run.returncode == 0, f"{line}\n{run.output}"
        assert yaml.safe_load(run.stdout)["_target_"] == PLUGIN_TARGETS[name]


def test_every_launcher_yaml_is_checked_above() -> None:
    from importlib.resources import files

    shipped = files("getiaction_export.conf").joinpath("hydra", "launcher")
    assert sorted(p.name for p in shipped.iterdir() if p.name.endswith(".yaml")) == sorted(PLUGIN_TARGETS)
