"""Errors that reach the user as one line naming the file, line or key that is wrong."""

from __future__ import annotations


class AmadError(Exception):
    """Base class: a problem with the user's input, reported without a traceback by the stages."""


class ConfigError(AmadError):
    """A bad value in ``params.yaml`` (or a model's ``config.json``); the message names the key."""

    def __init__(self, key: str, message: str, *, source: str = "params.yaml") -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.key = key
        self.reason = message


class DataError(AmadError):
    """A bad data file; the message names the file and, where there is one, the line."""
