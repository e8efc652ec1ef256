"""Config <-> plain data <-> YAML, losslessly for the configs policies use.

``to_plain`` turns a config into data YAML can hold: a dataclass becomes
``{"class_path": "pkg.module.Class", "init_args": {...}}`` (recursively, also inside lists and
dicts), a StrEnum becomes its string value, numpy arrays and tuples become lists. ``from_plain``
is the inverse: it rebuilds the same dataclass instances, using each field's type hint (and, for
numpy arrays, the declared dtype or the default's dtype) to restore tuples, enums and arrays, so
``from_plain(to_plain(cfg)) == cfg`` field by field.

Classes named by ``class_path`` are imported only when their module lies under an allowed package
(default: ``getiaction``), checked *before* any import, so a hostile config cannot run code.

Example:
    >>> from getiaction.policies import DummyConfig
    >>> plain = to_plain(DummyConfig(action_shape=(7,)))
    >>> plain["class_path"]
    'getiaction.policies.dummy.config.DummyConfig'
    >>> plain["init_args"]["action_shape"]
    [7]
    >>> from_plain(plain) == DummyConfig(action_shape=(7,))
    True
    >>> from_yaml(to_yaml(DummyConfig(action_shape=(3, 2)))).action_shape
    (3, 2)
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import yaml

from getiaction.errors import SerializationError

DEFAULT_ALLOWED_PACKAGES: tuple[str, ...] = ("getiaction",)
"""Packages whose classes a serialized config (or checkpoint) may name."""

CLASS_PATH = "class_path"
INIT_ARGS = "init_args"

_SCALARS = (bool, int, float, str, type(None))


# --------------------------------------------------------------------------------------------
# config -> plain
# --------------------------------------------------------------------------------------------
def to_plain(value: Any, path: str = "config") -> Any:
    """Return ``value`` as plain data (dicts, lists, str, int, float, bool, None).

    Raises:
        SerializationError: naming the field path of the first value that has no plain form.
    """
    if isinstance(value, enum.Enum):
        return to_plain(value.value, path)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise SerializationError(f"{path}: cannot serialize an object-dtype numpy array")
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        init_args = {
            field.name: to_plain(getattr(value, field.name), f"{path}.{field.name}")
            for field in dataclasses.fields(value)
            if field.init
        }
        return {CLASS_PATH: f"{cls.__module__}.{cls.__qualname__}", INIT_ARGS: init_args}
    if isinstance(value, Mapping):
        plain: dict[Any, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str | int | bool):
                raise SerializationError(f"{path}: cannot serialize mapping key {key!r}; use str keys")
            plain[key] = to_plain(item, f"{path}.{key}")
        return plain
    if isinstance(value, list | tuple):
        return [to_plain(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise SerializationError(f"{path}: cannot serialize {value!r} of type {type(value).__name__}")


def to_yaml(config: Any) -> str:
    """Serialize a config to a YAML string (key order kept, safe dumper)."""
    return yaml.safe_dump(to_plain(config), sort_keys=False, allow_unicode=False)


# --------------------------------------------------------------------------------------------
# plain -> config
# --------------------------------------------------------------------------------------------
def check_allowed(class_path: str, allowed_packages: Iterable[str], what: str = "class_path") -> None:
    """Refuse ``class_path`` unless its module is under one of ``allowed_packages`` (no import)."""
    allowed = tuple(allowed_packages)
    if not isinstance(class_path, str) or "." not in class_path:
        raise SerializationError(f"{what}: {class_path!r} is not a dotted 'package.module.Name' path")
    if not any(class_path == pkg or class_path.startswith(pkg + ".") for pkg in allowed):
        raise SerializationError(
            f"{what}: {class_path!r} is outside the allowed packages {list(allowed)}; "
            "add its package to allowed_packages if you trust it"
        )


def import_object(class_path: str, allowed_packages: Iterable[str], what: str = "class_path") -> Any:
    """Import ``package.module.Name`` after checking it against the allow-list."""
    check_allowed(class_path, allowed_packages, what)
    module_name, _, attribute = class_path.rpartition(".")
    while module_name:
        try:
            module = importlib.import_module(module_name)
            break
        except ModuleNotFoundError as error:
            if error.name is None or not module_name.startswith(error.name):
                raise
            # Maybe a nested qualname (Outer.Inner): move one segment from module to attribute.
            module_name, _, head = module_name.rpartition(".")
            attribute = f"{head}.{attribute}"
    else:
        raise SerializationError(f"{what}: cannot import {class_path!r}: no such module")
    obj: Any = module
    try:
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError as error:
        raise SerializationError(f"{what}: {class_path!r} does not exist in {module_name}") from error
    return obj


def from_plain(
    data: Any,
    hint: Any = Any,
    *,
    allowed_packages: Iterable[str] = DEFAULT_ALLOWED_PACKAGES,
    path: str = "config",
) -> Any:
    """Rebuild a config from plain data, guided by the type ``hint`` where there is one.

    A mapping with ``class_path`` becomes an instance of that (allow-listed) dataclass; a plain
    mapping where the hint is a dataclass becomes that dataclass (the form Hydra YAML uses).
    """
    return _Rebuilder(tuple(allowed_packages)).rebuild(data, hint, None, path)


def from_yaml(
    text: str, hint: Any = Any, *, allowed_packages: Iterable[str] = DEFAULT_ALLOWED_PACKAGES
) -> Any:
    """Parse YAML with the safe loader and rebuild the config (see :func:`from_plain`)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SerializationError(f"config: not valid YAML ({type(error).__name__})") from error
    return from_plain(data, hint, allowed_packages=allowed_packages)


