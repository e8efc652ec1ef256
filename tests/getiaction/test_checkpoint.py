"""PyTorch checkpoints: safe to load, byte-reproducible, round-trip to identical policies, and
one clear CheckpointError for every file that is missing, broken, foreign or hostile."""

from __future__ import annotations

import importlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import getiaction
from getiaction.errors import CheckpointError
from getiaction.export import load_checkpoint, load_policy
from getiaction.export.atomic import atomic_write_bytes
from getiaction.export.serialization import to_plain, to_yaml
from getiaction.policies import Dummy, DummyConfig

DUMMY_CLASS_PATH = "getiaction.policies.dummy.policy.Dummy"
SENTINEL_MODULE = "getiaction_test_sentinel_never_imported"
ALLOWED = ("getiaction", __name__.split(".")[0])


class Payload:
    """Unpickling this would run ``touch <marker>`` via os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def policy() -> Dummy:
    torch.manual_seed(7)
    return Dummy(config=DummyConfig(action_shape=(3, 2), hidden_dim=16))


@pytest.fixture(scope="module")
def checkpoint(policy: Dummy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "policy.pt"
    assert policy.to_torch(path) == path
    return path


@pytest.fixture(scope="module")
def raw(checkpoint: Path) -> dict[str, Any]:
    return torch.load(checkpoint, weights_only=True)


def assert_identical(restored: Dummy, policy: Dummy) -> None:
    assert type(restored) is Dummy
    assert restored.config == policy.config
    original, loaded = policy.state_dict(), restored.state_dict()
    assert list(loaded) == list(original)
    for name, tensor in original.items():
        assert torch.equal(loaded[name], tensor), name
    batch = {"state": torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(3))}
    with torch.no_grad():
        assert torch.equal(restored(batch), policy(batch))


def save_dict(path: Path, data: Any) -> Path:
    torch.save(data, path)
    return path


# --------------------------------------------------------------------------------------------
# the file
# --------------------------------------------------------------------------------------------
def test_checkpoint_is_plain_data_with_header(raw: dict[str, Any], policy: Dummy) -> None:
    assert list(raw) == [
        "format",
        "format_version",
        "getiaction_version",
        "policy_class_path",
        "state_dict",
        "model_config",
    ]
    assert raw["format"] == "getiaction.checkpoint"
    assert raw["format_version"] == 1
    assert raw["getiaction_version"] == getiaction.__version__
    assert raw["policy_class_path"] == DUMMY_CLASS_PATH
    assert yaml.safe_load(raw["model_config"]) == to_plain(policy.config)
    assert yaml.safe_load(raw["model_config"])["init_args"] == {"action_shape": [3, 2], "hidden_dim": 16}
    assert list(raw["state_dict"]) == list(policy.state_dict())
    for name, tensor in policy.state_dict().items():
        assert torch.equal(raw["state_dict"][name], tensor)


@pytest.mark.parametrize("loader", [Dummy.from_torch, load_policy], ids=["Dummy.from_torch", "load_policy"])
def test_load_back_gives_identical_policy(loader: Callable[[Path], Any], checkpoint: Path, policy: Dummy) -> None:
    restored = loader(checkpoint)
    assert_identical(restored, policy)
    assert restored.training is False


def test_same_policy_gives_same_bytes_under_any_name(policy: Dummy, checkpoint: Path, tmp_path: Path) -> None:
    first = policy.to_torch(tmp_path / "a.pt").read_bytes()
    second = policy.to_torch(tmp_path / "sub" / "b_other_name.pt").read_bytes()
    assert first == second == checkpoint.read_bytes()
    other = Dummy(config=DummyConfig(action_shape=(3, 2), hidden_dim=16))
    assert other.to_torch(tmp_path / "c.pt").read_bytes() != first  # different weights, different bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "c.pt", "sub"]


def test_overwrite_replaces_like_torch_save_and_keeps_mode(policy: Dummy, tmp_path: Path) -> None:
    path = tmp_path / "policy.pt"
    policy.to_torch(path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
    path.chmod(0o640)
    path.write_bytes(b"old contents")
    policy.to_torch(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert_identical(load_policy(path), policy)
    assert [p.name for p in tmp_path.iterdir()] == ["policy.pt"]


# --------------------------------------------------------------------------------------------
# checkpoints of earlier releases: flat state dict + "model_config", no header
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config_form", ["class_path", "plain_mapping"])
def test_legacy_checkpoint_loads_with_the_class_named(
    config_form: str, raw: dict[str, Any], policy: Dummy, tmp_path: Path
) -> None:
    if config_form == "class_path":
        config_yaml = raw["model_config"]
    else:
        config_yaml = yaml.safe_dump({"action_shape": [3, 2], "hidden_dim": 16})
    path = save_dict(tmp_path / "legacy.pt", {**raw["state_dict"], "model_config": config_yaml})
    assert_identical(Dummy.from_torch(path), policy)
    with pytest.raises(CheckpointError) as caught:
        load_policy(path)
    assert str(caught.value) == (
        f"checkpoint {path}: written by an earlier release and names no policy class; "
        "load it with the class, e.g. Dummy.from_torch(path)"
    )


# --------------------------------------------------------------------------------------------
# bad files: one clear CheckpointError each, from both loaders
# --------------------------------------------------------------------------------------------
def _missing(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    return folder / "missing.pt"


def _empty(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    (folder / "empty.pt").write_bytes(b"")
    return folder / "empty.pt"


def _truncated(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    data = checkpoint.read_bytes()
    (folder / "half.pt").write_bytes(data[: len(data) // 2])
    return folder / "half.pt"


def _random(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    noise = torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    (folder / "random.pt").write_bytes(noise.numpy().tobytes())
    return folder / "random.pt"


def _text(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    (folder / "notes.pt").write_text("this is not a checkpoint\n")
    return folder / "notes.pt"


def _foreign(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    other = {"model": {"weight": torch.zeros(2)}, "optimizer": {"lr": 0.1}, "epoch": 3}
    return save_dict(folder / "foreign.pt", other)


def _foreign_tensor(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    return save_dict(folder / "tensor.pt", torch.zeros(3))


def _newer(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    return save_dict(folder / "newer.pt", {**raw, "format_version": 2})


def _other_format(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    return save_dict(folder / "other_format.pt", {**raw, "format": "someone.else"})


def _wrong_weights(folder: Path, raw: dict[str, Any], checkpoint: Path) -> Path:
    config = raw["model_config"].replace("hidden_dim: 16", "hidden_dim: 8")
    return save_dict(folder / "wrong.pt", {**raw, "model_config": config})


BAD_FILES = {
    "missing": (_missing, "no such file"),
    "empty": (_empty, "file is empty"),
    "truncated": (_truncated, "not a readable torch checkpoint (truncated or corrupt file?)"),
    "random_bytes": (_random, "not a readable torch checkpoint (truncated or corrupt file?)"),
    "text": (_text, "not a readable torch checkpoint (truncated or corrupt file?)"),
    "foreign_dict": (_foreign, "not a getiaction checkpoint (no 'model_config' entry; keys: ['epoch', 'model',"),
    "foreign_tensor": (_foreign_tensor, "not a getiaction checkpoint (top level is Tensor, not a dict)"),
    "newer_format": (_newer, "format_version 2 is newer than this getiaction reads (1); upgrade"),
    "other_format": (_other_format, "unknown format 'someone.else'"),
    "wrong_weights": (_wrong_weights, "weights do not fit Dummy: Error(s) in loading state_dict"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("loader", [Dummy.from_torch, load_policy], ids=["Dummy.from_torch", "load_policy"])
def test_bad_checkpoint_gives_one_clear_error(
    case: str, loader: Callable[[Path], Any], raw: dict[str, Any], checkpoint: Path, tmp_path: Path
) -> None:
    make, fragment = BAD_FILES[case]
    path = make(tmp_path, raw, checkpoint)
    with pytest.raises(CheckpointError) as caught:
        loader(path)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {path}: ")
    assert fragment in message
    assert "\n" not in message


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@settings(max_examples=60, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"PK\x03\x04", b"\x80\x02\x8a\x0a"]),
    noise=st.binary(min_size=1, max_size=200),
)
def test_any_garbage_gives_checkpoint_error(prefix: bytes, noise: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "garbage.pt"
        path.write_bytes(prefix + noise)
        with pytest.raises(CheckpointError, match=r"^checkpoint .*garbage\.pt: "):
            load_checkpoint(path)


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for name, data in {
        "top.pt": Payload(marker),
        "nested.pt": {"state_dict": {"w": torch.zeros(1)}, "model_config": "{}", "x": Payload(marker)},
    }.items():
        path = save_dict(tmp_path / name, data)
        for loader in (load_policy, Dummy.from_torch):
            with pytest.raises(CheckpointError) as caught:
                loader(path)
            assert str(caught.value) == (
                f"checkpoint {path}: refused: it holds pickled Python objects ({os.name}.system), "
                "which safe loading refuses"
            )
    assert not marker.exists()


@pytest.mark.parametrize("class_path", ["os.system", f"{SENTINEL_MODULE}.Policy", "getiactionx.Policy"])
def test_class_outside_allow_list_is_refused_before_any_import(
    class_path: str, raw: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_dict(tmp_path / "hostile.pt", {**raw, "policy_class_path": class_path})
    imported: list[str] = []
    real_import = importlib.import_module

    def recording_import(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", recording_import)
    with pytest.raises(CheckpointError) as caught:
        load_policy(path)
    assert str(caught.value) == (
        f"checkpoint {path}: policy_class_path: {class_path!r} is outside the allowed packages "
        "['getiaction']; add its package to allowed_packages if you trust it"
    )
    assert imported == []
    assert SENTINEL_MODULE not in sys.modules


def test_config_class_outside_allow_list_is_refused(raw: dict[str, Any], tmp_path: Path) -> None:
    hostile = {"class_path": "os.system", "init_args": {}}
    path = save_dict(tmp_path / "hostile_config.pt", {**raw, "model_config": yaml.safe_dump(hostile)})
    for loader in (load_policy, Dummy.from_torch):
        with pytest.raises(CheckpointError, match=r"config\.class_path: 'os\.system' is outside the allowed"):
            loader(path)


@dataclass
class OtherConfig:
    width: int = 3


def test_another_policys_checkpoint_is_refused_by_the_wrong_class(raw: dict[str, Any], tmp_path: Path) -> None:
    other = "getiaction.policies.other.policy.Other"
    data = {**raw, "policy_class_path": other, "model_config": to_yaml(OtherConfig())}
    path = save_dict(tmp_path / "other.pt", data)
    with pytest.raises(CheckpointError) as caught:
        Dummy.from_torch(path, allowed_packages=ALLOWED)
    assert str(caught.value) == (
        f"checkpoint {path}: cannot build Dummy from its config (the checkpoint holds a {other}): "
        "'OtherConfig' object has no attribute 'action_shape'"
    )


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------
def test_atomic_write_leaves_nothing_on_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, assert_no_leftovers: Callable[..., None]
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    target = tmp_path / "model.bin"
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new")
    assert_no_leftovers(target, None)

    target.write_bytes(b"previous")
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new")
    assert_no_leftovers(target, b"previous")

    monkeypatch.undo()
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "text, not bytes")  # type: ignore[arg-type]
    assert_no_leftovers(target, b"previous")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_to_torch_into_a_file_parent_fails_cleanly(policy: Dummy, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(getiaction.errors.ExportError, match="a parent of it is a file, not a folder"):
        policy.to_torch(tmp_path / "file" / "policy.pt")
