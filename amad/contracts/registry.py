"""Name -> class registries for the plug-ins (tasks and distillation methods).

A plug-in is a class registered under a name with a decorator, as timm registers its models::

    @METHODS.register("amad")
    class AttentionMapAlignment(Method): ...

A registry knows its built-in plug-ins by module path and imports one only when a run names it
(:meth:`Registry.get`), so choosing ``task: vqa`` never loads the retrieval code. ``params.yaml``
refers to plug-ins by these names; an unknown name is an error that lists the known ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from amad.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Registered classes by name: the built-ins (by module, loaded on first use), then the rest in
    registration order.

    Args:
        kind: what the entries are, for messages (``"task"``).
        builtins: ``{name: module}``; importing the module registers the entry ``name``.
    """

    def __init__(self, kind: str, builtins: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.builtins = dict(builtins or {})
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator registering the class under ``name`` (and setting its ``name``)."""

        def add(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered ({self._entries[name].__qualname__})")
            cls.name = name
            self._entries[name] = cls
            return cls

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register toy plug-ins clean up with this)."""
        self._entries.pop(name, None)

    def get(self, name: str, key: str) -> type[T]:
        """The class registered as ``name`` (importing its module if it is a built-in); ConfigError
        naming ``key`` lists the known names."""
        if name not in self._entries and name in self.builtins:
            importlib.import_module(self.builtins[name])
            if name not in self._entries:
                raise RuntimeError(f"module {self.builtins[name]} does not register {self.kind} {name!r}")
        if name not in self._entries:
            raise ConfigError(key, f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every known name (built-ins first); nothing is imported."""
        return list(dict.fromkeys([*self.builtins, *self._entries]))

    def __contains__(self, name: object) -> bool:
        return name in self.builtins or name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
