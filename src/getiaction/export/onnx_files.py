"""Write an ONNX graph to disk: one self-contained file, or a file plus one external data file beside it.

protobuf cannot serialise a message of 2 GB or more, so a graph whose tensors hold at least
:data:`EXTERNAL_DATA_THRESHOLD` bytes is written with its large tensors in ``<name>.onnx.data``
(one file, named relative to the model, so the pair can be moved together): :func:`data_file`.
The tensors are streamed to that file one at a time (their bytes leave the in-memory graph as
they are written), at offsets aligned for memory mapping, in the graph's own order, so the
bytes are the same on every run.

Both files are written under a hidden temporary folder beside the target, checked there (the
``check`` callback, e.g. ``onnx.checker`` on the path), then renamed into place, the data file
first: a reader that finds the ``.onnx`` finds its weights. Nothing is left behind on failure.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    >>> graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> written = write_onnx(helper.make_model(graph), folder / "m.onnx", external=True)
    >>> [p.name for p in written], sorted(p.name for p in folder.iterdir())
    (['m.onnx', 'm.onnx.data'], ['m.onnx', 'm.onnx.data'])
    >>> uses_external_data(onnx.load(str(folder / "m.onnx"), load_external_data=False))
    True
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx

from getiaction.errors import ExportError
from getiaction.export.atomic import atomic_path, mode_for, prepare_parent

EXTERNAL_DATA_THRESHOLD = 1_800_000_000
"""Bytes of tensor data from which :func:`write_onnx` (``external=None``) writes an external data file.

Below protobuf's 2 GB limit with room for the graph itself; a module constant so tests can lower it."""

DATA_SUFFIX = ".data"
SMALL_TENSOR = 1024
"""Tensors smaller than this stay inside the ``.onnx`` (shapes, scalars)."""
PAGE_ALIGNED = 1 << 20
"""Tensors of this size or more start at a multiple of :data:`ALIGNMENT` (onnxruntime can map them)."""
ALIGNMENT = 1 << 16


def data_file(path: str | os.PathLike[str]) -> Path:
    """The external data file of the ONNX file ``path``: ``model.onnx`` -> ``model.onnx.data``."""
    path = Path(path)
    return path.with_name(path.name + DATA_SUFFIX)


def all_tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model: initializers and node attributes, in subgraphs and functions too."""
    yield from _graph_tensors(proto.graph)
    for function in proto.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for graph in attribute.graphs:
            yield from _graph_tensors(graph)


def _is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL


def uses_external_data(proto: onnx.ModelProto) -> bool:
    """Whether any tensor of ``proto`` keeps its bytes in an external file."""
    return any(_is_external(tensor) for tensor in all_tensors(proto))


def tensor_bytes(proto: onnx.ModelProto) -> int:
    """Bytes of tensor data in the model, inline or external (what decides external data)."""
    total = 0
    for tensor in all_tensors(proto):
        if _is_external(tensor):
            total += int(_external_info(tensor).get("length", 0))
        elif tensor.HasField("raw_data"):
            total += len(tensor.raw_data)
        else:
            total += tensor.ByteSize()
    return total


def _external_info(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def _external_bytes(tensor: onnx.TensorProto, base_dir: Path | None) -> bytes:
    """The bytes of an external tensor, read from its file relative to ``base_dir``."""
    info = _external_info(tensor)
    if base_dir is None:
        raise ExportError(f"tensor {tensor.name!r} keeps its data in {info.get('location')!r}, but no folder was given")
    location = base_dir / info["location"]
    with open(location, "rb") as stream:
        stream.seek(int(info.get("offset", 0)))
        length = info.get("length")
        return stream.read(int(length)) if length is not None else stream.read()


def write_onnx(
    proto: onnx.ModelProto,
    path: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    external: bool | None = None,
    check: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write ``proto`` to ``path`` atomically; returns the files written (the ``.onnx`` first).

    Args:
        proto: the graph; it is consumed (tensors move to disk as they are written, and the rest
            is cleared once serialised), so the caller holds no second copy while ``check`` runs.
        path: the ``.onnx`` file; with external data, :func:`data_file` of it is written too.
        base_dir: where the external tensors ``proto`` already refers to live (an exporter's folder).
        external: ``True``/``False`` forces the layout; ``None``: external from
            :data:`EXTERNAL_DATA_THRESHOLD` bytes of tensor data.
        check: called with the temporary ``.onnx`` path (its data file beside it) before the rename.
    """
    path = Path(path)
    source = Path(base_dir) if base_dir is not None else None
    if external is None:
        external = tensor_bytes(proto) >= EXTERNAL_DATA_THRESHOLD
    prepare_parent(path)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        temp = folder / path.name
        written = [temp]
        if external:
            data = _write_external(proto, temp, source)
            external = data is not None
            written += [data] if data is not None else []
        else:
            _write_inline(proto, temp, source)
        if check is not None:
            check(temp)
        mode = mode_for(path)
        for temp_file in reversed(written):  # the data file first: the .onnx never points at missing weights
            os.chmod(temp_file, mode)
            os.replace(temp_file, path.parent / temp_file.name)
        if not external:
            data_file(path).unlink(missing_ok=True)  # a previous export's weights
        return [path.parent / temp_file.name for temp_file in written]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_inline(proto: onnx.ModelProto, temp: Path, source: Path | None) -> None:
    """Bring external tensors back into the graph, then write it as one file."""
    for tensor in all_tensors(proto):
        if _is_external(tensor):
            tensor.raw_data = _external_bytes(tensor, source)
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    _serialise(proto, temp)


