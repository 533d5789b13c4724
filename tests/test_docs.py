"""The documentation agrees with the parameter files.

* ``docs/configuration.md`` documents every key of ``params.yaml`` and of every ``profiles/*.yaml``,
  and documents no key that none of them has;
* the README stays a short entry point (at most 300 lines) and says how to run the tests;
* every relative link in the README and ``docs/`` points to an existing file (and heading), except
  the pipeline's own outputs (``reports/``, ``exported/``), which ``make repro`` writes.

Key paths are dotted (``distill.amad.temperature``). A leaf is a value that is not a mapping (lists
are leaves) or an empty mapping (``distill.none: {}``). Name-keyed mappings are written generically:
a student's model keys are the teacher's (``students.h4.vision.heads`` -> ``teacher.vision.heads``:
one model config, documented once under ``teacher.``; the student itself is ``students.<name>``),
and per-method attention weights are ``distill.weights.attention.<method>``. A documented key is a
backticked dotted path at the start of a list item or of a table row; it may name a section (a
mapping) as well as a leaf.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = ROOT / "docs" / "configuration.md"
README = ROOT / "README.md"
README_MAX_LINES = 300

PIPELINE_OUTPUTS = ("reports/", "exported/")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")

# A backticked dotted path opening a list item (`- `, `* `) or a table row (`| `).
DOCUMENTED_KEY = re.compile(r"^\s*(?:[-*]|\|)\s*`([A-Za-z_][A-Za-z0-9_<>]*(?:\.[A-Za-z0-9_<>]+)*)`")


def params_files() -> list[Path]:
    return [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]


def generic(path: tuple[str, ...]) -> str:
    """The documented spelling of a key path (name-keyed mappings written generically)."""
    parts = list(path)
    if parts[:1] == ["students"] and len(parts) >= 2:
        parts = ["students", "<name>"] if len(parts) == 2 else ["teacher", *parts[2:]]
    if parts[:3] == ["distill", "weights", "attention"] and len(parts) >= 4:
        parts = ["distill", "weights", "attention", "<method>", *parts[4:]]
    return ".".join(parts)


def walk(raw: dict, prefix: tuple[str, ...] = ()) -> tuple[set[str], set[str]]:
    """``(leaves, sections)`` of a parsed params file, as generic key paths."""
    leaves: set[str] = set()
    sections: set[str] = set()
    for name, value in raw.items():
        path = (*prefix, str(name))
        if isinstance(value, dict) and value:
            sections.add(generic(path))
            inner_leaves, inner_sections = walk(value, path)
            leaves |= inner_leaves
            sections |= inner_sections
        else:
            if isinstance(value, dict):  # an empty mapping is a key in its own right, and a section
                sections.add(generic(path))
            leaves.add(generic(path))
    return leaves, sections


def params_keys(texts: list[str]) -> tuple[set[str], set[str]]:
    """``(leaves, sections)`` over several params files' YAML texts."""
    leaves: set[str] = set()
    sections: set[str] = set()
    for text in texts:
        raw = yaml.safe_load(text)
        assert isinstance(raw, dict), "a params file is a mapping"
        file_leaves, file_sections = walk(raw)
        leaves |= file_leaves
        sections |= file_sections
    return leaves, sections


def documented_keys(markdown: str) -> set[str]:
    """The key paths a configuration page documents."""
    return {match.group(1) for line in markdown.splitlines() if (match := DOCUMENTED_KEY.match(line))}


def undocumented(leaves: set[str], documented: set[str]) -> list[str]:
    """Params leaves the page does not document."""
    return sorted(leaves - documented)


def unknown(documented: set[str], leaves: set[str], sections: set[str]) -> list[str]:
    """Documented keys that are neither a leaf nor a section of any params file."""
    return sorted(documented - leaves - sections)


def _repository_keys() -> tuple[set[str], set[str]]:
    return params_keys([path.read_text() for path in params_files()])


def test_every_params_key_is_documented():
    leaves, _ = _repository_keys()
    missing = undocumented(leaves, documented_keys(CONFIGURATION.read_text()))
    assert not missing, f"keys in params.yaml / profiles/*.yaml that docs/configuration.md does not document: {missing}"


def test_every_documented_key_exists():
    leaves, sections = _repository_keys()
    stale = unknown(documented_keys(CONFIGURATION.read_text()), leaves, sections)
    assert not stale, f"keys documented in docs/configuration.md that no params file has: {stale}"


def test_the_checks_catch_a_new_and_a_removed_key():
    """A fake key added to a copy of params.yaml is reported missing; a documented key that no file
    has is reported unknown."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["distill"]["amad"]["fake_knob"] = 3
    raw["students"]["h9"] = {"vision": {"made_up": 1}}
    raw["distill"]["weights"]["attention"]["new_method"] = {"inner": 1.0}
    leaves, sections = params_keys([yaml.safe_dump(raw)])
    documented = documented_keys(CONFIGURATION.read_text())
    already_missing = set(undocumented(params_keys([(ROOT / "params.yaml").read_text()])[0], documented))
    assert set(undocumented(leaves, documented)) - already_missing == {
        "distill.amad.fake_knob",
        "distill.weights.attention.<method>.inner",
        "teacher.vision.made_up",
    }
    page = "| `distill.amad.temperature` | ok |\n- `distill.amad.not_a_key`: stale\n* `distill.amad` the section\n"
    assert documented_keys(page) == {"distill.amad.temperature", "distill.amad.not_a_key", "distill.amad"}
    assert unknown(documented_keys(page), leaves, sections) == ["distill.amad.not_a_key"]


def test_generic_paths_and_empty_sections():
    leaves, sections = params_keys(
        ["students: {h2: {text: {heads: 2}}}\ndistill: {none: {}, weights: {attention: {amad: 1.0}}}\nx: [1, 2]\n"]
    )
    assert leaves == {"teacher.text.heads", "distill.none", "distill.weights.attention.<method>", "x"}
    assert {"students", "students.<name>", "teacher.text", "distill.none", "distill.weights.attention"} <= sections


def test_readme_is_short_and_says_how_to_test():
    text = README.read_text()
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"
    assert "make test" in text


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _prose(markdown: str) -> str:
    """``markdown`` without fenced code blocks and inline code (where brackets are not links)."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M))


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces to hyphens,
    repeats numbered)."""
    seen: dict[str, int] = {}
    result = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*$", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        relative = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(resolved)
        if relative.startswith(PIPELINE_OUTPUTS):
            continue
        if not resolved.exists():
            problems.append(f"{page.relative_to(ROOT)}: {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text()):
            problems.append(f"{page.relative_to(ROOT)}: {target}: no such heading")
    return problems


def test_relative_links_resolve():
    problems = [problem for page in markdown_files() for problem in broken_links(page)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_heading_anchors_follow_github():
    page = (
        "# Fair comparison (`make compare`, issue #12), 2026-11-26\n## Data (`data.source`)\n## Data (`data.source`)\n"
    )
    assert anchors(page) == {"fair-comparison-make-compare-issue-12-2026-11-26", "data-datasource", "data-datasource-1"}
