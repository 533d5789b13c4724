"""METEOR runs on Java: one line where ``java`` is missing."""

from __future__ import annotations

import shutil

from amad.errors import AmadError


def require_java() -> None:
    """AmadError in one line where ``java`` is missing."""
    if shutil.which("java") is None:
        raise AmadError(
            "METEOR needs Java (pycocoevalcap runs METEOR 1.5 on it) and `java` is not on PATH: install a Java "
            "runtime, e.g. `apt-get install default-jre-headless`"
        )
