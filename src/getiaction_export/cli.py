"""The command line: ``python -m getiaction_export [-m] [overrides...]``, the only ``@hydra.main``.

Kept thin: the pre-flight (:mod:`getiaction_export.config.preflight`) composes and validates every job
before Hydra runs, so bad input gives one line and exit code 2 instead of Hydra's multi-line
errors; Hydra then runs each job through the Hydra-free :func:`getiaction_export.job.run_config`,
which records its own ``result.json``; after Hydra returns, the exit code is read back from the
results (``result.json``, or the sweep's ``summary.json``): ``sys.exit`` inside a job would
abort a sweep, and a launcher may run jobs in other processes.

Exit codes (:class:`getiaction.errors.ExitCode`): 0 ok; 1 internal error; 2 config/input error;
3 export error; 4 parity failure; 130 interrupted (Ctrl-C or SIGTERM). A sweep exits with the
first failed job's code.

This module imports no torch: ``--help``, ``--cfg job`` and ``--info`` stay fast. ``--cfg job`` is
printed from the pre-flight's composition (as Hydra prints it: Hydra would compose the config twice
more). After a job, the process leaves what it allocated to the operating system instead of having
Python's teardown walk it (see :func:`_leave`).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from getiaction.errors import ConfigError, ExitCode
from getiaction_export import interrupts
from getiaction_export.config.folders import register_resolvers
from getiaction_export.config.preflight import (
    CONFIG_MODULE,
    CONFIG_NAME,
    NO_JOB_FLAGS,
    PRINT_ONLY_FLAGS,
    Checked,
    app_help,
    check_jobs,
    split_args,
    sweep_size,
)
from getiaction_export.config.schemas import register_schemas

# At import, not in main(): a launcher's worker (joblib, Ray, submitit) imports this module to
# unpickle the task function, then resolves the job folder's name (hydra.sweep.subdir) itself.
register_resolvers()
log = logging.getLogger("getiaction_export")
SWEEP_JOBS = "GETIACTION_SWEEP_JOBS"
"""Set by :func:`main` for a multirun: how many jobs the sweep has (``[sweep] job 3/6`` lines)."""


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m getiaction_export`` and the ``getiaction-export`` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    register_schemas()
    flags, overrides = split_args(args)
    if {"--help", "-h"} & set(flags):
        print(app_help(overrides, flags))
        sys.exit(ExitCode.OK)
    multirun = bool({"-m", "--multirun"} & set(flags))
    checked = Checked(None, None)
    if not NO_JOB_FLAGS & set(flags):
        try:
            checked = check_jobs(overrides, flags)
        except ConfigError as error:
            print(f"error: {error.one_line()}", file=sys.stderr)
            sys.exit(ExitCode.CONFIG)
    root = checked.root
    if PRINT_ONLY_FLAGS & set(flags):  # --cfg job: the config is printed, no job runs
        if print_job_config(flags, checked.config):
            sys.exit(ExitCode.OK)
        root = None  # any other --cfg: Hydra prints it
    if multirun and root:  # each job says where the sweep stands (launchers' workers inherit the environment)
        os.environ[SWEEP_JOBS] = str(sweep_size(overrides))
    else:  # left by an earlier multirun in this process (the API, in-process tests)
        os.environ.pop(SWEEP_JOBS, None)
    sys.argv = [sys.argv[0], *pin_root(args, overrides, root, multirun)]
    interrupts.install()  # Ctrl-C and SIGTERM: clean up, record, exit 130
    try:
        _hydra_entry()
    except KeyboardInterrupt:
        print("interrupted: artifacts under their final names are complete; see result.json", file=sys.stderr)
        _leave(ExitCode.INTERRUPTED)
    _leave(exit_code(root, multirun) if root else ExitCode.OK)


def _leave(code: int) -> NoReturn:
    """Exit with ``code``, leaving the objects the jobs made to the operating system.

    At exit Python collects garbage over every object still alive, pass after pass as it empties the modules:
    with torch, the ONNX exporter and onnxruntime loaded that took 1.5-2 s here, as long as a small export,
    and freed nothing anyone would see. ``gc.freeze()`` moves them out of the collector's reach; the
    atexit handlers (log files are flushed and closed there) and every ``finally`` still run as usual.
    """
    gc.freeze()
    sys.exit(code)


def print_job_config(flags: list[str], cfg: DictConfig | None) -> bool:
    """``--cfg job``: print the pre-flight's composition of the job's config, as Hydra prints it; whether it did.

    Hydra would compose the same config twice more to print it. Any other ``--cfg`` (``hydra``, ``all``,
    ``--resolve``, ``--package``, another config name or folder) is left to Hydra (False).
    """
    if cfg is None or flags not in (["--cfg", "job"], ["-c", "job"]):
        return False
    from omegaconf import OmegaConf, flag_override

    with flag_override(cfg, ["struct", "readonly"], [False, False]):
        del cfg["hydra"]
    sys.stdout.write(OmegaConf.to_yaml(cfg))
    return True


@hydra.main(version_base="1.3", config_path="pkg://" + CONFIG_MODULE, config_name=CONFIG_NAME)
def _hydra_entry(cfg: DictConfig) -> dict[str, Any]:
    return run_job(cfg)


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job: run the config into Hydra's job folder; returns plain data (launchers pickle it)."""
    from getiaction_export.job import run_config

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    num, overrides = _job_num(hydra_cfg), [str(o) for o in hydra_cfg.overrides.task]
    job = {"num": num, "override_dirname": hydra_cfg.job.override_dirname, "overrides": overrides}
    total = os.environ.get(SWEEP_JOBS)
    where = f"job {num + 1}/{total}" if total else None
    if where:
        log.info(f"[sweep] ▶ {where}: {' '.join(overrides)}")
    started = time.perf_counter()
    result = run_config(cfg, out_dir, job)
    if where:
        mark = "✓" if result.status == "ok" else "✗"
        log.info(f"[sweep] {mark} {where} {result.status} in {time.perf_counter() - started:.1f} s")
    return {"status": result.status, "exit_code": result.exit_code, "output_dir": result.output_dir}


