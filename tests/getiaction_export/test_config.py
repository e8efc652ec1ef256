"""Config composition and validation, in-process (no torch needed on this path)."""

from __future__ import annotations

import dataclasses
import enum
import itertools
import subprocess
import sys
from importlib.resources import files
from typing import Any

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from getiaction.errors import ConfigError
from getiaction_export.config.preflight import CONFIG_MODULE, preflight
from getiaction_export.config.schemas import (
    FORMAT_SCHEMAS,
    GROUPS,
    InputSampleSchema,
    OnnxFormatSchema,
    RolloutSchema,
    policy_name,
)
from getiaction_export.config.validation import validate

CONF = files(CONFIG_MODULE)


def options(group: str) -> list[str]:
    folder = files(CONFIG_MODULE).joinpath(group)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def test_every_yaml_starts_with_its_launch_command_and_an_example_override() -> None:
    root = files(CONFIG_MODULE)
    paths = [root.joinpath("config.yaml")] + [root.joinpath(g, f"{o}.yaml") for g in GROUPS for o in options(g)]
    for path in paths:
        lines = path.read_text().splitlines()
        assert lines[0].startswith("# python -m getiaction_export"), path
        assert lines[1].startswith("# example override:"), path


def combinations() -> list[tuple[str, ...]]:
    """Every option of every group with every other; a task (rollout) with each policy only (it reads no other)."""
    others = [g for g in GROUPS if g != "rollout"]
    combos = [(*combo, "none") for combo in itertools.product(*(options(g) for g in others))]
    first = {g: options(g)[0] for g in others}
    combos += [(*(policy if g == "policy" else first[g] for g in others), task)
               for policy in options("policy") for task in options("rollout") if task != "none"]
    assert GROUPS[-1] == "rollout"
    return combos


@pytest.mark.parametrize("combo", combinations(), ids="-".join)
def test_every_option_combination_composes_and_validates(combo: tuple[str, ...]) -> None:
    overrides = [f"{group}={option}" for group, option in zip(GROUPS, combo, strict=True)]
    if "random" in combo:  # a random sample needs its inputs spelled out
        overrides.append("+input_sample.inputs.state.shape=[1,7]")
    if "file" in combo:
        overrides.append("input_sample.path=sample.npz")
    if "module" in combo:
        overrides.append("policy._target_=getiaction.policies.Dummy")
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    config = validate(cfg, policy_name(cfg))
    assert config.format.name == combo[GROUPS.index("format")]
    assert config.input_sample.name == combo[GROUPS.index("input_sample")]


def test_validation_reports_every_error_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        preflight(["format.opset_version=abc", "format.atol=x", "input_sample.seed=1.5"], [])
    message = str(caught.value)
    assert message.startswith("3 config errors:")
    assert "format.opset_version" in message and "format.atol" in message and "input_sample.seed" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("policy=dumy", "policy=dumy: no such policy (did you mean 'dummy'?)"),
        ("format=onx", "format=onx: no such format (did you mean 'onnx'?)"),
        ("input_sample=random_", "did you mean 'random'?"),
        ("format.opset=14", "format.opset: unknown key (did you mean 'opset_version'?)"),
        ("format.opset_version=abc", "format.opset_version: 'abc' is not a valid int"),
        ("format.dynamic_batch=maybe", "format.dynamic_batch: 'maybe' is not a valid bool"),
        ("format.exporter=fast", "format.exporter: 'fast' is not valid; use auto, dynamo or torchscript"),
        ("policy._target_=???", "policy._target_: missing value"),
        ("checkpoint=/no/such/file.pt", "checkpoint: /no/such/file.pt does not exist"),
        ("format.opset_version=[14", "bad override"),
    ],
)
def test_bad_config_gives_one_line_naming_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        preflight([override], [])
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_sweep_values_are_all_checked_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match=r"format\.opset_version: 'x' is not a valid int"):
        preflight(["format.opset_version=14,x"], ["-m"])
    with pytest.raises(ConfigError, match="policy=nope: no such policy"):
        preflight(["policy=dummy,nope"], ["-m"])


