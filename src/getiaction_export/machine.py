"""The machine figures were taken on: the CPU, the ISA features that change numerics or speed, the runtimes.

Our machines differ in CPU: the same job's INT8 parity and every latency figure depend on whether
the CPU has AVX-512, VNNI (8-bit dot products without a saturating 16-bit intermediate), BF16 (which
OpenVINO's CPU plugin then uses by default for some precisions) or AMX. ``result.json`` records
:func:`describe_machine` under ``machine``; the summary and ``report.html`` show :func:`cpu_line`;
a package records its export machine so :func:`missing_features` can say what a deploy machine lacks.
A sweep's summary names the machine once when every job shares it (:func:`shared_machine`), per job
otherwise.

oneDNN (inside OpenVINO's CPU plugin) uses no ISA above ``ONEDNN_MAX_CPU_ISA``; :func:`isa_features`
leaves out the features above that cap, so ``machine.cpu.isa`` is what the runtime could use, and
``flags_seen`` what the CPU has.

Torch-free and cheap to import: reads ``/proc/cpuinfo`` (Linux; elsewhere ``platform``) and the
installed versions with :mod:`importlib.metadata`, importing no runtime.

Example:
    >>> flags = {"avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "sse4_2"}
    >>> isa_features(flags, cap=None)
    ['avx2', 'avx_vnni', 'avx512f', 'avx512_vnni', 'avx512_bf16']
    >>> isa_features(flags, cap="AVX2")
    ['avx2']
    >>> missing_features(["avx2", "avx512_vnni"], here=["avx2"])
    ['avx512_vnni']
"""

from __future__ import annotations

import enum
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ISA_FEATURES: tuple[str, ...] = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                                 "amx_tile", "amx_int8", "amx_bf16")
"""The ``/proc/cpuinfo`` flags that change a runtime's numerics or speed, lowest first."""

LABELS = {"avx2": "AVX2", "avx_vnni": "AVX-VNNI", "avx512f": "AVX-512F", "avx512_vnni": "AVX-512-VNNI",
          "avx512_bf16": "AVX-512-BF16", "avx512_fp16": "AVX-512-FP16", "amx_tile": "AMX-TILE",
          "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16"}
"""How :func:`cpu_line` names each of :data:`ISA_FEATURES`."""

ISA_CAP_VARIABLE = "ONEDNN_MAX_CPU_ISA"
"""The environment variable oneDNN (OpenVINO's CPU plugin) reads to cap the ISA it uses."""

CAP_LEVELS: dict[str, int] = {
    "SSE41": 0, "AVX": 1, "AVX2": 2, "AVX2_VNNI": 3, "AVX2_VNNI_2": 4, "AVX512_CORE": 5, "AVX512_CORE_VNNI": 6,
    "AVX512_CORE_BF16": 7, "AVX512_CORE_FP16": 8, "AVX10_1_512": 8, "AVX512_CORE_AMX": 9, "AVX10_1_512_AMX": 9,
    "AVX512_CORE_AMX_FP16": 10, "AVX10_1_512_AMX_FP16": 10,
}
"""oneDNN's ``ONEDNN_MAX_CPU_ISA`` values, ranked lowest to highest (AVX10.1/512 ranks with its AVX-512 peer)."""

REQUIRED_LEVEL: dict[str, str] = {
    "avx2": "AVX2", "avx_vnni": "AVX2_VNNI", "avx512f": "AVX512_CORE", "avx512_vnni": "AVX512_CORE_VNNI",
    "avx512_bf16": "AVX512_CORE_BF16", "avx512_fp16": "AVX512_CORE_FP16", "amx_tile": "AVX512_CORE_AMX",
    "amx_int8": "AVX512_CORE_AMX", "amx_bf16": "AVX512_CORE_AMX",
}
"""Each of :data:`ISA_FEATURES`: the lowest cap that still lets oneDNN use it."""

RUNTIMES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",), "onnxruntime": ("onnxruntime", "onnxruntime-openvino", "onnxruntime-gpu"),
    "openvino": ("openvino",), "nncf": ("nncf",), "physicalai": ("physicalai",), "executorch": ("executorch",),
}
"""The runtimes :func:`runtime_versions` reports: ``{name: distributions that provide it, first found wins}``."""

CPUINFO = Path("/proc/cpuinfo")
_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}


class _Env(enum.Enum):
    READ = "read ONEDNN_MAX_CPU_ISA"