def pin_root(args: list[str], overrides: list[str], root: str | None, multirun: bool) -> list[str]:
    """``args`` with Hydra's run (or sweep) folder set to ``root``, the folder the pre-flight resolved.

    The pinned override goes right after the user's last one: Hydra's parser wants the overrides
    in one run, whatever flags come before or after them.

    Example:
        >>> pin_root(["-m", "format=onnx", "hydra.sweep.dir=a", "--info"], ["format=onnx", "hydra.sweep.dir=a"],
        ...          "out", multirun=True)
        ['-m', 'format=onnx', "hydra.sweep.dir='out'", '--info']
    """
    if root is None:
        return args
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    quoted = root.replace("\\", "\\\\").replace("'", "\\'")
    pinned = f"{key}='{quoted}'"
    at = max((i + 1 for i, arg in enumerate(args) if arg in overrides), default=0)
    kept = [*args[:at], pinned, *args[at:]]
    return [arg for arg in kept if not (arg.startswith(key + "=") and arg is not pinned)]


def exit_code(root: str, multirun: bool) -> int:
    """The command's exit code, from what its jobs recorded under ``root`` (none recorded: 1)."""
    from getiaction_export.report.result import RESULT_FILE
    from getiaction_export.report.summary import SUMMARY_FILE

    path = Path(root) / (SUMMARY_FILE if multirun else RESULT_FILE)
    try:
        return int(json.loads(path.read_text())["exit_code"])
    except (OSError, ValueError, KeyError, TypeError):
        return ExitCode.INTERNAL


def _job_num(hydra_cfg: Any) -> int:
    try:
        return int(hydra_cfg.job.num)
    except MissingMandatoryValue:  # single runs have no job number
        return 0
