"""DVC stage `loadtest`: the deployed model (deployed/model) served under load (params `serving`)
-> metrics/serving.json: throughput, p50 / p90 / p99 latency and failed requests per concurrency
level, with Triton's dynamic batching on and off; each request one prediction of a validation sample.

Where no PyTriton interpreter exists (`make triton-venv` makes one), the file records why the
test was skipped; after installing it, `dvc repro -f loadtest` measures.
"""

from amad.atomic import write_json
from amad.config.params import Params
from amad.pipeline import paths
from amad.pipeline.stage import run_stage
from amad.serving.report import run_load_test
from amad.serving.server import pytriton_python


def main(params: Params) -> None:
    serving = params.serving
    if not any(paths.DEPLOYED_MODEL.glob("*.onnx")):  # deploy.model null: deployed/model says why
        write_json(paths.SERVING, {"skipped": "deploy.model is null: nothing is deployed"})
        return
    if pytriton_python() is None:
        write_json(
            paths.SERVING,
            {
                "skipped": "no interpreter with nvidia-pytriton at $AMAD_PYTRITON_PYTHON or ./.triton-venv (make triton-venv, then dvc repro -f loadtest)"
            },
        )
        print(f"loadtest skipped: {paths.SERVING} says why")
        return
    run_load_test(
        paths.DEPLOYED_MODEL,
        paths.PREPARED,
        list(serving.concurrency),
        serving.duration_s,
        serving.timeout_s,
        serving.max_requests,
        None,
        paths.SERVING,
    )


if __name__ == "__main__":
    run_stage(main)
