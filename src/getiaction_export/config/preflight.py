"""Pre-flight: every job a command would run, composed and validated before Hydra runs anything.

Hydra's own errors are multi-line and come late (an unknown option after the sweep started); here
each job's config (each value of a sweep) is composed and checked against the schemas, inputs
must exist and output folders must be creatable, and the first problem becomes one
:class:`~getiaction.errors.ConfigError` line. It also resolves where the command's results will
land (:func:`job_root`), so the CLI reads them back after Hydra returns, and writes the ``--help``
text without Hydra's cost. Imports no torch.

Example:
    >>> split_args(["-m", "--config-name", "x", "format=onnx"])
    (['-m', '--config-name', 'x'], ['format=onnx'])
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from getiaction.errors import ConfigError
from getiaction_export.config.schemas import GROUPS, policy_name
from getiaction_export.config.validation import accepts_key, option_for, suggest, validate

CONFIG_MODULE = "getiaction_export.conf"
CONFIG_NAME = "config"

# Hydra flags that take a value, and flags that mean "no job runs, only print".
VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c",
               "--package", "-p", "--shell-completion", "-sc", "--experimental-rerun"}
NO_JOB_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc", "--info", "-i"}
PRINT_ONLY_FLAGS = {"--cfg", "-c"}
"""Flags after which Hydra prints the composed config instead of running jobs (validated all the same)."""


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra's flags (with their values) from config overrides."""
    flags: list[str] = []
    overrides: list[str] = []
    iterator = iter(args)
    for arg in iterator:
        name = arg.split("=", 1)[0]
        if arg.startswith("-"):
            flags.append(name)
            if name in VALUE_FLAGS and "=" not in arg:
                flags.append(next(iterator, ""))
            elif name in ("--info", "-i"):
                pass
        else:
            overrides.append(arg)
    return flags, overrides


def flag_value(flags: list[str], *names: str) -> str | None:
    for index, flag in enumerate(flags):
        if flag in names and index + 1 < len(flags):
            return flags[index + 1]
    return None


def _config_source(flags: list[str]) -> tuple[Any, str, str | None]:
    """(initialize context, config name, extra search dir) as the user's flags choose them."""
    from hydra import initialize_config_dir, initialize_config_module

    config_name = flag_value(flags, "--config-name", "-cn") or CONFIG_NAME
    config_path = flag_value(flags, "--config-path", "-cp")
    if config_path:
        return initialize_config_dir(str(Path(config_path).resolve()), version_base="1.3"), config_name, None
    return initialize_config_module(CONFIG_MODULE, version_base="1.3"), config_name, flag_value(
        flags, "--config-dir", "-cd"
    )


