"""Write one OpenVINO IR (``.xml`` + ``.bin``) from a policy, through its checked ONNX export.

Why through ONNX and not ``openvino.convert_model(torch_module, example_input=...)``: measured
here (openvino 2026.4.1, torch 2.13, 2 CPU cores, f32 inference, 10 inputs at batch 1 and 8):

========================  =============  =============  ================  ================
model                     error via ONNX direct error   convert via ONNX  convert direct
========================  =============  =============  ================  ================
ACT-like (1.2 M params)   9.5e-7         1.2e-6         1.0 s             4.8 s
diffusion-like (10 steps) 4.50e-6        4.47e-6        2.9 s             19.8 s
========================  =============  =============  ================  ================

The errors are the same to within float32 noise; the ONNX route is 5-7x faster to convert, and
it keeps the graph's names (inputs ``state``, ``images.top``; output ``action``), while the
direct route names inputs after the wrapper's arguments and outputs after trace nodes
(``443``), which deploy runtimes that feed observations by name cannot use. It also inherits
every check of the ONNX export (opset, dynamic batch, input set). So there is one path.

The ``.bin`` is renamed into place before the ``.xml``: a reader that finds the ``.xml`` always
finds its weights. The ONNX file's ``metadata_props`` (policy class, config, versions) are copied
into the IR's ``rt_info`` under ``getiaction``.

openvino is an optional extra: ``pip install 'getiaction-export[openvino]'``.

Example:
    >>> import tempfile, pathlib
    >>> from getiaction.policies import Dummy
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> result = Dummy().to_openvino(folder / "dummy.xml")
    >>> sorted(p.name for p in folder.iterdir()), result.input_names, result.output_names
    (['dummy.bin', 'dummy.xml'], ['state'], ['action'])
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from getiaction.errors import ConfigError, ExportError, first_line
from getiaction.export.atomic import atomic_path, prepare_parent
from getiaction.export.extras import require
from getiaction.export.onnx import NamedTensors, OnnxExportResult, TensorSpec, export_onnx
from getiaction.export.onnx_files import onnx_files

RT_INFO_SECTION = "getiaction"
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
"""OpenVINO's CPU plugin infers in bfloat16 by default on CPUs that have it (error ~1e-3); this keeps f32."""


@dataclass(frozen=True)
class OpenVINOExportResult(NamedTensors):
    """What :func:`convert_onnx_to_openvino` wrote."""

    path: Path
    """The ``.xml``; its weights are :attr:`bin_path`."""
    bin_path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    compressed_to_fp16: bool
    source: str = "onnx"
    """What the IR was converted from (see the module docstring for why ONNX)."""
    opset: int | None = None
    """Opset of the ONNX graph it came from."""
    exporter: str | None = None


def openvino_module(feature: str = "to_openvino") -> Any:
    """``import openvino``, or a one-line :class:`ConfigError` that says how to install it."""
    return require("openvino", feature)


def bin_path_of(xml_path: str | os.PathLike[str]) -> Path:
    """The weights file OpenVINO reads for ``xml_path`` (same stem, ``.bin``)."""
    return Path(xml_path).with_suffix(".bin")


def convert_onnx_to_openvino(
    onnx_path: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    compress_to_fp16: bool = False,
    source: OnnxExportResult | None = None,
) -> OpenVINOExportResult:
    """Convert an ONNX file into an OpenVINO IR at ``path`` (``.xml``; the ``.bin`` beside it).

    Args:
        onnx_path: the ONNX file (for instance written by :func:`~getiaction.export.onnx.export_onnx`).
        path: the ``.xml`` to write; both files are replaced atomically if they exist.
        compress_to_fp16: store weights as float16 (half the size); CPU inference decompresses
            them and still computes in float32 under the f32 hint. Note that OpenVINO's own
            ``save_model`` default is ``True``; here it is ``False``.
        source: the export result of ``onnx_path``, to record its opset and exporter.
    """
    ov = openvino_module()
    path = Path(path)
    if path.suffix != ".xml":
        raise ConfigError(f"path: {str(path)!r} must end in .xml (the weights go to the .bin beside it)")
    prepare_parent(path)
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    try:
        model = _convert(ov, Path(onnx_path))
    except Exception as error:  # OpenVINO raises its own untyped errors
        raise ExportError(f"OpenVINO could not convert the ONNX graph: {first_line(error)}") from error
    props["getiaction.precision"] = "fp16-weights" if compress_to_fp16 else "fp32"
    _keep_only_io_names(model)
    for key, value in props.items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    with atomic_ir(path) as temp_xml:
        ov.save_model(model, str(temp_xml), compress_to_fp16=compress_to_fp16)
    return OpenVINOExportResult(
        path=path,
        bin_path=bin_path_of(path),
        inputs=[_spec(port, props) for port in model.inputs],
        outputs=[_spec(port, props) for port in model.outputs],
        compressed_to_fp16=compress_to_fp16,
        opset=source.opset if source else None,
        exporter=source.exporter if source else None,
    )


