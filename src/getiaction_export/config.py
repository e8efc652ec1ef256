"""The application's config schemas, and validation that reports every problem at once.

The YAML tree in ``conf/`` is composed by Hydra as plain data; :func:`validate` then checks it
against the dataclass schemas below (registered in Hydra's ConfigStore under ``schema/``, so a
user's own config can extend them) and returns typed objects. Unknown keys, wrong types and
missing values are all collected and reported in one line, before anything is built or written.

The schemas use plain types only (str, int, float, bool, lists, dicts): a policy's own dataclass
config is rebuilt from the composed plain values by :mod:`getiaction.export.serialization`.

This module imports neither torch nor the pipeline: config-only commands stay fast.

Example:
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"policy": {"_target_": "getiaction.policies.Dummy"},
    ...                         "input_sample": {"name": "from_policy"},
    ...                         "format": {"name": "onnx", "opset_version": "14"}})
    >>> validate(cfg).format.opset_version
    14
    >>> validate(OmegaConf.create({**cfg, "format": {"name": "onnx", "opset": 14}}))
    Traceback (most recent call last):
    ...
    getiaction.errors.ConfigError: format.opset: unknown key (did you mean 'opset_version'?)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from getiaction.errors import ConfigError


# --------------------------------------------------------------------------------------------
# schemas
# --------------------------------------------------------------------------------------------
@dataclass
class PolicySchema:
    """``policy``: what to build. Keys other than these are keyword arguments of ``_target_``."""

    _target_: str = MISSING
    """Import path of the policy class or factory (``getiaction.policies.Dummy``)."""
    seed: int = 0
    """Fresh (untrained) weights are drawn from this seed."""
    call_style: str = "dict"
    """``dict``: ``forward(batch)``; ``kwargs``: ``forward(**batch)`` (plain modules)."""


POLICY_RESERVED_KEYS = ("_target_", "seed", "call_style")


@dataclass
class TensorSpecSchema:
    """One input of a ``random`` sample."""

    shape: list[int] = MISSING
    dtype: str = "float32"
    low: float = -1.0
    high: float = 1.0


@dataclass
class InputSampleSchema:
    """``input_sample``: where the example inputs come from."""

    name: str = "from_policy"
    """``from_policy`` (the policy's sample_input), ``random`` (from ``inputs``) or ``file``."""
    seed: int = 0
    inputs: dict[str, TensorSpecSchema] = field(default_factory=dict)
    """For ``random``: ``{name: {shape, dtype}}``."""
    path: str | None = None
    """For ``file``: an ``.npz`` or ``.pt`` (loaded with weights_only) of named arrays."""


@dataclass
class ToleranceSchema:
    """One output's parity tolerances; ``null`` falls back to ``format.atol``/``format.rtol``."""

    atol: float | None = None
    rtol: float | None = None


PRECISIONS = ("fp32", "fp16")
DEFAULT_TOLERANCES = {"fp32": (1e-5, 1e-4), "fp16": (5e-3, 1e-2)}
"""``precision -> (atol, rtol)`` when ``format.atol``/``format.rtol`` are null. fp16 measured: ACT-like
7e-4 in onnxruntime (which upcasts float16 arithmetic on CPU), 2e-3 in true float16 arithmetic."""


@dataclass
class OnnxFormatSchema:
    """``format=onnx``: export with torch.onnx, then check and verify with onnxruntime."""

    name: str = "onnx"
    opset_version: int = 18
    exporter: str = "auto"
    """``auto`` (dynamo for opset >= 18, torchscript below), ``dynamo`` or ``torchscript``."""
    dynamic_batch: bool = True
    output_names: list[str] | None = None
    """Default: the policy's own (``["action"]``)."""
    precision: str = "fp32"
    """``fp32``, or ``fp16``: float16 weights and arithmetic (inputs and outputs stay float32)."""
    atol: float | None = None
    """Parity gate ``|a - b| <= atol + rtol * |b|``; null: the precision's default (DEFAULT_TOLERANCES)."""
    rtol: float | None = None
    output_tolerances: dict[str, ToleranceSchema] = field(default_factory=dict)
    """Per output name: ``{action: {atol: 1e-4}}``; wins over ``atol``/``rtol``."""
    seed: int = 0
    """Seed of the random verification inputs."""
    num_random_inputs: int = 3
    """Seeded random inputs checked besides the sample, at each batch size."""
    verify_batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 8])
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


FORMAT_ORDER = ("torch", "onnx", "openvino")


@dataclass
class AllFormatSchema(OnnxFormatSchema):
    """``format=all``: several formats from one build, each exported, verified and promoted in turn."""

    name: str = "all"
    formats: list[str] = field(default_factory=lambda: list(FORMAT_ORDER))
    """Any of torch, onnx, openvino; they run in that order. The torch checkpoint stays float32."""


@dataclass
class TorchFormatSchema:
    """``format=torch``: a checkpoint with its config, verified by loading it back."""

    name: str = "torch"
    seed: int = 0
    num_random_inputs: int = 2


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
    "onnx": OnnxFormatSchema,
    "torch": TorchFormatSchema,
    "openvino": OpenVINOFormatSchema,
    "all": AllFormatSchema,
}
GROUPS = ("policy", "input_sample", "format")
INPUT_SAMPLE_KINDS = ("from_policy", "random", "file")


