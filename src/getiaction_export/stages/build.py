"""Stage ``build``: the policy to export, from a checkpoint when one is given, else from config.

Example:
    >>> from getiaction_export.config.schemas import PolicySpec
    >>> build_policy(PolicySpec(target="getiaction.policies.Dummy")).source
    'config'
"""

from __future__ import annotations

from collections.abc import Iterable

from getiaction_export.config.schemas import PolicySpec
from getiaction_export.sources.checkpoint import from_checkpoint
from getiaction_export.sources.config import from_config
from getiaction_export.state import BuiltPolicy


def build_policy(
    policy: PolicySpec | None, checkpoint: str | None = None, allowed_packages: Iterable[str] = ("getiaction",)
) -> BuiltPolicy:
    """``checkpoint`` wins over ``policy`` (the config group then only names the artifacts)."""
    if checkpoint:
        return from_checkpoint(checkpoint, allowed_packages)
    assert policy is not None, "validate() gives a policy whenever there is no checkpoint"
    return from_config(policy)
