"""The package's reference set: a few inputs and PyTorch's outputs for them, re-verified where the package runs.

A package verified on the machine that made it says nothing about the robot's CPU: OpenVINO's
INT8 kernels saturate without VNNI, its default precision follows bfloat16 support. So every
package carries ``reference.npz``: the parity gate's first inputs at the sample's batch (the
sample, then its seeded random inputs, as many as fit in :data:`BUDGET_BYTES`, at most
:data:`MAX_CASES`) and PyTorch's outputs for them. The manifest records each backend's tolerance
and its figures on this set at export; ``deploy_check DIR`` runs every backend on it on the
machine it runs on (:func:`recheck`) and holds it to that tolerance.

Torch-free (deploy_check runs on the robot). The file is a plain ``.npz`` (``numpy.load``) with
``input/<name>`` and ``output/<name>`` arrays, the case on axis 0, written byte-reproducibly
(fixed zip timestamps).

Example:
    >>> import tempfile, pathlib
    >>> inputs = [{"state": np.full((1, 3), float(i), np.float32)} for i in range(4)]
    >>> outputs = [{"action": 2 * row["state"]} for row in inputs]
    >>> chosen = select(inputs, outputs)
    >>> len(chosen.labels), chosen.inputs["state"].shape
    (4, (4, 1, 3))
    >>> path = write_reference(pathlib.Path(tempfile.mkdtemp()) / REFERENCE_FILE, chosen)
    >>> back = read_reference(path)
    >>> back.outputs["action"][3].tolist()
    [[6.0, 6.0, 6.0]]
    >>> figures = recheck(lambda feed: {"action": 2 * feed["state"] + 0.01}, back,
    ...                   {"action": Tolerance(atol=1e-3, rtol=0.0)})
    >>> round(figures["action"]["max_abs_diff"], 4), figures["action"]["passed"]
    (0.01, False)
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from getiaction.export.atomic import atomic_write_bytes
from getiaction_export.parity.tolerance import Tolerance, compare, keep_worst

REFERENCE_FILE = "reference.npz"
BUDGET_BYTES = 256 * 1024
"""At most this many bytes of arrays (inputs and outputs): a package stays small enough to copy to a robot."""
MAX_CASES = 8
_EPOCH = (1980, 1, 1, 0, 0, 0)
"""The zip entries' timestamp: the same bytes from every export of the same model."""


@dataclass
class ReferenceSet:
    """Inputs by graph input name and PyTorch's outputs by output name, each with the case on axis 0."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    labels: list[str] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return len(next(iter(self.inputs.values())))

    def nbytes(self) -> int:
        return sum(a.nbytes for a in [*self.inputs.values(), *self.outputs.values()])


def select(inputs: Sequence[Mapping[str, np.ndarray]], outputs: Sequence[Mapping[str, np.ndarray]],
           labels: Sequence[str] | None = None, budget: int = BUDGET_BYTES) -> ReferenceSet:
    """The first cases with the first case's shapes, as many as fit in ``budget`` (at least one)."""
    def shapes(row: Mapping[str, np.ndarray]) -> list[tuple[int, ...]]:
        return [tuple(a.shape) for a in row.values()]

    same = [i for i, row in enumerate(inputs) if shapes(row) == shapes(inputs[0])]
    per_case = sum(np.asarray(a).nbytes for a in [*inputs[0].values(), *outputs[0].values()])
    count = max(1, min(MAX_CASES, len(same), budget // max(per_case, 1)))
    chosen = same[:count]
    names = list(labels) if labels is not None else [f"case {i}" for i in range(len(inputs))]
    return ReferenceSet({name: np.stack([np.asarray(inputs[i][name]) for i in chosen]) for name in inputs[0]},
                        {name: np.stack([np.asarray(outputs[i][name]) for i in chosen]) for name in outputs[0]},
                        [names[i] for i in chosen])


def write_reference(path: Path, reference: ReferenceSet) -> Path:
    """Write ``reference`` to ``path`` atomically and byte-reproducibly; returns ``path``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for kind, arrays in (("input", reference.inputs), ("output", reference.outputs)):
            for name, array in arrays.items():
                entry = zipfile.ZipInfo(f"{kind}/{name}.npy", date_time=_EPOCH)
                entry.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(entry, "w") as stream:
                    np.lib.format.write_array(stream, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def read_reference(path: Path) -> ReferenceSet:
    """The set written by :func:`write_reference` (no pickles are loaded)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    inputs = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith("input/")}
    outputs = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith("output/")}
    if not inputs or not outputs:
        raise ValueError(f"{Path(path).name} holds no input/ and output/ arrays")
    return ReferenceSet(inputs, outputs)


def recheck(call: Callable[[dict[str, np.ndarray]], Mapping[str, Any]], reference: ReferenceSet,
            tolerances: Mapping[str, Tolerance]) -> dict[str, dict[str, Any]]:
    """Run ``call`` (inputs by name -> outputs by name) on every case; per output its worst figures and verdict.

    Only the outputs with a tolerance are judged (a backend may not return every output).
    """
    worst: dict[str, dict[str, Any]] = {}
    for index in range(reference.cases):
        got = call({name: array[index] for name, array in reference.inputs.items()})
        for name, bound in tolerances.items():
            expected = reference.outputs[name][index]
            keep_worst(worst, name, compare(expected, np.asarray(got[name]), *bound), bound)
    return worst


def figures_at_export(cases: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per output, the worst ``max_abs_diff``/``share``/``cosine`` of the parity gate's cases in ``labels``.

    >>> cases = [{"case": "a", "output": "action", "max_abs_diff": 0.1, "share": 0.01, "cosine": 0.9},
    ...          {"case": "b", "output": "action", "max_abs_diff": 0.5, "share": 0.05, "cosine": 0.8}]
    >>> figures_at_export(cases, ["a"])
    {'action': {'max_abs_diff': 0.1, 'share': 0.01, 'cosine': 0.9}}
    """
    worst: dict[str, dict[str, Any]] = {}
    for case in cases:
        if case["case"] not in labels:
            continue
        record = worst.setdefault(str(case["output"]), {"max_abs_diff": 0.0, "share": 0.0, "cosine": 1.0})
        record["max_abs_diff"] = max(record["max_abs_diff"], float(case["max_abs_diff"]))
        record["share"] = max(record["share"], float(case["share"]))
        record["cosine"] = min(record["cosine"], float(case["cosine"]))
    return worst
