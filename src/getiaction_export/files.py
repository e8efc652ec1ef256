"""Files a job writes: artifact names, content hashes, sizes. Torch-free (deploy_check uses it).

Example:
    >>> [p.name for p in artifact_files(Path("out"), "act", "openvino")]
    ['act.xml', 'act.bin']
    >>> [p.name for p in artifact_files(Path("out"), "act", "openvino_int8") + artifact_files(Path("out"), "act",
    ...                                                                                    "executorch")]
    ['act_int8.xml', 'act_int8.bin', 'act.pte']
    >>> [str(p) for p in staged_files(Path("out"), "act", "onnx") + staged_files(Path("out"), "act", "openvino")]
    ['out/.act.staging/act.onnx', 'out/.act.staging.xml', 'out/.act.staging.bin']
    >>> onnx_data_file(Path("out/act.onnx")).name
    'act.onnx.data'
    >>> human_size(4400)
    '4.4 kB'
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ARTIFACT_SUFFIX = {"onnx": ".onnx", "torch": ".pt", "openvino": ".xml", "openvino_int8": "_int8.xml",
                   "executorch": ".pte"}


def artifact_files(folder: Path, stem: str, format_name: str) -> list[Path]:
    """The files one format writes, the main one first (OpenVINO: ``.xml``, then ``.bin``)."""
    main = folder / f"{stem}{ARTIFACT_SUFFIX[format_name]}"
    return [main, main.with_suffix(".bin")] if main.suffix == ".xml" else [main]


def staged_files(folder: Path, stem: str, format_name: str) -> list[Path]:
    """The hidden names a format's files are written under until promoted (:func:`artifact_files` when final).

    ONNX is staged in a hidden folder under its final file name: a large model's ``.onnx`` names
    its external data file (:func:`onnx_data_file`) relative to itself, so the pair keeps the same
    names in staging, in the package replica and once promoted.
    """
    if format_name == "onnx":
        return artifact_files(folder / f".{stem}.staging", stem, format_name)
    return artifact_files(folder, f".{stem}.staging", format_name)


def onnx_data_file(path: Path) -> Path:
    """Where an ONNX file written with external data keeps its weights: ``act.onnx`` -> ``act.onnx.data``.

    Written only for models of 1.8 GB of weights or more (``getiaction.export.onnx_files``); then it is
    one of the format's files (staged, hashed, promoted and packaged with the ``.onnx``)."""
    return path.with_name(path.name + ".data")


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def human_size(size: int) -> str:
    """``4.4 kB`` style (decimal units)."""
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
