"""The command line: ``python -m getiaction_export [-m] [overrides...]``.

The only ``@hydra.main`` of the project, kept thin: before Hydra runs, a pre-flight composes
every job's config (each value of a sweep) and validates it, so bad input gives one line and
exit code 2 instead of Hydra's multi-line errors; Hydra then runs the jobs; each job runs the
Hydra-free :class:`~getiaction_export.pipeline.ExportPipeline` and records its own result; the
process exit code is set after Hydra returns (``sys.exit`` inside a job would abort a sweep).

Exit codes: 0 ok; 1 internal error; 2 config/input error; 3 export error; 4 parity failure;
130 interrupted (Ctrl-C or SIGTERM).
A sweep exits with the first failed job's code.

This module imports no torch: ``--help``, ``--cfg job`` and ``--info`` stay fast.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from getiaction.errors import ConfigError
from getiaction_export import interrupts, summary
from getiaction_export.config import GROUPS, register_schemas, suggest, validate

CONFIG_MODULE = "getiaction_export.conf"
CONFIG_NAME = "config"
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

_job_exit_codes: list[int] = []

# Hydra flags that take a value, and flags that mean "no job runs, only print".
_VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c",
                "--package", "-p", "--shell-completion", "-sc", "--experimental-rerun"}
_NO_JOB_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc", "--info", "-i"}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m getiaction_export`` and the ``getiaction-export`` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    register_schemas()
    flags, overrides = _split_args(args)
    if {"--help", "-h"} & set(flags):
        print(app_help(overrides, flags))
        sys.exit(0)
    if not _NO_JOB_FLAGS & set(flags):
        try:
            preflight(overrides, flags)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
    _job_exit_codes.clear()
    summary.last_exit_code = None
    sys.argv = [sys.argv[0], *args]
    interrupts.install()  # Ctrl-C and SIGTERM: clean up, record, exit 130
    try:
        _hydra_entry()
    except KeyboardInterrupt:
        print("interrupted: artifacts under their final names are complete; see result.json", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    codes = _job_exit_codes if summary.last_exit_code is None else [summary.last_exit_code]
    failed = [code for code in codes if code]
    sys.exit(failed[0] if failed else 0)


@hydra.main(version_base="1.3", config_path="pkg://" + CONFIG_MODULE, config_name=CONFIG_NAME)
def _hydra_entry(cfg: DictConfig) -> dict[str, Any]:
    return run_job(cfg)


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job: run the config into the job folder, record the exit code; returns plain data."""
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    job = {"num": _job_num(hydra_cfg), "override_dirname": hydra_cfg.job.override_dirname,
           "overrides": list(hydra_cfg.overrides.task)}
    result = run_config(cfg, out_dir, job)
    _job_exit_codes.append(int(result["exit_code"]))
    return {"status": result["status"], "exit_code": result["exit_code"], "output_dir": str(out_dir)}


