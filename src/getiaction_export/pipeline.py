"""The export job, free of Hydra: build -> sample -> export -> check -> verify -> report.

``ExportPipeline(config, out_dir).run()`` takes a validated :class:`ExportConfig` and a folder,
and returns the result dict it also writes to ``result.json``. It never raises for a failed
export: the error, its kind and the exit code go into the result, so a sweep keeps going.

Artifacts are written under a hidden staging name and renamed to their final name only after
they were checked and verified; nothing the user already had is overwritten unless
``overwrite=true``.

Example:
    >>> import tempfile, pathlib
    >>> from getiaction_export.config import ExportConfig, InputSampleSchema, OnnxFormatSchema
    >>> config = ExportConfig(policy={"_target_": "getiaction.policies.Dummy", "seed": 0, "kwargs": {}},
    ...                       input_sample=InputSampleSchema(), format=OnnxFormatSchema(opset_version=14),
    ...                       policy_name="dummy")
    >>> result = ExportPipeline(config, pathlib.Path(tempfile.mkdtemp())).run()
    >>> result["status"], result["opset"], result["parity"]["action"]["passed"]
    ('ok', {'requested': 14, 'saved': 14}, True)
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from getiaction.errors import (
    CheckpointError,
    ConfigError,
    ExportError,
    GetiActionError,
    VerificationError,
)
from getiaction.export.atomic import prepare_parent
from getiaction.export.versions import package_versions
from getiaction_export.config import ExportConfig, OnnxFormatSchema, TorchFormatSchema
from getiaction_export.stages.build import BuiltPolicy, build_policy, sha256_of
from getiaction_export.stages.check import check_onnx
from getiaction_export.stages.export import export_onnx_artifact, export_torch_artifact
from getiaction_export.stages.report import write_result
from getiaction_export.stages.sample import make_input_sample
from getiaction_export.stages.verify import (
    ParityReport,
    check_parity,
    onnx_runner,
    torch_runner,
    verification_inputs,
)
from getiaction_export.summary import human_size

log = logging.getLogger("getiaction_export")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_EXPORT = 3
EXIT_PARITY = 4
EXIT_CODES = {"ok": EXIT_OK, "internal": EXIT_INTERNAL, "config": EXIT_CONFIG, "export": EXIT_EXPORT,
              "parity": EXIT_PARITY}

ARTIFACT_SUFFIX = {"onnx": ".onnx", "torch": ".pt"}


def error_kind(error: BaseException) -> str:
    """Classify an error: ``config`` (bad input), ``export``, ``parity`` or ``internal``."""
    if isinstance(error, ConfigError | CheckpointError):
        return "config"
    if isinstance(error, VerificationError):
        return "parity"
    if isinstance(error, ExportError):
        return "export"
    return "internal"


def one_line(error: BaseException) -> str:
    """The error as one line (project errors are written that way; others get their type)."""
    text = " ".join(str(error).split())
    if isinstance(error, GetiActionError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


LONG_STAGES = ("build", "export", "verify", "latency")


@contextmanager
def _progress(stage: str) -> Iterator[None]:
    """A live spinner for long stages on a terminal (rich); nothing extra in logs and CI."""
    if stage not in LONG_STAGES or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(f"[{stage}] running…", spinner="dots"):
        yield


class ExportPipeline:
    """One export job; see the module docstring."""

    def __init__(
        self,
        config: ExportConfig,
        out_dir: Path,
        echo: Callable[[str], None] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """``provenance``: the resolved config (no output paths), its hash and seeds, recorded in
        ``result.json`` and inside the model file."""
        self.config = config
        self.provenance = dict(provenance or {})
        self.out_dir = Path(config.output_dir) if config.output_dir else Path(out_dir)
        self.echo = echo or log.info
        fmt = config.format
        self.format_name = fmt.name
        self.final_path = self.out_dir / f"{config.policy_name}{ARTIFACT_SUFFIX[fmt.name]}"
        self.staging_path = self.out_dir / f".{config.policy_name}.staging{ARTIFACT_SUFFIX[fmt.name]}"
        self.result: dict[str, Any] = {
            "status": "failed",
            "error": None,
            "error_kind": None,
            "exit_code": None,
            "stage": None,
            "policy": {"name": config.policy_name},
            "format": fmt.name,
            "output_dir": str(self.out_dir),
            "artifacts": {},
            "artifact_sizes": {},
            "opset": None,
            "exporter": None,
            "parity": {},
            "timings": {},
            "versions": package_versions(),
            "provenance": self.provenance,
        }

    # ----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every stage; return (and write) the result whatever happens."""
        started = time.perf_counter()
        try:
            self._run_stages()
            self.result.update(status="ok", exit_code=EXIT_OK)
        except Exception as error:  # the job's edge: every failure becomes a recorded result
            kind = error_kind(error)
            self.result.update(error=one_line(error), error_kind=kind, exit_code=EXIT_CODES[kind])
            self.echo(f"[{self.result['stage']}] ✗ {one_line(error)}")
            log.debug("traceback of the failure", exc_info=True)
        finally:
            self.staging_path.unlink(missing_ok=True)
        self.result["timings"]["total"] = round(time.perf_counter() - started, 4)
        self._write_report()
        return self.result

    def _write_report(self) -> None:
        self.result["stage_failed"] = self.result["stage"] if self.result["status"] != "ok" else None
        try:
            path = write_result(self.out_dir, self.result)
        except (OSError, GetiActionError) as error:
            self.echo(f"[report] ✗ cannot write result.json in {self.out_dir}: {one_line(error)}")
            return
        if self.result["status"] == "ok":
            size = self.result["artifact_sizes"].get(self.format_name, 0)
            self.echo(f"[report] ✓ {self.final_path} ({human_size(size)}); report {path}")

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        self.result["stage"] = name
        started = time.perf_counter()
        with _progress(name):
            yield
        self.result["timings"][name] = round(time.perf_counter() - started, 4)

    def _done(self, name: str, message: str) -> None:
        self.echo(f"[{name}] ✓ {message}  {self.result['timings'][name]:.2f} s")

    # ----------------------------------------------------------------------------------------
    def _run_stages(self) -> None:
        config = self.config
        with self._stage("prepare"):
            prepare_parent(self.final_path)
            if self.final_path.exists() and not config.overwrite:
                raise ConfigError(
                    f"output_dir: {self.final_path} already exists; pass overwrite=true or choose another output_dir"
                )

        with self._stage("build"):
            built = build_policy(config.policy, config.checkpoint, config.allowed_packages)
            self.result["policy"].update(
                class_path=built.class_path, source=built.source, seed=built.seed,
                checkpoint=built.checkpoint, checkpoint_sha256=built.checkpoint_sha256,
                parameters=sum(p.numel() for p in built.module.parameters()),
            )
        origin = f"checkpoint {built.checkpoint}" if built.checkpoint else f"config (seed {built.seed})"
        self._done("build", f"{built.class_path.rsplit('.', 1)[-1]} from {origin}")

        with self._stage("sample"):
            sample = make_input_sample(config.input_sample, built.module)
            self._check_finite(built, sample)
            self.result["input_sample"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                                           for k, v in sample.items()}
        self._done("sample", ", ".join(f"{k}{list(v.shape)}" for k, v in sample.items()))

        if isinstance(config.format, OnnxFormatSchema):
            self._onnx(built, sample, config.format)
        else:
            self._torch(built, sample, config.format)

        with self._stage("promote"):
            os.replace(self.staging_path, self.final_path)
        self.result["artifacts"][self.format_name] = str(self.final_path)
        self.result["artifact_sizes"][self.format_name] = self.final_path.stat().st_size
        self.result["artifact_sha256"] = {self.format_name: sha256_of(self.final_path)}
        self.result["stage"] = "report"

    def _model_metadata(self, built: BuiltPolicy) -> dict[str, str]:
        """Provenance stored inside the model: nothing time-, host- or path-dependent."""
        import json

        metadata = {"getiaction.versions": json.dumps(self.result["versions"], sort_keys=True)}
        if "config" in self.provenance:
            metadata["getiaction.app_config"] = json.dumps(self.provenance["config"], sort_keys=True)
            metadata["getiaction.config_sha256"] = str(self.provenance.get("config_sha256", ""))
        if built.seed is not None:
            metadata["getiaction.seed"] = str(built.seed)
        if built.checkpoint_sha256:
            metadata["getiaction.checkpoint_sha256"] = built.checkpoint_sha256
        return metadata

    def _check_finite(self, built: BuiltPolicy, sample: dict[str, torch.Tensor]) -> None:
        """Refuse a policy whose own outputs are NaN/Inf: no export of it could be verified."""
        try:
            outputs = torch_runner(built.module, self.config.policy.get("call_style", "dict"))(sample)
        except Exception:  # the export stage reports a failing forward with the sample's details
            return
        for index, output in enumerate(outputs):
            if output.size and not np.isfinite(output).all():
                raise ExportError(
                    f"the policy's forward returns NaN/Inf in output {index} on the input sample; "
                    "refusing to export a model that cannot be verified"
                )

    def _onnx(self, built: BuiltPolicy, sample: dict[str, torch.Tensor], fmt: OnnxFormatSchema) -> None:
        call_style = self.config.policy.get("call_style", "dict")
        with self._stage("export"):
            exported = export_onnx_artifact(
                built.module, sample, fmt, self.staging_path, call_style, self._model_metadata(built)
            )
            self.result["exporter"] = exported.exporter
            self.result["onnx"] = {"inputs": [vars(s) for s in exported.inputs],
                                   "outputs": [vars(s) for s in exported.outputs],
                                   "dynamic_axes": {k: {str(a): n for a, n in v.items()}
                                                    for k, v in exported.dynamic_axes.items()}}
        self._done("export", f"{exported.exporter} exporter, opset {exported.opset}")

        with self._stage("check"):
            checked = check_onnx(self.staging_path, fmt.opset_version)
            self.result["opset"] = {"requested": fmt.opset_version, "saved": checked["saved_opset"]}
            self.result["onnx"]["nodes"] = checked["nodes"]
        self._done("check", f"onnx.checker ok, saved opset {checked['saved_opset']} = requested, "
                            f"{checked['nodes']} nodes")

        with self._stage("verify"):
            dynamic = bool(exported.dynamic_axes) and fmt.dynamic_batch
            cases = verification_inputs(sample, fmt.verify_batch_sizes, dynamic, fmt.num_random_inputs, fmt.seed)
            candidate, output_names = onnx_runner(self.staging_path)
            reference = torch_runner(built.module, call_style, exported.input_names)
            report = check_parity(reference, candidate, output_names, cases, fmt.atol, fmt.rtol)
            self._record_parity(report, "onnxruntime")
        self._done("verify", f"onnxruntime vs PyTorch on {len(cases)} inputs")

    def _torch(self, built: BuiltPolicy, sample: dict[str, torch.Tensor], fmt: TorchFormatSchema) -> None:
        call_style = self.config.policy.get("call_style", "dict")
        with self._stage("export"):
            export_torch_artifact(built.module, self.staging_path)
        self._done("export", "checkpoint with embedded config")
        with self._stage("verify"):
            reloaded = self._reload(built)
            cases = verification_inputs(sample, [1, 2], True, fmt.num_random_inputs, fmt.seed)
            count = len(torch_runner(built.module, call_style)(sample))
            names = ["action", *[f"output_{i}" for i in range(1, count)]]
            report = check_parity(torch_runner(built.module, call_style), torch_runner(reloaded, call_style),
                                  names, cases, atol=0.0, rtol=0.0)
            self._record_parity(report, "reloaded checkpoint")
        self._done("verify", f"reloaded checkpoint is bit-identical on {len(cases)} inputs")

    def _reload(self, built: BuiltPolicy) -> torch.nn.Module:
        """Load the staged checkpoint back the way a user would."""
        import copy

        from getiaction.export import Export
        from getiaction.export.torch import load_checkpoint, load_policy

        if isinstance(built.module, Export):
            # The class we just built is trusted for the load-back, whatever the allow-list says.
            allowed = [*self.config.allowed_packages, built.class_path.split(".")[0]]
            reloaded: torch.nn.Module = load_policy(self.staging_path, allowed_packages=allowed)
            return reloaded
        fresh = copy.deepcopy(built.module)  # a plain module: its weights are what the checkpoint holds
        fresh.load_state_dict(load_checkpoint(self.staging_path).state_dict, strict=True)
        return fresh.eval()

    def _record_parity(self, report: ParityReport, runtime: str) -> None:
        self.result["parity"] = report.outputs
        self.result["parity_cases"] = report.cases
        for name, figures in report.outputs.items():
            mark = "✓" if figures["passed"] else "✗"
            self.echo(f"[verify] {mark} {name}: max abs diff {figures['max_abs_diff']:.2e} "
                      f"(atol {figures['atol']:g}), max rel {figures['max_rel_diff']:.2e}")
        if not report.passed:
            raise VerificationError(f"parity failed ({runtime} vs PyTorch): " + "; ".join(report.failures()))
