"""Validation: a composed config checked against the schemas of :mod:`getiaction_export.config.schemas`, all at once.

Generic, field by field: OmegaConf's typed assignment, then each field's metadata (choices from the
library enums, bounds), then the few rules that join two options. Every problem is reported in one
line, before anything is built or written.

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
format.precision: 'fp8' is not valid; use fp32, fp16 or int8; format.num_random_inputs=-1: must be >= 0
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import fields, is_dataclass
from enum import EnumMeta
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from getiaction.errors import ConfigError
from getiaction.export.extras import installed
from getiaction.export.options import (
    DYNAMO_LOWEST_OPSET,
    INT8_ONNX_REFUSAL,
    TORCHSCRIPT_HIGHEST_OPSET,
    CallStyle,
    Exporter,
    Precision,
)
from getiaction_export.config.schemas import (
    FORMAT_PACKAGES,
    FORMAT_SCHEMAS,
    GROUPS,
    POLICY_RESERVED_KEYS,
    REQUIRED_GROUPS,
    ROLLOUT_PRECISIONS,
    AllFormatSchema,
    AppSchema,
    ExecutorchFormatSchema,
    ExportConfig,
    InputSampleSchema,
    OnnxFormatSchema,
    PolicySchema,
    PolicySpec,
    RolloutSchema,
    dotted_names,
)


def suggest(word: str, options: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def accepts_key(key: str, format_name: str | None = None) -> bool:
    """Whether the schemas allow ``key`` (dotted path) in a config, whether or not the YAML has it.

    Tells "needs ``+``" (Hydra refuses to override a key the YAML lacks) from a misspelt key.
    Beside declared fields, the keys of three mappings are the user's own names: the inputs of
    ``input_sample.inputs`` (dotted names split into levels, :func:`dotted_names`), the outputs of
    ``format.output_tolerances``, and ``policy``'s keyword arguments of ``_target_``.

    Example:
        >>> [accepts_key(k) for k in ("input_sample.inputs", "input_sample.inputs.observation.state.shape",
        ...                           "format.output_tolerances.action.atol", "policy.hidden")]
        [True, True, True, True]
        >>> [accepts_key(k) for k in ("format.opset", "input_sample.inputs.state.shap", "policy.config.x")]
        [False, False, False]
    """
    groups: dict[str, Any] = {"policy": PolicySchema, "input_sample": InputSampleSchema,
                              "format": FORMAT_SCHEMAS.get(str(format_name), AllFormatSchema)}
    parts = key.split(".")
    schema: Any = AppSchema
    entry: Any = None  # the schema of a named entry, once inside one (a name may go on: observation.state)
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        declared = {f.name: f for f in fields(schema)} if schema is not None else {}
        if schema is AppSchema and part in groups:
            schema = groups[part]
        elif part in declared and get_origin(get_type_hints(schema)[part]) is dict:
            schema, entry = None, get_args(get_type_hints(schema)[part])[-1]
        elif part in declared:
            return last
        elif schema is PolicySchema:
            return last  # a keyword argument of _target_; what it holds is the target's business
        elif entry is not None and not (schema is entry and last):
            schema = entry  # an entry's name, or the next level of a dotted name
        else:
            return False
    return True


def option_for(key: str) -> str | None:
    """The group option a key is read by, when only one option of its group reads it (``only_for``).

    Example:
        >>> option_for("input_sample.inputs.observation.state.shape"), option_for("input_sample.seed")
        ('input_sample=random', None)
    """
    group, _, rest = key.partition(".")
    schema = {"input_sample": InputSampleSchema}.get(group)
    declared = {f.name: f for f in fields(schema)} if schema is not None else {}
    spec = declared.get(rest.split(".", 1)[0])
    only = spec.metadata.get("only_for") if spec is not None else None
    return f"{group}={only}" if only else None


def validate(cfg: DictConfig, policy_name: str | None = None) -> ExportConfig:
    """Check a composed config against the schemas; raise one ConfigError listing every problem."""
    missing = [group for group in REQUIRED_GROUPS if OmegaConf.select(cfg, group) is None]
    errors = [f"{group}: missing (choose one with {group}=NAME)" for group in missing]
    app = _typed(AppSchema, cfg, "", errors, skip=(*GROUPS, "hydra"))
    if not missing:
        policy = None if cfg.get("checkpoint") else _policy(cfg.policy, errors)
        sample = _typed(InputSampleSchema, cfg.input_sample, "input_sample", errors)
        fmt = _format(cfg.format, errors)
    rollout = _rollout(cfg.rollout, fmt, errors) if OmegaConf.select(cfg, "rollout") is not None else RolloutSchema()
    if errors:
        raise ConfigError((f"{len(errors)} config errors: " if len(errors) > 1 else "") + "; ".join(errors))
    assert app is not None and sample is not None and fmt is not None and rollout is not None  # no errors recorded
    return ExportConfig(policy=policy, input_sample=sample, format=fmt, checkpoint=app.checkpoint, rollout=rollout,
                        output_dir=app.output_dir, overwrite=app.overwrite,
                        allowed_packages=list(app.allowed_packages), policy_name=policy_name or "policy")


Schema = TypeVar("Schema")


def _typed(schema: type[Schema], node: Any, key: str, errors: list[str], skip: Collection[str] = (),
           add: str = "") -> Schema | None:
    """``node`` as a ``schema`` instance (None if anything is wrong), every problem recorded in ``errors``.

    Each field is converted by OmegaConf's typed assignment (the entries of a ``dict[str, <schema>]``
    field are checked the same way, one level down), then :func:`_check_rules` applies the fields'
    metadata. Keys in ``skip`` are left to the caller (schema fields among them become None).
    ``add`` prefixes the override a missing value is set with: ``+`` inside an entry the user named,
    which no YAML declares.
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
            value = _joined_names(value, entry_schema)
            entries = {k: _typed(entry_schema, None if OmegaConf.is_missing(value, k) else value[k],
                                 _join(key, f"{name}.{k}"), errors, add="+") for k in map(str, value)}
            value = {k: entry for k, entry in entries.items() if entry is not None}
        elif isinstance(hints[name], type) and is_dataclass(hints[name]) and isinstance(value, DictConfig):
            value = _typed(hints[name], value, _join(key, name), errors)  # a nested section (format.calibration)
            if value is None:
                failed.add(name)
                continue
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
        errors.append(f"{_join(key, name)}: missing value (set {add}{_join(key, name)}={example})")
    if missing:
        return None
    checked: Schema = OmegaConf.to_object(typed)  # type: ignore[assignment]
    _check_rules(checked, key, errors)
    return checked if len(errors) == before else None