def cpu_flags() -> set[str]:
    """Every flag of the CPU (``/proc/cpuinfo``'s ``flags``, or ``Features`` on Arm); empty if unknown.

    Example:
        >>> flags = cpu_flags()
        >>> isinstance(flags, set) and all(isinstance(flag, str) for flag in flags)
        True
    """
    for key, value in _cpuinfo():
        if key in ("flags", "Features"):
            return set(value.split())
    return set()


def isa_cap() -> str | None:
    """``ONEDNN_MAX_CPU_ISA`` upper-cased; ``None`` when unset, empty or ``ALL`` (no cap).

    oneDNN inside OpenVINO's CPU plugin uses no ISA above it (with ``AVX2`` on a VNNI machine, INT8
    behaves as on an AVX2-only CPU).

    Example:
        >>> import os
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"ONEDNN_MAX_CPU_ISA": "avx2"}):
        ...     isa_cap()
        'AVX2'
        >>> with mock.patch.dict(os.environ, {"ONEDNN_MAX_CPU_ISA": "ALL"}):
        ...     isa_cap() is None
        True
    """
    return _normal_cap(os.environ.get(ISA_CAP_VARIABLE))


def isa_features(flags: set[str] | None = None, cap: str | _Env | None = _Env.READ) -> list[str]:
    """The :data:`ISA_FEATURES` in ``flags`` (default: :func:`cpu_flags`) that a runtime capped at ``cap`` may use.

    ``cap`` is a oneDNN ISA level (:data:`CAP_LEVELS`; default: :func:`isa_cap`, from the
    environment); a feature is kept when the lowest level that permits it (:data:`REQUIRED_LEVEL`)
    is at or below the cap. ``None``, ``ALL`` or an unknown level: no cap.

    Example:
        >>> vnni = {"avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16"}
        >>> isa_features(vnni, cap=None)
        ['avx2', 'avx_vnni', 'avx512f', 'avx512_vnni', 'avx512_bf16']
        >>> isa_features(vnni, cap="AVX512_CORE_VNNI")
        ['avx2', 'avx_vnni', 'avx512f', 'avx512_vnni']
        >>> isa_features(vnni, cap="avx2"), isa_features(vnni, cap="SSE41")
        (['avx2'], [])
        >>> isa_features({"avx2", "fma"}, cap="NOT_A_LEVEL")
        ['avx2']
    """
    present = cpu_flags() if flags is None else set(flags)
    level = _cap_level(isa_cap() if cap is _Env.READ else _normal_cap(cap))
    return [name for name in ISA_FEATURES
            if name in present and (level is None or CAP_LEVELS[REQUIRED_LEVEL[name]] <= level)]


def describe_cpu() -> dict[str, Any]:
    """The CPU: ``{model, arch, cores, isa, isa_cap, flags_seen}`` (JSON-plain).

    ``cores``: the logical CPUs this process may run on; ``isa``: :func:`isa_features` under the cap
    from the environment; ``flags_seen``: the :data:`ISA_FEATURES` the CPU has, before the cap.

    Example:
        >>> cpu = describe_cpu()
        >>> list(cpu)
        ['model', 'arch', 'cores', 'isa', 'isa_cap', 'flags_seen']
        >>> set(cpu["isa"]) <= set(cpu["flags_seen"]) <= set(ISA_FEATURES)
        True
    """
    flags, cap = cpu_flags(), isa_cap()
    return {"model": _model(), "arch": platform.machine() or None, "cores": _cores(),
            "isa": isa_features(flags, cap), "isa_cap": cap, "flags_seen": isa_features(flags, None)}


def runtime_versions() -> dict[str, str]:
    """The installed versions of the runtimes (:data:`RUNTIMES`), read without importing them.

    Example:
        >>> versions = runtime_versions()
        >>> set(versions) <= set(RUNTIMES) and all(isinstance(v, str) for v in versions.values())
        True
    """
    versions = {}
    for name, distributions in RUNTIMES.items():
        for distribution in distributions:
            try:
                versions[name] = version(distribution)
            except PackageNotFoundError:
                continue
            break
    return versions


def describe_machine() -> dict[str, Any]:
    """``{"cpu": describe_cpu(), "runtimes": runtime_versions()}``: ``result.json``'s ``machine``.

    Example:
        >>> list(describe_machine())
        ['cpu', 'runtimes']
    """
    return {"cpu": describe_cpu(), "runtimes": runtime_versions()}


