"""What a policy package computes in on this machine: OpenVINO's CPU precision, the f32 hint, the hint-free call.

physicalai compiles OpenVINO with exactly the caller's adapter kwargs (it adds the f32 hint only on
ARM), so a hint-free load computes in OpenVINO's CPU default: bf16 where the CPU has bfloat16
(AVX512-BF16/AMX), f32 elsewhere. The manifest, the runtime check, ``deploy_check`` and the
choice of a package's default backend all ask this module. It imports neither physicalai nor the
other modules of this folder (openvino only inside the functions that read the CPU).

Example:
    >>> default_call("openvino", "onnx"), OPENVINO_F32
    ('InferenceModel(dir, backend="openvino")', {'INFERENCE_PRECISION_HINT': 'f32'})
"""

from __future__ import annotations

from typing import Any

OPENVINO_F32 = {"INFERENCE_PRECISION_HINT": "f32"}
"""Adapter kwargs (OpenVINO compile config) that make the runtime compute in float32."""
F32_CALL = 'InferenceModel(dir, backend="openvino", INFERENCE_PRECISION_HINT="f32")'
"""How a robot loads the OpenVINO model in f32, as the export verified it."""


def default_call(backend: str, default_backend: str | None) -> str:
    """The hint-free call that loads ``backend`` from a package whose default backend is ``default_backend``.

    >>> default_call("openvino", "openvino"), default_call("openvino", "onnx")
    ('InferenceModel(dir)', 'InferenceModel(dir, backend="openvino")')
    """
    return "InferenceModel(dir)" if backend == default_backend else f'InferenceModel(dir, backend="{backend}")'


def precision_of(model: Any, graph_precision: str = "f32") -> str:
    """What a loaded ``InferenceModel`` computes in: OpenVINO's compiled ``INFERENCE_PRECISION_HINT``
    (``bf16``, ``f32``, ``f16``); for onnxruntime the graph's own precision."""
    compiled = getattr(model.adapter, "compiled_model", None)
    if compiled is None:
        return graph_precision
    return str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())


def cpu_bf16() -> bool | None:
    """Whether this CPU computes bfloat16 natively for OpenVINO (None: openvino not installed)."""
    try:
        import openvino
    except ImportError:
        return None
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") and not bf16_capped()


def openvino_default_precision() -> str | None:
    """What ``InferenceModel(dir)`` compiles an OpenVINO model in on this machine's CPU, without loading one.

    OpenVINO's CPU default (``bf16`` where the CPU has it), or ``f32`` on ARM, where physicalai
    sets that hint itself; None when openvino is not installed.
    """
    import platform

    try:
        import openvino
    except ImportError:
        return None
    if platform.machine().lower() in ("arm64", "aarch64") or bf16_capped():
        return "f32"
    return str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name())


def bf16_capped() -> bool:
    """Whether ``ONEDNN_MAX_CPU_ISA`` caps OpenVINO below the bfloat16 this CPU has.

    OpenVINO then still picks bf16 from the CPU's flags for a hint-free compile, which the cap makes
    fail; a CPU that really lacks bf16 computes such a load in f32, so that is what is loaded.
    """
    from getiaction_export.machine import describe_cpu

    cpu = describe_cpu()
    bf16 = {"avx512_bf16", "amx_bf16"}
    return bool(bf16 & set(cpu["flags_seen"])) and not bf16 & set(cpu["isa"])
