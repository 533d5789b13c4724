"""Every leaf of the default params.yaml, given a wrong type or an out-of-range value, is refused by
the checks every stage runs first, with one line naming the leaf (no traceback, nothing written)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from amad.config.params import parse_params
from amad.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
DEFAULT["data"]["path"] = str(ROOT / DEFAULT["data"]["path"])  # the tests run from anywhere


def leaves(node, path=()):
    """``(path, value)`` of every scalar in the tree (list items included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list) and node and not isinstance(node[0], list):
        for index, value in enumerate(node):
            yield from leaves(value, (*path, index))
    else:
        yield path, node


def key_of(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def wrong_type(value):
    if isinstance(value, bool):
        return 3
    if isinstance(value, int | float):
        return "three"
    if isinstance(value, str):
        return {"a": 1}
    if value is None:
        return [1]
    if isinstance(value, list | dict):
        return 3.5
    raise AssertionError(value)


def out_of_range(value):
    """A value of the right type that no leaf accepts: negative numbers, unknown names, missing paths."""
    if isinstance(value, bool):
        return None  # a boolean has no out-of-range value
    if isinstance(value, int | float):
        return -1
    if isinstance(value, str):
        return "no-such-value"
    if value is None:
        return -1
    if isinstance(value, dict) and not value:
        return {"unexpected": 1}
    return None


def mutated(path, value):
    params = copy.deepcopy(DEFAULT)
    node = params
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return params


CASES = [
    pytest.param(path, kind, value, id=f"{key_of(path)}-{kind}")
    for path, original in leaves(DEFAULT)
    for kind, value in (("type", wrong_type(original)), ("range", out_of_range(original)))
    if not (kind == "range" and value is None)
]


def test_the_default_params_are_valid():
    parse_params(copy.deepcopy(DEFAULT))


@pytest.mark.parametrize(("path", "kind", "value"), CASES)
def test_a_bad_leaf_is_refused_with_one_line_naming_it(path, kind, value):
    with pytest.raises(ConfigError) as error:
        parse_params(mutated(path, value))
    message = str(error.value)
    assert "\n" not in message
    key = key_of(path)
    # the leaf itself, or (for a list item, a method name, a dict) the key that holds it
    named = [key, key_of(path[:-1])] if isinstance(path[-1], int) else [key]
    assert any(f" {k}" in message or f"{k}:" in message for k in named), message


def test_every_leaf_is_covered():
    covered = {key_of(case.values[0]) for case in CASES}
    assert covered == {key_of(path) for path, _ in leaves(DEFAULT)}
    assert len(covered) > 80


def test_missing_and_unknown_keys_name_the_key():
    params = copy.deepcopy(DEFAULT)
    del params["distill"]["amad"]["temperature"]
    with pytest.raises(ConfigError, match=r"^params\.yaml: distill\.amad\.temperature: missing key"):
        parse_params(params)
    params = copy.deepcopy(DEFAULT)
    params["distill"]["amad"]["temprature"] = 1.0
    with pytest.raises(ConfigError, match=r"distill\.amad\.temprature: unknown key \(expected one of: variant"):
        parse_params(params)
    params = copy.deepcopy(DEFAULT)
    del params["distill"]["one2one"]
    with pytest.raises(ConfigError, match=r"distill\.one2one: missing section for the listed method"):
        parse_params(params)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("students", "h4", "vision", "image_size"), r"students\.h4\.vision\.image_size: must equal teacher"),
        (("distill", "minilm", "relation_heads"), r"distill\.minilm\.relation_heads: 3 does not divide"),
        (("distill", "attention", "layer_mapping"), r"distill\.attention\.layer_mapping: vision_self .* out of range"),
        (("distill", "one2one", "head_mismatch"), r"distill\.one2one\.head_mismatch: mean_pool needs students\.h4"),
        (("students", "h4", "fusion", "heads"), r"students\.h4\.fusion\.heads: 3 heads do not divide"),
        (("distill", "amad", "variant"), r"distill\.amad\.variant: projection learns .* students\.h4\.vision"),
    ],
)
def test_constraints_between_sections_are_checked_before_any_work(change, message):
    values = {
        ("students", "h4", "vision", "image_size"): 32,
        ("distill", "minilm", "relation_heads"): 3,
        ("distill", "attention", "layer_mapping"): [[5, 0]],
        ("distill", "one2one", "head_mismatch"): "mean_pool",
        ("students", "h4", "fusion", "heads"): 3,
        ("distill", "amad", "variant"): "projection",
    }
    params = mutated(change, values[change])
    if change == ("distill", "one2one", "head_mismatch"):
        params["students"]["h4"]["vision"]["heads"] = 3
        params["students"]["h4"]["vision"]["width"] = 63
    if change == ("distill", "amad", "variant"):  # 257 image tokens: maps of 66049 values
        for model in (params["teacher"], params["students"]["h4"], params["students"]["h2"]):
            model["vision"]["patch_size"] = 4
    with pytest.raises(ConfigError, match=message):
        parse_params(params)


