"""The inputs INT8 is calibrated on (``format.calibration``), one batch-1 row per inference.

``source=random``: the input sample's first row, then seeded random rows drawn within the
sample's own range (as the parity gate's random inputs are). ``source=file``: recorded
observations, an ``.npz`` of named arrays whose axis 0 is the row; each named input of the graph
must be there with the sample's per-row shape. Real observations calibrate better than random
ones: activation ranges come from what the robot will see.

Example:
    >>> import torch
    >>> from getiaction_export.config.schemas import CalibrationSchema
    >>> rows, record = calibration_rows(CalibrationSchema(samples=4), {"state": torch.zeros(2, 3)}, ["state"])
    >>> len(rows), rows[0]["state"].shape, record["source"], record["samples"]
    (4, (1, 3), 'random', 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from getiaction.errors import ConfigError
from getiaction_export.files import sha256_of
from getiaction_export.parity.gate import random_like

Row = dict[str, np.ndarray]


def calibration_rows(schema: Any, sample: dict[str, torch.Tensor],
                     input_names: list[str]) -> tuple[list[Row], dict[str, Any]]:
    """``(rows, record)``: the calibration inputs by graph input name, and what result.json says of them."""
    record: dict[str, Any] = {"source": schema.source, "requested": schema.samples}
    if schema.source == "file":
        rows = _file_rows(Path(schema.path), sample, input_names, schema.samples)
        record.update(path=str(schema.path), sha256=sha256_of(schema.path))
    else:
        rows = _random_rows(sample, input_names, schema.samples, schema.seed)
        record["seed"] = schema.seed
    record["samples"] = len(rows)
    return rows, record


CALIBRATION_STREAM = 0x5EED_CA1B
"""Mixed into ``format.calibration.seed``: the same seed as the gate's (``format.seed``, both 0 by default) must
not draw the same rows, or the INT8 gate would check the IR on the inputs it was calibrated on."""


def _random_rows(sample: dict[str, torch.Tensor], names: list[str], count: int, seed: int) -> list[Row]:
    generator = torch.Generator().manual_seed(seed ^ CALIBRATION_STREAM)
    first = {name: sample[name][:1].numpy() for name in names}
    rows = [{name: random_like(sample[name], 1, generator).numpy() for name in names} for _ in range(count - 1)]
    return [first, *rows]


def _file_rows(path: Path, sample: dict[str, torch.Tensor], names: list[str], count: int) -> list[Row]:
    key = "format.calibration.path"
    if not path.is_file():
        raise ConfigError(f"{key}: {str(path)!r} is not a file (an .npz of named arrays, axis 0 the row)")
    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{key}: cannot read {path.name} as .npz: {error}") from error
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ConfigError(f"{key}: {path.name} has no array {missing[0]!r}; the model's inputs are {names}, "
                          f"the file has {sorted(arrays)}")
    for name in names:
        want, got = tuple(sample[name].shape[1:]), tuple(arrays[name].shape[1:])
        if want != got:
            raise ConfigError(f"{key}: {path.name}[{name!r}] rows are {got}, the model takes {want} per row")
    total = min(len(arrays[name]) for name in names)
    if total == 0:
        raise ConfigError(f"{key}: {path.name} has no rows")
    dtypes = {name: sample[name].numpy().dtype for name in names}
    return [{name: arrays[name][index:index + 1].astype(dtypes[name]) for name in names}
            for index in range(min(count, total))]
