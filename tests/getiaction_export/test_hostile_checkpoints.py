"""Hostile checkpoints and configs: refused with one clear line, and no code of theirs ever runs.

Every payload tries to leave a file in a marker folder: ``os.system("touch ...")``, a pickled
object whose ``__reduce__`` calls ``os.system``, a YAML ``!!python/object/apply`` tag, and class
paths naming ``tests.getiaction_export.bad_modules.make_marker``, a factory that writes a marker
when called (and, with ``BAD_MODULES_IMPORT_MARKER`` set, its module writes one when imported).
After each attempt the marker folder must be empty. A control run that trusts ``tests`` shows the
markers do appear when the code is allowed to run.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from getiaction.errors import CheckpointError
from getiaction.export import load_policy
from getiaction.policies import Dummy, DummyConfig
from tests.getiaction_export.conftest import read_json, run_cli

REPO = Path(__file__).resolve().parents[2]
FACTORY = "tests.getiaction_export.bad_modules.make_marker"


class _SystemCall:
    """Pickles as ``os.system(command)``: unpickling it runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


@dataclass(frozen=True)
class Payload:
    name: str
    fragment: str
    """What the error line must name."""


PAYLOADS = [
    Payload("header_os_system", "os.system"),
    Payload("header_factory", FACTORY),
    Payload("config_class_path_os_system", "os.system"),
    Payload("config_class_path_factory", FACTORY),
    Payload("config_yaml_tag", "YAML"),
    Payload("pickle_reduce", "posix.system"),
    Payload("pickle_legacy_file", "posix.system"),
]


def _write_payloads(folder: Path, markers: Path) -> None:
    """One checkpoint file per payload in ``folder``; each would touch a file in ``markers``."""
    torch.manual_seed(0)
    header = torch.load(Dummy(config=DummyConfig()).to_torch(folder / "good.pt"), weights_only=True)
    touch = f"touch {markers}/ran"

    def save(name: str, **changes: object) -> None:
        buffer = io.BytesIO()
        torch.save({**header, **changes}, buffer)
        (folder / f"{name}.pt").write_bytes(buffer.getvalue())

    save("header_os_system", policy_class_path="os.system")
    save("header_factory", policy_class_path=FACTORY)
    save("config_class_path_os_system", model_config=f"class_path: os.system\ninit_args:\n  command: {touch}\n")
    save("config_class_path_factory", model_config=f"class_path: {FACTORY}\ninit_args: {{}}\n")
    save("config_yaml_tag", model_config=f"!!python/object/apply:os.system ['{touch}']\n")
    save("pickle_reduce", model_config=_SystemCall(touch))
    # Not a torch zip at all: a bare pickle (protocol 2, as torch.save writes) of a checkpoint-like dict.
    legacy = {"format": "getiaction.checkpoint", "model_config": _SystemCall(touch)}
    (folder / "pickle_legacy_file.pt").write_bytes(pickle.dumps(legacy, protocol=2))


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict[str, str]]:
    """(folder with the payloads, marker folder, env for subprocesses that exposes every marker)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    _write_payloads(tmp_path, markers)
    monkeypatch.setenv("BAD_MODULES_CALL_MARKER", str(markers / "factory_called"))
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "BAD_MODULES_IMPORT_MARKER": str(markers / "module_imported"),
        "BAD_MODULES_CALL_MARKER": str(markers / "factory_called"),
    }
    return tmp_path, markers, env


def _ran(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.name for p in PAYLOADS])
def test_load_policy_refuses_without_running_anything(payload: Payload, hostile) -> None:
    folder, markers, _ = hostile
    with pytest.raises(CheckpointError) as refused:
        load_policy(folder / f"{payload.name}.pt")
    message = str(refused.value)
    assert "\n" not in message and payload.fragment in message, message
    assert f"{payload.name}.pt" in message
    assert _ran(markers) == []


def test_cli_refuses_every_hostile_checkpoint_with_exit_2(hostile) -> None:
    folder, markers, env = hostile
    names = ",".join(f"{p.name}.pt" for p in PAYLOADS)
    run = run_cli("-m", f"checkpoint={names}", "hydra.sweep.dir=sweep", cwd=folder, env=env)
    assert run.returncode == 2, run.output
    assert "Traceback" not in run.output
    failed_lines = [line for line in run.output.splitlines() if "✗" in line]
    for payload in PAYLOADS:
        job = folder / "sweep" / f"checkpoint={payload.name}.pt"
        result = read_json(job / "result.json")
        assert (result["status"], result["exit_code"], result["error_kind"], result["stage"]) == (
            "failed", 2, "config", "build"), result["error"]
        assert payload.fragment in result["error"] and "\n" not in result["error"]
        assert any(payload.fragment in line and f"{payload.name}.pt" in line for line in failed_lines), payload
        assert sorted(p.name for p in job.iterdir() if p.suffix in (".onnx", ".pt")) == []
    assert _ran(markers) == []


def test_class_path_in_the_app_config_is_refused_too(hostile) -> None:
    folder, markers, env = hostile
    run = run_cli("+policy.config.class_path=os.system", f"+policy.config.init_args.command=touch {markers}/ran",
                  "hydra.run.dir=job", cwd=folder, env=env)
    assert run.returncode == 2, run.output
    assert any("os.system" in line and "allowed" in line for line in run.output.splitlines() if "✗" in line)
    assert "Traceback" not in run.output and _ran(markers) == []


def test_yaml_tag_in_a_user_config_is_refused(hostile) -> None:
    folder, markers, env = hostile
    user = folder / "user_conf"
    user.mkdir()
    (user / "evil.yaml").write_text(
        f'policy:\n  _target_: !!python/object/apply:os.system ["touch {markers}/ran"]\n'
        "input_sample: {name: from_policy}\nformat: {name: onnx}\n"
    )
    run = run_cli("--config-path", str(user), "--config-name", "evil", "hydra.run.dir=job", cwd=folder, env=env)
    assert _ran(markers) == []
    assert "Traceback" not in run.output, run.output
    assert run.returncode == 2, run.output
    lines = [line for line in run.output.splitlines() if line.startswith("error:")]
    assert any("evil.yaml" in line and "python/object/apply" in line for line in lines), run.output


def test_control_the_markers_do_catch_code_that_runs(hostile) -> None:
    """Trusting ``tests`` lets the factory's module be imported: the import marker appears."""
    folder, markers, env = hostile
    run = run_cli("checkpoint=header_factory.pt", "allowed_packages=[getiaction,tests]", "hydra.run.dir=job",
                  cwd=folder, env=env)
    assert "module_imported" in _ran(markers), run.output
