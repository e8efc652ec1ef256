"""The blocks of the manifest's ``getiaction`` section, each read off the job's state or one check's figures.

:func:`~getiaction_export.physicalai.manifest.manifest_section` assembles the section; this module says
what goes into its parts:

- the policy: ``input_names`` (the source's own input names -> the graph's), the observations its inputs
  carry (:func:`history_steps`, ``getiaction.history``), the graph inputs its tokenizer writes
  (:func:`task_inputs`), ``task`` (:func:`task_section`), ``noise`` (:func:`noise_section`) and
  ``model_config`` (:func:`plain_config`);
- per backend: ``runtime_check`` (:func:`runtime_summary`, no timings: the manifest is reproducible) and
  ``default_load`` (:func:`default_load_summary`: what the hint-free load computes in).

Torch-free; imports neither physicalai nor :mod:`~getiaction_export.physicalai.manifest`.

Example:
    >>> runtime_summary({"physicalai": "0.3.0", "passed": True, "cases": 4,
    ...                  "parity": {"action": {"max_abs_diff": 1e-6}}})
    {'physicalai': '0.3.0', 'passed': True, 'inputs': 4, 'max_abs_diff': {'action': 1e-06}}
    >>> default_load_summary("onnx", "onnx", "fp16", None)
    {'call': 'InferenceModel(dir)', 'precision': 'f16', 'checked': False}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from getiaction_export.physicalai import precision as machine_precision
from getiaction_export.physicalai.precision import F32_CALL, default_call

if TYPE_CHECKING:
    from getiaction_export.state import JobState


def input_names(module: Any) -> dict[str, Any] | None:
    """``getiaction.input_names``: the source's own input names -> the graph's (a LeRobot policy under the names
    physicalai's robot loop feeds: :mod:`getiaction_export.sources.robot_names`)."""
    names = getattr(module, "lerobot_input_names", None)
    return {"from_lerobot": dict(names), "fed_by": "physicalai's robot loop (PolicySource)"} if names else None


def history_steps(state: JobState) -> int:
    """How many observations the graph's inputs carry on axis 1 (0: none; LeRobot Diffusion's ``n_obs_steps``)."""
    module = state.built.module if state.built else None
    return int(getattr(module, "history", 0) or 0)


def task_inputs(state: JobState) -> list[str]:
    return list(((state.package_extras or {}).get("task") or {}).get("inputs") or [])


def task_section(state: JobState) -> dict[str, Any] | None:
    """``getiaction.task``: the tokenizer the package ships and its check against the policy's own tokenizer."""
    extras = state.package_extras
    if not extras or not extras.get("task"):
        return None
    return {"reads": "task", "writes": extras["task"]["inputs"], "preprocessors": extras["preprocessors"],
            "files": {name: (extras.get("sha256") or {}).get(name) for name in extras["files"]},
            "check": extras.get("check")}


def noise_section(state: JobState) -> dict[str, Any] | None:
    """``getiaction.noise``: outputs the graph draws itself, and the reference input each was verified as."""
    reference = state.reference
    pairs = dict(getattr(reference, "conditioned_on", None) or {})
    if not pairs:
        return None
    return {"drawn_by_graph": list(pairs), "verified_as_reference_input": pairs,
            "how": "every call draws fresh noise and returns it; the parity gate and runtime check ran the reference "
                   "on the noise the graph returned"}


def runtime_summary(figures: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a runtime check the manifest keeps (no timings: the manifest is reproducible)."""
    chunk, loop = figures.get("chunk") or {}, figures.get("robot_loop") or {}
    summary: dict[str, Any] = {
        "physicalai": figures.get("physicalai"), "passed": figures.get("passed"), "inputs": figures.get("cases"),
        "max_abs_diff": {name: o["max_abs_diff"] for name, o in (figures.get("parity") or {}).items()},
    }
    if chunk:
        summary["predict_action_chunk"] = chunk["shape"]
        summary["select_action_rows_in_order"] = chunk["select_action"]["rows_in_order"]
    if loop.get("uint8_frames"):
        summary["uint8_frames_max_abs_diff"] = loop["uint8_frames"]["max_abs_diff"]
    return summary


def default_load_summary(
    backend: str, default_backend: str | None, precision: str, figures: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``backends.<b>.default_load``: what the hint-free load computes in, and how far from PyTorch.

    ``figures``: the runtime check's ``default_load`` (None when it did not run: then only what
    this machine would compute in). ``precision``: the format's (``fp32``/``fp16``).

    >>> default_load_summary("onnx", "onnx", "fp32", None)
    {'call': 'InferenceModel(dir)', 'precision': 'f32', 'checked': False}
    """
    call = default_call(backend, default_backend)
    if backend == "openvino":
        predicted = machine_precision.openvino_default_precision() or "unknown"
    else:
        predicted = "f16" if precision == "fp16" else "f32"
    if not figures:
        return {"call": call, "precision": predicted, "checked": False}
    summary = {"call": call, "precision": figures["precision"], "checked": True,
               **{key: figures.get(key) for key in ("max_abs_diff", "relative", "tolerance", "passed", "gated")}}
    if backend == "openvino":
        summary["export_cpu_bf16"] = figures.get("cpu_bf16")
        summary["f32_call"] = F32_CALL
        summary["note"] = ("without INFERENCE_PRECISION_HINT, OpenVINO computes in bf16 on CPUs with bfloat16 "
                           "(AVX512-BF16/AMX) and in f32 on others; measured on the export machine")
    return summary


def plain_config(module: Any) -> Any:
    """The policy's dataclass config as plain data, or None (a plain module, or one that does not serialize)."""
    from getiaction.errors import GetiActionError
    from getiaction.export.serialization import to_plain

    config = getattr(module, "config", None)
    if config is None:
        return None
    try:
        return to_plain(config)
    except (GetiActionError, TypeError, ValueError):
        return None
