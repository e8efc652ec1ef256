"""The application's config: one schema dataclass per group, the single source of truth for each option.

An option is one schema field: type, default, docstring, and in its metadata the choices (a library
enum such as :class:`~getiaction.export.options.Exporter`), bounds (``min``/``max``) and the one
kind of its group that reads it (``only_for``: the schema's ``name``).
:mod:`getiaction_export.config.validation` checks a composed config against these schemas generically and
returns an :class:`ExportConfig`; :mod:`getiaction_export.config.format_plan` reads a format schema for a job
(the formats it runs, each output's tolerances).

``conf/`` is composed as plain YAML: with these schemas in its defaults lists, Hydra's typed merge
would stop at the first bad override, and a policy's other keys are free keyword arguments of its
``_target_``. The schemas are registered under ``schema/`` for users' own typed configs.
No torch here, and onnx only when an opset above the default is checked: config-only commands stay fast.

Example:
    >>> OnnxFormatSchema().opset_version, AllFormatSchema().formats
    (18, None)
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from getiaction.export.options import (
    LOWEST_OPSET,
    CallStyle,
    Exporter,
    Precision,
    highest_opset,
)

GROUPS = ("policy", "input_sample", "format", "rollout")
REQUIRED_GROUPS = GROUPS[:3]
"""``rollout`` may be absent (a config saved before it existed): it then means ``rollout=none``."""
INPUT_SAMPLE_KINDS = ("from_policy", "random", "file")
FORMAT_ORDER = ("torch", "onnx", "openvino", "openvino_int8", "executorch")
"""What ``format=all`` can produce, in run order; ``openvino_int8`` is the OpenVINO IR at INT8 beside the f32 one."""
FORMAT_PACKAGES = {"openvino": ("openvino",), "openvino_int8": ("openvino", "nncf"), "executorch": ("executorch",)}
"""The optional packages each format needs (``format=all`` with ``formats: null`` runs those installed)."""
CALIBRATION_SOURCES = ("random", "file")
INT8_METHODS = ("auto", "quantize", "weights")
INT8_MODEL_TYPES = ("auto", "transformer", "default")
INT8_OVERFLOW_FIXES = ("enable", "first_layer", "disable")
"""getiaction.export.int8.OVERFLOW_FIXES (repeated here: the config check does not import nncf's module)."""
AT_LEAST_0 = {"min": 0}


@dataclass
class PolicySchema:
    """``policy``: what to build. Keys other than these are keyword arguments of ``_target_``."""

    _target_: str = field(default=MISSING, metadata={"example": "my_package.make_policy"})
    """Import path of the policy class or factory (``getiaction.policies.Dummy``)."""
    seed: int = 0
    """Fresh (untrained) weights are drawn from this seed."""
    call_style: str = field(default=CallStyle.DICT, metadata={"choices": CallStyle})
    """``dict``: ``forward(batch)``; ``kwargs``: ``forward(**batch)`` (plain modules)."""


POLICY_RESERVED_KEYS = tuple(f.name for f in fields(PolicySchema))


@dataclass
class TensorSpecSchema:
    """One input of a ``random`` sample."""

    shape: list[int] = field(default=MISSING, metadata={"example": "[1,7]"})
    dtype: str = "float32"
    low: float = -1.0
    high: float = 1.0


def dotted_names(specs: Mapping[str, Any], spec_keys: Collection[str]) -> dict[str, Any]:
    """``{name: spec}`` with the levels of dotted names joined back into the names.

    OmegaConf splits an override's key at every dot, so ``+input_sample.inputs.observation.state.shape=[1,6]``
    arrives as ``{observation: {state: {shape: [1, 6]}}}``. A spec's own keys (``spec_keys``) never
    hold a mapping, so a mapping under any other key is the next level of a name. Levels that also
    name a spec given in one piece (``{observation.state: {...}}``) are merged into it, the
    per-level keys winning: a command-line ``+...observation.state.dtype=uint8`` refines a dict.

    Example:
        >>> dotted_names({"observation": {"state": {"shape": [1, 6]}, "images": {"top": {"shape": [1, 3, 8, 8]}}},
        ...               "observation.state": {"dtype": "int64"}}, ["shape", "dtype", "low", "high"])
        {'observation.state': {'dtype': 'int64', 'shape': [1, 6]}, 'observation.images.top': {'shape': [1, 3, 8, 8]}}
    """
    given: dict[str, Any] = {}
    from_levels: dict[str, Any] = {}
    for name, spec in specs.items():
        levels = {str(k): v for k, v in spec.items() if k not in spec_keys and isinstance(v, Mapping)} \
            if isinstance(spec, Mapping) else {}
        own = {k: v for k, v in spec.items() if k not in levels} if levels else spec
        if own or not levels:
            _merge_into(given, str(name), own)
        for inner, inner_spec in dotted_names(levels, spec_keys).items():
            _merge_into(from_levels, f"{name}.{inner}", inner_spec)
    for name, spec in from_levels.items():
        _merge_into(given, name, spec)
    return given


def _merge_into(specs: dict[str, Any], name: str, spec: Any) -> None:
    earlier = specs.get(name)
    specs[name] = {**earlier, **spec} if isinstance(earlier, Mapping) and isinstance(spec, Mapping) else spec


@dataclass
class InputSampleSchema:
    """``input_sample``: where the example inputs come from."""

    name: str = field(default="from_policy", metadata={"choices": INPUT_SAMPLE_KINDS})
    """``from_policy`` (the policy's sample_input), ``random`` (from ``inputs``) or ``file``."""
    seed: int = 0
    inputs: dict[str, TensorSpecSchema] = field(default_factory=dict, metadata={"only_for": "random"})
    """For ``random``: ``{name: {shape, dtype}}``; names may be dotted (``observation.state``): :func:`dotted_names`."""
    path: str | None = field(default=None, metadata={"example": "observation.npz", "only_for": "file"})
    """For ``file``: an ``.npz`` or ``.pt`` (loaded with weights_only) of named arrays."""


@dataclass
class ToleranceSchema:
    """One output's parity tolerances; ``null`` falls back to ``format.atol``/``format.rtol``."""

    atol: float | None = field(default=None, metadata=AT_LEAST_0)
    rtol: float | None = field(default=None, metadata=AT_LEAST_0)
    max_share: float | None = field(default=None, metadata=AT_LEAST_0)
    """Max abs diff as a share of the largest ``|PyTorch output|`` (0.1 = 10%)."""
    min_cosine: float | None = field(default=None, metadata={"min": -1, "max": 1})
    """Least cosine similarity between the artifact's and PyTorch's output."""


@dataclass
class CalibrationSchema:
    """``format.calibration``: how INT8 is made and the inputs it is calibrated on (``format.precision=int8``)."""

    method: str = field(default="auto", metadata={"choices": INT8_METHODS})
    """``quantize``: post-training INT8 of weights and activations, calibrated; ``weights``: weight compression
    (8-bit weights, float32 activations, no calibration); ``auto``: the policy's preference (SmolVLA: weights),
    else quantize."""
    source: str = field(default="random", metadata={"choices": CALIBRATION_SOURCES})
    """``random``: the input sample, then seeded random inputs like it; ``file``: rows of recorded observations."""
    samples: int = field(default=100, metadata={"min": 1})
    """How many inputs NNCF calibrates on (a file with fewer rows uses all it has, and says so)."""
    seed: int = 0
    path: str | None = field(default=None, metadata={"example": "observations.npz"})
    """For ``source=file``: an ``.npz`` of named arrays whose axis 0 is the row (``observation.state: (N, 8)``)."""
    model_type: str = field(default="auto", metadata={"choices": INT8_MODEL_TYPES})
    """NNCF's model type; ``auto``: ``transformer`` for graphs with MatMul (getiaction.export.int8)."""
    overflow_fix: str = field(default="enable", metadata={"choices": INT8_OVERFLOW_FIXES})
    """``enable``: 7-bit weights in every layer, accurate on CPUs with and without VNNI; ``first_layer``
    (NNCF's default) is exact only where the CPU has VNNI (11% off on AVX2-only CPUs for ACT)."""


@dataclass
class OnnxFormatSchema:
    """``format=onnx``: export with torch.onnx, then check and verify with onnxruntime."""

    name: str = "onnx"
    opset_version: int = field(default=18, metadata={"min": LOWEST_OPSET, "max": highest_opset})
    """7 up to the highest opset the installed onnx defines (checked again on the written file)."""
    exporter: str = field(default=Exporter.AUTO, metadata={"choices": Exporter})
    """``auto`` (dynamo for opset >= 18, torchscript below), ``dynamo`` or ``torchscript``."""
    dynamic_batch: bool = True
    output_names: list[str] | None = None
    """Default: the policy's own (``["action"]``)."""
    precision: str = field(default=Precision.FP32, metadata={"choices": Precision})
    """``fp32``, ``fp16`` (float16 weights and arithmetic; inputs and outputs stay float32), or ``int8``
    (OpenVINO only: post-training INT8 calibrated on ``calibration``)."""
    atol: float | None = field(default=None, metadata=AT_LEAST_0)
    """Parity gate ``|a - b| <= atol + rtol * |b|``; null: the precision's default
    (:data:`~getiaction_export.parity.tolerance.DEFAULT_TOLERANCES`; int8 is judged by scale instead)."""
    rtol: float | None = field(default=None, metadata=AT_LEAST_0)
    output_tolerances: dict[str, ToleranceSchema] = field(default_factory=dict)
    """Per output name: ``{action: {atol: 1e-4}}`` or ``{action: {max_share: 0.05, min_cosine: 0.999}}``; wins
    over ``atol``/``rtol`` and the precision's default, field by field."""
    seed: int = 0
    """Seed of the random verification inputs."""
    num_random_inputs: int = field(default=3, metadata=AT_LEAST_0)
    """Seeded random inputs checked besides the sample, at each batch size."""
    verify_batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 8], metadata={"min": 1})
    """Batch sizes checked when the batch is dynamic (the sample's own is always checked)."""
    simplify: bool = False
    """Simplify the graph with onnxslim; the result replaces the export only if it passes verification too."""
    latency: bool = True
    """Measure median batch-1 latency of PyTorch eager and of the runtime, and the speed-up."""
    runtime_check: bool | None = None
    """Load the package (manifest.json + model) in the physicalai runtime and check it against PyTorch;
    null: when physicalai is installed (the ``[deploy]`` extra)."""


