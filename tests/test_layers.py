"""The layering holds: import-linter's contracts (``pyproject.toml``), and ``params.yaml`` checked
structurally without loading the model libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ["params.yaml", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "profiles").glob("*.yaml"))]
HEAVY = ("torch", "timm", "open_clip", "onnx", "onnxruntime", "transformers", "numpy")


def test_import_linter_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _modules_after(code: str) -> dict:
    """``sys.modules`` facts after running ``code`` in a fresh interpreter at the repository root."""
    script = f"""
import json, sys
{code}
print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules],
                   "amad": sorted(m for m in sys.modules if m.startswith("amad"))}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("profile", PROFILES)
def test_the_structural_check_of_params_imports_no_model_library(profile):
    loaded = _modules_after(f"from amad.config.params import load_params; load_params({profile!r}, models=False)")
    assert loaded["heavy"] == []
    task = yaml.safe_load((ROOT / profile).read_text())["task"]
    assert f"amad.tasks.{task}.task" in loaded["amad"]
    for other in {"vqa", "retrieval", "captioning"} - {task}:
        assert not any(m.startswith(f"amad.tasks.{other}") for m in loaded["amad"]), "a registry loaded an unnamed task"
    assert not any(m.startswith("amad.methods.terms") for m in loaded["amad"])


def test_a_registry_loads_only_the_plug_in_it_is_asked_for():
    loaded = _modules_after("from amad.contracts.method import METHODS; METHODS.get('one2one', 'k')")
    assert "amad.methods.one2one" in loaded["amad"] and "amad.methods.amad" not in loaded["amad"]
    assert loaded["heavy"] == []
