"""A policy loaded from a ``to_torch`` checkpoint (its class must be in ``allowed_packages``)."""

from __future__ import annotations

from collections.abc import Iterable

from getiaction.export.torch import class_path_of, load_policy
from getiaction_export.files import sha256_of
from getiaction_export.state import BuiltPolicy


def from_checkpoint(path: str, allowed_packages: Iterable[str] = ("getiaction",)) -> BuiltPolicy:
    """Load the policy saved at ``path``; its bytes' sha256 identifies it in the job's records."""
    module = load_policy(path, allowed_packages=allowed_packages)
    return BuiltPolicy(module, class_path_of(module), "checkpoint", None, str(path), sha256_of(path))
