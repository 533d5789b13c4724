"""`make profile NAME=<profile>`: copy profiles/<NAME>.yaml over params.yaml, refusing to drop edits.

params.yaml counts as unedited when its *data* equals some profile's (so `dvc exp run -S`, which
rewrites the file's formatting, does not block a switch); otherwise it refuses unless --force.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    profiles = sorted((root / "profiles").glob("*.yaml"))
    names = "|".join(p.stem for p in profiles)
    parser = argparse.ArgumentParser(prog="make profile", usage=f"make profile NAME=<{names}> [FORCE=1]")
    parser.add_argument("name", nargs="?", default="")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    chosen = root / "profiles" / f"{args.name}.yaml"
    if not args.name or not chosen.is_file():
        print(f"usage: make profile NAME=<{names}>", file=sys.stderr)
        return 2
    params = root / "params.yaml"
    current = yaml.safe_load(params.read_text()) if params.exists() else None
    if current is not None and not args.force and all(yaml.safe_load(p.read_text()) != current for p in profiles):
        print(
            "params.yaml has edits no profile holds: save them (cp params.yaml profiles/mine.yaml) or add FORCE=1",
            file=sys.stderr,
        )
        return 2
    shutil.copyfile(chosen, params)
    print(
        f"params.yaml is now profiles/{args.name}.yaml: run make repro (dvc repro); make profile NAME=vqa switches back"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