def _options(group: str, extra_dir: str | None) -> list[str]:
    """The option names of a config group (YAML files in the packaged tree and --config-dir)."""
    from importlib.resources import files

    names = set()
    folder = files(CONFIG_MODULE)
    for part in group.split("/"):
        folder = folder.joinpath(part)
    if folder.is_dir():
        names |= {p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")}
    if extra_dir and (Path(extra_dir) / group).is_dir():
        names |= {p.stem for p in (Path(extra_dir) / group).glob("*.yaml")}
    return sorted(names)


LAUNCHER_GROUP = "hydra/launcher"
LAUNCHER_PLUGINS = {"joblib": "joblib", "ray": "ray", "submitit_local": "slurm", "submitit_slurm": "slurm"}
"""Launchers that come from Hydra plugins, and the extra of this project that installs each."""


def app_help(overrides: list[str], flags: list[str]) -> str:
    """``--help``: Hydra's app help (groups, then the composed config), without Hydra's cost.

    Hydra lists config groups by re-reading its whole config repository once per group (over a
    second with the launcher plugins installed); the groups here come from the YAML files.
    """
    from hydra import compose

    GlobalHydra.instance().clear()
    context, config_name, extra_dir = _config_source(flags)
    with context:
        try:
            cfg = compose(config_name=config_name, overrides=overrides)
            config = OmegaConf.to_yaml(cfg)
        except Exception as error:  # help must not fail on a bad override: show the defaults' config
            config = f"(cannot compose with {' '.join(overrides)}: {_first_line(error)})\n"
    GlobalHydra.instance().clear()
    groups = "\n".join(f"{group}: {', '.join(_options(group, extra_dir))}" for group in GROUPS)
    return (
        "getiaction-export: export a policy to verified artifacts (torch, onnx, openvino, executorch).\n"
        "Usage: python -m getiaction_export [-m] [group=option ...] [key=value ...]\n\n"
        "== Configuration groups ==\nCompose your configuration from those groups (group=option)\n\n"
        f"{groups}\n\n== Config ==\nOverride anything in the config (foo.bar=value)\n\n{config}\n"
        "Powered by Hydra (https://hydra.cc)\nUse --hydra-help to view Hydra specific help"
    )


def sweep_size(overrides: list[str]) -> int:
    """How many jobs a multirun's overrides make (the product of each sweep's values).

    Example:
        >>> sweep_size(["policy=act,diffusion", "format.precision=fp32,fp16,int8", "rollout=pusht"])
        6
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    size = 1
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            size *= len(list(override.sweep_string_iterator()))
    return size


@dataclass(frozen=True)
class Checked:
    """What the pre-flight found: where the results land, and the first job's composed config."""

    root: str | None
    """The folder the command's results land in (:func:`job_root` of the first job); None when Hydra's runtime
    alone can say (``--config-path`` re-runs)."""
    config: DictConfig | None
    """The first job's config as ``compose`` made it, the ``hydra`` node included (``--cfg job`` prints it)."""


def preflight(overrides: list[str], flags: list[str]) -> str | None:
    """Compose and validate every job the command would run; raise ConfigError on the first bad one.

    Returns the folder the command's results land in (:func:`job_root` of the first job), or
    None when Hydra's runtime alone can say (``--config-path`` re-runs).
    """
    return check_jobs(overrides, flags).root


def check_jobs(overrides: list[str], flags: list[str]) -> Checked:
    """:func:`preflight`, also returning the first job's composed config."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from yaml import YAMLError

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise ConfigError(f"bad override: {_first_line(error)}") from None
    multirun = "-m" in flags or "--multirun" in flags
    GlobalHydra.instance().clear()
    context, config_name, extra_dir = _config_source(flags)
    from_result_dir = flag_value(flags, "--config-path", "-cp") is not None
    search_path = [f"hydra.searchpath=[file://{Path(extra_dir).resolve()}]"] if extra_dir else []

    # Each job's override list: sweeps expanded one value at a time (not the full product).
    values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [str(o.input_line)] for o in parsed]
    with context:
        loader = GlobalHydra.instance().config_loader()
        for override, choices in zip(parsed, values, strict=True):
            key = override.get_key_element()
            if override.is_sweep_override():
                if not multirun:
                    raise ConfigError(
                        f"{override.input_line}: several values are a sweep; add -m (--multirun) to run one job "
                        "per value, or write a list value in brackets ([a,b])"
                    )
                choices[:] = [f"{key}={v}" for v in choices]
            if (key in GROUPS and not from_result_dir) or key == LAUNCHER_GROUP:
                _check_option(key, [c.split("=", 1)[1] for c in choices], loader, extra_dir)
        firsts = [choices[0] for choices in values]
        variants = [firsts] + [
            [*firsts[:i], value, *firsts[i + 1 :]] for i, choices in enumerate(values) for value in choices[1:]
        ]
        root, first = None, None
        for variant in variants:
            try:
                cfg = compose(config_name=config_name, overrides=[*variant, *search_path], return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as error:
                raise ConfigError(_composition_message(error, variant, config_name)) from None
            except YAMLError as error:  # a YAML tag or syntax error in a user's config file
                raise ConfigError(_yaml_message(error, config_name)) from None
            validate(cfg, policy_name(cfg))
            _check_paths(cfg, multirun)
            root = root or job_root(cfg, multirun)
            first = cfg if first is None else first
    GlobalHydra.instance().clear()
    return Checked(root, first)


def _yaml_message(error: Exception, config_name: str) -> str:
    """One line naming the file and line of a YAML error (safe loading refuses Python tags)."""
    mark = getattr(error, "problem_mark", None)
    name = getattr(mark, "name", "") or ""
    where = name if name and not name.startswith("<") else f"{config_name}.yaml"
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None) or _first_line(error)
    return f"config: {where}{line}: refused: {problem}"


def _check_option(group: str, options: list[str], loader: Any, extra_dir: str | None) -> None:
    """Every chosen option of ``group`` must exist (packaged tree, --config-dir, or a Hydra plugin).

    The YAML files are listed first: Hydra's own list (which also knows the plugins' options) copies its
    whole config repository each time it is asked, so it is asked only for an option the files lack.
    """
    files = set(_options(group, extra_dir))
    if all(option in files for option in options):
        return
    valid = sorted(set(loader.get_group_options(group)) | files)
    for option in options:
        if option in valid:
            continue
        if group == LAUNCHER_GROUP and option in LAUNCHER_PLUGINS:
            raise ConfigError(_plugin_hint(option))
        shown = [o for o in valid if not o.startswith("_")]
        raise ConfigError(f"{group}={option}: no such {group}{suggest(option, shown)}; valid: {', '.join(shown)}")


def _plugin_hint(launcher: str) -> str:
    extra = LAUNCHER_PLUGINS.get(launcher, launcher)
    return (
        f"hydra/launcher={launcher} needs its Hydra launcher plugin, which is not installed: "
        f"pip install 'getiaction-export[{extra}]'"
    )


def job_root(cfg: DictConfig, multirun: bool) -> str | None:
    """Where a command's results land: ``output_dir`` when set, else Hydra's run (or sweep) folder.

    The CLI pins Hydra to this folder, so a job's result, artifacts, log and ``.hydra/`` record
    are one folder wherever it is, and the CLI knows where to read the result back.
    """
    if cfg.get("output_dir"):
        return str(cfg.output_dir)
    try:
        value = OmegaConf.select(cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir")
    except OmegaConfBaseException:  # an interpolation only Hydra's runtime can resolve
        return None
    return str(value) if value else None


def _check_paths(cfg: DictConfig, multirun: bool) -> None:
    """Inputs must exist and output folders must be creatable, before Hydra makes any folder."""
    checkpoint = cfg.get("checkpoint")
    if checkpoint and Path(str(checkpoint)).is_dir():
        raise ConfigError(f"checkpoint: {checkpoint} is a directory; give the path of a to_torch checkpoint file")
    if checkpoint and not Path(str(checkpoint)).is_file():
        raise ConfigError(f"checkpoint: {checkpoint} does not exist (give the path of a to_torch checkpoint)")
    job_dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    for key in ("output_dir", job_dir_key):
        try:
            value = OmegaConf.select(cfg, key)
        except OmegaConfBaseException:  # an interpolation only Hydra's runtime can resolve
            continue
        if value:
            _check_creatable(key, Path(str(value)))


def _check_creatable(key: str, folder: Path) -> None:
    """Raise unless ``folder`` can be made: an ancestor is a file, or the nearest one refuses a new folder.

    Permission bits are not enough (root may write anywhere, yet not under ``/proc``): a scratch
    folder is made in the nearest existing ancestor and removed again.
    """
    for ancestor in [folder.absolute(), *folder.absolute().parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ConfigError(f"{key}: cannot create {folder}: {ancestor} is a file, not a folder")
            try:
                os.rmdir(tempfile.mkdtemp(prefix=".getiaction-probe-", dir=ancestor))
            except OSError as error:
                reason = error.strerror or type(error).__name__
                raise ConfigError(f"{key}: cannot create {folder}: {ancestor} is not writable ({reason})") from None
            return


_OVERRIDE_KEY = re.compile(r"Could not override '([^']+)'")
_MISSING_LAUNCHER = re.compile(r"Could not (?:load|find) 'hydra/launcher/([^']+)'")


def _composition_message(error: Exception, variant: list[str], config_name: str) -> str:
    """Hydra's multi-line composition errors, as one line that names the key (and its closest match).

    Hydra refuses to override a key the YAML does not have: a key the schemas allow (an input of
    ``input_sample.inputs``, a field the YAML leaves out) gets the exact override with ``+``; any
    other is unknown, with the closest existing key.
    """
    text = str(error)
    match = _OVERRIDE_KEY.search(text)
    if match and ("not in struct" in text or "To append" in text):
        key = match.group(1)
        line = next((o for o in variant if o.startswith(key + "=")), None)
        composed = _compose_quietly(config_name, [o for o in variant if o is not line])
        parent, missing = _first_missing(composed, key)
        node = OmegaConf.select(composed, parent) if composed is not None and parent else composed
        valid = [str(k) for k in node] if isinstance(node, DictConfig) else []
        dotted = any(name.startswith(f"{missing}.") for name in valid)  # the first level of a dotted name
        hint = suggest(missing, valid) if missing and not dotted else ""
        format_name = OmegaConf.select(composed, "format.name", default=None) if composed is not None else None
        option = option_for(key)
        group = option.split("=", 1)[0] if option else ""
        chosen = OmegaConf.select(composed, f"{group}.name", default=None) if composed is not None and group else None
        if line is not None and option and chosen and option != f"{group}={chosen}":
            others = [o for o in variant if o is not line and not o.startswith(group + "=")] + [option]
            fixed = line if _compose_quietly(config_name, [*others, line]) is not None else "+" + line
            return f"{key}: read only by {option}, not {group}={chosen}; use {option} {shlex.quote(fixed)}"
        if line is not None and accepts_key(key, format_name):
            return f"{key}: not in the config yet{hint}; add '+' in front to add it: {shlex.quote('+' + line)}"
        where = f"{parent}.{missing}" if parent and missing else missing or key
        return f"{where}: unknown key{hint}" + (f"; valid: {', '.join(valid)}" if valid else "")
    if match:
        return f"{match.group(1)}: {_first_line(error, skip=1)}"
    plugin = _MISSING_LAUNCHER.search(text)
    if plugin:
        return _plugin_hint(plugin.group(1))
    return _first_line(error)


def _compose_quietly(config_name: str, overrides: list[str]) -> DictConfig | None:
    from hydra import compose

    try:
        return compose(config_name=config_name, overrides=overrides)
    except Exception:
        return None


def _first_missing(cfg: DictConfig | None, key: str) -> tuple[str, str]:
    """``(the deepest part of key that cfg has, the next part)``; ``(key, "")`` when cfg has it all.

    Example:
        >>> _first_missing(OmegaConf.create({"input_sample": {"inputs": {}}}), "input_sample.inputs.state.shape")
        ('input_sample.inputs', 'state')
    """
    parts = key.split(".")
    if cfg is None:
        return ".".join(parts[:-1]), parts[-1]
    node: Any = cfg
    for index, part in enumerate(parts):
        if not isinstance(node, DictConfig) or part not in node:
            return ".".join(parts[:index]), part
        try:
            node = node[part]
        except OmegaConfBaseException:  # a leaf whose interpolation does not resolve: nothing below it
            node = None
    return key, ""


def _first_line(error: Exception, skip: int = 0) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return " ".join(lines[skip : skip + 1] or lines[:1] or [type(error).__name__])
