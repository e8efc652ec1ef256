"""What a missing optional package says: the pip command, or scripts/run's own way to install the extra."""

from __future__ import annotations

import pytest

from getiaction.errors import ConfigError
from getiaction.export.extras import INSTALL_VARIABLE, install_command, missing_message, require


def test_a_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INSTALL_VARIABLE, raising=False)
    assert install_command("nncf") == "pip install 'getiaction-export[int8]'"
    assert missing_message("format=openvino", "openvino") == (
        "format=openvino needs the openvino package: pip install 'getiaction-export[openvino]'")
    assert install_command("my_robot_sdk") == "pip install my_robot_sdk"  # not one of ours


def test_under_scripts_run_it_names_the_command_that_installs_the_extra_into_its_venv(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(INSTALL_VARIABLE, "GETIACTION_EXTRAS={extra} scripts/run ...")
    assert missing_message("rollout=pusht", "gym_pusht") == (
        "rollout=pusht needs the gym_pusht package: GETIACTION_EXTRAS=sim scripts/run ...")
    with pytest.raises(ConfigError, match=r"^format=all needs the no_such_module package: pip install no_such"):
        require("no_such_module", "format=all")
