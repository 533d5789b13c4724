"""End-to-end: `dvc repro` of the stages on a tiny params profile, in a copy of the repository."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import (
    readme_commands,
    readme_inputs,
    tiny_captioning_params_dict,
    tiny_params_dict,
    tiny_retrieval_params_dict,
    tiny_translation_params_dict,
)

from amad.models import load_model
from amad.serving.server import pytriton_python

ROOT = Path(__file__).resolve().parents[1]


def run(command, cwd, env):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def repository(tmp_path: Path, params: dict) -> tuple[Path, dict]:
    """A committed copy of the code (no generated outputs) with ``params`` as params.yaml, and its env."""
    repo = tmp_path / "repo"
    generated = {".venv", ".git", "data", "models", "logs", "checkpoints", "exported", "deployed", "metrics", "reports"}
    shutil.copytree(
        ROOT,
        repo,
        ignore=lambda folder, names: [
            n
            for n in names
            if (Path(folder) == ROOT and n in generated - {"data"} | {"pretrained", ".triton-venv"})
            or (Path(folder) == ROOT / "data" and n != "source")
            or n in ("__pycache__", ".pytest_cache")
        ],
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": str(repo),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    if pytriton_python() is not None:  # the copy has no .triton-venv: serve with this checkout's
        env["AMAD_PYTRITON_PYTHON"] = str(pytriton_python())
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo, env)
    return repo, env


def readme_predicts(repo: Path, env: dict, for_this_task) -> None:
    """The README's `amad predict --model` commands of this task, as written, on the pipeline's outputs
    (the files they name are made first; `--server` commands: tests/test_triton_live.py)."""
    readme_inputs(repo)
    commands = [line for line in readme_commands("amad predict --model") if for_this_task(line)]
    assert commands
    for line in commands:
        result = run(shlex.split(line), repo, env)
        assert result.stdout.strip(), line
    if any("--out preds.jsonl" in line for line in commands):
        assert json.loads((repo / "preds.jsonl").read_text().splitlines()[0])["id"] == "q1"


@pytest.mark.slow
def test_dvc_repro_on_a_tiny_profile(tmp_path):
    params = tiny_params_dict()
    params["data"]["path"] = "data/source"
    params["data"]["shapes"].update(train=48, val=16, test=16)
    params["distill"]["train"]["epochs"] = 2  # a second epoch exercises the dvclive history
    params["distill"]["methods"] = ["none", "one2one", "amad"]
    params["export"]["models"] = ["teacher", "h2-amad"]
    params["deploy"]["model"] = "auto"
    params["benchmark"].update(batch_sizes=[1, 4], warmup=1, repeats=3)
    repo, env = repository(tmp_path, params)
    run(["dvc", "repro"], repo, env)
    for name in ("teacher", "h2-none", "h2-one2one", "h2-amad"):
        loaded = load_model(repo / "models" / name)
        assert loaded.model.num_answers == len(loaded.state["answers"])
    assert (repo / "models" / "h2-amad" / "alignment.safetensors").exists()
    assert (repo / "logs" / "teacher" / "plots" / "metrics").is_dir()
    assert not list((repo / "checkpoints").glob("*.pt")), "finished stages remove their checkpoints"
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    assert set(metrics) == {"teacher", "h2-none", "h2-one2one", "h2-amad"}
    assert set(metrics["teacher"]) == {"accuracy"}
    assert set(json.loads((repo / "metrics" / "cost.json").read_text())["teacher"]) == {"params", "gflops"}
    export = json.loads((repo / "exported" / "h2-amad" / "export.json").read_text())
    assert "onnx_int8" in export["accuracy"]
    choice = json.loads((repo / "deployed" / "choice.json").read_text())
    assert choice["model"] == "h2-amad" and choice["rule"] == "auto", choice
    assert (repo / "deployed" / "triton" / "amad_vqa" / "config.pbtxt").exists()
    assert (repo / "deployed" / "model" / "model.onnx").exists()
    latency = json.loads((repo / "metrics" / "latency.json").read_text())
    assert "h2-amad_vs_teacher_onnxruntime_b1" in latency["speedups"]
    summary = (repo / "reports" / "summary.md").read_text()
    assert "| h2-amad |" in summary and "**Deployed:** `h2-amad`" in summary
    serving = json.loads((repo / "metrics" / "serving.json").read_text())
    if pytriton_python() is None:
        assert "make triton-venv" in serving["skipped"] and "Not measured" in summary
    else:  # the served h2-amad answered every request in both batching modes
        assert all(row["failed"] == 0 for levels in serving["modes"].values() for row in levels.values())
        assert "## Serving under load" in summary
    assert (repo / "reports" / "alignment" / "h2-amad.png").exists() and (
        repo / "reports" / "accuracy_latency.png"
    ).exists()
    assert list((repo / "reports" / "attention" / "h2-amad").glob("*.png"))
    readme_predicts(repo, env, lambda line: "--question" in line or "questions.jsonl" in line)
    status = run(["dvc", "status"], repo, env)
    assert "up to date" in status.stdout
    assert "Running stage" not in run(["dvc", "repro"], repo, env).stdout, "nothing changed: nothing runs"

    def rerun_after(section: str, key: str, value) -> list[str]:
        params[section][key] = value
        (repo / "params.yaml").write_text(yaml.safe_dump(params))
        return re.findall(r"Running stage '([\w@-]+)'", run(["dvc", "repro"], repo, env).stdout)

    # a params change re-runs the check (its output unchanged), then what reads the changed keys
    assert rerun_after("benchmark", "warmup", 2) == ["check", "benchmark", "deploy", "report"]
    assert rerun_after("runtime", "teacher_cache_mib", 0) == ["check"], "a speed-only knob re-runs nothing else"
    assert rerun_after("runtime", "loader_workers", 1) == ["check"]
    # what `dvc exp run -S distill.amad.temperature=0.5` does: change the value, then reproduce
    amad = {**params["distill"]["amad"], "temperature": 0.5}
    ran = rerun_after("distill", "amad", amad)
    expected = ["check", "distill@h2-amad", "evaluate", "export", "benchmark", "deploy", "loadtest", "report"]
    assert sorted(ran) == sorted(expected), ran
    typo = yaml.safe_dump({**params, "train": {**params["train"], "lr": "fast"}})
    (repo / "params.yaml").write_text(typo)
    failed = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and "params.yaml: train.lr" in failed.stderr + failed.stdout
    assert (repo / "models" / "teacher" / "model.safetensors").exists() and (repo / "data" / "prepared").is_dir()
    assert (repo / "metrics" / "eval.json").exists(), "a typo stops the check stage: nothing is deleted"
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "data" / "source" / "extra.txt").write_text("a new file in the data folder\n")
    ran = re.findall(r"Running stage '([\w@-]+)'", run(["dvc", "repro"], repo, env).stdout)
    assert ran == ["prepare"], "the data folder is a dependency; prepared data unchanged: nothing else runs"


@pytest.mark.slow
def test_dvc_repro_on_a_tiny_retrieval_profile(tmp_path):
    params = tiny_retrieval_params_dict()
    params["data"]["path"] = "data/source"
    params["distill"]["methods"] = ["logit", "amad"]
    params["export"]["models"] = ["teacher", "h2-amad"]
    params["deploy"]["model"] = "auto"
    params["benchmark"].update(batch_sizes=[1, 4], warmup=1, repeats=3)
    repo, env = repository(tmp_path, params)
    run(["dvc", "repro"], repo, env)
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    assert set(metrics) == {"teacher", "h2-logit", "h2-amad"}
    assert set(metrics["teacher"]) == {"mean_recall"}
    sequences = json.loads((repo / "data" / "teacher_sequences" / "summary.json").read_text())
    assert not sequences["generative"] and not (repo / "data" / "teacher_sequences" / "train.jsonl").exists()
    breakdown = json.loads((repo / "metrics" / "breakdown.json").read_text())
    recalls = {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"}
    assert recalls | {"zero_shot_top1", "zero_shot_classes"} == set(breakdown["h2-amad"])
    export = json.loads((repo / "exported" / "h2-amad" / "export.json").read_text())
    assert export["graphs"] == ["image", "text"] and "onnx_int8" in export["accuracy"]
    assert (repo / "deployed" / "triton" / "amad_retrieval_text" / "config.pbtxt").exists()
    latency = json.loads((repo / "metrics" / "latency.json").read_text())
    assert "h2-amad.image_vs_teacher_onnxruntime_b1" in latency["speedups"]
    summary = (repo / "reports" / "summary.md").read_text()
    assert "| h2-amad |" in summary and "sums over the exported graphs (image, text" in summary
    assert list((repo / "reports" / "attention" / "h2-amad").glob("*.png"))
    readme_predicts(repo, env, lambda line: "--caption" in line)
    assert "Running stage" not in run(["dvc", "repro"], repo, env).stdout, "nothing changed: nothing runs"
    params["evaluate"]["zero_shot"]["templates"] = ["a photo of {}"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    ran = re.findall(r"Running stage '([\w@-]+)'", run(["dvc", "repro"], repo, env).stdout)
    assert ran == ["check", "evaluate"], "new prompts re-score the models and nothing else"


@pytest.mark.slow
def test_dvc_repro_on_a_tiny_captioning_profile(tmp_path):
    params = tiny_captioning_params_dict()
    params["data"]["path"] = "data/source"
    params["distill"]["methods"] = ["logit", "sequence", "amad"]
    params["export"]["models"] = ["teacher", "h2-amad"]
    params["deploy"]["model"] = "auto"
    params["benchmark"].update(batch_sizes=[1, 2], warmup=1, repeats=3)
    repo, env = repository(tmp_path, params)
    run(["dvc", "repro"], repo, env)
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    assert set(metrics) == {"teacher", "h2-logit", "h2-sequence", "h2-amad"} and "cider_d" in metrics["teacher"]
    sequences = json.loads((repo / "data" / "teacher_sequences" / "summary.json").read_text())
    train_images = len((repo / "data" / "prepared" / "train.jsonl").read_text().splitlines())
    assert sequences["generative"] and sequences["inputs"] == train_images
    breakdown = json.loads((repo / "metrics" / "breakdown.json").read_text())["teacher"]
    assert {"bleu_4", "meteor", "rouge_l", "constant_caption"} <= set(breakdown), sorted(breakdown)
    export = json.loads((repo / "exported" / "h2-amad" / "export.json").read_text())
    assert export["graphs"] == ["image", "decoder"] and export["parity"]["agreement"] >= 0.99
    latency = json.loads((repo / "metrics" / "latency_full.json").read_text())
    assert {"teacher.caption", "teacher.caption_uncached", "h2-amad.image", "h2-amad.decoder"} <= set(
        latency["results"]
    )
    assert all(entry["matches"] for entry in latency["decode_cache"].values()), latency["decode_cache"]
    rows = {(r["model"], r["generation"], r["backend"], r["batch_size"]) for r in latency["generation"]}
    assert ("h2-amad", "caption", "onnxruntime", 2) in rows and ("teacher", "caption_uncached", "torch", 1) in rows
    speedups = json.loads((repo / "metrics" / "latency.json").read_text())["speedups"]
    assert {"h2-amad.caption_vs_teacher_onnxruntime_b1", "teacher.caption_vs_caption_uncached_onnxruntime_b1"} <= set(
        speedups
    )
    config = (repo / "deployed" / "triton" / "amad_captioning_decoder" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in config, "the cache's batch is on axis 1: served unbatched"
    summary = (repo / "reports" / "summary.md").read_text()
    assert "## Whole generations" in summary and "### Key/value cache" in summary
    serving = json.loads((repo / "metrics" / "serving.json").read_text())
    if pytriton_python() is not None:  # the server ran the decode loop and answered every request
        assert serving["models"] == ["amad_captioning_caption"]
        assert all(row["failed"] == 0 for levels in serving["modes"].values() for row in levels.values())
    readme_inputs(repo)
    for command in readme_commands("amad predict --model deployed/model --image scene.png --beams"):
        printed = json.loads(run(shlex.split(command), repo, env).stdout.splitlines()[0])
        assert printed["image"] == "scene.png" and isinstance(printed["caption"], str) and printed["tokens"]
    assert "Running stage" not in run(["dvc", "repro"], repo, env).stdout, "nothing changed: nothing runs"


@pytest.mark.slow
def test_dvc_repro_on_a_tiny_translation_profile(tmp_path):
    params = tiny_translation_params_dict()
    params["data"]["path"] = "data/source"
    params["distill"]["methods"] = ["logit", "sequence", "amad"]
    params["export"]["models"] = ["teacher", "h2-amad", "textonly-amad"]
    params["deploy"]["model"] = "h2-amad"  # the one that reads the image (auto may pick the text-only one)
    params["benchmark"].update(batch_sizes=[1, 2], warmup=1, repeats=3)
    repo, env = repository(tmp_path, params)
    run(["dvc", "repro"], repo, env)
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    students = {f"{s}-{m}" for s in ("h2", "textonly") for m in ("logit", "sequence", "amad")}
    assert set(metrics) == {"teacher", *students} and "bleu" in metrics["teacher"]
    breakdown = json.loads((repo / "metrics" / "breakdown.json").read_text())
    teacher = breakdown["teacher"]
    assert {"bleu_lowercase", "chrf", "chrf_lowercase", "signatures", "meteor_skipped"} <= set(teacher)
    assert teacher["signatures"]["bleu"].startswith("nrefs:1|case:mixed")
    assert set(teacher["shuffled_images"]) >= {"bleu", "image_drop", "seed"}
    assert breakdown["textonly-amad"]["shuffled_images"]["image_drop"] == 0.0
    assert not breakdown["textonly-amad"]["reads_image"]
    sequences = json.loads((repo / "data" / "teacher_sequences" / "summary.json").read_text())
    assert sequences["generative"] and sequences["inputs"] == params["data"]["shapes"]["train"]
    prepared = json.loads((repo / "data" / "prepared" / "summary.json").read_text())
    assert {"truncated", "longest_tokens"} <= set(prepared["splits"]["test"]["target"])
    for model in ("h2-amad", "textonly-amad"):
        export = json.loads((repo / "exported" / model / "export.json").read_text())
        assert export["graphs"] == ["encoder", "decoder"] and export["parity"]["agreement"] >= 0.99
    latency = json.loads((repo / "metrics" / "latency_full.json").read_text())
    assert {"teacher.translation", "teacher.translation_uncached", "textonly-amad.translation"} <= set(
        latency["results"]
    )
    assert all(entry["matches"] for entry in latency["decode_cache"].values()), latency["decode_cache"]
    config = (repo / "deployed" / "triton" / "amad_translation_decoder" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in config, "the cache's batch is on axis 1: served unbatched"
    serving = json.loads((repo / "metrics" / "serving.json").read_text())
    if pytriton_python() is not None:  # the server ran the decode loop and answered every request
        assert serving["models"] == ["amad_translation_translation"]
        assert all(row["failed"] == 0 for levels in serving["modes"].values() for row in levels.values())
    readme_inputs(repo)
    (command,) = readme_commands("amad predict --model deployed/model --image scene.png --text")
    printed = json.loads(run(shlex.split(command), repo, env).stdout)
    assert printed["image"] == "scene.png" and isinstance(printed["translation"], str) and printed["tokens"]
    assert "Running stage" not in run(["dvc", "repro"], repo, env).stdout, "nothing changed: nothing runs"
