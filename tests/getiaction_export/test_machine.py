"""machine.py: the CPU and runtimes a job's figures were taken on, with explicit flags and caps (any CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from getiaction_export import machine
from getiaction_export.machine import (
    ISA_FEATURES,
    cpu_line,
    describe_cpu,
    describe_machine,
    isa_cap,
    isa_features,
    missing_features,
    runtime_versions,
)

AVX2_ONLY = {"fpu", "sse4_2", "avx", "fma", "avx2", "bmi2"}
"""An AVX2-only EPYC (no AVX-512, no VNNI)."""
VNNI_BF16 = {"fpu", "sse4_2", "avx", "fma", "avx2", "avx_vnni", "avx512f", "avx512dq", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512vbmi"}
"""The AVX-512 EPYC with VNNI and BF16 (no AMX, no FP16)."""
SAPPHIRE = VNNI_BF16 | {"avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"}

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse4_2 avx avx2 avx_vnni avx512f avx512_vnni avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse4_2 avx avx2 avx_vnni avx512f avx512_vnni avx512_bf16
"""


def test_isa_features_order_is_the_documented_one() -> None:
    assert ISA_FEATURES == ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                            "amx_tile", "amx_int8", "amx_bf16")


def test_uncapped_features_of_the_two_machines() -> None:
    assert isa_features(AVX2_ONLY, cap=None) == ["avx2"]
    assert isa_features(VNNI_BF16, cap=None) == ["avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16"]
    assert isa_features(SAPPHIRE, cap=None) == list(ISA_FEATURES)
    assert isa_features(set(), cap=None) == []


def test_cap_avx2_leaves_the_vnni_machine_as_an_avx2_one() -> None:
    assert isa_features(VNNI_BF16, cap="AVX2") == ["avx2"] == isa_features(AVX2_ONLY, cap="AVX2")
    assert isa_features(VNNI_BF16, cap="avx2") == ["avx2"]  # case does not matter


def test_cap_keeps_the_features_at_or_below_its_level() -> None:
    assert isa_features(VNNI_BF16, cap="AVX512_CORE_VNNI") == ["avx2", "avx_vnni", "avx512f", "avx512_vnni"]
    assert isa_features(VNNI_BF16, cap="AVX512_CORE_BF16") == isa_features(VNNI_BF16, cap=None)
    assert isa_features(VNNI_BF16, cap="AVX512_CORE") == ["avx2", "avx_vnni", "avx512f"]
    assert isa_features(VNNI_BF16, cap="AVX2_VNNI") == ["avx2", "avx_vnni"]
    assert isa_features(VNNI_BF16, cap="AVX2_VNNI_2") == ["avx2", "avx_vnni"]
    assert isa_features(VNNI_BF16, cap="AVX") == [] == isa_features(VNNI_BF16, cap="SSE41")
    assert isa_features(SAPPHIRE, cap="AVX512_CORE_FP16") == [*ISA_FEATURES[:6]]
    assert isa_features(SAPPHIRE, cap="AVX10_1_512") == [*ISA_FEATURES[:6]]
    assert isa_features(SAPPHIRE, cap="AVX512_CORE_AMX") == list(ISA_FEATURES)
    assert isa_features(SAPPHIRE, cap="AVX10_1_512_AMX_FP16") == list(ISA_FEATURES)
    # a cap never adds a feature the CPU lacks
    assert isa_features(AVX2_ONLY, cap="AVX512_CORE_VNNI") == ["avx2"]


@pytest.mark.parametrize("cap", ["NOT_AN_ISA", "ALL", "all", "", None])
def test_unknown_or_no_cap_is_no_cap(cap: str | None) -> None:
    assert isa_features(VNNI_BF16, cap=cap) == ["avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16"]


def test_isa_cap_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert isa_cap() is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_vnni")
    assert isa_cap() == "AVX512_CORE_VNNI"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert isa_cap() is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "")
    assert isa_cap() is None