def cpu_line(cpu: dict[str, Any]) -> str:
    """One short line naming a CPU record (:func:`describe_cpu`'s, or one read back from a result).

    Example:
        >>> cpu = {"model": "AMD EPYC", "arch": "x86_64", "cores": 2, "isa_cap": None,
        ...        "isa": ["avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16"]}
        >>> cpu_line(cpu)
        'AMD EPYC, x86_64, 2 cores, AVX2 AVX-VNNI AVX-512F AVX-512-VNNI AVX-512-BF16'
        >>> cpu_line({**cpu, "isa": ["avx2"], "isa_cap": "AVX2"})
        'AMD EPYC, x86_64, 2 cores, AVX2 (ISA capped at AVX2 by ONEDNN_MAX_CPU_ISA)'
        >>> cpu_line({"model": "AMD EPYC", "arch": "x86_64", "cores": 1, "isa": []})
        'AMD EPYC, x86_64, 1 core, no AVX2'
        >>> cpu_line({})
        'unknown CPU'
    """
    cores = cpu.get("cores")
    parts = [str(cpu.get("model") or "unknown CPU")]
    parts += [str(cpu["arch"])] if cpu.get("arch") else []
    parts += [f"{cores} core{'' if cores == 1 else 's'}"] if isinstance(cores, int) else []
    isa = [LABELS.get(str(name), str(name)) for name in cpu.get("isa") or []]
    if isa:
        parts.append(" ".join(isa))
    elif str(cpu.get("arch") or "").lower() in _X86:
        parts.append("no AVX2")
    cap = cpu.get("isa_cap")
    return ", ".join(parts) + (f" (ISA capped at {cap} by {ISA_CAP_VARIABLE})" if cap else "")


def runtimes_line(runtimes: dict[str, str]) -> str:
    """The runtime versions of a machine record in one line (empty when none was recorded).

    Example:
        >>> runtimes_line({"torch": "2.13.0+cpu", "openvino": "2026.4.1"})
        'torch 2.13.0+cpu, openvino 2026.4.1'
    """
    return ", ".join(f"{name} {value}" for name, value in (runtimes or {}).items())


def machine_line(record: dict[str, Any]) -> str:
    """A :func:`describe_machine` record in one line: :func:`cpu_line`, then :func:`runtimes_line`.

    Example:
        >>> machine_line({"cpu": {"model": "AMD EPYC", "arch": "x86_64", "cores": 2, "isa": ["avx2"]},
        ...               "runtimes": {"torch": "2.13.0+cpu"}})
        'AMD EPYC, x86_64, 2 cores, AVX2; torch 2.13.0+cpu'
    """
    runtimes = runtimes_line(record.get("runtimes") or {})
    return cpu_line(record.get("cpu") or {}) + (f"; {runtimes}" if runtimes else "")


def shared_machine(records: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The machine record every job of ``records`` (``{job: record}``) has; ``None`` when they differ or are none.

    Example:
        >>> a = {"cpu": {"model": "AMD EPYC", "isa": ["avx2"]}, "runtimes": {}}
        >>> shared_machine({"j1": a, "j2": dict(a)}) == a, shared_machine({})
        (True, None)
        >>> shared_machine({"j1": a, "j2": {**a, "cpu": {"model": "AMD EPYC", "isa": []}}}) is None
        True
    """
    values = list(records.values())
    return values[0] if values and all(value == values[0] for value in values) else None


def missing_features(recorded: list[str], here: list[str] | None = None) -> list[str]:
    """The features of ``recorded`` (e.g. a package's export machine) not in ``here`` (default: :func:`isa_features`).

    Example:
        >>> missing_features(["avx2", "avx512f", "avx512_vnni", "avx512_bf16"], here=["avx2"])
        ['avx512f', 'avx512_vnni', 'avx512_bf16']
        >>> missing_features(["avx512_vnni", "avx2"], here=["avx2", "avx512f", "avx512_vnni"])
        []
    """
    available = set(isa_features() if here is None else here)
    wanted = set(recorded)
    return [name for name in ISA_FEATURES if name in wanted and name not in available]


# -- reading the machine


def _normal_cap(value: str | None) -> str | None:
    text = (value or "").strip().upper()
    return None if text in ("", "ALL") else text


def _cap_level(cap: str | None) -> int | None:
    """The rank of a cap (``None``: no cap, also for a level oneDNN does not know)."""
    return None if cap is None else CAP_LEVELS.get(cap)


def _cpuinfo() -> list[tuple[str, str]]:
    """``/proc/cpuinfo``'s ``key: value`` pairs, in order (empty where there is none)."""
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return []
    pairs = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return pairs


def _model() -> str | None:
    info = dict(reversed(_cpuinfo()))  # the first value of a repeated key wins
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine() or None


def _cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()
