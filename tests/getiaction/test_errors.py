"""Every project error knows its kind, its exit code and its one-line text; library fixes from the redesign."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from getiaction.errors import (
    CheckpointError,
    ConfigError,
    ExitCode,
    ExportError,
    GetiActionError,
    MissingSampleError,
    OpsetError,
    VerificationError,
)
from getiaction.export import Export, load_checkpoint, load_policy
from getiaction.policies import Dummy


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [(ConfigError, "config", 2), (CheckpointError, "config", 2), (ExportError, "export", 3),
     (OpsetError, "export", 3), (VerificationError, "parity", 4), (GetiActionError, "internal", 1)],
)
def test_each_error_knows_its_kind_and_exit_code(error: type[GetiActionError], kind: str, code: int) -> None:
    assert (error.kind, int(error.exit_code)) == (kind, code)
    assert error("a\n  b   c").one_line() == "a b c"


def test_exit_codes_are_one_table() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0, "INTERNAL": 1, "CONFIG": 2, "EXPORT": 3, "PARITY": 4, "NOT_REPRODUCED": 5, "NOT_DEPLOYABLE": 6,
        "PARTIAL": 7, "INTERRUPTED": 130}


class Bare(nn.Module):
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["state"] * 2


class Host(Export):
    """Not an nn.Module: it only holds the module it exports."""

    def __init__(self) -> None:
        self.model = Bare()


def test_missing_sample_is_a_config_error_and_a_runtime_error(tmp_path: Path) -> None:
    for caught in (RuntimeError, ConfigError):
        with pytest.raises(caught, match="input_sample: Host has no sample_input"):
            Host().to_onnx(tmp_path / "m.onnx")
    with pytest.raises(MissingSampleError):
        Host().to_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_to_torch_accepts_the_hosts_to_onnx_accepts(tmp_path: Path) -> None:
    host = Host()
    host.to_onnx(tmp_path / "m.onnx", input_sample={"state": torch.ones(2, 3)})
    path = host.to_torch(tmp_path / "m.pt")
    state = load_checkpoint(path).state_dict
    assert state == {}  # Bare has no weights; the file is a loadable checkpoint of the hosted module
    assert (tmp_path / "m.onnx").is_file()


@pytest.mark.parametrize("missing", ["state_dict", "model_config", "policy_class_path"])
def test_a_checkpoint_missing_an_entry_names_it(missing: str, tmp_path: Path) -> None:
    path = Dummy().to_torch(tmp_path / "d.pt")
    raw = torch.load(path, weights_only=True)
    del raw[missing]
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == f"checkpoint {path}: malformed: entry {missing!r} is missing"


def test_long_weight_mismatch_messages_are_cut_at_a_word(tmp_path: Path) -> None:
    path = Dummy().to_torch(tmp_path / "d.pt")
    raw = torch.load(path, weights_only=True)
    raw["state_dict"] = {f"model.some_long_parameter_name_{i}.weight": torch.zeros(1) for i in range(20)}
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as caught:
        load_policy(path)
    message = str(caught.value)
    summary = message.split("weights do not fit Dummy: ", 1)[1]
    assert summary.endswith(" ...") and len(summary) <= 200
    with pytest.raises(RuntimeError) as original:
        Dummy().load_state_dict(raw["state_dict"], strict=True)
    full, kept = " ".join(str(original.value).split()), summary.removesuffix(" ...")
    assert full.startswith(kept) and full[len(kept)] == " "  # cut between two words, not inside one
