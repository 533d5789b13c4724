"""Running ``dvc exp run`` from amad's own tools (``make study``, ``make compare``) without leaking
their overrides into the workspace.

``dvc exp run -S KEY=VALUE`` leaves the last run's parameters in the workspace's ``params.yaml``
(and stages the file); :func:`workspace_restored` puts the file and its index entry back as they
were, so one tool's overrides never reach the next run or ``dvc repro``. The runs stay visible in
``dvc exp show``.

An interrupted tool (Ctrl-C, or ``kill``'s SIGTERM) lets the running ``dvc exp run`` stop on its own
before it exits; a dvc killed mid-run (SIGTERM to the whole process group, say) leaves git's HEAD
detached and ``dvc.lock`` staged, which :func:`workspace_restored` also puts back.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARAMS = Path("params.yaml")
LOCK = Path("dvc.lock")
STOP_GRACE_S = 10.0
"""Seconds ``dvc exp run`` gets to stop on its own after a Ctrl-C (the terminal sent it one too; it
took 2.3 s here) before this process sends it one."""


def _git(*args: str) -> str | None:
    """Stripped output of a git command, None if it fails (outside a work tree, a detached HEAD)."""
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def _index_entry(path: Path) -> str | None:
    """``mode,blob,path`` of ``path`` in git's index (None if it is not there, or outside a work tree)."""
    listed = _git("ls-files", "-s", "--", str(path))
    if not listed:
        return None
    mode, blob, _stage = listed.split("\t")[0].split()
    return f"{mode},{blob},{path}"


def _set_index_entry(path: Path, entry: str | None) -> None:
    if entry is None:
        subprocess.run(["git", "rm", "-q", "--cached", "--ignore-unmatch", "--", str(path)], check=True)
    else:
        subprocess.run(["git", "update-index", "--add", "--cacheinfo", entry], check=True)


@contextmanager
def workspace_restored() -> Iterator[None]:
    """On the way out, even after a failure, Ctrl-C or SIGTERM (turned into ``KeyboardInterrupt``
    meanwhile, so that this runs), put back what ``dvc exp run`` changes besides the outputs:
    ``params.yaml`` (contents and index entry), ``dvc.lock``'s index entry, and git's HEAD where a
    killed dvc left it detached at the commit the branch still points to."""
    original, staged, lock_staged = PARAMS.read_text(), _index_entry(PARAMS), _index_entry(LOCK)
    branch, commit = _git("symbolic-ref", "-q", "HEAD"), _git("rev-parse", "-q", "--verify", "HEAD")
    try:
        with _interrupts_raise():
            yield
    finally:
        restored = []
        if PARAMS.read_text() != original or _index_entry(PARAMS) != staged:
            PARAMS.write_text(original)
            _set_index_entry(PARAMS, staged)  # dvc stages the file; a stale entry breaks the next dvc exp run
            restored.append("params.yaml")
        if _index_entry(LOCK) != lock_staged:
            _set_index_entry(LOCK, lock_staged)
            restored.append("dvc.lock's index entry")
        detached = branch is not None and _git("symbolic-ref", "-q", "HEAD") is None
        if detached and _git("rev-parse", "-q", "--verify", "HEAD") == commit == _git(
            "rev-parse", "-q", "--verify", branch
        ):
            subprocess.run(["git", "symbolic-ref", "HEAD", branch], check=True)
            restored.append(f"HEAD ({branch})")
        if restored:
            print(
                f"restored {', '.join(restored)} (the experiments keep their params: dvc exp show); the "
                "outputs in the workspace are the last run's until the next dvc repro",
                file=sys.stderr,
            )


@contextmanager
def _interrupts_raise() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread has handlers
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    # Ctrl-C raises KeyboardInterrupt here whatever handler a library left on SIGINT (one left it
    # ignored in the test suite's process, so an interrupted tool ran its dvc to the end)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def run_experiment(overrides: list[str], target: str = "evaluate", *, grace_s: float = STOP_GRACE_S) -> None:
    """``dvc exp run -S <override> ... <target>`` in the workspace (its outputs land there).

    Interrupted, it waits for dvc to stop before raising (sending it SIGINT at once after a SIGTERM,
    after ``grace_s`` after a Ctrl-C): dvc then puts git's HEAD and index back itself.
    """
    command = ["dvc", "exp", "run"]
    for override in overrides:
        command += ["-S", override]
    process = subprocess.Popen([*command, target])
    try:
        returncode = process.wait()
    except KeyboardInterrupt as interrupt:
        from_terminal = not interrupt.args  # Ctrl-C reached dvc too; a SIGTERM sent to this process did not
        try:
            process.wait(timeout=grace_s if from_terminal else 0)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            process.wait()
        raise
    if returncode:
        raise subprocess.CalledProcessError(returncode, process.args)


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
