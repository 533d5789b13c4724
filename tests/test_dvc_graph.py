"""dvc.yaml declares exactly the code each stage runs, and the parameters each stage reads.

The code a stage runs is the import closure of its script inside ``amad/``, ``stages/`` and
``deploy/``: every ``import`` statement (module level or inside a function; ``if TYPE_CHECKING``
blocks excepted), the packages on the way (``amad/__init__.py``, ...), and submodules named by
``from package import submodule``, and modules run as subprocesses, named in a module-level
``*_MODULE = "package.module"`` constant. A file of the closure that no dependency covers leaves
``dvc repro`` reporting "up to date" with results of the old code; a declared code dependency
that covers nothing of the closure re-runs the stage for nothing. Both fail here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("amad", "stages", "deploy")


def module_file(module: str) -> Path | None:
    """The file of a first-party module (``amad.x.y`` -> ``amad/x/y.py`` or ``amad/x/y/__init__.py``)."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runs_module(node: ast.AST) -> bool:
    """``SOMETHING_MODULE = "package.module"`` at any level."""
    return (
        isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and any(isinstance(t, ast.Name) and t.id.endswith("_MODULE") for t in node.targets)
    )


def imported_modules(path: Path) -> set[str]:
    """First-party modules ``path`` imports (with their parent packages)."""
    found: set[str] = set()

    def add(module: str) -> None:
        parts = module.split(".")
        for end in range(1, len(parts) + 1):
            if module_file(".".join(parts[:end])) is not None:
                found.add(".".join(parts[:end]))

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            add(node.module)
            for alias in node.names:
                add(f"{node.module}.{alias.name}")  # a submodule, where it is one
        elif _runs_module(node):  # a module run as a subprocess (``python -m``), named in a ``*_MODULE`` constant
            add(node.value.value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_closure(script: Path) -> set[str]:
    """Repository-relative paths of every first-party file ``script`` may run."""
    seen: set[Path] = set()
    pending = [script]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        pending.extend(module_file(m) for m in imported_modules(path))
    return {p.relative_to(ROOT).as_posix() for p in seen}


def covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


def code_deps(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if d.split("/")[0] in PACKAGES]


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_declares_exactly_its_import_closure():
    problems = []
    for name, stage in stages().items():
        script = ROOT / "stages" / f"{name}.py"
        closure = import_closure(script)
        declared = code_deps(stage)
        missing = sorted(p for p in closure if not any(covers(d, p) for d in declared))
        unused = sorted(d for d in declared if not any(covers(d, p) for p in closure))
        if missing:
            problems.append(f"{name}: not declared in dvc.yaml: {missing}")
        if unused:
            problems.append(f"{name}: declared but not imported: {unused}")
    assert not problems, "\n".join(problems)


def test_the_closure_follows_imports_inside_functions(tmp_path):
    closure = import_closure(ROOT / "stages" / "evaluate.py")
    assert "amad/tasks/vqa/evaluation.py" in closure  # imported inside VQATask.evaluate
    assert "amad/evaluation.py" in closure


def test_prepare_depends_on_the_data_folder_and_distillations_on_their_own_method_keys():
    graph = stages()
    assert "${data.path}" in graph["prepare"]["deps"]
    distill_params = graph["distill"]["params"]
    assert "distill.${item.method}" in distill_params and "students.${item.student}" in distill_params
    assert "distill" not in distill_params and "runtime" not in distill_params
    for name, stage in graph.items():
        for param in stage.get("params", []):
            assert not str(param).startswith("runtime"), f"{name} depends on the speed-only {param}"