def run_config(cfg: DictConfig, out_dir: Path, job: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate a composed config and run the pipeline into ``out_dir``; return the result dict."""
    import logging

    from getiaction_export.pipeline import EXIT_CONFIG as CONFIG_CODE
    from getiaction_export.pipeline import ExportPipeline, one_line
    from getiaction_export.stages.report import provenance, sha256_of, write_result

    try:
        config = validate(cfg, policy_name=policy_name(cfg))
    except ConfigError as error:  # normally caught by the pre-flight; kept for launchers that bypass it
        logging.getLogger("getiaction_export").error("[config] ✗ %s", one_line(error))
        failed = {"status": "failed", "error": one_line(error), "error_kind": "config",
                  "exit_code": CONFIG_CODE, "stage": "config", "job": job}
        write_result(out_dir, failed)
        return failed
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    checkpoint = config.checkpoint
    checkpoint_sha = sha256_of(checkpoint) if checkpoint and Path(checkpoint).is_file() else None
    identity = provenance({str(k): v for k, v in resolved.items()}, checkpoint_sha)
    pipeline = ExportPipeline(config, out_dir, provenance=identity)
    pipeline.result["job"] = job
    return pipeline.run()


def _job_num(hydra_cfg: Any) -> int:
    try:
        return int(hydra_cfg.job.num)
    except MissingMandatoryValue:  # single runs have no job number
        return 0


def policy_name(cfg: DictConfig) -> str:
    """The artifact stem: the checkpoint's file name, or the policy class/factory name, lower-cased."""
    if cfg.get("checkpoint"):
        return Path(str(cfg.checkpoint)).stem
    target = str(OmegaConf.select(cfg, "policy._target_", default="policy") or "policy")
    return target.rsplit(".", 1)[-1].lower()


# --------------------------------------------------------------------------------------------
# pre-flight
# --------------------------------------------------------------------------------------------
def _split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra's flags (with their values) from config overrides."""
    flags: list[str] = []
    overrides: list[str] = []
    iterator = iter(args)
    for arg in iterator:
        name = arg.split("=", 1)[0]
        if arg.startswith("-"):
            flags.append(name)
            if name in _VALUE_FLAGS and "=" not in arg:
                flags.append(next(iterator, ""))
            elif name in ("--info", "-i"):
                pass
        else:
            overrides.append(arg)
    return flags, overrides


def _flag_value(flags: list[str], *names: str) -> str | None:
    for index, flag in enumerate(flags):
        if flag in names and index + 1 < len(flags):
            return flags[index + 1]
    return None


def _config_source(flags: list[str]) -> tuple[Any, str, str | None]:
    """(initialize context, config name, extra search dir) as the user's flags choose them."""
    from hydra import initialize_config_dir, initialize_config_module

    config_name = _flag_value(flags, "--config-name", "-cn") or CONFIG_NAME
    config_path = _flag_value(flags, "--config-path", "-cp")
    if config_path:
        return initialize_config_dir(str(Path(config_path).resolve()), version_base="1.3"), config_name, None
    return initialize_config_module(CONFIG_MODULE, version_base="1.3"), config_name, _flag_value(
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
        "getiaction-export: export a policy to verified artifacts (torch, onnx, openvino).\n"
        "Usage: python -m getiaction_export [-m] [group=option ...] [key=value ...]\n\n"
        "== Configuration groups ==\nCompose your configuration from those groups (group=option)\n\n"
        f"{groups}\n\n== Config ==\nOverride anything in the config (foo.bar=value)\n\n{config}\n"
        "Powered by Hydra (https://hydra.cc)\nUse --hydra-help to view Hydra specific help"
    )


def preflight(overrides: list[str], flags: list[str]) -> None:
    """Compose and validate every job the command would run; raise ConfigError on the first bad one."""
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
    from_result_dir = _flag_value(flags, "--config-path", "-cp") is not None
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
        for variant in variants:
            try:
                cfg = compose(config_name=config_name, overrides=[*variant, *search_path], return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as error:
                raise ConfigError(_composition_message(error, variant, config_name)) from None
            except YAMLError as error:  # a YAML tag or syntax error in a user's config file
                raise ConfigError(_yaml_message(error, config_name)) from None
            validate(cfg, policy_name(cfg))
            _check_paths(cfg, multirun)
    GlobalHydra.instance().clear()


def _yaml_message(error: Exception, config_name: str) -> str:
    """One line naming the file and line of a YAML error (safe loading refuses Python tags)."""
    mark = getattr(error, "problem_mark", None)
    name = getattr(mark, "name", "") or ""
    where = name if name and not name.startswith("<") else f"{config_name}.yaml"
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None) or _first_line(error)
    return f"config: {where}{line}: refused: {problem}"


def _check_option(group: str, options: list[str], loader: Any, extra_dir: str | None) -> None:
    """Every chosen option of ``group`` must exist (packaged tree, --config-dir, or a Hydra plugin)."""
    valid = sorted(set(loader.get_group_options(group)) | set(_options(group, extra_dir)))
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


def _check_paths(cfg: DictConfig, multirun: bool) -> None:
    """Inputs must exist and output folders must be creatable, before Hydra makes any folder."""
    checkpoint = cfg.get("checkpoint")
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
    """Raise when ``folder`` cannot be made: an ancestor is a file, or the nearest one is read-only."""
    import os

    for ancestor in [folder.absolute(), *folder.absolute().parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ConfigError(f"{key}: cannot create {folder}: {ancestor} is a file, not a folder")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise ConfigError(f"{key}: cannot create {folder}: {ancestor} is not writable")
            return


_OVERRIDE_KEY = re.compile(r"Could not override '([^']+)'")
_MISSING_LAUNCHER = re.compile(r"Could not (?:load|find) 'hydra/launcher/([^']+)'")


def _composition_message(error: Exception, variant: list[str], config_name: str) -> str:
    """Hydra's multi-line composition errors, as one line that names the key (and its closest match)."""
    from hydra import compose

    text = str(error)
    match = _OVERRIDE_KEY.search(text)
    if match and ("not in struct" in text or "To append" in text):
        key = match.group(1)
        parent, _, leaf = key.rpartition(".")
        others = [o for o in variant if not o.lstrip("+~").startswith(key + "=")]
        try:
            node = OmegaConf.select(compose(config_name=config_name, overrides=others), parent) if parent else None
        except Exception:
            node = None
        valid = [str(k) for k in node] if isinstance(node, DictConfig) else []
        hint = suggest(leaf, valid) + (f"; valid: {', '.join(valid)}" if valid else "")
        return f"{key}: unknown key{hint}"
    if match:
        return f"{match.group(1)}: {_first_line(error, skip=1)}"
    plugin = _MISSING_LAUNCHER.search(text)
    if plugin:
        return _plugin_hint(plugin.group(1))
    return _first_line(error)


def _first_line(error: Exception, skip: int = 0) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return " ".join(lines[skip : skip + 1] or lines[:1] or [type(error).__name__])
