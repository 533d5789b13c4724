"""DVC stage `deploy`: metrics/eval.json + metrics/latency_full.json + exported/ (params `deploy`) ->
deployed/: the one model to serve, chosen by the rule in amad/serving/choice.py.

deployed/choice.json names the model, the rule and the candidates; deployed/model/ is a copy of its
export folder (`amad predict --model deployed/model`, `amad serve deployed/model`; where deploy.model is
null, only NOTHING_DEPLOYED.txt saying why); deployed/triton/ its Triton model repository
(`tritonserver --model-repository deployed/triton`).
"""

import json
import shutil

from amad.atomic import atomic_dir
from amad.config.params import Params
from amad.pipeline import paths
from amad.pipeline.stage import run_stage
from amad.serving.choice import choose
from amad.serving.repository import write_model_repository

NOTHING_DEPLOYED = "NOTHING_DEPLOYED.txt"  # deployed/model's only file where deploy.model is null


def main(params: Params) -> None:
    choice = choose(
        json.loads(paths.EVAL.read_text()),
        json.loads(paths.LATENCY_FULL.read_text()),
        params.task_plugin().primary_metric,
        list(params.export.models),
        params.deploy,
    )
    with atomic_dir(paths.DEPLOYED) as out:
        if choice["model"] is not None:
            shutil.copytree(paths.export_dir(choice["model"]), out / paths.DEPLOYED_MODEL.name)
            write_model_repository(
                out / paths.DEPLOYED_MODEL.name,
                out / paths.DEPLOYED_TRITON.name,
                max_batch=params.export.tensorrt.max_batch,
            )
        else:  # the load test depends on deployed/model: a folder that says why it holds no export
            (out / paths.DEPLOYED_MODEL.name).mkdir()
            (out / paths.DEPLOYED_MODEL.name / NOTHING_DEPLOYED).write_text(
                f"nothing is deployed: {choice['reason']}\n"
            )
        (out / paths.DEPLOY_CHOICE.name).write_text(json.dumps(choice, indent=2) + "\n")
    print(f"deployed: {choice['model']} ({choice['reason']})")


if __name__ == "__main__":
    run_stage(main)