@pytest.mark.parametrize("flag", ["--cfg", "--help"])
def test_config_only_commands_do_not_import_torch(flag: str) -> None:
    args = [flag, "job"] if flag == "--cfg" else [flag]
    code = (
        f"import sys; sys.argv = ['getiaction-export', *{args!r}]\n"
        "from getiaction_export.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted({'torch', 'onnx', 'onnxruntime', 'matplotlib', 'numpy'} & set(sys.modules))\n"
        "assert not heavy, f'imported {heavy}'\n"
        "print('NO-TORCH-OK')\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "NO-TORCH-OK" in completed.stdout, completed.stderr
    assert "opset_version: 18" in completed.stdout


HYDRA_PRINTS = (
    "import sys\n"
    "from getiaction_export.cli import _hydra_entry\n"
    "from getiaction_export.config.schemas import register_schemas\n"
    "register_schemas()\n"
    "sys.argv = ['getiaction-export', '--cfg', 'job', *sys.argv[1:]]\n"
    "_hydra_entry()\n"
)


@pytest.mark.parametrize("overrides", [(), ("policy=act", "format=openvino", "format.precision=int8"),
                                       ("format=all", "input_sample=random", "+input_sample.inputs.state.shape=[1,7]"),
                                       ("rollout=pusht", "output_dir=/tmp/out dir")])
def test_cfg_job_prints_what_hydra_prints(overrides: tuple[str, ...]) -> None:
    """``--cfg job`` is printed from the pre-flight's composition (Hydra would compose twice more): the same text."""
    ours = subprocess.run([sys.executable, "-m", "getiaction_export", "--cfg", "job", *overrides],
                          capture_output=True, text=True, timeout=120)
    hydra = subprocess.run([sys.executable, "-c", HYDRA_PRINTS, *overrides], capture_output=True, text=True,
                           timeout=120)
    assert ours.returncode == hydra.returncode == 0, ours.stderr + hydra.stderr
    assert ours.stdout == hydra.stdout and ours.stdout.startswith("policy:")


def test_onnx_schema_defaults_match_the_shipped_yaml() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="config")
    assert validate(cfg, "dummy").format == OnnxFormatSchema()


# What an option of a group sets on purpose (it is what makes it that option); every other value a YAML file sets
# must be the schema's default, so a default is declared once (config.py) and cannot drift.
OPTION_VALUES = {("input_sample", "file"): {"name", "path"}, ("input_sample", "random"): {"name"},
                 ("rollout", "pusht"): {"name", "adapter"}}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


CHECKED_GROUPS = ("format", "input_sample", "rollout")


@pytest.mark.parametrize(("group", "option"), [(group, name) for group in CHECKED_GROUPS for name in options(group)])
def test_every_value_a_group_yaml_sets_is_its_schema_default(group: str, option: str) -> None:
    written = OmegaConf.to_container(OmegaConf.load(CONF.joinpath(group, f"{option}.yaml")))
    assert isinstance(written, dict)
    schema = {"format": FORMAT_SCHEMAS.get(str(written.get("name"))), "input_sample": InputSampleSchema,
              "rollout": RolloutSchema}[group]
    assert schema is not None, f"conf/{group}/{option}.yaml: name {written.get('name')!r} has no schema"
    defaults = _plain(schema())
    unknown = sorted(set(written) - set(defaults))
    assert unknown == [], f"conf/{group}/{option}.yaml sets {unknown}, which {schema.__name__} does not declare"
    drifted = {key: (value, defaults[key]) for key, value in written.items()
               if key not in OPTION_VALUES.get((group, option), set()) and value != defaults[key]}
    assert drifted == {}, f"conf/{group}/{option}.yaml differs from {schema.__name__}'s defaults: {drifted}"
