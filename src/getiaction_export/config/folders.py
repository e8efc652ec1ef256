"""Sweep job folders: each job's folder name from its overrides, bounded whatever the values.

Job folders are named after their overrides (``format.opset_version=14,policy=act``), bounded by
:func:`short_folder_name`: conf/config.yaml's ``hydra.sweep.subdir`` calls the ``job_folder``
resolver, which :func:`register_resolvers` registers when the CLI module is imported.
"""

from __future__ import annotations

import hashlib

from omegaconf import DictConfig, OmegaConf

JOB_FOLDER_RESOLVER = "job_folder"
"""``hydra.sweep.subdir: ${job_folder:${hydra.job}}`` (conf/config.yaml): a sweep job's folder name."""
FOLDER_NAME_BYTES = 120
"""Longest job folder name (file systems refuse names over 255 bytes; the paths below it add more)."""


def register_resolvers() -> None:
    """Register :func:`job_folder` with OmegaConf (idempotent).

    Called when :mod:`getiaction_export.cli` is imported, so every process that resolves a job's
    folder has it: the CLI's, and a launcher's workers (joblib, Ray and submitit unpickle the task
    function, which imports the CLI module).
    """
    if not OmegaConf.has_resolver(JOB_FOLDER_RESOLVER):
        OmegaConf.register_new_resolver(JOB_FOLDER_RESOLVER, job_folder)


def job_folder(job: DictConfig) -> str:
    """A sweep job's folder name from Hydra's ``hydra.job`` node: :func:`short_folder_name` of its overrides."""
    separators = job.config.override_dirname
    return short_folder_name(str(job.override_dirname), str(separators.item_sep), str(separators.kv_sep))


def short_folder_name(name: str, item_sep: str = ",", kv_sep: str = "=", limit: int = FOLDER_NAME_BYTES) -> str:
    """Hydra's ``override_dirname``, bounded: one folder per job whatever the override values.

    A name whose every ``/``-part fits in ``limit`` bytes (and none is ``..``) is kept as it is.
    Otherwise it becomes one folder: values holding a ``/`` and then the longest values become
    ``sha256-<8 hex>`` (of the value) until the name fits; a name of too many overrides even then
    is cut, with the hash of the whole name appended. The same overrides always give the same name.

    Example:
        >>> short_folder_name("format.opset_version=14,policy=act")
        'format.opset_version=14,policy=act'
        >>> short_folder_name("format.opset_version=17,input_sample.inputs={" + "a: {shape: [1,6]}, " * 9 + "}")
        'format.opset_version=17,input_sample.inputs=sha256-10ef4044'
    """
    parts = name.split("/")
    if all(len(part.encode()) <= limit and part != ".." for part in parts):
        return name
    items = split_overrides(name, item_sep)
    slashed = {index for index, item in enumerate(items) if "/" in item}
    short = [_hashed(item, kv_sep) if index in slashed else item for index, item in enumerate(items)]
    for index in sorted(set(range(len(items))) - slashed, key=lambda i: -len(items[i].encode())):
        if len(item_sep.join(short).encode()) <= limit:
            break
        hashed = _hashed(items[index], kv_sep)
        short[index] = hashed if len(hashed) < len(items[index]) else items[index]
    joined = item_sep.join(short)
    if len(joined.encode()) <= limit and "/" not in joined:
        return joined
    tail = f"--{_digest(name)}"
    return joined.encode()[: limit - len(tail)].decode(errors="ignore").replace("/", "_") + tail


def _digest(text: str) -> str:
    return "sha256-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _hashed(item: str, kv_sep: str) -> str:
    """``key=sha256-<8 hex of the value>`` (the whole item hashed when its key is no plain key)."""
    key, sep, value = item.partition(kv_sep)
    if sep and key and "/" not in key and len(key.encode()) <= FOLDER_NAME_BYTES // 2:
        return f"{key}{kv_sep}{_digest(value)}"
    return _digest(item)


def split_overrides(name: str, item_sep: str) -> list[str]:
    """``override_dirname`` back into its overrides: ``item_sep`` splits only outside brackets and quotes."""
    items, depth, quote, start, index = [], 0, "", 0, 0
    while index < len(name):
        char = name[index]
        if quote:
            quote = "" if char == quote else quote
            index += 2 if char == "\\" else 1
            continue
        if char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(depth - 1, 0)
        elif depth == 0 and name.startswith(item_sep, index):
            items.append(name[start:index])
            start = index + len(item_sep)
            index = start
            continue
        index += 1
    return [*items, name[start:]]
