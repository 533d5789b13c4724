"""Typed configuration: frozen dataclasses filled from YAML / JSON, with errors that name the key.

This module is the machinery only; it imports nothing from the rest of amad but its errors. The
sections of ``params.yaml`` are declared next to the code that owns them (``amad.config.params`` for the
task-neutral ones, each task for its model and data configs, each method for its settings), and
``params.yaml`` is the one place where their values, defaults included, are written down: a
dataclass here has no default values, so a missing key is an error that names it.

A section validates its own values in a ``validate(self, key)`` method that raises through
:func:`require`; :func:`from_dict` calls it on every dataclass it builds, so a value is checked
wherever it is read from (``params.yaml``, a saved model's ``config.json``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from amad.errors import ConfigError


def require(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


def require_choice(value: Any, choices: typing.Iterable[Any], key: str) -> None:
    """``value`` must be one of ``choices`` (the message lists them)."""
    choices = tuple(choices)
    require(value in choices, key, f"must be one of {', '.join(map(str, choices))}; got {value!r}")


def child(key: str, name: str | int) -> str:
    """The key path of a field (``"a.b"``) or list item (``"a[0]"``) below ``key``."""
    if isinstance(name, int):
        return f"{key}[{name}]"
    return f"{key}.{name}" if key else name


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _convert(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check ``value`` against a type annotation and convert it (YAML -> dataclass instances)."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key, source=source)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, source)
            except ConfigError as error:
                errors.append((option, error))
        if len(errors) == 1:
            raise errors[0][1]
        for option, error in errors:  # the option of the value's own shape names the bad leaf inside it
            mapping = typing.get_origin(option) is dict or dataclasses.is_dataclass(option)
            sequence = typing.get_origin(option) in (list, tuple)
            if (mapping and isinstance(value, dict)) or (sequence and isinstance(value, list | tuple)):
                raise error
        raise ConfigError(key, f"expected {' or '.join(_type_name(o) for o in options)}, got {value!r}", source=source)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {value!r}", source=source)
        item_type = typing.get_args(annotation)[0]
        items = [_convert(item, item_type, child(key, index), source) for index, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}", source=source)
        value_type = typing.get_args(annotation)[1]
        return {str(name): _convert(item, value_type, child(key, str(name)), source) for name, item in value.items()}
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}", source=source)
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}", source=source)
        return value
    if annotation in (str, bool):
        if not isinstance(value, annotation):
            raise ConfigError(key, f"expected {annotation.__name__}, got {value!r}", source=source)
        return value
    if annotation is Any:
        return value
    raise TypeError(f"unsupported annotation {annotation!r} at {key}")


def from_dict(cls: type, data: Any, key: str = "", *, source: str = "params.yaml") -> Any:
    """Build dataclass ``cls`` from a mapping and validate it.

    Every field must be present (the values live in ``params.yaml``, not here); unknown keys,
    missing keys, wrong types and values the section's ``validate`` refuses raise
    :class:`ConfigError` naming the key path.
    """
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a mapping, got {data!r}", source=source)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [name for name in data if name not in names]
    if unknown:
        raise ConfigError(
            child(key, unknown[0]), f"unknown key (expected one of: {', '.join(names) or 'none'})", source=source
        )
    missing = [name for name in names if name not in data]
    if missing:
        raise ConfigError(child(key, missing[0]), "missing key (see the configuration reference)", source=source)
    config = cls(**{name: _convert(data[name], hints[name], child(key, name), source) for name in names})
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate(key)
        except ConfigError as error:
            raise ConfigError(error.key, error.reason, source=source) from None
    return config


def to_dict(config: Any) -> Any:
    """Dataclass -> plain YAML/JSON-able structures (tuples become lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {name: to_dict(value) for name, value in config.items()}
    if isinstance(config, list | tuple):
        return [to_dict(value) for value in config]
    return config
