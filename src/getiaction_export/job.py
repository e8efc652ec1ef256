"""The export job, free of Hydra: a composed config in, artifacts and ``result.json`` out.

:func:`run_config` takes a composed config (a ``DictConfig``) and a folder; :func:`run_export`
takes the validated :class:`~getiaction_export.config.schemas.ExportConfig`. Both return a
:class:`JobResult` and never raise for a failed export: the error, its kind and the exit code go
into the result, so a sweep keeps going. :class:`ExportJob` is the phase list:

    prepare -> build -> sample [-> rollout: the policy fits the task] -> per format: export -> check -> verify
    [-> simplify] [-> latency] -> runtime_check [-> rollout] -> promote (+ package) -> report

Every phase is a function in :mod:`getiaction_export.stages` that takes and fills the typed
:class:`~getiaction_export.state.JobState`; ``result.json`` is rendered once, from it, at the end.
Artifacts are written under a hidden staging name and renamed to their final name only after
they were checked and verified; nothing the user already had is overwritten unless
``overwrite=true``.

Example:
    >>> import tempfile, pathlib
    >>> from getiaction_export.config.schemas import ExportConfig, InputSampleSchema, OnnxFormatSchema, PolicySpec
    >>> config = ExportConfig(policy=PolicySpec(target="getiaction.policies.Dummy"), input_sample=InputSampleSchema(),
    ...                       format=OnnxFormatSchema(opset_version=14), policy_name="dummy")
    >>> result = run_export(config, pathlib.Path(tempfile.mkdtemp()), echo=lambda line: None)
    >>> result.status, result.report["opset"], result.report["parity"]["action"]["passed"]
    ('ok', {'requested': 14, 'saved': 14}, True)
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from getiaction.errors import ConfigError, ForwardError, GetiActionError, VerificationError
from getiaction.export.atomic import prepare_parent
from getiaction.export.extras import missing_message
from getiaction.export.versions import package_versions
from getiaction_export import interrupts
from getiaction_export.config.format_plan import job_formats, left_out_formats
from getiaction_export.config.schemas import AllFormatSchema, ExportConfig
from getiaction_export.console import Console
from getiaction_export.errors import INTERRUPTED, failure_of, one_line
from getiaction_export.files import artifact_files, human_size, staged_files
from getiaction_export.parity.gate import batch_of
from getiaction_export.parity.runtimes import OnnxRuntimeModel, OpenVINOModel, default_threads
from getiaction_export.physicalai.task import extras_folder
from getiaction_export.report.result import render_result, write_result
from getiaction_export.stages import export, latency
from getiaction_export.stages.build import build_policy
from getiaction_export.stages.check import check_onnx, check_openvino
from getiaction_export.stages.package import write_package
from getiaction_export.stages.promote import promote
from getiaction_export.stages.rollout import fit_task, rollout_format
from getiaction_export.stages.runtime_check import runtime_check
from getiaction_export.stages.sample import check_finite, make_input_sample
from getiaction_export.stages.simplify import simplify
from getiaction_export.stages.verify import gate, verification_for, verify_checkpoint
from getiaction_export.state import FormatOutcome, JobState

log = logging.getLogger("getiaction_export")

PER_FORMAT_STAGES = ("export", "check", "verify", "simplify", "latency", "rollout", "promote")
"""Stages run once per format; with several formats the job's ``timings`` holds their sums."""


@dataclass(frozen=True)
class JobResult:
    """What a job did: plain data (launchers pickle it), the whole ``result.json`` in ``report``."""

    status: str
    exit_code: int
    error: str | None
    output_dir: str
    report: dict[str, Any]


def run_config(cfg: Any, out_dir: Path, job: dict[str, Any] | None = None) -> JobResult:
    """Validate a composed config and run it into ``out_dir`` (``output_dir`` in the config wins)."""
    from omegaconf import OmegaConf

    from getiaction_export.config.identity import config_identity
    from getiaction_export.config.schemas import policy_name
    from getiaction_export.config.validation import validate
    from getiaction_export.files import sha256_of

    try:
        config = validate(cfg, policy_name=policy_name(cfg))
    except ConfigError as error:  # normally caught by the pre-flight; kept for launchers that bypass it
        log.error("[config] ✗ %s", one_line(error))
        failure = failure_of(error)
        failed = {"status": "failed", "error": failure.message, "error_kind": failure.kind,
                  "exit_code": int(failure.exit_code), "stage": "config", "job": job}
        write_result(out_dir, failed)
        return JobResult("failed", int(failure.exit_code), failure.message, str(out_dir), failed)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    checkpoint = config.checkpoint
    checkpoint_sha = sha256_of(checkpoint) if checkpoint and Path(checkpoint).is_file() else None
    identity = config_identity({str(k): v for k, v in resolved.items()}, checkpoint_sha)
    # out_dir is the job's folder (the CLI pins Hydra's folder to output_dir; in a sweep, each job's
    # subfolder of it), so result, artifacts, log and config record stay together
    return run_export(dataclasses.replace(config, output_dir=None), out_dir, identity=identity, job=job)