def test_a_stage_answers_a_bad_params_file_with_one_line_and_exit_code_2(tmp_path):
    params = mutated(("distill", "train", "batch_size"), 0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: params.yaml: distill.train.batch_size: must be >= 1, got 0"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("profile", sorted(p.name for p in (ROOT / "profiles").glob("*.yaml")))
def test_every_profile_is_a_valid_params_file_for_the_pipeline(profile):
    raw = yaml.safe_load((ROOT / "profiles" / profile).read_text())
    raw["data"]["path"] = str(ROOT / raw["data"]["path"])
    for model in (raw["teacher"], *raw["students"].values()):  # relative to the repository, like data.path
        if model.get("text", {}).get("hf_model"):
            model["text"]["hf_model"] = str(ROOT / model["text"]["hf_model"])
    if not all(Path(m["text"]["hf_model"]).exists() for m in (raw["teacher"],) if m.get("text", {}).get("hf_model")):
        pytest.skip("the pretrained text tower is linked by make setup (pretrained/)")
    params = parse_params(raw)
    # the pipeline's stages declare these keys of every profile
    assert set(params.distill.methods) <= set(params.distill.settings)
    assert all(name in params.model_names() for name in params.export.models)


def test_params_yaml_is_one_of_the_profiles():
    """The committed default is profiles/vqa.yaml; `make profile NAME=...` copies another one over it."""
    profiles = {p.read_text() for p in (ROOT / "profiles").glob("*.yaml")}
    assert (ROOT / "params.yaml").read_text() in profiles


def test_attention_weight_is_one_number_or_one_per_listed_attention_method():
    raw = copy.deepcopy(DEFAULT)
    raw["distill"]["methods"] = ["none", "one2one", "amad"]
    raw["export"]["models"] = ["teacher"]
    raw["deploy"]["model"] = None
    raw["distill"]["weights"]["attention"] = {"one2one": 3, "amad": 1.5}
    weights = parse_params(raw).distill.weights
    assert (weights.attention_for("one2one"), weights.attention_for("amad")) == (3.0, 1.5)
    raw["distill"]["weights"]["attention"] = {"one2one": 3}
    with pytest.raises(ConfigError, match=r"distill\.weights\.attention: no weight for the listed method 'amad'"):
        parse_params(raw)
    raw["distill"]["weights"]["attention"] = {"one2one": 3, "amad": 1, "sideways": 2}
    with pytest.raises(ConfigError, match=r"distill\.weights\.attention\.sideways"):
        parse_params(raw)
    raw["distill"]["weights"]["attention"] = {"one2one": 3, "amad": -1}
    with pytest.raises(ConfigError, match=r"distill\.weights\.attention\.amad: must be >= 0"):
        parse_params(raw)


def test_make_profile_compares_params_as_data_not_bytes(tmp_path, capsys):
    """`dvc exp run -S` rewrites params.yaml's formatting: the switch still works; a real edit is refused."""
    import shutil

    sys.path.insert(0, str(ROOT / "tools"))
    from switch_profile import main as switch_profile  # make profile

    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    raw = yaml.safe_load((ROOT / "profiles" / "vqa.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=True))  # other formatting, same data
    assert switch_profile(["retrieval"], root=tmp_path) == 0
    assert (tmp_path / "params.yaml").read_text() == (ROOT / "profiles" / "retrieval.yaml").read_text()
    raw["seed"] = 7
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert switch_profile(["vqa"], root=tmp_path) == 2 and "edits no profile holds" in capsys.readouterr().err
    assert switch_profile(["vqa", "--force"], root=tmp_path) == 0
    assert switch_profile(["nope"], root=tmp_path) == 2
