"""Name -> class registries for the plug-ins (tasks and distillation methods).

A plug-in is a class registered under a name with a decorator, as timm registers its models::

    @METHODS.register("amad")
    class AmadMethod(Method): ...

``params.yaml`` refers to plug-ins by these names; an unknown name is an error that lists the
registered ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from amad.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Registered classes by name, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
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
        """The class registered as ``name``; ConfigError naming ``key`` lists the known names."""
        if name not in self._entries:
            raise ConfigError(key, f"unknown {self.kind} {name!r}; registered: {', '.join(self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
