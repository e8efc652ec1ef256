"""What a job knows, typed: each stage takes values from here and adds its own, nothing re-derived.

A :class:`JobState` holds the job's inputs (config, folder, identity) and what the stages
produce: the :class:`BuiltPolicy`, the input sample, the shared float32 ONNX export, and per
format a :class:`FormatOutcome` (its export, tolerances, verification cases, parity, latency,
runtime check, promoted files). ``result.json`` and ``manifest.json`` are rendered from it
(:mod:`getiaction_export.report.result`, :mod:`getiaction_export.physicalai.manifest`); stages
never read them back.

Example:
    >>> from getiaction_export.config.schemas import OnnxFormatSchema
    >>> outcome = FormatOutcome("onnx", OnnxFormatSchema(), staged=[], final=[])
    >>> outcome.status, outcome.precision, outcome.runtime
    ('pending', 'fp32', 'onnxruntime')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from getiaction.errors import ExitCode
from getiaction_export.machine import describe_machine

if TYPE_CHECKING:
    import torch
    from torch import nn

    from getiaction.export.onnx import OnnxExportResult
    from getiaction_export.config.schemas import ExportConfig
    from getiaction_export.errors import Failure
    from getiaction_export.parity.fp32_bound import Float64Reference
    from getiaction_export.parity.gate import ParityReport
    from getiaction_export.parity.runtimes import Runner, TorchReference
    from getiaction_export.parity.tolerance import Tolerance
    from getiaction_export.rollout.adapter import TaskAdapter
    from getiaction_export.rollout.episodes import Run

RUNTIMES = {"torch": "reloaded checkpoint", "onnx": "onnxruntime", "openvino": "OpenVINO",
            "openvino_int8": "OpenVINO", "executorch": "ExecuTorch"}
"""What each format is verified in (recorded as ``formats.<name>.runtime``)."""

SCRATCH = {"source": "source.onnx", "simplified": "simplified.onnx", "f32_ir": "f32.xml"}
"""The job's working files: the shared float32 ONNX export, onnxslim's candidate, the f32 IR INT8 starts from."""

Cases = list[tuple[str, dict[str, "torch.Tensor"]]]
"""Verification inputs: ``(label, batch)`` pairs."""


@dataclass
class BuiltPolicy:
    """The policy to export and where it came from."""

    module: nn.Module
    class_path: str
    source: str
    """``config`` (built fresh from the policy group) or ``checkpoint``."""
    seed: int | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    call_style: str = "dict"
    """How its forward takes the inputs (``dict`` or ``kwargs``)."""
    reference: nn.Module | None = None
    """What the parity gate runs on the PyTorch side when it is not ``module`` itself: the source's own
    inference (a LeRobot policy's pre-processor → policy → post-processor on raw observations)."""

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


@dataclass
class Graph:
    """The exported graph's interface as the written file has it (read back, not as requested)."""

    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    dynamic_axes: dict[str, dict[str, str]]
    nodes: int | None = None

    @property
    def input_names(self) -> list[str]:
        return [spec["name"] for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec["name"] for spec in self.outputs]

    @classmethod
    def of(cls, exported: OnnxExportResult) -> Graph:
        return cls([vars(s) for s in exported.inputs], [vars(s) for s in exported.outputs],
                   {k: {str(a): n for a, n in v.items()} for k, v in exported.dynamic_axes.items()})


@dataclass
class Verification:
    """What a format's artifact is held to: the inputs, PyTorch's outputs, each output's tolerance."""

    cases: Cases
    reference: TorchReference
    tolerances: dict[str, dict[str, Any]]
    """``{output: {atol, rtol, max_share, min_cosine, source}}``; a fitted fp32 bound adds how it was derived
    (:func:`getiaction_export.parity.fp32_bound.fitted`)."""
    dynamic: bool

    def bounds(self) -> dict[str, Tolerance]:
        """``{output: Tolerance}``."""
        from getiaction_export.parity.tolerance import Tolerance

        return {name: Tolerance(*(chosen[key] for key in Tolerance._fields))
                for name, chosen in self.tolerances.items()}


@dataclass
class FormatOutcome:
    """One format of a job: its files, and what its stages found."""

    name: str
    schema: Any
    staged: list[Path]
    """The hidden names the artifact is written under until it passed every check."""
    final: list[Path]
    """The names it gets when promoted (main file first)."""
    status: str = "pending"
    """``pending`` (not reached), ``running``, ``ok`` or ``failed``."""
    failure: Failure | None = None
    stage: str | None = None
    """The stage that failed (set with ``failure``)."""
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    """Format-specific records for result.json (``openvino``: converted_from, nodes, ...)."""
    verification: Verification | None = None
    parity: ParityReport | None = None
    latency: dict[str, Any] | None = None
    runtime_check: dict[str, Any] | None = None
    runner: Runner | None = None
    """The runtime the artifact was verified in, kept until promotion for the rollout (not in result.json)."""
    rollout: dict[str, Any] | None = None
    """Its closed-loop run against PyTorch's (:mod:`getiaction_export.stages.rollout`)."""
    files: dict[str, str] = field(default_factory=dict)
    """Promoted files: ``{path: sha256}``, main file first."""

    @property
    def precision(self) -> str:
        return str(getattr(self.schema, "precision", "fp32"))

    @property
    def runtime(self) -> str:
        return RUNTIMES[self.name]

    @property
    def promoted(self) -> bool:
        return bool(self.files)

    @property
    def size(self) -> int:
        return sum(Path(path).stat().st_size for path in self.files)


@dataclass
class Rollout:
    """The job's task (``rollout=...``): its adapter, how the policy's inputs are fed, PyTorch's own runs."""

    adapter: TaskAdapter
    binding: dict[str, str]
    """``{policy input: observation key}``."""
    cameras: set[str]
    """The policy inputs fed camera frames."""
    reference: list[Run] | None = None
    """PyTorch eager's episodes, run once and compared with every artifact's (per artifact, on its draws, for a
    policy that draws: see ``drawn``)."""
    seconds: float = 0.0
    task: str | None = None
    """``rollout.task``: the task string a vision-language-action policy gets every step."""
    task_inputs: dict[str, Any] = field(default_factory=dict)
    """That string as the graph's token inputs (what PyTorch and a non-package runtime are fed)."""
    drawn: dict[str, str] = field(default_factory=dict)
    """Outputs the policy draws itself -> the reference input they are given (``conditioned_on``)."""
    outputs: list[str] = field(default_factory=lambda: ["action"])
    """The policy's outputs in the order its runners return them (to find what it drew)."""
    history: int = 0
    """Observations the policy reads on axis 1 (LeRobot Diffusion's ``n_obs_steps``; 0: none)."""
    float64_drift: float | None = None
    """How far PyTorch's float32 episodes stray from the same episodes in float64 (the tracked state's unit)."""
    float64_note: str | None = None
    """Why there is no ``float64_drift`` (the float64 run failed)."""


@dataclass
class JobState:
    """Everything one job produced so far (see the module doc)."""

    config: ExportConfig
    out_dir: Path
    identity: dict[str, Any]
    """The resolved config without output paths and its hash (:mod:`getiaction_export.config.identity`)."""
    versions: dict[str, str]
    formats: dict[str, FormatOutcome]
    job: dict[str, Any] | None = None
    """Hydra's job number and overrides (``None`` outside Hydra)."""
    threads: int = 1
    stage: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    built: BuiltPolicy | None = None
    sample: dict[str, torch.Tensor] | None = None
    source: OnnxExportResult | None = None
    """The float32 ONNX export the ONNX artifact and the OpenVINO IR are both made from (once per job)."""
    graph: Graph | None = None
    opset: dict[str, int] | None = None
    torch_latency: tuple[float, int] | None = None
    """PyTorch eager's batch-1 median (ms) and run count, measured once, shared by every runtime."""
    reference: TorchReference | None = None
    exact: Float64Reference | None = None
    """PyTorch's reference in float64, run once per job when an fp32 bound is fitted (:mod:`.fp32_bound`)."""
    simplify: dict[str, Any] | None = None
    runtime_check_skipped: str | None = None
    """Why the physicalai check did not run (``None``: it ran, or no format is a package)."""
    package: dict[str, Any] | None = None
    reference_set: dict[str, Any] | None = None
    """The package's reference set once written: ``{file, sha256, cases, labels, inputs, outputs, bytes}``."""
    package_extras: dict[str, Any] | None = None
    """What the package carries besides the model (a task's tokenizer): :mod:`getiaction_export.physicalai.task`."""
    task_feed: Any = None
    """The :class:`~getiaction_export.physicalai.task.TaskFeed` of a package that tokenizes its task."""
    rollout: Rollout | None = None
    failure: Failure | None = None
    machine: dict[str, Any] = field(default_factory=describe_machine)
    """The CPU (model, ISA features under ``ONEDNN_MAX_CPU_ISA``) and runtime versions the figures are taken
    on: :func:`getiaction_export.machine.describe_machine`, read once when the job starts (``result.json`` →
    ``machine``)."""

    @property
    def status(self) -> str:
        """``failed``, ``partial`` (a best-effort format was left out: :meth:`left_out`) or ``ok``."""
        if self.failure:
            return "failed"
        return "partial" if self.left_out() else "ok"

    @property
    def exit_code(self) -> ExitCode:
        if self.failure:
            return self.failure.exit_code
        return ExitCode.PARTIAL if self.left_out() else ExitCode.OK

    def left_out(self) -> list[FormatOutcome]:
        """Formats that failed while the job went on (``format=all``'s best-effort reduced precision)."""
        return [outcome for outcome in self.formats.values() if outcome.status == "failed"]

    def scratch(self, name: str) -> Path:
        """A hidden working file of the job (:data:`SCRATCH`), removed when the job ends."""
        return self.out_dir / f".{self.config.policy_name}.{SCRATCH[name]}"

    def scratch_files(self) -> list[Path]:
        """Every working file the job may have made (an IR's weights beside its ``.xml``, an ONNX file's data)."""
        paths = [self.scratch(name) for name in SCRATCH]
        return paths + [path.with_suffix(".bin") if path.suffix == ".xml" else path.with_name(path.name + ".data")
                        for path in paths]

    def promoted(self) -> list[FormatOutcome]:
        return [outcome for outcome in self.formats.values() if outcome.promoted]