def best_effort(fmt: Any, outcome: FormatOutcome) -> bool:
    """Whether a failed gate leaves ``outcome`` out instead of failing the job: ``format=all`` with its default
    format list, for a precision other than the one ``format.precision`` asked for (``openvino_int8``).

    Example:
        >>> from getiaction_export.config.schemas import OpenVINOFormatSchema
        >>> int8 = FormatOutcome("openvino_int8", OpenVINOFormatSchema(precision="int8"), staged=[], final=[])
        >>> best_effort(AllFormatSchema(), int8), best_effort(AllFormatSchema(formats=["openvino_int8"]), int8)
        (True, False)
        >>> best_effort(OpenVINOFormatSchema(precision="int8"), int8)
        False
    """
    return (isinstance(fmt, AllFormatSchema) and fmt.formats is None
            and outcome.precision != str(fmt.precision))


def run_export(
    config: ExportConfig, out_dir: Path, echo: Callable[[str], None] | None = None,
    identity: dict[str, Any] | None = None, job: dict[str, Any] | None = None,
) -> JobResult:
    """Run a validated config into ``out_dir`` (see the module doc)."""
    return ExportJob(config, out_dir, echo, identity, job).run()


class ExportJob:
    """One export job: the phase list; each phase is a stage function on the job's state."""

    def __init__(self, config: ExportConfig, out_dir: Path, echo: Callable[[str], None] | None = None,
                 identity: dict[str, Any] | None = None, job: dict[str, Any] | None = None) -> None:
        folder = Path(config.output_dir) if config.output_dir else Path(out_dir)
        stem = config.policy_name
        formats = {name: FormatOutcome(name, schema, staged=staged_files(folder, stem, name),
                                       final=artifact_files(folder, stem, name))
                   for name, schema in job_formats(config.format)}
        self.state = JobState(config, folder, dict(identity or {}), package_versions(), formats, job,
                              threads=default_threads())
        self.console = Console(echo)
        self._fallback_noted = False

    def run(self) -> JobResult:
        """Run every phase; record (and write) the result whatever happens."""
        started = time.perf_counter()
        try:
            self._phases()
            self.state.stage = "report"
        except Exception as error:  # the job's edge: every failure becomes a recorded result
            if interrupts.received:  # e.g. a C extension's import turned Ctrl-C into ImportError
                self._interrupted(started)
                raise KeyboardInterrupt from error
            self._fail(self._blame_sample(error))
            log.debug("traceback of the failure", exc_info=True)
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM, see cli): clean up, record, then let it stop the run
            self._interrupted(started)
            raise
        finally:
            self._remove_scratch()
        return self._finish(started)

    # ----------------------------------------------------------------------------------------
    def _phases(self) -> None:
        state, config = self.state, self.state.config
        with self._stage("prepare"):
            self._prepare()
        with self._stage("build"):
            state.built = build_policy(config.policy, config.checkpoint, config.allowed_packages)
        built = state.built
        origin = f"checkpoint {built.checkpoint}" if built.checkpoint else f"config (seed {built.seed})"
        self._done("build", f"{built.class_path.rsplit('.', 1)[-1]} from {origin}")
        with self._stage("sample"):
            state.sample = make_input_sample(config.input_sample, built.module)
            check_finite(built.module, built.call_style, state.sample)
        self._done("sample", ", ".join(f"{k}{list(v.shape)}" for k, v in state.sample.items()))
        if config.rollout.enabled:  # refuse a policy that does not fit the task before anything is exported
            with self._stage("rollout"):
                fed = fit_task(state)
            self._done("rollout", f"the policy fits {config.rollout.name}: {fed}")
        for outcome in state.formats.values():
            try:
                self._format(outcome)
            except VerificationError as error:
                if not best_effort(config.format, outcome):
                    raise
                self.console.failed(state.stage, f"{outcome.name} left out: {one_line(error)} (format=all adds "
                                                 f"{outcome.precision} only where it verifies; the job goes on)")

    def _format(self, outcome: FormatOutcome) -> None:
        """One format: its own steps, then the package check, promotion and manifest."""
        outcome.status = "running"
        try:
            steps = {"torch": self._torch, "onnx": self._onnx, "openvino": self._openvino,
                     "openvino_int8": self._openvino, "executorch": self._executorch}
            steps[outcome.name](outcome)
            with self._stage("runtime_check"):  # the package as it will be, in physicalai, before promote
                runtime_check(self.state, outcome, self.console.echo)
            if self.state.rollout is not None:  # closed loop against PyTorch, before promote
                with self._stage("rollout", outcome):
                    rollout_format(self.state, outcome, self.console.echo)
            with self._stage("promote", outcome):
                promote(outcome)
                write_package(self.state, outcome, self.console.echo)
        except Exception as error:
            outcome.status, outcome.failure, outcome.stage = "failed", failure_of(error), self.state.stage
            raise
        finally:
            outcome.runner = None  # the verified runtime is kept for the rollout only
        outcome.status = "ok"

    def _onnx(self, outcome: FormatOutcome) -> None:
        state, fmt = self.state, outcome.schema
        with self._stage("export", outcome):
            message = export.export_onnx_format(state, outcome)
        self._done("export", message, outcome)
        self._note_fallback()
        with self._stage("check", outcome):
            checked = check_onnx(outcome.staged[0], fmt.opset_version)
            assert state.graph is not None
            state.opset, state.graph.nodes = {"requested": fmt.opset_version, "saved": checked["saved_opset"]}, \
                checked["nodes"]
        self._done("check", f"onnx.checker ok, saved opset {checked['saved_opset']} = requested, "
                            f"{checked['nodes']} nodes", outcome)
        with self._stage("verify", outcome):
            verification = verification_for(state, outcome)
            candidate = OnnxRuntimeModel(outcome.staged[0], state.threads)
            gate(outcome, candidate, candidate.output_names, self.console.echo, len(state.formats) > 1)
        self._done("verify", f"onnxruntime vs PyTorch on {len(verification.cases)} inputs", outcome)
        if fmt.simplify:
            with self._stage("simplify", outcome):
                candidate = simplify(state, outcome, self.console.echo) or candidate
        outcome.runner = candidate
        self._latency(outcome, candidate)

    def _openvino(self, outcome: FormatOutcome) -> None:
        state = self.state
        with self._stage("export", outcome):
            message = export.export_openvino_format(state, outcome)
        self._done("export", message, outcome)
        self._note_fallback()
        graph = state.graph
        assert graph is not None
        dynamic = bool(graph.dynamic_axes) and outcome.schema.dynamic_batch
        with self._stage("check", outcome):
            checked = check_openvino(outcome.staged[0], graph.input_names, graph.output_names, dynamic)
            outcome.details["nodes"] = checked["nodes"]
        self._done("check", f"IR reads back: inputs {checked['inputs']}, outputs {checked['outputs']}, "
                            f"{'dynamic' if dynamic else 'static'} batch, {checked['nodes']} operations", outcome)
        with self._stage("verify", outcome):
            verification = verification_for(state, outcome)
            candidate = OpenVINOModel(outcome.staged[0], graph.output_names, state.threads)
            gate(outcome, candidate, candidate.output_names, self.console.echo, len(state.formats) > 1)
        arithmetic = "INT8, the rest f32" if outcome.precision == "int8" else "f32"
        self._done("verify", f"OpenVINO (CPU, {arithmetic}) vs PyTorch on {len(verification.cases)} inputs", outcome)
        outcome.runner = candidate
        self._latency(outcome, candidate)

    def _executorch(self, outcome: FormatOutcome) -> None:
        from getiaction.export.executorch import ExecutorchModel

        state = self.state
        with self._stage("export", outcome):
            message = export.export_executorch_format(state, outcome)
        self._done("export", message, outcome)
        details = outcome.details
        with self._stage("check", outcome):
            candidate = ExecutorchModel(outcome.staged[0], details["inputs"], details["outputs"], state.threads)
        accepted = details["batch_range"]
        self._done("check", f"the program loads from its file and ran at batch {accepted[0]} and {accepted[1]}"
                            if accepted else "the program loads from its file (static batch)", outcome)
        with self._stage("verify", outcome):
            verification = verification_for(state, outcome)
            gate(outcome, candidate, candidate.output_names, self.console.echo, len(state.formats) > 1)
        sizes = sorted({batch_of(inputs) for _, inputs in verification.cases})
        self._done("verify", f"ExecuTorch (XNNPACK) vs PyTorch on {len(verification.cases)} inputs at batch "
                             f"{', '.join(map(str, sizes))}", outcome)
        outcome.runner = candidate
        self._latency(outcome, candidate)

    def _torch(self, outcome: FormatOutcome) -> None:
        with self._stage("export", outcome):
            message = export.export_torch_format(self.state, outcome)
        self._done("export", message, outcome)
        with self._stage("verify", outcome):
            count = verify_checkpoint(self.state, outcome, self.console.echo)
        self._done("verify", f"reloaded checkpoint is bit-identical on {count} inputs", outcome)

    def _latency(self, outcome: FormatOutcome, candidate: Any) -> None:
        if outcome.schema.latency:
            with self._stage("latency", outcome):
                latency.measure_format(self.state, outcome, candidate, self.console.echo)

    def _note_fallback(self) -> None:
        """Say once that ``exporter=auto`` replaced a failed dynamo export (recorded as ``exporter_fallback``)."""
        source = self.state.source
        if source is not None and source.fallback and not self._fallback_noted:
            self._fallback_noted = True
            self.console.note("export", f"{source.fallback}; used the TorchScript exporter at the same opset "
                                        "(format.exporter=dynamo refuses instead)")

    def _prepare(self) -> None:
        """The folder exists; no final artifact is replaced without ``overwrite=true``."""
        fmt = self.state.config.format
        if isinstance(fmt, AllFormatSchema) and fmt.formats is None:  # say what the installed extras left out
            for name, module in left_out_formats(self.state.formats):
                self.console.note("prepare", f"format=all: no {name} ({missing_message(name, module)})", "-")
        prepare_parent(self.state.scratch("source"))
        finals = [path for outcome in self.state.formats.values() for path in outcome.final]
        existing = [path for path in finals if path.exists()]
        if existing and not self.state.config.overwrite:
            raise ConfigError(
                f"output_dir: {existing[0]} already exists; pass overwrite=true or choose another output_dir"
            )

    # ----------------------------------------------------------------------------------------
    @contextmanager
    def _stage(self, name: str, outcome: FormatOutcome | None = None) -> Iterator[None]:
        self.state.stage = name
        timings = [self.state.timings]
        if outcome is not None and name in PER_FORMAT_STAGES:
            timings.append(outcome.timings)
        with self.console.stage(name, *timings):
            yield

    def _done(self, name: str, message: str, outcome: FormatOutcome | None = None) -> None:
        several = outcome is not None and len(self.state.formats) > 1
        seconds = outcome.timings[name] if outcome is not None else self.state.timings[name]
        self.console.done(name, f"{outcome.name}: {message}" if several and outcome else message, seconds)

    def _blame_sample(self, error: Exception) -> Exception:
        """A forward that rejects a user-given sample (random/file) is an input error, not an export error."""
        from getiaction.export.onnx import describe_sample

        kind = self.state.config.input_sample.name
        if not isinstance(error, ForwardError) or kind == "from_policy":
            return error
        own = getattr(self.state.built.module, "sample_input", None) if self.state.built else None
        hint = f"; the policy's own sample_input is {describe_sample(own)}" if own else ""
        return ConfigError(f"input_sample={kind}: {error}{hint}")

    def _fail(self, error: BaseException) -> None:
        self.state.failure = failure_of(error)
        self.console.failed(self.state.stage, self.state.failure.message)

    def _interrupted(self, started: float) -> None:
        self.state.failure = INTERRUPTED
        self.console.failed(self.state.stage, INTERRUPTED.message)
        self._finish(started)

    def _remove_scratch(self) -> None:
        scratch = self.state.scratch_files()
        staged = [p for outcome in self.state.formats.values() for p in outcome.staged]
        for path in [*scratch, *staged]:
            path.unlink(missing_ok=True)
        for folder in {path.parent for path in staged} - {self.state.out_dir}:  # ONNX's staging folder
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(extras_folder(self.state), ignore_errors=True)  # a tokenizer never promoted

    def _html_report(self, report: dict[str, Any]) -> None:
        """``report.html`` beside ``result.json``; a figure that cannot be drawn never changes the job's result."""
        from getiaction_export.report.html import write_job_report

        try:
            write_job_report(self.state.out_dir, report)
        except Exception as error:  # the record is result.json; the page only shows it
            self.console.note("report", f"report.html not written: {one_line(error)}")
            log.debug("report.html failed", exc_info=True)

    def _finish(self, started: float) -> JobResult:
        """Render and write ``result.json`` (a failure to write it is reported, not raised)."""
        state = self.state
        state.timings["total"] = round(time.perf_counter() - started, 4)
        report = render_result(state)
        try:
            path = write_result(state.out_dir, report)
        except (OSError, GetiActionError) as error:
            self.console.failed("report", f"cannot write result.json in {state.out_dir}: {one_line(error)}")
        else:
            self._html_report(report)
            if state.failure is None:
                written = [f"{o.final[0]} ({human_size(o.size)})" for o in state.promoted()]
                self.console.done("report", f"{', '.join(written)}; report {path}")
        failure = state.failure
        return JobResult(state.status, int(state.exit_code), failure.message if failure else None,
                         str(state.out_dir), report)
