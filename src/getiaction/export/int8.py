"""Post-training INT8 for OpenVINO: an f32 IR in, a calibrated INT8 IR (``.xml`` + ``.bin``) out.

NNCF's post-training quantization inserts FakeQuantize operations (per-channel weights,
per-tensor activations) calibrated on example inputs; OpenVINO's CPU plugin runs them as INT8
kernels (VNNI/AMX where the CPU has them). What NNCF leaves unquantized (normalizations, the
diffusion scheduler's arithmetic, softmax) stays float32 under OpenVINO's f32 hint.

The model type matters (measured here, ACT-like policy, 100 calibration inputs): NNCF's
``TRANSFORMER`` type (mixed preset, attention-aware patterns, SmoothQuant) is 0.8% of the largest
|action| off PyTorch, the default 3.7%; the 10-step diffusion policy (Conv1d + Linear, no
attention) 8.4% vs 16%. So ``model_type="auto"`` picks ``transformer`` for any graph with
MatMul (attention, linear layers) and NNCF's default only for pure convolution nets.
Activation ranges are the min/max over all calibration inputs (NNCF's default averages each
input's own min/max, which clips small tensors such as a batch-1 state: the Dummy policy 24% off
with it, 7% without; diffusion 6.7% -> 6.3%; ACT 1.0% -> 0.9%).

The weights are quantized to 7 bits in every layer (NNCF's ``OverflowFix.ENABLE``, :data:`OVERFLOW_FIXES`),
so the IR holds on any x86 CPU. A CPU without VNNI (AVX2 only) multiplies u8 x s8 pairs with
``vpmaddubsw``, whose 16-bit sums saturate for full 8-bit weights; NNCF's default fix covers the first
layer only. Measured on ACT (100 calibration rows; benchmarks/RESULTS.md, "INT8 on both CPU kinds"):
without VNNI (an AVX2-only EPYC, or OpenVINO capped with ``ONEDNN_MAX_CPU_ISA=AVX2``) 11-12% of the
largest |action| off with the default fix, 1.3-2.0% with ``enable``; with VNNI 1.25% -> 2.2% (the cost).

Weight compression (:func:`compress_weights_openvino`) is the other INT8: NNCF's ``compress_weights``
stores every MatMul/Convolution weight as 8-bit integers with a per-channel scale and zero point
(``INT8_ASYM``); activations stay float32, no calibration inputs are needed. It is what OpenVINO
recommends for language models, and the one that fits vision-language-action policies: on SmolVLA's
graph NNCF's transformer quantization gives an IR OpenVINO cannot compile (``constant_fold`` of a
Convert fails), and random token ids are no calibration; the real-size SmolVLA's weights compressed
are 0.87% of the largest |action| off PyTorch and 3.6x faster than LeRobot eager (benchmarks/RESULTS.md
section 8).

nncf is an optional extra: ``pip install 'getiaction-export[int8]'``.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from getiaction.policies import Dummy
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> source = Dummy().to_openvino(folder / "dummy.xml")
    >>> rows = [{"state": np.random.default_rng(i).uniform(-1, 1, (1, 7)).astype(np.float32)} for i in range(20)]
    >>> result = quantize_openvino(source.path, folder / "dummy_int8.xml", rows)
    >>> result.model_type, result.samples, result.quantized_ops > 0, result.path.with_suffix(".bin").is_file()
    ('transformer', 20, True, True)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from getiaction.errors import ConfigError, ExportError, first_line
from getiaction.export.extras import require
from getiaction.export.openvino import RT_INFO_SECTION, atomic_ir, openvino_module

METHODS = ("auto", "quantize", "weights")
"""How INT8 is made: ``quantize`` (post-training, weights and activations, calibrated), ``weights`` (weight
compression, activations stay float32); ``auto``: what the policy prefers (``preferred_int8``), else ``quantize``."""
MODEL_TYPES = ("auto", "transformer", "default")
"""``auto``: ``transformer`` when the graph has a MatMul, else NNCF's default (see the module doc)."""
OVERFLOW_FIXES = ("enable", "first_layer", "disable")
"""NNCF's overflow fix: 7-bit weights in every layer (``enable``, portable), the first layer only (NNCF's
default: exact on VNNI CPUs, saturates on AVX2-only ones), or none."""