def _serialise(proto: onnx.ModelProto, temp: Path) -> None:
    try:
        data = proto.SerializeToString()
    except ValueError as error:  # protobuf: "Message ... exceeds maximum protobuf size of 2GB"
        raise ExportError(f"{temp.name}: the model is larger than 2 GB, which one .onnx file cannot hold; "
                          "write it with external data") from error
    proto.Clear()
    with open(temp, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _write_external(proto: onnx.ModelProto, temp: Path, source: Path | None) -> Path | None:
    """Stream every tensor of :data:`SMALL_TENSOR` bytes or more to the data file; then write the graph.

    Returns the data file, or None when no tensor was that large (then none is written)."""
    data_path = data_file(temp)
    moved = 0
    with open(data_path, "wb") as stream:
        for tensor in all_tensors(proto):
            if _is_external(tensor):
                data = _external_bytes(tensor, source)
            elif tensor.HasField("raw_data") and len(tensor.raw_data) >= SMALL_TENSOR:
                data = tensor.raw_data
            else:
                continue
            offset = stream.tell()
            align = ALIGNMENT if len(data) >= PAGE_ALIGNED else 64
            if offset % align:
                stream.write(b"\0" * (align - offset % align))
                offset = stream.tell()
            stream.write(data)
            tensor.ClearField("raw_data")
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", data_path.name), ("offset", str(offset)), ("length", str(len(data)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            moved += 1
            del data
        stream.flush()
        os.fsync(stream.fileno())
    _serialise(proto, temp)
    if not moved:  # no tensor worth a data file: the .onnx holds everything
        data_path.unlink()
        return None
    return data_path


def copy_onnx(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> list[Path]:
    """Copy an ONNX file and its external data (renamed after ``destination``); returns the files written."""
    source, destination = Path(source), Path(destination)
    proto = onnx.load(str(source), load_external_data=False)
    if not uses_external_data(proto):
        del proto
        with atomic_path(destination) as temp:
            shutil.copyfile(source, temp)
        data_file(destination).unlink(missing_ok=True)
        return [destination]
    return write_onnx(proto, destination, base_dir=source.parent, external=True)


def onnx_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files an ONNX model at ``path`` consists of: itself, and its data file if it has one."""
    path = Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    locations = sorted({_external_info(t)["location"] for t in all_tensors(proto) if _is_external(t)})
    return [path, *(path.parent / location for location in locations)]
