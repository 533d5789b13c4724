"""dvc.yaml declares exactly the code each stage runs, and the parameters each stage reads.

The code a stage runs is the import closure of its script inside ``amad/`` and ``stages/``: every ``import`` statement (module level or inside a function; ``if TYPE_CHECKING``
blocks excepted), the packages on the way (``amad/__init__.py``, ...), and submodules named by
``from package import submodule``, and modules run as subprocesses, named in a module-level
``*_MODULE = "package.module"`` constant; and the plug-ins the registries load by name: the run's
task (declared as ``amad/tasks/${task}``, checked for every built-in task), every method's
declaration (params validation reads them all) and, in ``distill``, every method's term. A file of
the closure that no dependency covers leaves
``dvc repro`` reporting "up to date" with results of the old code; a declared code dependency
that covers nothing of the closure re-runs the stage for nothing. Both fail here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from amad.contracts.method import METHODS
from amad.contracts.task import TASKS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("amad", "stages")


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


def import_closure(*scripts: Path) -> set[str]:
    """Repository-relative paths of every first-party file ``scripts`` may run."""
    seen: set[Path] = set()
    pending = list(scripts)
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        pending.extend(module_file(m) for m in imported_modules(path))
    return {p.relative_to(ROOT).as_posix() for p in seen}


def plugin_files(stage: str, task: str) -> list[Path]:
    """The plug-in modules the registries import by name in ``stage`` when ``params.yaml: task`` is ``task``."""
    modules = [TASKS.builtins[task], *METHODS.builtins.values()]
    if stage == "distill":
        terms = (METHODS.get(name, "distill.methods").term for name in METHODS.builtins)
        modules += [term.partition(":")[0] for term in terms if isinstance(term, str)]
    packages = {".".join(m.split(".")[:end]) for m in modules for end in range(1, m.count(".") + 1)}
    return [module_file(m) for m in sorted({*modules, *packages})]


def stage_closure(stage: str, task: str) -> set[str]:
    return import_closure(ROOT / "stages" / f"{stage}.py", *plugin_files(stage, task))


def covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


def code_deps(stage: dict, task: str) -> list[str]:
    deps = [d.replace("${task}", task) for d in stage.get("deps", [])]
    return [d for d in deps if d.split("/")[0] in PACKAGES]


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_declares_exactly_its_import_closure():
    """For every built-in task: no file of the closure is undeclared; a declared dependency covers a
    file of the closure for at least one task (``amad/losses/logit.py`` serves VQA, ``contrastive.py``
    retrieval)."""
    problems = []
    for name, stage in stages().items():
        used_by_some_task: set[str] = set()
        for task in TASKS.builtins:
            closure = stage_closure(name, task)
            declared = code_deps(stage, task)
            missing = sorted(p for p in closure if not any(covers(d, p) for d in declared))
            if missing:
                problems.append(f"{name} (task {task}): not declared in dvc.yaml: {missing}")
            used_by_some_task |= {d.replace(task, "${task}") for d in declared if any(covers(d, p) for p in closure)}
        unused = sorted(d for d in code_deps(stage, "${task}") if d not in used_by_some_task)
        if unused:
            problems.append(f"{name}: declared but imported by no task: {unused}")
    assert not problems, "\n".join(problems)


def test_the_closure_follows_imports_inside_functions(tmp_path):
    closure = stage_closure("evaluate", "vqa")
    assert "amad/tasks/vqa/evaluation.py" in closure  # imported inside VQATask.evaluate
    assert "amad/models/evaluation.py" in closure


def test_prepare_depends_on_the_data_folder_and_distillations_on_their_own_method_keys():
    graph = stages()
    assert "${data.path}" in graph["prepare"]["deps"]
    distill_params = graph["distill"]["params"]
    assert "distill.${item.method}" in distill_params and "students.${item.student}" in distill_params
    assert "distill" not in distill_params and "runtime" not in distill_params
    for name, stage in graph.items():
        for param in stage.get("params", []):
            assert not str(param).startswith("runtime"), f"{name} depends on the speed-only {param}"


def test_dvc_resolves_the_task_folder_and_a_relation_or_retrieval_edit_reruns_no_vqa_stage_before_distill():
    """DVC's own reading of dvc.yaml (``${task}`` resolved from params.yaml, task vqa): the stages before
    ``distill`` do not depend on the relation loss or on the retrieval task's folder (the caption data it shares
    with captioning, amad/data/captions, is in amad/data, a dependency of every stage); ``distill`` does on the loss."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        deps = {stage.addressing: {Path(dep.def_path).as_posix() for dep in stage.deps} for stage in repo.index.stages}
    assert "amad/tasks/vqa" in deps["prepare"] and "amad/tasks/${task}" not in deps["prepare"]
    for edited in ("amad/losses/relation.py", "amad/tasks/retrieval/evaluation.py", "amad/methods/terms/minilm.py"):
        for stage in ("prepare", "train_teacher"):
            assert not any(covers(dep, edited) for dep in deps[stage]), f"editing {edited} re-runs {stage}"
    assert any(covers(dep, "amad/losses/relation.py") for dep in deps["distill@h4-minilm"])


def test_every_pipeline_path_is_a_path_dvc_yaml_declares():
    """The stage scripts read and write through amad.pipeline.paths: each of its paths is one that
    dvc.yaml names (an out, a dep, a metric or a plot), or the git-ignored checkpoints folder."""
    from amad.pipeline import paths

    declared: set[str] = set()
    for stage in stages().values():
        for section in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(section, []):
                declared.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    named = {
        name: value.as_posix() for name, value in vars(paths).items() if name.isupper() and isinstance(value, Path)
    }
    undeclared = {
        name: path
        for name, path in named.items()
        if name != "CHECKPOINTS"
        and not any(d == path or d.startswith(f"{path}/") or path.startswith(f"{d}/") for d in declared)
    }
    assert not undeclared, f"amad/pipeline/paths.py names paths dvc.yaml does not declare: {undeclared}"
    assert "checkpoints" in (ROOT / ".gitignore").read_text()