@dataclass(frozen=True)
class Int8Result:
    """What :func:`quantize_openvino` wrote and how."""

    path: Path
    """The INT8 ``.xml``; its weights are beside it (``.bin``)."""
    model_type: str
    """``transformer`` or ``default`` (NNCF's model type actually used)."""
    model_type_reason: str
    samples: int
    """Calibration inputs NNCF saw."""
    seconds: float
    quantized_ops: int
    """FakeQuantize operations in the result (0 would mean nothing was quantized)."""
    overflow_fix: str = "enable"
    """NNCF's overflow fix used (:data:`OVERFLOW_FIXES`)."""
    method: str = "quantize"
    """``quantize`` or ``weights`` (:data:`METHODS`)."""


def choose_model_type(model: Any, requested: str = "auto") -> tuple[str, str]:
    """``(model type, why)`` for an ``openvino.Model``."""
    if requested not in MODEL_TYPES:
        raise ConfigError(f"model_type: {requested!r} is not valid; use one of {list(MODEL_TYPES)}")
    if requested != "auto":
        return requested, "requested"
    kinds = {op.get_type_name() for op in model.get_ops()}
    if "MatMul" in kinds:
        return "transformer", "the graph has MatMul (attention or linear layers)"
    return "default", "the graph has no MatMul (a convolution net)"


def quantize_openvino(
    source: str | os.PathLike[str],
    path: str | os.PathLike[str],
    calibration: Sequence[Mapping[str, np.ndarray]],
    *,
    model_type: str = "auto",
    overflow_fix: str = "enable",
) -> Int8Result:
    """Quantize the f32 IR ``source`` with NNCF on ``calibration`` (inputs by name) into ``path``.

    Every calibration row is one inference's inputs (any batch the IR accepts). The IR's
    ``rt_info`` (policy, config, versions) is kept, with ``getiaction.precision = int8``. The
    files are replaced atomically; on failure nothing is left at ``path``.
    """
    ov = openvino_module("precision=int8")
    nncf = require("nncf", "precision=int8")
    path = Path(path)
    if overflow_fix not in OVERFLOW_FIXES:
        raise ConfigError(f"overflow_fix: {overflow_fix!r} is not valid; use one of {list(OVERFLOW_FIXES)}")
    if not calibration:
        raise ConfigError("calibration: no inputs to calibrate INT8 on; give at least one")
    model = ov.Core().read_model(str(source))
    chosen, reason = choose_model_type(model, model_type)
    names = {name: port for port in model.inputs for name in port.get_names()}
    unknown = sorted(set(calibration[0]) - set(names))
    if unknown:
        raise ConfigError(f"calibration: input {unknown[0]!r} is not an input of the model; inputs: {sorted(names)}")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    started = time.perf_counter()
    try:
        with _quiet():  # NNCF draws progress bars and logs INFO lines per step
            quantized = nncf.quantize(
                model, nncf.Dataset(list(calibration), lambda row: {k: np.asarray(v) for k, v in row.items()}),
                subset_size=len(calibration),
                model_type=nncf.ModelType.TRANSFORMER if chosen == "transformer" else None,
                # the range of every calibration input, not the mean of each input's own min/max (NNCF's
                # default), which clips small batch-1 tensors: the Dummy policy 24% -> 7% off, ACT unchanged
                advanced_parameters=AdvancedQuantizationParameters(
                    activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
                    overflow_fix=OverflowFix[overflow_fix.upper()]),
            )
    except Exception as error:  # NNCF raises its own untyped errors
        raise ExportError(f"NNCF could not quantize the model: {_cause(error)}") from error
    seconds = time.perf_counter() - started
    quantized.set_rt_info("int8", [RT_INFO_SECTION, "getiaction.precision"])
    quantized.set_rt_info(chosen, [RT_INFO_SECTION, "getiaction.int8_model_type"])
    quantized.set_rt_info(overflow_fix, [RT_INFO_SECTION, "getiaction.int8_overflow_fix"])
    try:  # NNCF can write an IR the CPU plugin cannot compile (SmolVLA with the transformer type): say so here
        ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    except RuntimeError as error:
        raise ExportError(f"OpenVINO cannot compile the INT8 IR NNCF made ({_cause(error)}); try "
                          "format.calibration.method=weights (weight compression)") from error
    with atomic_ir(path) as temp_xml:
        ov.save_model(quantized, str(temp_xml), compress_to_fp16=False)
    count = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    return Int8Result(path, chosen, reason, len(calibration), round(seconds, 3), count, overflow_fix)


