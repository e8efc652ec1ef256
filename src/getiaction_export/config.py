"""The application's config: one schema dataclass per group, the single source of truth for each option.

An option is one schema field: type, default, docstring, and in its metadata the choices (a library
enum such as :class:`~getiaction.export.options.Exporter`) and bounds (``min``/``max``).
:func:`validate` checks a composed config against the schemas generically, field by field
(OmegaConf's typed assignment, then the metadata, then the few rules that join two options) and
reports every problem in one line, before anything is built or written.

``conf/`` is composed as plain YAML: with these schemas in its defaults lists, Hydra's typed merge
would stop at the first bad override, and a policy's other keys are free keyword arguments of its
``_target_``. The schemas are registered under ``schema/`` for users' own typed configs.
No torch here, and onnx only when an opset above the default is checked: config-only commands stay fast.

Example:
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"policy": {"_target_": "getiaction.policies.Dummy"},
    ...                         "input_sample": {"name": "from_policy"},
    ...                         "format": {"name": "onnx", "opset_version": "14", "exporter": "torchscript"}})
    >>> config = validate(cfg)
    >>> config.format.opset_version, config.format.exporter is Exporter.TORCHSCRIPT, config.call_style
    (14, True, <CallStyle.DICT: 'dict'>)
    >>> validate(OmegaConf.merge(cfg, {"format": {"opset": 14, "precision": "fp8", "num_random_inputs": -1}}))
    Traceback (most recent call last):
    ...
    getiaction.errors.ConfigError: 3 config errors: format.opset: unknown key (did you mean 'opset_version'?); \
format.precision: 'fp8' is not valid; use fp32 or fp16; format.num_random_inputs=-1: must be >= 0
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass, field, fields, is_dataclass
from enum import EnumMeta
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from getiaction.errors import ConfigError
from getiaction.export.options import (
    DYNAMO_LOWEST_OPSET,
    LOWEST_OPSET,
    TORCHSCRIPT_HIGHEST_OPSET,
    CallStyle,
    Exporter,
    Precision,
    highest_opset,
)

GROUPS = ("policy", "input_sample", "format")
INPUT_SAMPLE_KINDS = ("from_policy", "random", "file")
FORMAT_ORDER = ("torch", "onnx", "openvino")
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {Precision.FP32: (1e-5, 1e-4), Precision.FP16: (5e-3, 1e-2)}
"""``precision -> (atol, rtol)`` when ``format.atol``/``format.rtol`` are null. fp16 measured: ACT-like
7e-4 in onnxruntime (which upcasts float16 arithmetic on CPU), 2e-3 in true float16 arithmetic."""
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


@dataclass
class InputSampleSchema:
    """``input_sample``: where the example inputs come from."""

    name: str = field(default="from_policy", metadata={"choices": INPUT_SAMPLE_KINDS})
    """``from_policy`` (the policy's sample_input), ``random`` (from ``inputs``) or ``file``."""
    seed: int = 0
    inputs: dict[str, TensorSpecSchema] = field(default_factory=dict)
    """For ``random``: ``{name: {shape, dtype}}``."""
    path: str | None = field(default=None, metadata={"example": "observation.npz"})
    """For ``file``: an ``.npz`` or ``.pt`` (loaded with weights_only) of named arrays."""


@dataclass
class ToleranceSchema:
    """One output's parity tolerances; ``null`` falls back to ``format.atol``/``format.rtol``."""

    atol: float | None = field(default=None, metadata=AT_LEAST_0)
    rtol: float | None = field(default=None, metadata=AT_LEAST_0)


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
    """``fp32``, or ``fp16``: float16 weights and arithmetic (inputs and outputs stay float32)."""
    atol: float | None = field(default=None, metadata=AT_LEAST_0)
    """Parity gate ``|a - b| <= atol + rtol * |b|``; null: the precision's default (DEFAULT_TOLERANCES)."""
    rtol: float | None = field(default=None, metadata=AT_LEAST_0)
    output_tolerances: dict[str, ToleranceSchema] = field(default_factory=dict)
    """Per output name: ``{action: {atol: 1e-4}}``; wins over ``atol``/``rtol``."""
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
    """``precision=fp16`` stores float16 weights (compress_to_fp16); inference stays f32."""


@dataclass
class AllFormatSchema(OnnxFormatSchema):
    """``format=all``: several formats from one build, each exported, verified and promoted in turn."""

    name: str = "all"
    formats: list[str] = field(default_factory=lambda: list(FORMAT_ORDER), metadata={"choices": FORMAT_ORDER})
    """Any of torch, onnx, openvino; they run in that order. The torch checkpoint stays float32."""


@dataclass
class TorchFormatSchema:
    """``format=torch``: a checkpoint with its config, verified by loading it back."""

    name: str = "torch"
    seed: int = 0
    num_random_inputs: int = field(default=2, metadata=AT_LEAST_0)


@dataclass
class AppSchema:
    """The top level of ``config.yaml``."""

    policy: Any = MISSING
    input_sample: Any = MISSING
    format: Any = MISSING
    checkpoint: str | None = None
    """Export the policy saved in this to_torch checkpoint instead of building ``policy``."""
    output_dir: str | None = None
    """Where artifacts go; default: the Hydra job folder."""
    overwrite: bool = False
    """Replace artifacts that already exist in ``output_dir``."""
    allowed_packages: list[str] = field(default_factory=lambda: ["getiaction"])
    """Packages a checkpoint's class_path may name."""


FORMAT_SCHEMAS: dict[str, type] = {
    schema.name: schema for schema in (OnnxFormatSchema, TorchFormatSchema, OpenVINOFormatSchema, AllFormatSchema)
}
FormatSchema = OnnxFormatSchema | TorchFormatSchema
"""One of FORMAT_SCHEMAS (openvino and all extend onnx)."""


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
    for name, schema in FORMAT_SCHEMAS.items():
        store.store(group="schema/format", name=name, node=schema)


def policy_name(cfg: DictConfig) -> str:
    """The artifact stem: the checkpoint's file name, or the policy class/factory name, lower-cased.

    Example:
        >>> policy_name(OmegaConf.create({"policy": {"_target_": "getiaction.policies.Dummy"}}))
        'dummy'
    """
    if cfg.get("checkpoint"):
        return Path(str(cfg.checkpoint)).stem
    target = str(OmegaConf.select(cfg, "policy._target_", default="policy") or "policy")
    return target.rsplit(".", 1)[-1].lower()


def suggest(word: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate(cfg: DictConfig, policy_name: str | None = None) -> ExportConfig:
    """Check a composed config against the schemas; raise one ConfigError listing every problem."""
    missing = [group for group in GROUPS if OmegaConf.select(cfg, group) is None]
    errors = [f"{group}: missing (choose one with {group}=NAME)" for group in missing]
    app = _typed(AppSchema, cfg, "", errors, skip=(*GROUPS, "hydra"))
    if not missing:
        policy = None if cfg.get("checkpoint") else _policy(cfg.policy, errors)
        sample = _typed(InputSampleSchema, cfg.input_sample, "input_sample", errors)
        fmt = _format(cfg.format, errors)
    if errors:
        raise ConfigError((f"{len(errors)} config errors: " if len(errors) > 1 else "") + "; ".join(errors))
    assert app is not None and sample is not None and fmt is not None  # no errors recorded
    return ExportConfig(policy=policy, input_sample=sample, format=fmt, checkpoint=app.checkpoint,
                        output_dir=app.output_dir, overwrite=app.overwrite,
                        allowed_packages=list(app.allowed_packages), policy_name=policy_name or "policy")


Schema = TypeVar("Schema")


def _typed(schema: type[Schema], node: Any, key: str, errors: list[str], skip: Collection[str] = ()) -> Schema | None:
    """``node`` as a ``schema`` instance (None if anything is wrong), every problem recorded in ``errors``.

    Each field is converted by OmegaConf's typed assignment (the entries of a ``dict[str, <schema>]``
    field are checked the same way, one level down), then :func:`_check_rules` applies the fields'
    metadata. Keys in ``skip`` are left to the caller (schema fields among them become None).
    """
    if not isinstance(node, DictConfig):
        errors.append(f"{key}: expected a mapping, got {node!r}")
        return None
    before, typed, failed = len(errors), OmegaConf.structured(schema), set()
    declared, hints = {f.name: f for f in fields(schema)}, get_type_hints(schema)  # type: ignore[arg-type]
    for name in (str(name) for name in node if name not in skip):
        if name not in declared:
            errors.append(f"{_join(key, name)}: unknown key{suggest(name, list(declared))}")
            continue
        if OmegaConf.is_missing(node, name):
            typed[name] = MISSING  # reported below, with the schema's own missing values
            continue
        value, entry_schema = node[name], get_args(hints[name])[-1] if get_origin(hints[name]) is dict else None
        if isinstance(entry_schema, type) and is_dataclass(entry_schema) and isinstance(value, DictConfig):
            entries = {k: _typed(entry_schema, None if OmegaConf.is_missing(value, k) else value[k],
                                 _join(key, f"{name}.{k}"), errors) for k in map(str, value)}
            value = {k: entry for k, entry in entries.items() if entry is not None}
        try:
            typed[name] = value
        except OmegaConfBaseException as error:
            raw = OmegaConf.to_container(node, resolve=False).get(name)  # type: ignore[union-attr]
            wanted = str(declared[name].type).replace(" | None", "")
            errors.append(f"{_join(key, name)}: {raw!r} is not a valid {wanted} ({str(error).strip().splitlines()[0]})")
            failed.add(name)
    for name in set(skip) & set(declared):
        typed[name] = None
    missing = sorted(OmegaConf.missing_keys(typed))
    for name in (name for name in missing if name not in failed):
        example = declared[name].metadata.get("example", "...")
        errors.append(f"{_join(key, name)}: missing value (set {_join(key, name)}={example})")
    if missing:
        return None
    checked: Schema = OmegaConf.to_object(typed)  # type: ignore[assignment]
    _check_rules(checked, key, errors)
    return checked if len(errors) == before else None


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _check_rules(checked: Any, key: str, errors: list[str]) -> None:
    """Every field's metadata: ``choices`` (a value becomes the enum's member) and ``min``/``max``."""
    for spec in fields(checked):
        value, where = getattr(checked, spec.name), _join(key, spec.name)
        values = [v for v in (value if isinstance(value, list) else [value]) if v is not None]
        choices, low, high = (spec.metadata.get(rule) for rule in ("choices", "min", "max"))
        if choices is not None:
            valid = [str(choice) for choice in choices]
            wrong = [v for v in values if str(v) not in valid]
            if wrong:
                errors.append(f"{where}: {wrong[0]!r} is not valid; use {', '.join(valid[:-1])} or {valid[-1]}")
            elif isinstance(choices, EnumMeta) and value is not None and not isinstance(value, list):
                setattr(checked, spec.name, choices(value))
        if low is not None and values:
            top = high
            if callable(high):  # costly (imports onnx): not needed from the minimum to the default (a valid value)
                top = high() if min(values) < low or max(values) > spec.default else None
            if any(v < low or (top is not None and v > top) for v in values):
                rule = f"in {low}..{top}" if top is not None else "positive" if low == 1 else f">= {low}"
                errors.append(f"{where}={value}: {'every value ' if isinstance(value, list) else ''}must be {rule}")


def _policy(node: Any, errors: list[str]) -> PolicySpec | None:
    """``policy``: the schema's keys checked; every other key is a keyword argument of ``_target_``."""
    extra = [str(k) for k in node if k not in POLICY_RESERVED_KEYS] if isinstance(node, DictConfig) else []
    checked = _typed(PolicySchema, node, "policy", errors, skip=extra)
    if checked is None:
        return None
    resolved = OmegaConf.to_container(node, resolve=True)  # interpolations resolve in the whole config
    assert isinstance(resolved, dict)  # node is a mapping: _typed checked it
    kwargs = {name: resolved[name] for name in extra}
    return PolicySpec(checked._target_, checked.seed, CallStyle(checked.call_style), kwargs)


def _format(node: Any, errors: list[str]) -> Any:
    """``format``: its ``name`` picks the schema; then the rules between options of an ONNX-based format."""
    name = node.get("name") if isinstance(node, DictConfig) else None
    if name not in FORMAT_SCHEMAS:
        hint = suggest(str(name), list(FORMAT_SCHEMAS))
        errors.append(f"format.name: {name!r} is not a known format{hint}; valid: {sorted(FORMAT_SCHEMAS)}")
        return None
    fmt = _typed(FORMAT_SCHEMAS[name], node, "format", errors)
    if isinstance(fmt, OnnxFormatSchema):
        _check_exporter(fmt, errors)
        _check_formats(fmt, errors)
    return fmt


def _check_exporter(fmt: OnnxFormatSchema, errors: list[str]) -> None:
    """Opsets the chosen exporter cannot write (the library refuses them too, after the build)."""
    opset = fmt.opset_version
    if fmt.exporter == Exporter.DYNAMO and opset < DYNAMO_LOWEST_OPSET:
        errors.append(f"format.opset_version={opset}: the dynamo exporter writes opset {DYNAMO_LOWEST_OPSET} or "
                      "higher; use format.exporter=torchscript or auto")
    if fmt.exporter == Exporter.TORCHSCRIPT and opset > TORCHSCRIPT_HIGHEST_OPSET:
        errors.append(f"format.opset_version={opset}: the torchscript exporter writes opset "
                      f"{TORCHSCRIPT_HIGHEST_OPSET} or lower; use format.exporter=dynamo or auto")


def _check_formats(fmt: OnnxFormatSchema, errors: list[str]) -> None:
    """The formats a job produces, their optional packages, and options that apply to none of them."""
    from getiaction.export.extras import installed, missing_message

    names = fmt.formats if isinstance(fmt, AllFormatSchema) else [fmt.name]
    if not names or len(set(names)) != len(names):
        errors.append(f"format.formats: {names} must name each format once, e.g. [onnx, openvino]")
    if "openvino" in names and not installed("openvino"):
        feature = "format=openvino" if fmt.name == "openvino" else "format=all with openvino in format.formats"
        errors.append(missing_message(feature, "openvino"))
    if fmt.simplify:
        if "onnx" not in names:
            errors.append("format.simplify: applies to format=onnx only (OpenVINO simplifies the graph itself); "
                          "drop it or use format=onnx")
        elif not installed("onnxslim"):
            errors.append(missing_message("format.simplify=true", "onnxslim"))
    if fmt.runtime_check and not installed("physicalai"):
        errors.append(missing_message("format.runtime_check=true", "physicalai"))


def job_formats(fmt: Any) -> list[tuple[str, Any]]:
    """``[(format name, its own schema)]`` for a job, in run order (``format=all`` expands to several).

    Example:
        >>> [name for name, _ in job_formats(AllFormatSchema(formats=["openvino", "torch"]))]
        ['torch', 'openvino']
    """
    if not isinstance(fmt, AllFormatSchema):
        return [(fmt.name, fmt)]
    shared = {f.name: getattr(fmt, f.name) for f in fields(OnnxFormatSchema) if f.name != "name"}
    schemas = {
        "torch": TorchFormatSchema(seed=fmt.seed, num_random_inputs=fmt.num_random_inputs),
        "onnx": OnnxFormatSchema(**shared),
        "openvino": OpenVINOFormatSchema(**{**shared, "simplify": False}),
    }
    return [(name, schemas[name]) for name in FORMAT_ORDER if name in fmt.formats]


def tolerances(fmt: Any, output: str) -> dict[str, Any]:
    """``{atol, rtol, source}`` for one output: its own entry, else ``format.atol/rtol``, else the precision's.

    Example:
        >>> tolerances(OnnxFormatSchema(precision="fp16"), "action")
        {'atol': 0.005, 'rtol': 0.01, 'source': 'fp16 default'}
    """
    precision = getattr(fmt, "precision", Precision.FP32)
    layers = [(f"format.output_tolerances.{output}", getattr(fmt, "output_tolerances", {}).get(output)),
              ("format.atol/rtol", ToleranceSchema(getattr(fmt, "atol", None), getattr(fmt, "rtol", None))),
              (f"{precision} default", ToleranceSchema(*DEFAULT_TOLERANCES[precision]))]
    given = [(source, spec) for source, spec in layers if spec and (spec.atol is not None or spec.rtol is not None)]
    atol = next(spec.atol for _, spec in given if spec.atol is not None)
    rtol = next(spec.rtol for _, spec in given if spec.rtol is not None)
    return {"atol": float(atol), "rtol": float(rtol), "source": given[0][0]}