@dataclass
class ExportConfig:
    """The validated config, as plain typed objects the pipeline takes."""

    policy: dict[str, Any]
    input_sample: InputSampleSchema
    format: Any
    checkpoint: str | None = None
    output_dir: str | None = None
    overwrite: bool = False
    allowed_packages: list[str] = field(default_factory=lambda: ["getiaction"])
    policy_name: str = "policy"
    """The artifact file stem: the policy option's name (``dummy``)."""


def register_schemas() -> None:
    """Put the schemas into Hydra's ConfigStore under ``schema/`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="schema", name="app", node=AppSchema)
    store.store(group="schema/policy", name="policy", node=PolicySchema)
    store.store(group="schema/input_sample", name="input_sample", node=InputSampleSchema)
    for name, schema in FORMAT_SCHEMAS.items():
        store.store(group="schema/format", name=name, node=schema)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def suggest(word: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Errors:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def raise_if_any(self) -> None:
        if self.lines:
            count = f"{len(self.lines)} config errors: " if len(self.lines) > 1 else ""
            raise ConfigError(count + "; ".join(self.lines))


def _check_against(schema: type, node: Any, key: str, errors: _Errors, extra_ok: bool = False) -> Any:
    """Merge ``node`` into ``schema`` key by key, recording every unknown key, bad type, missing value."""
    typed = OmegaConf.structured(schema)
    if not isinstance(node, DictConfig):
        errors.add(f"{key}: expected a mapping, got {node!r}")
        return OmegaConf.to_object(typed) if not OmegaConf.missing_keys(typed) else None
    valid = [f.name for f in fields(schema)]
    extra: dict[str, Any] = {}
    for name in node:
        name = str(name)
        if name not in valid:
            if extra_ok:
                extra[name] = node[name]
            else:
                errors.add(f"{key}.{name}: unknown key{suggest(name, valid)}")
            continue
        if OmegaConf.is_missing(node, name):
            continue
        try:
            typed[name] = node[name]
        except OmegaConfBaseException as error:
            wanted = {f.name: f.type for f in fields(schema)}[name]
            raw = OmegaConf.to_container(node, resolve=False).get(name)  # type: ignore[union-attr]
            errors.add(f"{key}.{name}: {raw!r} is not a valid {wanted} ({_short(error)})")
    for name in OmegaConf.missing_keys(typed):
        errors.add(f"{key}.{name}: missing value (set {key}.{name}=...)")
    if OmegaConf.missing_keys(typed):
        return None
    result = OmegaConf.to_object(typed)
    return (result, extra) if extra_ok else result


def _short(error: Exception) -> str:
    return str(error).strip().splitlines()[0][:120]


def validate(cfg: DictConfig, policy_name: str | None = None) -> ExportConfig:
    """Check a composed config against the schemas; raise one ConfigError listing every problem."""
    errors = _Errors()
    top_valid = [f.name for f in fields(AppSchema)]
    for name in cfg:
        if str(name) not in top_valid and str(name) != "hydra":
            errors.add(f"{name!s}: unknown key{suggest(str(name), top_valid)}")
    for group in GROUPS:
        if group not in cfg or cfg[group] is None:
            errors.add(f"{group}: missing (choose one with {group}=NAME)")
    errors.raise_if_any()

    top = {k: cfg[k] for k in top_valid if k in cfg and k not in GROUPS}
    app = _check_against(AppSchema, OmegaConf.create({**top, **{g: {} for g in GROUPS}}), "config", errors)

    policy = None
    if not cfg.get("checkpoint"):
        checked = _check_against(PolicySchema, cfg.policy, "policy", errors, extra_ok=True)
        if checked is not None:
            schema_part, kwargs = checked
            policy = {**vars(schema_part), "kwargs": OmegaConf.to_container(OmegaConf.create(kwargs), resolve=True)}
            if schema_part.call_style not in ("dict", "kwargs"):
                errors.add(f"policy.call_style: {schema_part.call_style!r} is not valid; use 'dict' or 'kwargs'")
    sample = _check_against(InputSampleSchema, cfg.input_sample, "input_sample", errors)
    if sample is not None and sample.name not in INPUT_SAMPLE_KINDS:
        errors.add(f"input_sample.name: {sample.name!r} is not valid{suggest(sample.name, list(INPUT_SAMPLE_KINDS))}")

    format_name = cfg.format.get("name") if isinstance(cfg.format, DictConfig) else None
    fmt = None
    if format_name not in FORMAT_SCHEMAS:
        errors.add(
            f"format.name: {format_name!r} is not a known format{suggest(str(format_name), list(FORMAT_SCHEMAS))}; "
            f"valid: {sorted(FORMAT_SCHEMAS)}"
        )
    else:
        fmt = _check_against(FORMAT_SCHEMAS[format_name], cfg.format, "format", errors)
        if fmt is not None:
            _check_format_values(fmt, errors)
    errors.raise_if_any()
    assert app is not None and sample is not None and fmt is not None  # guaranteed: no errors recorded
    return ExportConfig(
        policy=policy or {},
        input_sample=sample,
        format=fmt,
        checkpoint=app.checkpoint,
        output_dir=app.output_dir,
        overwrite=app.overwrite,
        allowed_packages=list(app.allowed_packages),
        policy_name=policy_name or "policy",
    )


def _check_format_values(fmt: Any, errors: _Errors) -> None:
    if isinstance(fmt, OnnxFormatSchema):
        if fmt.exporter not in ("auto", "dynamo", "torchscript"):
            errors.add(f"format.exporter: {fmt.exporter!r} is not valid; use auto, dynamo or torchscript")
        if fmt.precision not in PRECISIONS:
            errors.add(f"format.precision: {fmt.precision!r} is not valid{suggest(fmt.precision, list(PRECISIONS))}; "
                       f"use {' or '.join(PRECISIONS)}")
        given = [("format.atol", fmt.atol), ("format.rtol", fmt.rtol)]
        fmt.output_tolerances = _tolerance_specs(fmt.output_tolerances, errors)
        for output, tolerance in fmt.output_tolerances.items():
            given += [(f"format.output_tolerances.{output}.atol", tolerance.atol),
                      (f"format.output_tolerances.{output}.rtol", tolerance.rtol)]
        for key, value in given:
            if value is not None and value < 0:
                errors.add(f"{key}: {value} must be >= 0")
        if any(b < 1 for b in fmt.verify_batch_sizes):
            errors.add(f"format.verify_batch_sizes: {fmt.verify_batch_sizes} must be positive")
        _check_formats(fmt, errors)
    if getattr(fmt, "num_random_inputs", 0) < 0:
        errors.add("format.num_random_inputs: must be >= 0")


def _tolerance_specs(given: dict[str, Any], errors: _Errors) -> dict[str, ToleranceSchema]:
    """``output_tolerances`` as ToleranceSchema values (OmegaConf may hand nested entries back as dicts)."""
    specs = {}
    for output, value in given.items():
        if isinstance(value, ToleranceSchema):
            specs[output] = value
            continue
        key = f"format.output_tolerances.{output}"
        if not isinstance(value, dict):
            errors.add(f"{key}: expected {{atol: ..., rtol: ...}}, got {value!r}")
            continue
        unknown = sorted(set(value) - {"atol", "rtol"})
        if unknown:
            hint = suggest(str(unknown[0]), ["atol", "rtol"])
            errors.add(f"{key}.{unknown[0]}: unknown key{hint}; valid: atol, rtol")
            continue
        try:
            specs[output] = ToleranceSchema(**{k: None if v is None else float(v) for k, v in value.items()})
        except (TypeError, ValueError):
            errors.add(f"{key}: {value!r} must hold numbers (atol, rtol)")
    return specs


def _check_formats(fmt: OnnxFormatSchema, errors: _Errors) -> None:
    """The formats a job produces, their optional packages, and options that apply to none of them."""
    from getiaction.export.extras import installed, missing_message

    names = fmt.formats if isinstance(fmt, AllFormatSchema) else [fmt.name]
    unknown = [name for name in names if name not in FORMAT_ORDER]
    for name in unknown:
        errors.add(f"format.formats: {name!r} is not a format{suggest(name, list(FORMAT_ORDER))}; "
                   f"valid: {', '.join(FORMAT_ORDER)}")
    if not names or len(set(names)) != len(names):
        errors.add(f"format.formats: {names} must name each format once, e.g. [onnx, openvino]")
    if "openvino" in names and not installed("openvino"):
        feature = "format=openvino" if fmt.name == "openvino" else "format=all with openvino in format.formats"
        errors.add(missing_message(feature, "openvino"))
    if fmt.simplify:
        if "onnx" not in names:
            errors.add("format.simplify: applies to format=onnx only (OpenVINO simplifies the graph itself); "
                       "drop it or use format=onnx")
        elif not installed("onnxslim"):
            errors.add(missing_message("format.simplify=true", "onnxslim"))
    if fmt.runtime_check and not installed("physicalai"):
        errors.add(missing_message("format.runtime_check=true", "physicalai"))


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
    default_atol, default_rtol = DEFAULT_TOLERANCES[getattr(fmt, "precision", "fp32")]
    own = getattr(fmt, "output_tolerances", {}).get(output) or ToleranceSchema()
    atol = next(v for v in (own.atol, getattr(fmt, "atol", None), default_atol) if v is not None)
    rtol = next(v for v in (own.rtol, getattr(fmt, "rtol", None), default_rtol) if v is not None)
    if own.atol is not None or own.rtol is not None:
        source = f"format.output_tolerances.{output}"
    elif getattr(fmt, "atol", None) is not None or getattr(fmt, "rtol", None) is not None:
        source = "format.atol/rtol"
    else:
        source = f"{getattr(fmt, 'precision', 'fp32')} default"
    return {"atol": float(atol), "rtol": float(rtol), "source": source}
