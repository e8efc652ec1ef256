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
import shutil
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
    ForwardError,
    GetiActionError,
    VerificationError,
)
from getiaction.export.atomic import prepare_parent
from getiaction.export.onnx import OnnxExportResult, describe_sample
from getiaction.export.transforms import convert_to_fp16
from getiaction.export.versions import package_versions
from getiaction_export import interrupts
from getiaction_export.config import (
    ExportConfig,
    OnnxFormatSchema,
    OpenVINOFormatSchema,
    TorchFormatSchema,
    job_formats,
    tolerances,
)
from getiaction_export.stages import latency
from getiaction_export.stages.build import BuiltPolicy, build_policy
from getiaction_export.stages.check import check_onnx, check_openvino
from getiaction_export.stages.export import export_onnx_artifact, export_torch_artifact
from getiaction_export.stages.package import PACKAGE_FORMATS, manifest_stage
from getiaction_export.stages.report import sha256_of, write_result
from getiaction_export.stages.runtime_check import remembered, runtime_check_stage
from getiaction_export.stages.sample import make_input_sample
from getiaction_export.stages.verify import (
    ONNXRUNTIME_OPTIONS,
    OnnxRuntimeModel,
    OpenVINOModel,
    ParityReport,
    Runner,
    check_parity,
    default_threads,
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
EXIT_INTERRUPTED = 130
EXIT_CODES = {"ok": EXIT_OK, "internal": EXIT_INTERNAL, "config": EXIT_CONFIG, "export": EXIT_EXPORT,
              "parity": EXIT_PARITY}

ARTIFACT_SUFFIX = {"onnx": ".onnx", "torch": ".pt", "openvino": ".xml"}
RUNTIMES = {"torch": "reloaded checkpoint", "onnx": "onnxruntime", "openvino": "OpenVINO"}


def artifact_files(folder: Path, stem: str, format_name: str) -> list[Path]:
    """The files one format writes, the one named in ``artifacts`` first (OpenVINO: ``.xml``, ``.bin``)."""
    main = folder / f"{stem}{ARTIFACT_SUFFIX[format_name]}"
    return [main, main.with_suffix(".bin")] if format_name == "openvino" else [main]


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
        self._module: torch.nn.Module | None = None
        self.provenance = dict(provenance or {})
        self.out_dir = Path(config.output_dir) if config.output_dir else Path(out_dir)
        self.echo = echo or log.info
        fmt = config.format
        self.format_name = fmt.name
        self.formats = job_formats(fmt)
        """``[(format, its schema)]``: one entry, or several for ``format=all``, run in this order."""
        stem = config.policy_name
        self.final_paths = {name: artifact_files(self.out_dir, stem, name) for name, _ in self.formats}
        self.staging_paths = {name: artifact_files(self.out_dir, f".{stem}.staging", name) for name, _ in self.formats}
        self.source_path = self.out_dir / f".{stem}.source.onnx"
        """The float32 ONNX export the onnx artifact and the OpenVINO IR are both made from (once per job)."""
        self.simplified_path = self.out_dir / f".{stem}.simplified.onnx"
        self._source: OnnxExportResult | None = None
        self._torch_latency: tuple[float, int] | None = None
        self._cases: dict[str, list[dict[str, Any]]] = {}
        self.current = self.formats[0][0]
        self.threads = default_threads()
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
            "precision": getattr(fmt, "precision", "fp32"),
            "latency": None,
            "formats": {},
        }

    # ----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every stage; return (and write) the result whatever happens."""
        started = time.perf_counter()
        try:
            self._run_stages()
            self.result.update(status="ok", exit_code=EXIT_OK)
        except Exception as error:  # the job's edge: every failure becomes a recorded result
            if interrupts.received:  # e.g. a C extension's import turned Ctrl-C into ImportError
                self._fail(None)
                self._finish(started)
                raise KeyboardInterrupt from error
            self._fail(self._blame_sample(error))
            log.debug("traceback of the failure", exc_info=True)
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM, see cli): clean up, record, then let it stop the run
            self._fail(None)
            self._finish(started)
            raise
        finally:
            staged = [path for paths in self.staging_paths.values() for path in paths]
            for path in [self.source_path, self.simplified_path, *staged]:
                path.unlink(missing_ok=True)
        self._finish(started)
        return self.result

    def _finish(self, started: float) -> None:
        self.result["timings"]["total"] = round(time.perf_counter() - started, 4)
        self._write_report()

    def _fail(self, error: BaseException | None) -> None:
        """Record a failure; ``None`` means the user interrupted the run."""
        if error is None:
            message, kind, code = "interrupted (Ctrl-C or SIGTERM)", "interrupted", EXIT_INTERRUPTED
        else:
            message, kind = one_line(error), error_kind(error)
            code = EXIT_CODES[kind]
        self.result.update(error=message, error_kind=kind, exit_code=code)
        self.echo(f"[{self.result['stage']}] ✗ {message}")

    def _blame_sample(self, error: Exception) -> Exception:
        """A forward that rejects a user-given sample (random/file) is an input error, not an export error."""
        if not isinstance(error, ForwardError) or self.config.input_sample.name == "from_policy":
            return error
        own = getattr(self._module, "sample_input", None) if self._module is not None else None
        hint = f"; the policy's own sample_input is {describe_sample(own)}" if own else ""
        return ConfigError(f"input_sample={self.config.input_sample.name}: {error}{hint}")

    def _write_report(self) -> None:
        self.result["stage_failed"] = self.result["stage"] if self.result["status"] != "ok" else None
        try:
            path = write_result(self.out_dir, self.result)
        except (OSError, GetiActionError) as error:
            self.echo(f"[report] ✗ cannot write result.json in {self.out_dir}: {one_line(error)}")
            return
        if self.result["status"] == "ok":
            written = [f"{self.final_paths[name][0]} ({human_size(self.result['artifact_sizes'].get(name, 0))})"
                       for name, _ in self.formats]
            self.echo(f"[report] ✓ {', '.join(written)}; report {path}")

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        self.result["stage"] = name
        started = time.perf_counter()
        with _progress(name):
            yield
        elapsed = time.perf_counter() - started
        self.result["timings"][name] = round(self.result["timings"].get(name, 0.0) + elapsed, 4)
        if name in self.PER_FORMAT_STAGES:
            self._record()["timings"][name] = round(elapsed, 4)

    PER_FORMAT_STAGES = ("export", "check", "verify", "simplify", "latency", "promote")
    """Stages run once per format; with several formats ``timings`` holds their sums."""

    def _done(self, name: str, message: str) -> None:
        elapsed = self._record()["timings"].get(name) if name in self.PER_FORMAT_STAGES else None
        prefix = f"{self.current}: " if len(self.formats) > 1 and name in self.PER_FORMAT_STAGES else ""
        self.echo(f"[{name}] ✓ {prefix}{message}  {elapsed or self.result['timings'][name]:.2f} s")

    def _record(self, name: str | None = None) -> dict[str, Any]:
        """The per-format part of the result (``formats[name]``; default: the format running now)."""
        return self.result["formats"].setdefault(name or self.current, {"status": "pending", "timings": {}})

    # ----------------------------------------------------------------------------------------
    def _run_stages(self) -> None:
        config = self.config
        with self._stage("prepare"):
            prepare_parent(self.source_path)
            existing = [path for paths in self.final_paths.values() for path in paths if path.exists()]
            if existing and not config.overwrite:
                raise ConfigError(
                    f"output_dir: {existing[0]} already exists; pass overwrite=true or choose another output_dir"
                )

        with self._stage("build"):
            built = build_policy(config.policy, config.checkpoint, config.allowed_packages)
            self._module = built.module
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

        self.result["artifact_sha256"] = {}
        for name, fmt in self.formats:
            self.current = name
            record = self._record()
            record.update(precision=getattr(fmt, "precision", "fp32"), runtime=RUNTIMES[name])
            try:
                if isinstance(fmt, OpenVINOFormatSchema):
                    self._openvino(built, sample, fmt)
                elif isinstance(fmt, OnnxFormatSchema):
                    self._onnx(built, sample, fmt)
                else:
                    self._torch(built, sample, fmt)
                if name in PACKAGE_FORMATS:
                    with self._stage("runtime_check"):  # the package as it will be, in physicalai, before promote
                        runtime_check_stage(self.out_dir, self.result, name, fmt, built.module, sample,
                                            self.config.policy.get("call_style", "dict"),
                                            dict(zip(self.final_paths[name], self.staging_paths[name], strict=True)),
                                            self.echo)
                with self._stage("promote"):
                    self._promote(name)
                    manifest_stage(self.out_dir, self.result, name, built.module, self.echo)  # manifest.json
            except Exception as error:
                record.update(status="failed", error=one_line(error), error_kind=error_kind(error),
                              stage=self.result["stage"])
                raise
            record["status"] = "ok"
        self.result["stage"] = "report"

    def _promote(self, name: str) -> None:
        """Rename a verified format's staged files to their final names (OpenVINO: the .bin before the .xml)."""
        finals = self.final_paths[name]
        for staged, final in reversed(list(zip(self.staging_paths[name], finals, strict=True))):
            os.replace(staged, final)
        self.result["artifacts"][name] = str(finals[0])
        self.result["artifact_sizes"][name] = sum(path.stat().st_size for path in finals)
        self.result["artifact_sha256"][name] = sha256_of(finals[0])
        self._record()["files"] = {str(path): sha256_of(path) for path in finals}

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

    def _onnx_source(
        self, built: BuiltPolicy, sample: dict[str, torch.Tensor], fmt: OnnxFormatSchema
    ) -> OnnxExportResult:
        """The job's float32 ONNX export (hidden; made once, shared by the onnx and openvino formats)."""
        if self._source is None:
            call_style = self.config.policy.get("call_style", "dict")
            self._source = export_onnx_artifact(
                built.module, sample, fmt, self.source_path, call_style, self._model_metadata(built)
            )
            exported = self._source
            self.result["exporter"] = exported.exporter
            self.result["opset"] = {"requested": fmt.opset_version, "saved": exported.opset}
            self.result["onnx"] = {"inputs": [vars(s) for s in exported.inputs],
                                   "outputs": [vars(s) for s in exported.outputs],
                                   "dynamic_axes": {k: {str(a): n for a, n in v.items()}
                                                    for k, v in exported.dynamic_axes.items()}}
        return self._source

    def _onnx(self, built: BuiltPolicy, sample: dict[str, torch.Tensor], fmt: OnnxFormatSchema) -> None:
        staged = self.staging_paths["onnx"][0]
        with self._stage("export"):
            exported = self._onnx_source(built, sample, fmt)
            if fmt.precision == "fp16":
                try:
                    convert_to_fp16(exported.path, staged, sample)
                except ExportError as error:  # the library names its argument; name the config key
                    raise ExportError(str(error).replace("precision=", "format.precision=")) from error
            else:
                shutil.copyfile(exported.path, staged)
        half = ", float16" if fmt.precision == "fp16" else ""
        self._done("export", f"{exported.exporter} exporter, opset {exported.opset}{half}")

        with self._stage("check"):
            checked = check_onnx(staged, fmt.opset_version)
            self.result["opset"] = {"requested": fmt.opset_version, "saved": checked["saved_opset"]}
            self.result["onnx"]["nodes"] = checked["nodes"]
        self._done("check", f"onnx.checker ok, saved opset {checked['saved_opset']} = requested, "
                            f"{checked['nodes']} nodes")

        dynamic = bool(exported.dynamic_axes) and fmt.dynamic_batch
        cases = verification_inputs(sample, fmt.verify_batch_sizes, dynamic, fmt.num_random_inputs, fmt.seed)
        reference = remembered(built.module,  # the runtime check reuses these PyTorch outputs
                               torch_runner(built.module, self.config.policy.get("call_style", "dict"),
                                            exported.input_names))
        with self._stage("verify"):
            candidate = OnnxRuntimeModel(staged, self.threads)
            report = self._parity(reference, candidate, candidate.output_names, cases, fmt)
            self._record_parity(report, "onnxruntime", fmt)
        self._done("verify", f"onnxruntime vs PyTorch on {len(cases)} inputs")

        if fmt.simplify:
            with self._stage("simplify"):
                candidate = self._simplify(staged, checked["nodes"], reference, cases, fmt) or candidate
        if fmt.latency:
            self._latency(built, sample, candidate, dynamic)

    def _openvino(self, built: BuiltPolicy, sample: dict[str, torch.Tensor], fmt: OpenVINOFormatSchema) -> None:
        from getiaction.export.openvino import convert_onnx_to_openvino

        staged = self.staging_paths["openvino"][0]
        with self._stage("export"):
            exported = self._onnx_source(built, sample, fmt)
            converted = convert_onnx_to_openvino(
                exported.path, staged, compress_to_fp16=fmt.precision == "fp16", source=exported
            )
            self.result["openvino"] = {"converted_from": "onnx", "compressed_to_fp16": converted.compressed_to_fp16,
                                       "inputs": [vars(s) for s in converted.inputs],
                                       "outputs": [vars(s) for s in converted.outputs]}
        half = ", float16 weights" if converted.compressed_to_fp16 else ""
        self._done("export", f"OpenVINO IR from the ONNX graph ({exported.exporter} exporter, "
                             f"opset {exported.opset}{half})")

        dynamic = bool(exported.dynamic_axes) and fmt.dynamic_batch
        with self._stage("check"):
            checked = check_openvino(staged, exported.input_names, exported.output_names, dynamic)
            self.result["openvino"]["nodes"] = checked["nodes"]
        self._done("check", f"IR reads back: inputs {checked['inputs']}, outputs {checked['outputs']}, "
                            f"{'dynamic' if dynamic else 'static'} batch, {checked['nodes']} operations")

        cases = verification_inputs(sample, fmt.verify_batch_sizes, dynamic, fmt.num_random_inputs, fmt.seed)
        reference = remembered(built.module,  # the runtime check reuses these PyTorch outputs
                               torch_runner(built.module, self.config.policy.get("call_style", "dict"),
                                            exported.input_names))
        with self._stage("verify"):
            candidate = OpenVINOModel(staged, exported.output_names, self.threads)
            report = self._parity(reference, candidate, candidate.output_names, cases, fmt)
            self._record_parity(report, "OpenVINO (CPU, f32)", fmt)
        self._done("verify", f"OpenVINO (CPU, f32) vs PyTorch on {len(cases)} inputs")
        if fmt.latency:
            self._latency(built, sample, candidate, dynamic)

    def _parity(
        self,
        reference: Runner,
        candidate: Runner,
        output_names: list[str],
        cases: list[tuple[str, dict[str, torch.Tensor]]],
        fmt: OnnxFormatSchema,
    ) -> ParityReport:
        """The parity gate with each output's tolerance (its own, the format's, or the precision's default)."""
        unknown = sorted(set(fmt.output_tolerances) - set(output_names))
        if unknown:
            raise ConfigError(f"format.output_tolerances.{unknown[0]}: no such output; outputs: {output_names}")
        per_output = {}
        for name in output_names:
            chosen = tolerances(fmt, name)
            per_output[name] = (chosen["atol"], chosen["rtol"])
            self._record().setdefault("tolerances", {})[name] = chosen
        atol, rtol = per_output[output_names[0]] if output_names else (0.0, 0.0)
        return check_parity(reference, candidate, output_names, cases, atol, rtol, per_output=per_output)

    def _simplify(
        self,
        staged: Path,
        nodes_before: int,
        reference: Runner,
        cases: list[tuple[str, dict[str, torch.Tensor]]],
        fmt: OnnxFormatSchema,
    ) -> OnnxRuntimeModel | None:
        """onnxslim on the verified file; the result replaces it only if it passes check and parity too.

        Returns the simplified model's runtime when it was kept (for the latency stage), else None.
        """
        from getiaction.export.transforms import simplify_onnx

        record: dict[str, Any] = {"tool": "onnxslim", "nodes_before": nodes_before, "nodes_after": None,
                                  "applied": False, "reason": None}
        self.result["simplify"] = record
        try:
            simplified = simplify_onnx(staged, self.simplified_path)
            record["nodes_after"] = simplified.nodes_after
            check_onnx(self.simplified_path, fmt.opset_version)
            candidate = OnnxRuntimeModel(self.simplified_path, self.threads)
            report = self._parity(reference, candidate, candidate.output_names, cases, fmt)
            record["parity"] = {name: {"max_abs_diff": o["max_abs_diff"], "passed": o["passed"]}
                                for name, o in report.outputs.items()}
            if not report.passed:
                raise VerificationError("; ".join(report.failures()))
        except (ExportError, VerificationError) as error:
            record["reason"] = one_line(error)
            self.echo(f"[simplify] ✗ kept the original graph: {record['reason']}")
            return None
        os.replace(self.simplified_path, staged)
        record["applied"] = True
        self.result["onnx"]["nodes"] = simplified.nodes_after
        self._record_parity(report, "onnxruntime", fmt, echo=False)  # the shipped file's figures
        self.echo(f"[simplify] ✓ onnxslim: {nodes_before} -> {simplified.nodes_after} nodes, "
                  f"verified again on {len(cases)} inputs")
        return OnnxRuntimeModel(staged, self.threads)

    def _latency(
        self, built: BuiltPolicy, sample: dict[str, torch.Tensor], candidate: OnnxRuntimeModel | OpenVINOModel,
        dynamic: bool,
    ) -> None:
        """Median batch-1 latency of PyTorch eager (once per job) and of ``candidate``; the speed-up."""
        with self._stage("latency"):
            batch = latency.batch_one(sample, dynamic)
            eager = latency.torch_call(built.module, batch, self.config.policy.get("call_style", "dict"))
            figures = latency.measure(eager, candidate.timed_call(batch), self.threads, self._torch_latency)
            self._torch_latency = (figures["torch_ms"], figures["runs"])
            batch_size = next(iter(batch.values())).shape[0] if next(iter(batch.values())).dim() else 1
            figures.update(runtime=candidate.runtime, batch=batch_size)
            if isinstance(candidate, OnnxRuntimeModel):
                figures["session_options"] = {**ONNXRUNTIME_OPTIONS, "intra_op_num_threads": self.threads}
            else:
                figures["compile_config"] = dict(candidate.config)
            self._record()["latency"] = figures
            runtimes = [r["latency"] for r in self.result["formats"].values() if r.get("latency")]
            self.result["latency"] = max(runtimes, key=lambda item: item["speedup"])
        self.echo(f"[latency] ✓ {RUNTIMES[self.current]} {figures['runtime_ms']:.2f} ms vs PyTorch eager "
                  f"{figures['torch_ms']:.2f} ms: {figures['speedup']:.2f}x (batch {batch_size}, "
                  f"{figures['threads']} threads, median of {figures['runs']})")

    def _torch(self, built: BuiltPolicy, sample: dict[str, torch.Tensor], fmt: TorchFormatSchema) -> None:
        call_style = self.config.policy.get("call_style", "dict")
        with self._stage("export"):
            export_torch_artifact(built.module, self.staging_paths["torch"][0])
        self._done("export", "checkpoint with embedded config")
        with self._stage("verify"):
            reloaded = self._reload(built)
            cases = verification_inputs(sample, [1, 2], True, fmt.num_random_inputs, fmt.seed)
            count = len(torch_runner(built.module, call_style)(sample))
            names = ["action", *[f"output_{i}" for i in range(1, count)]]
            report = check_parity(torch_runner(built.module, call_style), torch_runner(reloaded, call_style),
                                  names, cases, atol=0.0, rtol=0.0)
            self._record_parity(report, "reloaded checkpoint", fmt)
        self._done("verify", f"reloaded checkpoint is bit-identical on {len(cases)} inputs")

    def _reload(self, built: BuiltPolicy) -> torch.nn.Module:
        """Load the staged checkpoint back the way a user would."""
        import copy

        from getiaction.export import Export
        from getiaction.export.torch import load_checkpoint, load_policy

        if isinstance(built.module, Export):
            # The class we just built is trusted for the load-back, whatever the allow-list says.
            allowed = [*self.config.allowed_packages, built.class_path.split(".")[0]]
            reloaded: torch.nn.Module = load_policy(self.staging_paths["torch"][0], allowed_packages=allowed)
            return reloaded
        fresh = copy.deepcopy(built.module)  # a plain module: its weights are what the checkpoint holds
        fresh.load_state_dict(load_checkpoint(self.staging_paths["torch"][0]).state_dict, strict=True)
        return fresh.eval()

    def _record_parity(self, report: ParityReport, runtime: str, fmt: Any, echo: bool = True) -> None:
        """Record a format's parity; the job's ``parity`` is the worst case over its formats so far."""
        self._record()["parity"] = report.outputs
        tag = {"format": self.current} if len(self.formats) > 1 else {}
        self._cases[self.current] = [{**case, **tag} for case in report.cases]
        self._merge_parity()
        for name, figures in report.outputs.items():
            mark = "✓" if figures["passed"] else "✗"
            if echo:
                label = f"{self.current} {name}" if tag else name
                self.echo(f"[verify] {mark} {label}: max abs diff {figures['max_abs_diff']:.2e} "
                          f"(atol {figures['atol']:g}), max rel {figures['max_rel_diff']:.2e}")
        overflowed = [name for name, o in report.outputs.items()
                      if o["nonfinite_actual"] and not o["nonfinite_expected"]]
        if overflowed and getattr(fmt, "precision", "fp32") == "fp16":
            raise ExportError(
                f"format.precision=fp16: output {overflowed[0]!r} is NaN/Inf in {runtime} where PyTorch's is finite "
                "(float16 overflow); export this model with format.precision=fp32"
            )
        if not report.passed:
            raise VerificationError(f"parity failed ({runtime} vs PyTorch): " + "; ".join(report.failures()))

    def _merge_parity(self) -> None:
        """``parity``/``parity_cases`` of the job: one format's own, or per output the worst over formats."""
        records = [(name, r["parity"]) for name, r in self.result["formats"].items() if r.get("parity")]
        self.result["parity_cases"] = [case for name, _ in records for case in self._cases.get(name, [])]
        if len(self.formats) == 1:
            self.result["parity"] = records[0][1]
            return
        merged: dict[str, dict[str, Any]] = {}
        for name, parity in records:
            for output, figures in parity.items():
                worst = merged.get(output)
                passed = figures["passed"] and (worst is None or worst["passed"])
                # a failing format wins the slot, then the larger difference
                if worst is None or (not figures["passed"], figures["max_abs_diff"]) > (
                    not worst["passed"], worst["max_abs_diff"]
                ):
                    merged[output] = {**figures, "format": name}
                merged[output]["passed"] = passed
        self.result["parity"] = merged
