"""summary.md / summary.json name the machine: once when every job shares it, per job where they differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from getiaction_export.machine import describe_machine, isa_features, machine_line
from getiaction_export.report.summary import SUMMARY_FILE, summarize

VNNI_BF16 = {"avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16"}


def cpu(cap: str | None) -> dict[str, Any]:
    return {"model": "AMD EPYC", "arch": "x86_64", "cores": 2, "isa": isa_features(VNNI_BF16, cap),
            "isa_cap": cap, "flags_seen": isa_features(VNNI_BF16, None)}


RUNTIMES = {"torch": "2.13.0+cpu", "onnxruntime": "1.32.0", "openvino": "2026.4.1"}
UNCAPPED = {"cpu": cpu(None), "runtimes": RUNTIMES}
CAPPED = {"cpu": cpu("AVX2"), "runtimes": RUNTIMES}


def job(sweep: Path, name: str, machine: dict[str, Any] | None, num: int) -> None:
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    result: dict[str, Any] = {"status": "ok", "exit_code": 0, "policy": {"name": "dummy"}, "format": "onnx",
                              "formats": {"onnx": {"status": "ok", "precision": "fp32"}}, "job": {"num": num}}
    if machine is not None:
        result["machine"] = machine
    (folder / "result.json").write_text(json.dumps(result))


def test_one_machine_line_when_every_job_shares_it(tmp_path: Path) -> None:
    job(tmp_path, "format.opset_version=17", UNCAPPED, 0)
    job(tmp_path, "format.opset_version=18", UNCAPPED, 1)
    (tmp_path / "crashed" / ".hydra").mkdir(parents=True)  # no result.json: no machine, still one line
    summarize(tmp_path)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["machine"] == UNCAPPED and "machines" not in summary
    lines = (tmp_path / "summary.md").read_text().splitlines()
    assert lines[2] == ("Machine: AMD EPYC, x86_64, 2 cores, AVX2 AVX-VNNI AVX-512F AVX-512-VNNI AVX-512-BF16; "
                        "torch 2.13.0+cpu, onnxruntime 1.32.0, openvino 2026.4.1")
    assert lines[3] == "" and lines[4].startswith("| job | policy |")  # the table follows
    assert sum(line.startswith("Machine") for line in lines) == 1


def test_one_line_per_job_where_the_machines_differ(tmp_path: Path) -> None:
    job(tmp_path, "a", UNCAPPED, 0)
    job(tmp_path, "b", CAPPED, 1)
    summarize(tmp_path)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["machine"] is None and summary["machines"] == {"a": UNCAPPED, "b": CAPPED}
    text = (tmp_path / "summary.md").read_text()
    assert "Machines (the jobs did not all run on the same one):" in text
    assert f"- `a`: {machine_line(UNCAPPED)}\n" in text
    assert ("- `b`: AMD EPYC, x86_64, 2 cores, AVX2 (ISA capped at AVX2 by ONEDNN_MAX_CPU_ISA); torch 2.13.0+cpu, "
            "onnxruntime 1.32.0, openvino 2026.4.1\n") in text


def test_results_without_a_machine_name_none(tmp_path: Path) -> None:
    job(tmp_path, "old", None, 0)  # a result.json written before `machine` existed
    summarize(tmp_path)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["machine"] is None and "machines" not in summary
    assert "Machine" not in (tmp_path / "summary.md").read_text()


def test_this_machine_in_one_line() -> None:
    record = describe_machine()
    assert machine_line(record).startswith(f"{record['cpu']['model']}, {record['cpu']['arch']}, ")
    assert f"torch {record['runtimes']['torch']}" in machine_line(record)


def test_the_sweep_labels_each_job_by_what_varies(tmp_path: Path) -> None:
    shared = "format.latency=False,format.runtime_check=False,format=onnx,policy=act"
    for num, opset in enumerate((11, 17)):
        job(tmp_path, shared.replace("format.runtime_check", f"format.opset_version={opset},format.runtime_check"),
            UNCAPPED, num)
    summarize(tmp_path)
    rows = json.loads((tmp_path / SUMMARY_FILE).read_text())["rows"]
    assert [row["label"] for row in rows] == ["format.opset_version=11", "format.opset_version=17"]
    assert rows[0]["job"] == "format.latency=False,format.opset_version=11,format.runtime_check=False,format=onnx," \
                             "policy=act"  # the folder (and result.json's overrides) keep every override
    table = (tmp_path / "summary.md").read_text()
    assert "| format.opset_version=11 | dummy | onnx |" in table and "format.latency=False" not in table
