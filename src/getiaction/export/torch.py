"""The PyTorch checkpoint format: weights plus the config that rebuilds the policy.

A checkpoint is a plain dict that loads with ``torch.load(path, weights_only=True)``::

    {"format": "getiaction.checkpoint", "format_version": 1, "getiaction_version": "...",
     "policy_class_path": "getiaction.policies.dummy.policy.Dummy",
     "state_dict": {...}, "model_config": "<YAML>"}

Checkpoints of earlier getiaction releases (a flat state dict plus one ``"model_config"`` YAML
entry, no header) load too; the caller then names the policy class.

Example:
    >>> import tempfile, pathlib, torch
    >>> from getiaction.policies import Dummy, DummyConfig
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "dummy.pt"
    >>> _ = save_checkpoint(Dummy(config=DummyConfig(action_shape=(3,))), path)
    >>> restored = load_policy(path)
    >>> type(restored).__name__, restored.config.action_shape
    ('Dummy', (3,))
"""

from __future__ import annotations

import io
import os
import pickle
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from textwrap import shorten
from typing import TYPE_CHECKING, Any

import torch

from getiaction.errors import CheckpointError, SerializationError
from getiaction.export.atomic import atomic_write_bytes
from getiaction.export.serialization import (
    DEFAULT_ALLOWED_PACKAGES,
    check_allowed,
    from_yaml,
    import_object,
    to_yaml,
)

if TYPE_CHECKING:
    from torch import nn

CHECKPOINT_FORMAT = "getiaction.checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
_UNSAFE_GLOBAL = re.compile(r"unsupported global:?\s+(?:GLOBAL\s+)?([\w.]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back: weights, the config's YAML, and who wrote it."""

    state_dict: dict[str, torch.Tensor]
    model_config: str
    policy_class_path: str | None
    format_version: int
    """0 for the header-less layout of earlier releases."""


def class_path_of(obj: object) -> str:
    """``package.module.Class`` of an object's class."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def checkpoint_bytes(policy: nn.Module, config: Any) -> bytes:
    """Serialize ``policy`` to checkpoint bytes, in memory.

    ``torch.save`` records the file name inside its zip archive, so saving to a temporary file
    name would make the bytes depend on that name; a memory buffer keeps them reproducible.
    """
    from getiaction import __version__

    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "getiaction_version": __version__,
        "policy_class_path": class_path_of(policy),
        "state_dict": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()},
        "model_config": to_yaml(config),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_checkpoint(policy: nn.Module, path: str | os.PathLike[str], config: Any = None) -> Path:
    """Write ``policy``'s checkpoint to ``path`` atomically and return the path.

    ``config`` defaults to ``policy.config`` (an empty mapping when there is none).
    """
    if config is None:
        config = getattr(policy, "config", None) or {}
    data = checkpoint_bytes(policy, config)
    atomic_write_bytes(path, data)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint safely (``weights_only=True``; nothing in it is executed).

    Raises:
        CheckpointError: one line saying what is wrong with the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path}: file is empty")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch words it "Unsupported global: GLOBAL os.system" or "unsupported GLOBAL posix.system";
        # any other unpickling error means bytes that are no pickle at all (random, corrupt).
        refused = _UNSAFE_GLOBAL.search(str(error))
        if refused is None:
            raise CheckpointError(
                f"checkpoint {path}: not a readable torch checkpoint (truncated or corrupt file?)"
            ) from error
        raise CheckpointError(
            f"checkpoint {path}: refused: it holds pickled Python objects ({refused.group(1)}), "
            "which safe loading refuses"
        ) from error
    except Exception as error:  # the unpickler meets garbage with IndexError, KeyError, struct.error...
        raise CheckpointError(
            f"checkpoint {path}: not a readable torch checkpoint (truncated or corrupt file?)"
        ) from error
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"checkpoint {path}: not a getiaction checkpoint (top level is {type(raw).__name__}, not a dict)"
        )
    if "format" in raw:
        return _read_headed(path, raw)
    if "model_config" in raw:  # the flat layout of earlier getiaction releases
        config = raw["model_config"]
        state = {k: v for k, v in raw.items() if k != "model_config"}
        if not isinstance(config, str) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"checkpoint {path}: not a getiaction checkpoint (malformed entries)")
        return Checkpoint(state, config, None, 0)
    keys = sorted(map(str, raw))[:5]
    raise CheckpointError(
        f"checkpoint {path}: not a getiaction checkpoint (no 'model_config' entry; keys: {keys})"
    )


def _read_headed(path: Path, raw: dict[str, Any]) -> Checkpoint:
    if raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path}: unknown format {raw.get('format')!r}")
    version = raw.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"checkpoint {path}: invalid format_version {version!r}")
    if version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format_version {version} is newer than this getiaction reads "
            f"({CHECKPOINT_FORMAT_VERSION}); upgrade getiaction-export"
        )
    for key, wanted in (("state_dict", dict), ("model_config", str), ("policy_class_path", str)):
        if not isinstance(raw.get(key), wanted):
            problem = "missing" if key not in raw else f"a {type(raw[key]).__name__}, not a {wanted.__name__}"
            raise CheckpointError(f"checkpoint {path}: malformed: entry {key!r} is {problem}")
    state, config, class_path = raw["state_dict"], raw["model_config"], raw["policy_class_path"]
    return Checkpoint(state, config, class_path, version)


def load_policy(
    path: str | os.PathLike[str],
    policy_cls: type[nn.Module] | None = None,
    *,
    allowed_packages: Iterable[str] = DEFAULT_ALLOWED_PACKAGES,
) -> Any:
    """Rebuild the policy saved at ``path``: same config, bit-identical weights.

    The policy class is ``policy_cls`` or the one the checkpoint names; a class path outside
    ``allowed_packages`` is refused before anything is imported.
    """
    checkpoint = load_checkpoint(path)
    allowed = tuple(allowed_packages)
    try:
        if policy_cls is None:
            if checkpoint.policy_class_path is None:
                raise CheckpointError(
                    f"checkpoint {path}: written by an earlier release and names no policy class; "
                    "load it with the class, e.g. Dummy.from_torch(path)"
                )
            check_allowed(checkpoint.policy_class_path, allowed, "policy_class_path")
            policy_cls = import_object(checkpoint.policy_class_path, allowed, "policy_class_path")
        config = from_yaml(checkpoint.model_config, _config_hint(policy_cls), allowed_packages=allowed)
    except SerializationError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from error
    if not isinstance(policy_cls, type):
        raise CheckpointError(f"checkpoint {path}: policy_class_path does not name a class")
    try:
        policy = policy_cls(config=config) if config not in (None, {}) else policy_cls()
    except (TypeError, ValueError, AttributeError) as error:  # e.g. another policy's config
        holds = f" (the checkpoint holds a {checkpoint.policy_class_path})" if checkpoint.policy_class_path else ""
        raise CheckpointError(
            f"checkpoint {path}: cannot build {policy_cls.__name__} from its config{holds}: {error}"
        ) from error
    try:
        policy.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as error:
        summary = shorten(" ".join(str(error).split()), 200, placeholder=" ...")  # at a word; all of it in the log
        raise CheckpointError(f"checkpoint {path}: weights do not fit {policy_cls.__name__}: {summary}") from error
    policy.eval()
    return policy


def _config_hint(policy_cls: Any) -> Any:
    """The type of ``policy_cls(config=...)``, so a plain-mapping config (no class_path) is rebuilt."""
    try:
        return typing.get_type_hints(policy_cls.__init__).get("config", Any)
    except Exception:  # unresolvable annotations: rebuild from the YAML's own class_path only
        return Any