def _convert(ov: Any, onnx_path: Path) -> Any:
    """``ov.convert_model`` on the ONNX file: its bytes, or its path when its weights are in an external data file.

    The bytes, not the path, where possible: convert_model splits a path string at commas (a list
    of files), and Hydra sweep folders are named like "format=onnx,opset_version=17". A file with
    external data is read from a path (the data file beside it); a path with a comma is first
    linked (or copied) into a temporary folder.
    """
    files = onnx_files(onnx_path)
    if len(files) == 1:
        return ov.convert_model(io.BytesIO(onnx_path.read_bytes()))
    if "," not in str(onnx_path.resolve()):
        return ov.convert_model(str(onnx_path))
    with tempfile.TemporaryDirectory(prefix="getiaction-openvino-") as folder:
        for file in files:
            try:
                os.link(file, Path(folder) / file.name)
            except OSError:
                shutil.copyfile(file, Path(folder) / file.name)
        return ov.convert_model(str(Path(folder) / onnx_path.name))


def export_openvino(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_sample: Mapping[str, torch.Tensor],
    *,
    compress_to_fp16: bool = False,
    **onnx_kwargs: Any,
) -> OpenVINOExportResult:
    """Export ``model`` with :func:`export_onnx` (``onnx_kwargs``) to a temporary file, then convert it.

    Policies get their defaults through ``policy.to_openvino(path)``.
    """
    openvino_module()  # a missing openvino fails before the (slow) ONNX export
    with tempfile.TemporaryDirectory(prefix="getiaction-openvino-") as folder:
        exported = export_onnx(model, Path(folder) / f"{Path(path).stem}.onnx", input_sample, **onnx_kwargs)
        return convert_onnx_to_openvino(exported.path, path, compress_to_fp16=compress_to_fp16, source=exported)


@contextlib.contextmanager
def atomic_ir(xml_path: Path) -> Iterator[Path]:
    """Yield a hidden temporary ``.xml`` path; on success move its ``.bin``, then itself, into place."""
    with atomic_path(xml_path) as temp_xml:
        temp_bin = bin_path_of(temp_xml)
        try:
            yield temp_xml
            if not temp_bin.is_file():
                raise ExportError(f"OpenVINO wrote no weights file for {xml_path.name}")
            os.chmod(temp_bin, os.stat(temp_xml).st_mode & 0o777)
            os.replace(temp_bin, bin_path_of(xml_path))
        finally:
            temp_bin.unlink(missing_ok=True)


def _keep_only_io_names(model: Any) -> None:
    """Drop the names of intermediate tensors, so a compiled output port is named after the graph's output only.

    When the CPU plugin folds a no-op (the Dummy policy's final Reshape), the Result takes over
    the producer's tensor names: the compiled port is then ``{'/model/net/net.2/Gemm_output_0',
    'action'}`` and ``any_name`` is the Gemm's, which is the name physicalai's OpenVINO adapter
    reads its outputs by (``compiled_model.outputs[i].any_name``), so ``action`` goes missing.
    """
    keep = {name for port in [*model.inputs, *model.outputs] for name in port.get_names()}
    for op in model.get_ops():
        for output in op.outputs():
            names = output.get_names()
            if names and not names & keep:
                output.get_tensor().set_names(set())


def _spec(port: Any, props: Mapping[str, str]) -> TensorSpec:
    """Name (the graph's own name among the port's aliases), shape (``batch`` for dynamic) and dtype."""
    import json

    known = [s["name"] for key in ("getiaction.inputs", "getiaction.outputs") for s in json.loads(props.get(key, "[]"))]
    names = port.get_names()
    name = next((n for n in known if n in names), None) or port.get_any_name()
    shape: list[int | str] = [
        int(dim.get_length()) if dim.is_static else "batch" if index == 0 else "?"
        for index, dim in enumerate(port.get_partial_shape())
    ]
    return TensorSpec(name, shape, str(port.get_element_type().to_dtype()))
