"""Print each stage's code dependencies for dvc.yaml: the run's task folder as ``amad/tasks/${task}``,
whole folders where every module of the folder is in the stage's import closure, files elsewhere.

Usage: python tools/dvc_deps.py   (tests/test_dvc_graph.py checks that dvc.yaml declares exactly this)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_dvc_graph import PACKAGES, TASKS, stage_closure, stages  # noqa: E402


def folder_modules(folder: Path) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in folder.rglob("*.py")}


def coarse(files: set[str]) -> list[str]:
    """The fewest folders and files that cover ``files`` and nothing else of the packages."""
    deps: list[str] = []
    covered: set[str] = set()
    for path in sorted(files, key=lambda p: (p.count("/"), p)):
        if path in covered:
            continue
        parts = path.split("/")
        chosen = path
        for depth in range(1, len(parts)):  # the widest folder whose every module is in files
            folder = "/".join(parts[:depth])
            if depth > 1 and folder_modules(ROOT / folder) <= files:
                chosen = folder
                break
        deps.append(chosen)
        covered |= folder_modules(ROOT / chosen) if chosen != path else {path}
    return sorted(deps)


def main() -> None:
    for name in stages():
        files: set[str] = set()
        for task in TASKS.builtins:
            files |= {p for p in stage_closure(name, task) if not p.startswith(f"amad/tasks/{task}/")}
        files = {p for p in files if p.split("/")[0] in PACKAGES}
        print(f"  {name}:")
        for dep in ["amad/tasks/${task}", *coarse(files)]:
            print(f"      - {dep}")


if __name__ == "__main__":
    main()
