"""What the ``format`` option plans for a job: the formats it runs and what each output is held to.

:mod:`~getiaction_export.config.schemas` declares the options; this module reads a format schema for a
job. :func:`job_formats` expands ``format=all`` into each format's own schema, in run order (with
``formats: null``: those whose optional packages are installed, :func:`installed_formats`;
:func:`left_out_formats` says why the others were left out). :func:`tolerances` chooses the tolerance of
one output, field by field. No torch here: config-only commands stay fast.

Example:
    >>> [name for name, _ in job_formats(AllFormatSchema(formats=["onnx", "torch"]))]
    ['torch', 'onnx']
    >>> tolerances(OnnxFormatSchema(atol=1e-3), "action")["source"]
    'format.atol/rtol'
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import fields
from typing import Any

from getiaction.export.options import Precision
from getiaction_export.config.schemas import (
    FORMAT_ORDER,
    FORMAT_PACKAGES,
    AllFormatSchema,
    ExecutorchFormatSchema,
    OnnxFormatSchema,
    OpenVINOFormatSchema,
    ToleranceSchema,
    TorchFormatSchema,
)


def installed_formats() -> list[str]:
    """The formats whose optional packages are installed, in run order (``format=all``'s default)."""
    from getiaction.export.extras import installed

    return [name for name in FORMAT_ORDER if all(installed(module) for module in FORMAT_PACKAGES.get(name, ()))]


def left_out_formats(chosen: Collection[str]) -> list[tuple[str, str]]:
    """``[(format, the first package it needs that is missing)]`` for the formats ``format=all`` left out."""
    from getiaction.export.extras import installed

    return [(name, next(m for m in FORMAT_PACKAGES[name] if not installed(m)))
            for name in FORMAT_ORDER if name not in chosen and name in FORMAT_PACKAGES]


def job_formats(fmt: Any) -> list[tuple[str, Any]]:
    """``[(format name, its own schema)]`` for a job, in run order (``format=all`` expands to several).

    Example:
        >>> jobs = job_formats(AllFormatSchema(formats=["openvino_int8", "openvino", "torch"], precision="fp16"))
        >>> [(name, str(getattr(schema, "precision", "fp32"))) for name, schema in jobs]
        [('torch', 'fp32'), ('openvino', 'fp16'), ('openvino_int8', 'int8')]
    """
    if not isinstance(fmt, AllFormatSchema):
        return [(fmt.name, fmt)]
    shared = {f.name: getattr(fmt, f.name) for f in fields(OnnxFormatSchema) if f.name != "name"}
    schemas = {
        "torch": TorchFormatSchema(seed=fmt.seed, num_random_inputs=fmt.num_random_inputs),
        "onnx": OnnxFormatSchema(**shared),
        "openvino": OpenVINOFormatSchema(**{**shared, "simplify": False}, calibration=fmt.calibration),
        "openvino_int8": OpenVINOFormatSchema(**{**shared, "simplify": False, "precision": Precision.INT8},
                                              calibration=fmt.calibration),
        "executorch": ExecutorchFormatSchema(**{**shared, "simplify": False, "precision": Precision.FP32},
                                             max_batch=fmt.max_batch),
    }
    names = fmt.formats if fmt.formats is not None else installed_formats()
    return [(name, schemas[name]) for name in FORMAT_ORDER if name in names]


def tolerances(fmt: Any, output: str) -> dict[str, Any]:
    """``{atol, rtol, max_share, min_cosine, source}`` for one output, field by field: its own entry, else
    ``format.atol/rtol``, else the precision's default (``source``: the first layer that set any). The verify
    stage fits an ``fp32 default`` to the policy's own float32 rounding (:mod:`getiaction_export.parity.fp32_bound`);
    a bound the user set is kept as given.

    Example:
        >>> tolerances(OnnxFormatSchema(precision="fp16"), "action")
        {'atol': 0.005, 'rtol': 0.01, 'max_share': None, 'min_cosine': None, 'source': 'fp16 default'}
        >>> chosen = tolerances(OpenVINOFormatSchema(precision="int8",
        ...                     output_tolerances={"action": ToleranceSchema(max_share=0.02)}), "action")
        >>> chosen["atol"], chosen["max_share"], chosen["min_cosine"], chosen["source"]
        (None, 0.02, 0.999, 'format.output_tolerances.action')
    """
    from getiaction_export.parity.tolerance import DEFAULT_TOLERANCES

    precision = str(getattr(fmt, "precision", Precision.FP32))
    default = DEFAULT_TOLERANCES[precision]
    layers = [(f"format.output_tolerances.{output}", getattr(fmt, "output_tolerances", {}).get(output)),
              ("format.atol/rtol", ToleranceSchema(getattr(fmt, "atol", None), getattr(fmt, "rtol", None))),
              (f"{precision} default", ToleranceSchema(default.atol, default.rtol, default.max_share,
                                                       default.min_cosine))]
    keys = ("atol", "rtol", "max_share", "min_cosine")
    given = [(source, spec) for source, spec in layers if spec and any(getattr(spec, k) is not None for k in keys)]
    chosen: dict[str, Any] = {key: next((float(getattr(spec, key)) for _, spec in given
                                         if getattr(spec, key) is not None), None) for key in keys}
    if chosen["atol"] is not None and chosen["rtol"] is None:
        chosen["rtol"] = 0.0
    return {**chosen, "source": given[0][0]}