@dataclass
class OpenVINOFormatSchema(OnnxFormatSchema):
    """``format=openvino``: an OpenVINO IR converted from the ONNX export, verified in OpenVINO (f32)."""

    name: str = "openvino"
    """``precision=fp16`` stores float16 weights (compress_to_fp16); inference stays f32.
    ``precision=int8`` quantizes the f32 IR with NNCF on ``calibration``."""
    calibration: CalibrationSchema = field(default_factory=CalibrationSchema)


@dataclass
class ExecutorchFormatSchema(OnnxFormatSchema):
    """``format=executorch``: a ``.pte`` program (XNNPACK delegate) verified in the ExecuTorch runtime.

    ``opset_version``, ``exporter`` and ``simplify`` are ONNX's and not read; ``precision`` is fp32.
    """

    name: str = "executorch"
    max_batch: int = field(default=8, metadata={"min": 1})
    """The largest batch the program must accept (read back from the program; a smaller one is an error).
    Keep it to what the robot runs: the program is planned for it, and a larger bound is slower at every batch
    (measured: diffusion 5.5 ms at batch 1 with 8, 720 ms with 64)."""


@dataclass
class AllFormatSchema(OpenVINOFormatSchema):
    """``format=all``: several formats from one build, each exported, verified and promoted in turn."""

    name: str = "all"
    formats: list[str] | None = field(default=None, metadata={"choices": FORMAT_ORDER})
    """Any of torch, onnx, openvino, openvino_int8, executorch; they run in that order. null: torch, onnx and
    each other one whose packages are installed (:data:`FORMAT_PACKAGES`). The torch checkpoint stays float32;
    ``openvino_int8`` is always int8 and ``executorch`` fp32, whatever ``precision`` says."""
    max_batch: int = field(default=8, metadata={"min": 1})
    """For executorch: the largest batch its program must accept."""