def _joined_names(node: DictConfig, entry_schema: type) -> DictConfig:
    """A ``{name: <entry_schema>}`` mapping with dotted names put back together (:func:`dotted_names`).

    The node itself when no name was split, so its interpolations still resolve in the whole config.
    """
    plain = OmegaConf.to_container(node, resolve=False)
    assert isinstance(plain, dict)  # a DictConfig
    joined = dotted_names({str(k): v for k, v in plain.items()}, [f.name for f in fields(entry_schema)])
    return node if joined == plain else OmegaConf.create(joined)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _check_rules(checked: Any, key: str, errors: list[str]) -> None:
    """Every field's metadata: ``choices`` (a value becomes the enum's member), ``min``/``max``, and
    ``only_for``: a value given to a kind (the schema's ``name``) that never reads it is refused, not ignored."""
    for spec in fields(checked):
        value, where = getattr(checked, spec.name), _join(key, spec.name)
        if is_dataclass(value):  # a nested section: _typed checked its rules
            continue
        values = [v for v in (value if isinstance(value, list) else [value]) if v is not None]
        choices, low, high, only = (spec.metadata.get(rule) for rule in ("choices", "min", "max", "only_for"))
        if only is not None and values and values != [{}] and getattr(checked, "name", only) != only:
            errors.append(f"{where}: read only by {key}={only}, not {key}={checked.name}; add {key}={only}")
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


