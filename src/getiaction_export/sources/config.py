"""A policy built from config: ``hydra.utils.instantiate`` on ``_target_``, with typed, checked keyword arguments.

Keyword arguments are checked against the target's signature and rebuilt into the dataclasses
its annotations name (:func:`getiaction.export.serialization.from_plain`, which refuses a
``class_path`` outside the allow-list before importing anything); the weights come from the seed.

Example:
    >>> from getiaction_export.config.schemas import PolicySpec
    >>> built = from_config(PolicySpec(target="getiaction.policies.Dummy", kwargs={"config": {"action_shape": [3]}}))
    >>> built.class_path, built.source, built.module.config.action_shape
    ('getiaction.policies.dummy.policy.Dummy', 'config', (3,))
    >>> from_config(PolicySpec(target="does.not.exist"))
    Traceback (most recent call last):
    ...
    getiaction.errors.ConfigError: policy._target_: cannot import 'does.not.exist' (No module named 'does')
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import typing
from typing import Any

import torch
from torch import nn

from getiaction.errors import ConfigError, SerializationError
from getiaction.export.serialization import from_plain
from getiaction.export.torch import class_path_of
from getiaction_export.config.schemas import PolicySpec
from getiaction_export.state import BuiltPolicy


def from_config(spec: PolicySpec) -> BuiltPolicy:
    """Build ``spec.target(**spec.kwargs)`` under ``torch.manual_seed(spec.seed)``, in eval mode."""
    factory = _factory(spec.target)
    kwargs = _typed_kwargs(factory.func, spec.target, dict(spec.kwargs))
    torch.manual_seed(int(spec.seed))  # fresh weights: same config -> same model
    try:
        module = factory(**kwargs)
    except ConfigError:  # the factory's own one-line error names its key
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"policy: {spec.target}(...) rejected its arguments: {error}") from error
    if not isinstance(module, nn.Module):
        raise ConfigError(f"policy._target_: {spec.target} returned {type(module).__name__}, not a torch.nn.Module")
    # a module may name what the parity gate compares it with (a LeRobot policy's own inference)
    reference = getattr(module, "parity_reference", None)
    # a wrapper (LeRobot inputs renamed for the robot loop) names the policy it wraps
    named = getattr(module, "wrapped", module)
    return BuiltPolicy(module.eval(), class_path_of(named), "config", int(spec.seed), call_style=str(spec.call_style),
                       reference=reference if isinstance(reference, nn.Module) else None)


def _factory(target: str) -> Any:
    """``_target_`` located by Hydra, as a partial to call with the typed kwargs."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if "." not in target:
        raise ConfigError(f"policy._target_: {target!r} is not a dotted import path (package.module.Name)")
    try:
        return instantiate({"_target_": target, "_partial_": True})
    except InstantiationException as error:
        cause = error.__cause__
        if cause is None:  # located, but not something to call (a module, a constant)
            raise ConfigError(f"policy._target_: {target} is not callable") from error
        module_name, _, name = target.rpartition(".")
        if _importable(module_name):
            raise ConfigError(f"policy._target_: module {module_name!r} has no attribute {name!r}") from error
        # Hydra's text is several lines; the first "No module named ..." is the reason
        reasons = re.findall(r"No module named '[^']+'", str(cause))
        reason = reasons[0] if reasons else " ".join(str(cause).split())
        raise ConfigError(f"policy._target_: cannot import {target!r} ({reason})") from error


def _importable(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):  # a parent package that is not there
        return False


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