@dataclass
class TorchFormatSchema:
    """``format=torch``: a checkpoint with its config, verified by loading it back."""

    name: str = "torch"
    seed: int = 0
    num_random_inputs: int = field(default=2, metadata=AT_LEAST_0)


ROLLOUT_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class RolloutSchema:
    """``rollout``: PyTorch and each verified artifact drive their own copy of a simulated task, in closed loop.

    ``rollout=none`` (the default) skips it; ``rollout=pusht`` drives gym-pusht (the ``[sim]`` extra).
    How another gymnasium task plugs in: :mod:`getiaction_export.rollout.adapter`.
    """

    name: str = "none"
    """``none``, or the task's name (shown in the report)."""
    adapter: str | None = field(default=None, metadata={"example": "getiaction_export.rollout.pusht.PushT"})
    """Import path of the task's :class:`~getiaction_export.rollout.adapter.TaskAdapter` class."""
    episodes: int = field(default=2, metadata={"min": 1})
    steps: int = field(default=300, metadata={"min": 1})
    """Steps per episode at most: each run stops when its episode ends (PushT: the block on its goal), and the
    gaps are compared over the steps both runs reached (``steps`` per run is recorded)."""
    seed: int = 0
    """Episode ``e`` starts from ``env.reset(seed=seed + e)`` in every run."""
    task: str | None = field(default=None, metadata={"example": "push the T-shaped block onto the target"})
    """The task string a vision-language-action policy (SmolVLA) is given every step; required for one, refused
    for a policy that reads no task."""
    max_gap: dict[str, float] = field(default_factory=dict)
    """Per precision (fp32, fp16, int8): the largest distance allowed between the artifact's and PyTorch's
    tracked state (PushT: the agent position, pixels) at any step; a precision not given takes the adapter's
    own bound (``TaskAdapter.max_gap``)."""

    @property
    def enabled(self) -> bool:
        return self.name != "none"