class _Rebuilder:
    """Walks plain data and a type hint side by side."""

    def __init__(self, allowed_packages: tuple[str, ...]) -> None:
        self.allowed_packages = allowed_packages

    def rebuild(self, data: Any, hint: Any, default: Any, path: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        # Where the hint is a dict, "class_path" is one of the user's keys, not a dataclass marker.
        dict_hint = origin in (dict, Mapping) or hint is dict
        if isinstance(data, Mapping) and CLASS_PATH in data and not dict_hint:
            cls = import_object(data[CLASS_PATH], self.allowed_packages, f"{path}.class_path")
            if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
                raise SerializationError(f"{path}.class_path: {data[CLASS_PATH]!r} is not a dataclass")
            return self._dataclass(cls, data.get(INIT_ARGS) or {}, path)
        if hint is Any or hint is None or isinstance(hint, typing.TypeVar):
            return self._untyped(data, default, path)

        if origin is typing.Union or origin is types.UnionType:
            return self._union(data, args, default, path)
        if origin is typing.Literal:
            if data not in args:
                raise SerializationError(f"{path}: {data!r} is not one of {list(args)}")
            return data
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(data, Mapping):
                raise SerializationError(f"{path}: expected a mapping for {hint.__name__}, got {data!r}")
            return self._dataclass(hint, data, path)
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return self._enum(hint, data, path)
        if hint is np.ndarray or origin is np.ndarray:
            return self._array(data, _declared_dtype(hint, default), path)
        if origin in (tuple, list, set, frozenset) or hint in (tuple, list):
            return self._sequence(data, origin or hint, args, path)
        if origin in (dict, Mapping) or hint is dict:
            value_hint = args[1] if len(args) == 2 else Any
            if not isinstance(data, Mapping):
                raise SerializationError(f"{path}: expected a mapping, got {data!r}")
            return {
                key: self.rebuild(item, value_hint, None, f"{path}.{key}") for key, item in data.items()
            }
        if hint in (int, float, str, bool):
            return _scalar(data, hint, path)
        return self._untyped(data, default, path)

    def _untyped(self, data: Any, default: Any, path: str) -> Any:
        """No usable hint: follow the default's type if there is one, else keep plain data."""
        if isinstance(default, np.ndarray):
            return self._array(data, default.dtype, path)
        if isinstance(default, enum.Enum):
            return self._enum(type(default), data, path)
        if isinstance(default, tuple) and isinstance(data, list):
            return tuple(data)
        if isinstance(data, Mapping):
            return {key: self.rebuild(item, Any, None, f"{path}.{key}") for key, item in data.items()}
        if isinstance(data, list):
            return [self.rebuild(item, Any, None, f"{path}[{i}]") for i, item in enumerate(data)]
        return data

    def _union(self, data: Any, args: tuple[Any, ...], default: Any, path: str) -> Any:
        if data is None and type(None) in args:
            return None
        candidates = [arg for arg in args if arg is not type(None)]
        errors = []
        for candidate in candidates:
            try:
                return self.rebuild(data, candidate, default, path)
            except (SerializationError, TypeError, ValueError) as error:
                errors.append(str(error))
        raise SerializationError(errors[0] if errors else f"{path}: cannot rebuild {data!r}")

    def _dataclass(self, cls: type, init_args: Mapping[str, Any], path: str) -> Any:
        if not isinstance(init_args, Mapping):
            raise SerializationError(f"{path}.init_args: expected a mapping, got {init_args!r}")
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # unresolvable forward references: fall back to defaults' types
            hints = {}
        fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
        unknown = sorted(set(init_args) - set(fields))
        if unknown:
            raise SerializationError(
                f"{path}: unknown field(s) {unknown} for {cls.__name__}; valid: {sorted(fields)}"
            )
        kwargs = {}
        for name, value in init_args.items():
            field = fields[name]
            kwargs[name] = self.rebuild(value, hints.get(name, Any), _field_default(field), f"{path}.{name}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as error:
            raise SerializationError(f"{path}: cannot build {cls.__name__}: {error}") from error

    @staticmethod
    def _enum(cls: type[enum.Enum], data: Any, path: str) -> enum.Enum:
        if isinstance(data, cls):
            return data
        try:
            return cls(data)
        except ValueError:
            if isinstance(data, str) and data in cls.__members__:
                return cls[data]
            valid = [member.value for member in cls]
            raise SerializationError(f"{path}: {data!r} is not a valid {cls.__name__}; valid: {valid}") from None

    @staticmethod
    def _array(data: Any, dtype: Any, path: str) -> np.ndarray:
        try:
            return np.asarray(data, dtype=dtype)
        except (TypeError, ValueError) as error:
            raise SerializationError(f"{path}: cannot make a numpy array from {data!r}: {error}") from error

    def _sequence(self, data: Any, container: Any, args: tuple[Any, ...], path: str) -> Any:
        if not isinstance(data, list | tuple):
            raise SerializationError(f"{path}: expected a list, got {data!r}")
        if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(data):
                raise SerializationError(f"{path}: expected {len(args)} items, got {len(data)}")
            item_hints = list(args)
        else:
            item_hints = [args[0] if args else Any] * len(data)
        pairs = enumerate(zip(data, item_hints, strict=True))
        items = [self.rebuild(item, h, None, f"{path}[{i}]") for i, (item, h) in pairs]
        return container(items) if container in (tuple, set, frozenset) else items


def _scalar(data: Any, hint: type, path: str) -> Any:
    """A plain value checked against a scalar hint (an int is a valid float; a bool is not an int)."""
    if hint is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if isinstance(data, hint) and not (hint is int and isinstance(data, bool)):
        return data
    raise SerializationError(f"{path}: {data!r} is not a valid {hint.__name__}")


def _field_default(field: dataclasses.Field[Any]) -> Any:
    """The field's default; ``metadata={"dtype": ...}`` stands in for an array default's dtype."""
    if "dtype" in field.metadata:
        return np.empty(0, dtype=field.metadata["dtype"])
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        try:
            return field.default_factory()
        except Exception:  # a factory that needs context tells us nothing; ignore it
            return None
    return None


def _declared_dtype(hint: Any, default: Any) -> Any:
    """The dtype an array field should come back with: NDArray[...] hint, else the default's."""
    args = typing.get_args(hint)
    if len(args) == 2:
        dtype_args = typing.get_args(args[1])
        if dtype_args and isinstance(dtype_args[0], type) and issubclass(dtype_args[0], np.generic):
            return dtype_args[0]
    if isinstance(default, np.ndarray):
        return default.dtype
    return None
