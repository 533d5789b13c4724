"""DVC stage `report`: metrics/eval.json + metrics/latency_full.json + exported/ + models/ -> reports/."""

import json
from pathlib import Path

from amad.atomic import atomic_dir
from amad.config import Params
from amad.report import alignment_pictures, attention_pictures, summary
from amad.stage import run_stage


def main(params: Params) -> None:
    eval_metrics = json.loads(Path("metrics/eval.json").read_text())
    latency = json.loads(Path("metrics/latency_full.json").read_text())
    with atomic_dir("reports") as out:
        text, rows = summary(eval_metrics, latency, Path("exported"), Path("models"))
        (out / "summary.md").write_text(text)
        (out / "accuracy_latency.json").write_text(json.dumps(rows, indent=2) + "\n")
        for name in params.model_names():
            if name.endswith("-amad"):
                alignment_pictures(Path("models") / name, out / "alignment" / name)
                attention_pictures(
                    Path("models/teacher"), Path("models") / name, Path("data/prepared"), out / "attention" / name
                )
    print(text)


if __name__ == "__main__":
    run_stage(main)