@dataclass
class AppSchema:
    """The top level of ``config.yaml``."""

    policy: Any = MISSING
    input_sample: Any = MISSING
    format: Any = MISSING
    rollout: Any = None
    checkpoint: str | None = None
    """Export the policy saved in this to_torch checkpoint instead of building ``policy``."""
    output_dir: str | None = None
    """Where artifacts go; default: the Hydra job folder."""
    overwrite: bool = False
    """Replace artifacts that already exist in ``output_dir``."""
    allowed_packages: list[str] = field(default_factory=lambda: ["getiaction"])
    """Packages a checkpoint's class_path may name."""


FORMAT_SCHEMAS: dict[str, type] = {
    schema.name: schema for schema in (OnnxFormatSchema, TorchFormatSchema, OpenVINOFormatSchema,
                                       ExecutorchFormatSchema, AllFormatSchema)
}
FormatSchema = OnnxFormatSchema | TorchFormatSchema
"""One of FORMAT_SCHEMAS (openvino, executorch and all extend onnx)."""


@dataclass(frozen=True)
class PolicySpec:
    """What to build: ``target(**kwargs)`` under ``torch.manual_seed(seed)``, its forward called ``call_style``."""

    target: str
    seed: int = 0
    call_style: CallStyle = CallStyle.DICT
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportConfig:
    """The validated config, as plain typed objects the job takes.

    Example:
        >>> config = ExportConfig(policy=PolicySpec(target="getiaction.policies.Dummy"),
        ...                       input_sample=InputSampleSchema(), format=OnnxFormatSchema(opset_version=17))
        >>> config.call_style, config.format.precision == "fp32"
        (<CallStyle.DICT: 'dict'>, True)
    """

    policy: PolicySpec | None
    """None when ``checkpoint`` is set: the policy is loaded from it."""
    input_sample: InputSampleSchema
    format: FormatSchema
    checkpoint: str | None = None
    rollout: RolloutSchema = field(default_factory=RolloutSchema)
    output_dir: str | None = None
    overwrite: bool = False
    allowed_packages: list[str] = field(default_factory=lambda: ["getiaction"])
    policy_name: str = "policy"
    """The artifact file stem: the policy option's name (``dummy``)."""

    @property
    def call_style(self) -> CallStyle:
        """How the forward takes the inputs: the policy's, and ``dict`` for a checkpoint's policy."""
        return self.policy.call_style if self.policy is not None else CallStyle.DICT


def register_schemas() -> None:
    """Put the schemas into Hydra's ConfigStore under ``schema/`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="schema", name="app", node=AppSchema)
    store.store(group="schema/policy", name="policy", node=PolicySchema)
    store.store(group="schema/input_sample", name="input_sample", node=InputSampleSchema)
    store.store(group="schema/rollout", name="rollout", node=RolloutSchema)
    for name, schema in FORMAT_SCHEMAS.items():
        store.store(group="schema/format", name=name, node=schema)


LEROBOT_FACTORY = "getiaction_export.sources.lerobot.lerobot"  # its artifacts are named after the folder's type


def policy_name(cfg: DictConfig) -> str:
    """The artifact stem: the checkpoint's file name, a LeRobot folder's policy type (``act``), or the policy
    class/factory name, lower-cased.

    Example:
        >>> policy_name(OmegaConf.create({"policy": {"_target_": "getiaction.policies.Dummy"}}))
        'dummy'
    """
    if cfg.get("checkpoint"):
        return Path(str(cfg.checkpoint)).stem
    target = str(OmegaConf.select(cfg, "policy._target_", default="policy") or "policy")
    folder = OmegaConf.select(cfg, "policy.path", default=None)
    if target == LEROBOT_FACTORY and folder:
        return saved_policy_type(Path(str(folder))) or "lerobot"
    return target.rsplit(".", 1)[-1].lower()


def saved_policy_type(folder: Path) -> str | None:
    """A LeRobot folder's ``config.json`` ``type`` (``act``, ...) if it is a plain name; None: the source says why.

    Example:
        >>> import json, tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text(json.dumps({"type": "act"}))
        >>> saved_policy_type(folder), saved_policy_type(folder / "missing")
        ('act', None)
    """
    try:
        kind = json.loads((folder / "config.json").read_text()).get("type")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) and kind.isidentifier() else None
