"""Stage ``build``: instantiate the configured policy with seeded weights, or load a checkpoint.

Example:
    >>> built = build_policy({"_target_": "getiaction.policies.Dummy", "seed": 0,
    ...                       "kwargs": {"config": {"action_shape": [3]}}})
    >>> built.class_path, built.source, built.module.config.action_shape
    ('getiaction.policies.dummy.policy.Dummy', 'config', (3,))
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from getiaction.errors import ConfigError, SerializationError
from getiaction.export.serialization import from_plain
from getiaction.export.torch import class_path_of, load_policy
from getiaction_export.stages.report import sha256_of


@dataclass
class BuiltPolicy:
    """The policy to export and where it came from."""

    module: nn.Module
    class_path: str
    source: str
    """``config`` (built fresh from the policy group) or ``checkpoint``."""
    seed: int | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None


def build_policy(
    policy: dict[str, Any], checkpoint: str | None = None, allowed_packages: Iterable[str] = ("getiaction",)
) -> BuiltPolicy:
    """Build from ``checkpoint`` when given (it wins over ``policy``), else from ``policy``."""
    if checkpoint:
        module = load_policy(checkpoint, allowed_packages=allowed_packages)
        return BuiltPolicy(module, class_path_of(module), "checkpoint", None, str(checkpoint), sha256_of(checkpoint))
    target_path = policy["_target_"]
    target = _import_target(target_path)
    kwargs = _typed_kwargs(target, target_path, dict(policy.get("kwargs") or {}))
    torch.manual_seed(int(policy.get("seed", 0)))  # fresh weights: same config -> same model
    try:
        module = target(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"policy: {target_path}(...) rejected its arguments: {error}") from error
    if not isinstance(module, nn.Module):
        raise ConfigError(f"policy._target_: {target_path} returned {type(module).__name__}, not a torch.nn.Module")
    module.eval()
    return BuiltPolicy(module, class_path_of(module), "config", int(policy.get("seed", 0)))


def _import_target(target_path: str) -> Any:
    module_name, _, name = target_path.rpartition(".")
    if not module_name:
        raise ConfigError(f"policy._target_: {target_path!r} is not a dotted import path (package.module.Name)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"policy._target_: cannot import module {module_name!r} ({error})") from error
    if not hasattr(module, name):
        raise ConfigError(f"policy._target_: module {module_name!r} has no attribute {name!r}")
    target = getattr(module, name)
    if not callable(target):
        raise ConfigError(f"policy._target_: {target_path} is not callable")
    return target


def _typed_kwargs(target: Any, target_path: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check kwargs against the target's signature; rebuild dataclass configs from plain values."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return kwargs
    parameters = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [k for k in kwargs if k not in parameters] if not takes_any else []
    if unknown:
        valid = [k for k, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise ConfigError(f"policy.{unknown[0]}: not a parameter of {target_path}; valid: {valid}")
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable annotations: pass values through untyped
        hints = {}
    typed = {}
    for name, value in kwargs.items():
        try:
            typed[name] = from_plain(value, hints.get(name, Any), path=f"policy.{name}")
        except SerializationError as error:
            raise ConfigError(str(error)) from error
    return typed