def _rollout(node: Any, fmt: Any, errors: list[str]) -> RolloutSchema | None:
    """``rollout``: a task needs its adapter and the ``[sim]`` packages; ``max_gap`` is keyed by precision, and
    every precision the job exports has a bound (``rollout.max_gap`` or the adapter's)."""
    from getiaction.export.extras import missing_message
    from getiaction_export.config.format_plan import job_formats

    rollout = _typed(RolloutSchema, node, "rollout", errors)
    if rollout is None or not rollout.enabled:
        return rollout
    wrong = [key for key in rollout.max_gap if key not in ROLLOUT_PRECISIONS]
    if wrong:
        errors.append(f"rollout.max_gap.{wrong[0]}: not a precision; use {', '.join(ROLLOUT_PRECISIONS)}")
    negative = [key for key, value in rollout.max_gap.items() if value < 0]
    if negative:
        errors.append(f"rollout.max_gap.{negative[0]}={rollout.max_gap[negative[0]]}: must be >= 0")
    if not rollout.adapter:
        errors.append(f"rollout.adapter: missing for rollout={rollout.name} (set rollout.adapter="
                      "getiaction_export.rollout.pusht.PushT, or your own TaskAdapter's import path)")
        return None
    from getiaction_export.rollout.adapter import adapter_class

    try:
        adapter = adapter_class(rollout.adapter)
    except ConfigError as error:
        errors.append(str(error))
        return None
    for module in adapter.requires:
        if not installed(module):
            errors.append(missing_message(f"rollout={rollout.name}", module))
            break
    precisions = {str(getattr(schema, "precision", "fp32")) for _, schema in job_formats(fmt)} if fmt else set()
    unbounded = sorted(p for p in precisions if p not in rollout.max_gap and p not in adapter.max_gap)
    if unbounded:
        errors.append(f"rollout.max_gap.{unbounded[0]}: {adapter.__name__} has no {unbounded[0]} bound; set "
                      f"+rollout.max_gap.{unbounded[0]}=<largest gap in {adapter.unit or 'its unit'}>")
    return rollout


def _check_precision(fmt: OnnxFormatSchema, every: bool, errors: list[str]) -> None:
    """INT8 is OpenVINO's (measured: onnxruntime's does not pay); ExecuTorch programs are fp32."""
    if fmt.precision == Precision.INT8 and every:
        errors.append("format.precision=int8: format=all makes INT8 for OpenVINO only, beside the others; add "
                      "openvino_int8 to format.formats and keep format.precision for the rest (fp32 or fp16)")
    elif fmt.precision == Precision.INT8 and fmt.name == "onnx":
        errors.append(f"format.{INT8_ONNX_REFUSAL}")
    if isinstance(fmt, ExecutorchFormatSchema) and fmt.precision != Precision.FP32:
        errors.append(f"format.precision={fmt.precision}: format=executorch writes fp32 programs (XNNPACK); "
                      "use format.precision=fp32, or format=openvino for fp16/int8")


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
    from getiaction_export.config.format_plan import installed_formats

    every = isinstance(fmt, AllFormatSchema)
    names = [fmt.name]
    if isinstance(fmt, AllFormatSchema):
        names = fmt.formats if fmt.formats is not None else installed_formats()
    if not names or len(set(names)) != len(names):
        errors.append(f"format.formats: {names} must name each format once, e.g. [onnx, openvino]")
    int8 = fmt.precision == Precision.INT8
    needs = {**FORMAT_PACKAGES, "openvino": ("openvino", "nncf") if int8 else ("openvino",)}
    for name in names:
        for module in (m for m in needs.get(name, ()) if not installed(m)):
            feature = (f"format=all with {name} in format.formats" if every else f"format={name}") + \
                (" format.precision=int8" if int8 and name == "openvino" else "")
            errors.append(missing_message(feature, module))
    _check_precision(fmt, every, errors)
    if fmt.simplify:
        if "onnx" not in names:
            errors.append("format.simplify: applies to format=onnx only (OpenVINO simplifies the graph itself); "
                          "drop it or use format=onnx")
        elif not installed("onnxslim"):
            errors.append(missing_message("format.simplify=true", "onnxslim"))
    calibration = getattr(fmt, "calibration", None)
    if calibration is not None and calibration.source == "file" and not calibration.path:
        errors.append("format.calibration.path: missing value for calibration.source=file "
                      "(set format.calibration.path=observations.npz)")
    elif calibration is not None and calibration.path and calibration.source != "file":
        errors.append("format.calibration.path: read only by format.calibration.source=file; add "
                      "format.calibration.source=file")
    if fmt.runtime_check and not installed("physicalai"):
        errors.append(missing_message("format.runtime_check=true", "physicalai"))