def test_isa_features_reads_the_cap_from_the_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert isa_features(VNNI_BF16) == ["avx2"]
    assert isa_features(VNNI_BF16, cap=None) == ["avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert isa_features(VNNI_BF16) == ["avx2", "avx_vnni", "avx512f", "avx512_vnni"]


def test_cpu_flags_and_describe_cpu_read_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    monkeypatch.setattr(machine, "CPUINFO", path)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert machine.cpu_flags() == {"fpu", "sse4_2", "avx", "avx2", "avx_vnni", "avx512f", "avx512_vnni",
                                   "avx512_bf16"}
    cpu = describe_cpu()
    assert list(cpu) == ["model", "arch", "cores", "isa", "isa_cap", "flags_seen"]
    assert cpu["model"] == "AMD EPYC 9R14 96-Core Processor"
    assert cpu["isa"] == ["avx2"]
    assert cpu["isa_cap"] == "AVX2"
    assert cpu["flags_seen"] == ["avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16"]
    assert isinstance(cpu["cores"], int) and cpu["cores"] >= 1
    assert json.loads(json.dumps(cpu)) == cpu


def test_no_cpuinfo_falls_back_to_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(machine.platform, "processor", lambda: "Intel64 Family 6")
    assert machine.cpu_flags() == set()
    cpu = describe_cpu()
    assert cpu["model"] == "Intel64 Family 6"
    assert cpu["isa"] == cpu["flags_seen"] == []


def test_describe_cpu_on_this_machine_agrees_with_its_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    flags = machine.cpu_flags()
    cpu = describe_cpu()
    assert cpu["isa"] == cpu["flags_seen"] == [name for name in ISA_FEATURES if name in flags]
    assert cpu["isa_cap"] is None


def test_runtime_versions_are_the_installed_ones() -> None:
    from importlib.metadata import version

    versions = runtime_versions()
    assert versions["torch"] == version("torch")  # the dev venv has torch
    assert set(versions) <= {"torch", "onnxruntime", "openvino", "nncf", "physicalai", "executorch"}
    record = describe_machine()
    assert list(record) == ["cpu", "runtimes"]
    assert record["runtimes"] == versions


def test_machine_module_imports_no_runtime() -> None:
    code = ("import sys, getiaction_export.machine as m; m.describe_machine(); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in "
            "('torch', 'onnxruntime', 'openvino', 'nncf', 'physicalai', 'executorch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cpu_line() -> None:
    cpu = {"model": "AMD EPYC", "arch": "x86_64", "cores": 2, "isa": isa_features(VNNI_BF16, cap=None),
           "isa_cap": None}
    assert cpu_line(cpu) == "AMD EPYC, x86_64, 2 cores, AVX2 AVX-VNNI AVX-512F AVX-512-VNNI AVX-512-BF16"
    capped = {**cpu, "isa": isa_features(VNNI_BF16, cap="AVX2"), "isa_cap": "AVX2"}
    assert cpu_line(capped) == "AMD EPYC, x86_64, 2 cores, AVX2 (ISA capped at AVX2 by ONEDNN_MAX_CPU_ISA)"
    assert cpu_line({"model": "Apple M2", "arch": "arm64", "cores": 8, "isa": []}) == "Apple M2, arm64, 8 cores"
    assert cpu_line({**cpu, "isa": isa_features(SAPPHIRE, cap=None)}).endswith(
        "AVX-512-FP16 AMX-TILE AMX-INT8 AMX-BF16")


def test_missing_features() -> None:
    export_machine = isa_features(VNNI_BF16, cap=None)
    assert missing_features(export_machine, here=isa_features(AVX2_ONLY, cap=None)) == [
        "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16"]
    assert missing_features(export_machine, here=isa_features(VNNI_BF16, cap="AVX512_CORE_VNNI")) == ["avx512_bf16"]
    assert missing_features(["avx2"], here=export_machine) == []
    assert missing_features(["avx512_bf16", "avx2"], here=[]) == ["avx2", "avx512_bf16"]  # ISA_FEATURES order


def test_missing_features_defaults_to_this_machine_under_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert missing_features(["avx2", "avx512f", "avx512_vnni"]) == ["avx512f", "avx512_vnni"]


def test_a_capped_sweep_records_and_shows_the_machine(cli, tmp_path: Path) -> None:
    """``ONEDNN_MAX_CPU_ISA=AVX2``: result.json, the console, summary.md/json and both report.html pages say so."""
    capped = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = cli("-m", "format.opset_version=17,18", "format.latency=false", "format.runtime_check=false",
              "hydra.sweep.dir=sweep", env=capped)
    assert run.returncode == 0, run.output
    code = "import json, getiaction_export.machine as m; print(json.dumps([m.isa_features(), m.describe_machine()]))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, **capped})
    isa, expected = json.loads(there.stdout)
    sweep = tmp_path / "sweep"
    jobs = sorted(p.parent for p in sweep.glob("*/result.json"))
    assert len(jobs) == 2
    for folder in jobs:
        recorded = json.loads((folder / "result.json").read_text())["machine"]
        assert recorded == expected
        assert recorded["cpu"]["isa"] == isa == isa_features(cap="AVX2")
        assert recorded["cpu"]["isa_cap"] == "AVX2"
        assert not [name for name in recorded["cpu"]["isa"] if name.startswith(("avx512", "amx", "avx_vnni"))]
        assert recorded["cpu"]["flags_seen"] == isa_features(cap=None)  # what the CPU has, before the cap
        assert recorded["runtimes"] == runtime_versions()
        page = (folder / "report.html").read_text()
        assert f'<dd id="machine">{cpu_line(recorded["cpu"])}' in page
    line = cpu_line(expected["cpu"])
    assert line.endswith("(ISA capped at AVX2 by ONEDNN_MAX_CPU_ISA)")
    assert run.stdout.count(f"[prepare] · machine: {line}\n") == 2  # once per job
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["machine"] == expected and "machines" not in summary
    assert f"Machine: {machine.machine_line(expected)}\n" in (sweep / "summary.md").read_text()
    assert f'<p id="machine"><b>Machine:</b> {line}' in (sweep / "report.html").read_text()