def compress_weights_openvino(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Int8Result:
    """NNCF weight compression of the f32 IR ``source`` into ``path``: 8-bit weights (``INT8_ASYM``, per channel),
    float32 activations, no calibration (see the module doc).

    ``quantized_ops`` counts the weights stored as 8-bit integers. The IR's ``rt_info`` is kept, with
    ``getiaction.precision = int8`` and ``getiaction.int8_method = weights``; the files are replaced
    atomically and on failure nothing is left at ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> from getiaction.policies import Dummy
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> source = Dummy().to_openvino(folder / "dummy.xml")
        >>> result = compress_weights_openvino(source.path, folder / "dummy_int8.xml")
        >>> result.method, result.samples, result.quantized_ops > 0, result.path.with_suffix(".bin").is_file()
        ('weights', 0, True, True)
    """
    ov = openvino_module("precision=int8")
    nncf = require("nncf", "precision=int8")
    path = Path(path)
    model = ov.Core().read_model(str(source))
    started = time.perf_counter()
    try:
        with _quiet():
            compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    except Exception as error:  # NNCF raises its own untyped errors
        raise ExportError(f"NNCF could not compress the model's weights: {_cause(error)}") from error
    seconds = time.perf_counter() - started
    compressed.set_rt_info("int8", [RT_INFO_SECTION, "getiaction.precision"])
    compressed.set_rt_info("weights", [RT_INFO_SECTION, "getiaction.int8_method"])
    # OpenVINO's CPU plugin otherwise quantizes these layers' activations to 8 bits on the fly (group size 32):
    # not the float32 activations verified, and with OpenVINO capped to AVX2 (ONEDNN_MAX_CPU_ISA) such a layer
    # fails to compile ("could not create a primitive descriptor"). The plugin reads this option from the IR.
    compressed.set_rt_info("0", ["runtime_options", "DYNAMIC_QUANTIZATION_GROUP_SIZE"])
    with atomic_ir(path) as temp_xml:
        ov.save_model(compressed, str(temp_xml), compress_to_fp16=False)
    eight_bit = {"u8", "i8"}
    # 8-bit weight matrices; their per-channel zero points, (out, 1), are 8-bit too and not counted
    count = sum(op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() in eight_bit
                and len(op.get_output_shape(0)) >= 2 and min(op.get_output_shape(0)[-2:]) > 1
                for op in compressed.get_ops())
    return Int8Result(path, "weights", "weight compression (INT8_ASYM, per channel)", 0, round(seconds, 3), count,
                      "none", method="weights")


def _cause(error: BaseException) -> str:
    """The informative line of an OpenVINO error (its first lines only say which C++ file raised it)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    checks = [line for line in lines if line.startswith("Check '")]  # the failed check, when nothing else says
    return (useful or checks)[0][:300] if useful or checks else first_line(error)


@contextlib.contextmanager
def _quiet() -> Any:
    """NNCF's rich progress bars and INFO logs off the console (it prints them to stdout)."""
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nncf_log.setLevel(level)
