"""DVC stage `check`: the whole params.yaml (both tiers of checks) -> logs/params_checked.txt.

Every other stage depends on this one, so a bad key stops `dvc repro` here, before DVC deletes any
stage's outputs. The file's text is the same for every valid params file: a change of params
re-runs this check (a few seconds) and only the stages that read the changed keys.
"""

from amad.config.params import Params
from amad.pipeline import paths
from amad.pipeline.stage import run_stage


def main(params: Params) -> None:
    paths.PARAMS_CHECKED.parent.mkdir(parents=True, exist_ok=True)
    paths.PARAMS_CHECKED.write_text("params.yaml passed amad check (structure and models)\n")
    print(f"params.yaml: valid ({params.task}, {len(params.model_names())} models)")


if __name__ == "__main__":
    run_stage(main)
