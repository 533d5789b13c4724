"""DVC stage `prepare`: data source (params `data`, `seed`) -> data/prepared/."""

import json

from amad.config import Params
from amad.data.prepare import prepare
from amad.stage import run_stage


def main(params: Params) -> None:
    summary = prepare(params.data, params.seed, "data/prepared")
    splits = {name: split["questions"] for name, split in summary["splits"].items()}
    print(f"prepared {json.dumps(splits)} questions, {len(summary['answers'])} answers")
    for name, split in summary["splits"].items():
        if split["out_of_vocabulary"]:
            print(f"  {name}: {split['out_of_vocabulary']} questions have no answer in the vocabulary")


if __name__ == "__main__":
    run_stage(main)
