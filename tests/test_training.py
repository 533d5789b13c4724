"""Models, save / load, capture on built models, training determinism, resume and DDP."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import TASK, prepared_data, tiny_model_config, tiny_params

from amad.config.params import distilled_groups
from amad.contracts.method import METHODS
from amad.distill.capture import capture_attention
from amad.distill.objective import DistillationObjective
from amad.errors import AmadError
from amad.models import load_model, save_model
from amad.tasks.vqa.dataset import VQADataset
from amad.tasks.vqa.model import VQAModel
from amad.training.distillation import DistillationStep, FrozenTeacher, capture_for, layer_pairs
from amad.training.distributed import GlobalBatchSampler, Runtime
from amad.training.jobs import ground_truth_loss
from amad.training.teacher_cache import build_teacher_cache
from amad.training.trainer import fit

ROOT = Path(__file__).resolve().parents[1]
CPU = Runtime(rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepared_data(tmp_path_factory.mktemp("data") / "prepared", train=64, val=16, test=16)


def read_answers(data):
    return TASK.read_state(data)["answers"]


def tiny_model(answers, seed=0, heads=4, width=32):
    torch.manual_seed(seed)
    return VQAModel(tiny_model_config(width=width, heads=heads), len(answers))


def test_save_load_round_trip_in_a_fresh_process(data, tmp_path):
    answers = read_answers(data)
    model = tiny_model(answers).eval()
    save_model(tmp_path / "m", TASK, model, {"answers": answers}, model.preprocess, extra={"note": "x"})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    dataset = VQADataset(data, "val", model.preprocess, answers)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    torch.save({"pixels": batch["pixels"], "tokens": batch["tokens"]}, tmp_path / "inputs.pt")
    code = (
        "import torch; from amad.models import load_model;"
        f"m = load_model({str(tmp_path / 'm')!r}); x = torch.load({str(tmp_path / 'inputs.pt')!r});"
        f"torch.save(m.model(x['pixels'], x['tokens']), {str(tmp_path / 'out.pt')!r});"
        "print(m.state['answers'][0], m.extra['note'], m.task_name)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == [answers[0], "x", "vqa"]
    with torch.no_grad():
        expected = model(batch["pixels"], batch["tokens"])
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected)
    assert load_model(tmp_path / "m").preprocess == model.preprocess


def test_capture_covers_every_attention_module_of_the_built_model(data):
    answers = read_answers(data)
    model = tiny_model(answers).eval()
    dataset = VQADataset(data, "val", model.preprocess, answers)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
    groups = model.attention_groups()
    names = [name for group in groups.values() for name in group]
    with torch.no_grad():
        expected = model(batch["pixels"], batch["tokens"])
        with capture_attention(model, names, qkv=True) as capture:
            logits = model(batch["pixels"], batch["tokens"])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    tokens = batch["tokens"]
    length, patches = tokens.shape[1], (24 // 6) ** 2 + 1
    for group, modules in groups.items():
        for name in modules:
            probs = capture.probs(name)
            keys = patches if group in ("vision_self", "fusion_cross") else length
            queries = patches if group == "vision_self" else length
            assert probs.shape == (3, 4, queries, keys), name
            torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4, queries), atol=1e-5, rtol=0)
            query_mask, _ = VQAModel.attention_masks(group, tokens)
            if group in ("text_self", "fusion_self"):  # causal: real queries never see padding keys
                padding_keys = ~query_mask[:, None, None, :] & query_mask[:, None, :, None]
                assert torch.all(probs.masked_select(padding_keys) == 0)


def train_tiny(data, checkpoint, *, epochs=2, interrupt_after=None, seed=0, log_dir=None):
    answers = read_answers(data)
    model = tiny_model(answers, seed=seed)
    dataset = VQADataset(data, "train", model.preprocess, answers)
    calls = []

    def evaluate(_model):
        calls.append(1)
        if interrupt_after is not None and len(calls) > interrupt_after:
            raise KeyboardInterrupt
        return {"accuracy": 0.0}

    params = tiny_params()
    optim = replace(params.train, epochs=epochs, batch_size=16, lr=1e-3)
    fit(
        model,
        ground_truth_loss(TASK),
        train_set=dataset,
        optim=optim,
        seed=seed,
        runtime=CPU,
        checkpoint_path=checkpoint,
        fingerprint="f",
        loader_workers=0,
        evaluate=evaluate,
        log_dir=log_dir,
        log=lambda _: None,
    )
    return model


def same_weights(first, second):
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_training_is_deterministic_and_resume_gives_identical_weights(data, tmp_path):
    uninterrupted = train_tiny(data, tmp_path / "a.pt", epochs=3)
    assert same_weights(uninterrupted, train_tiny(data, tmp_path / "b.pt", epochs=3))
    with pytest.raises(KeyboardInterrupt):
        train_tiny(data, tmp_path / "c.pt", epochs=3, interrupt_after=1, log_dir=tmp_path / "logs")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["epoch"] == 1
    shutil.rmtree(tmp_path / "logs")  # as DVC does before re-running a stage
    resumed = train_tiny(data, tmp_path / "c.pt", epochs=3, log_dir=tmp_path / "logs")
    assert same_weights(uninterrupted, resumed)
    loss_log = (tmp_path / "logs" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in loss_log[1:]] == ["0", "1", "2"], "history replayed, then continued"
    assert not same_weights(uninterrupted, train_tiny(data, tmp_path / "d.pt", epochs=3, seed=1))


def scripted_fit(data, tmp_path, scores, **optim_changes):
    """Train a tiny model whose validation scores are ``scores``, epoch after epoch; returns the
    model, the fit result and the weights seen at each validation."""
    answers = read_answers(data)
    model = tiny_model(answers)
    seen = []

    def evaluate(model):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"accuracy": scores[len(seen) - 1]}

    optim = replace(tiny_params().train, batch_size=16, lr=1e-3, **optim_changes)
    result = fit(
        model,
        ground_truth_loss(TASK),
        train_set=VQADataset(data, "train", model.preprocess, answers),
        optim=optim,
        seed=0,
        runtime=CPU,
        checkpoint_path=tmp_path / f"run{len(list(tmp_path.glob('*.pt')))}.pt",  # a fresh run each call
        fingerprint="f",
        loader_workers=0,
        evaluate=evaluate,
        log=lambda _: None,
    )
    return model, result, seen


def test_a_validation_plateau_ends_the_run_and_the_best_epoch_is_kept(data, tmp_path):
    scores = [0.1, 0.3, 0.2, 0.25, 0.9, 0.9]
    model, result, seen = scripted_fit(data, tmp_path, scores, epochs=6, schedule="cosine", patience=2)
    assert len(result.history) == 4, "epochs 3 and 4 bring no gain over epoch 2: stop"
    assert all(torch.equal(v, seen[1][k]) for k, v in model.state_dict().items()), "epoch 2's weights kept"
    assert result.ending == {
        "epochs_run": 4,
        "epochs_cap": 6,
        "best_epoch": 2,
        "best_val_accuracy": 0.3,
        "stopped": "plateau",
        "lr_reductions": 0,
        "still_improving": False,
    }


def test_the_plateau_schedule_lowers_the_learning_rate_then_stops(data, tmp_path):
    scores = [0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3]
    _, result, _ = scripted_fit(
        data, tmp_path, scores, epochs=8, schedule="plateau", patience=1, lr_factor=0.5, max_reductions=1,
        warmup_fraction=0.0,
    )  # fmt: skip
    rates = [round(h["lr"], 8) for h in result.history]
    assert rates == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4], rates  # epoch 3: plateau, lr halved; epoch 5: plateau, stop
    assert result.ending["stopped"] == "plateau" and result.ending["lr_reductions"] == 1


def test_a_run_that_reaches_its_cap_keeps_its_last_epoch_and_says_when_it_was_still_rising(data, tmp_path):
    model, result, seen = scripted_fit(data, tmp_path, [0.1, 0.3, 0.2], epochs=3, patience=2)
    assert not result.ending["still_improving"] and result.ending["best_epoch"] == 2
    assert all(torch.equal(v, seen[-1][k]) for k, v in model.state_dict().items()), "the cap: the last weights"
    _, result, _ = scripted_fit(data, tmp_path, [0.1, 0.2, 0.3], epochs=3, patience=0)
    assert result.ending["still_improving"] and result.ending["stopped"] == "cap"


def test_still_rising_needs_the_last_epoch_best_and_a_real_gain_over_the_last_three():
    from amad.training.plateau import still_rising

    assert still_rising([0.80, 0.853, 0.856, 0.858, 0.862])  # the teacher: +0.6 point in three epochs
    assert not still_rising([0.80, 0.860, 0.861, 0.862, 0.863]), "+0.3 point: converged"
    assert not still_rising([0.80, 0.85, 0.87, 0.86]), "the best epoch is not the last"
    assert not still_rising([0.5])


def test_global_batch_sampler_splits_each_global_batch_between_ranks():
    single = list(GlobalBatchSampler(20, 8, seed=1))
    ranks = [list(GlobalBatchSampler(20, 8, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(single) == 2
    for step, batch in enumerate(single):
        assert batch == ranks[0][step] + ranks[1][step]
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler(20, 7, seed=0, world_size=2)


DDP_SCRIPT = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from helpers import tiny_params_dict
from amad.config.params import parse_params
from amad.training.distributed import init_runtime, shutdown_runtime
from amad.training.jobs import train_teacher
raw = tiny_params_dict()
raw["train"].update(epochs=2, batch_size=16, lr=1e-3)
params = parse_params(raw)
runtime = init_runtime()
train_teacher(params, Path({data!r}), Path(sys.argv[1]), runtime, checkpoint_dir=Path(sys.argv[2]), log_dir=None,
              log=lambda _: None)
shutdown_runtime(runtime)
"""


def test_two_process_ddp_matches_single_process(data, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(ROOT / "tests"), data=str(data)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "single"), str(tmp_path / "ck1")],
        check=True,
        env=env,
        capture_output=True,
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*torchrun, str(script), str(tmp_path / "ddp"), str(tmp_path / "ck2")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = load_model(tmp_path / "single").model, load_model(tmp_path / "ddp").model
    for (name, a), b in zip(single.state_dict().items(), ddp.state_dict().values()):
        if name.endswith("in_proj_bias"):
            # the key bias has an exactly-zero gradient (softmax ignores it); AdamW turns the
            # rounding noise of that zero into full-size steps, so only q and v biases can match
            a, b = torch.cat([a.chunk(3)[0], a.chunk(3)[2]]), torch.cat([b.chunk(3)[0], b.chunk(3)[2]])
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


def build_step(data, method_name, *, cache_mib=None, messages=None):
    answers = read_answers(data)
    params = tiny_params()
    teacher, student = FrozenTeacher(tiny_model(answers, seed=1, heads=4)), tiny_model(answers, seed=2, heads=2)
    student_config = tiny_model_config(heads=2)
    selection = params.distill.attention
    method_class = METHODS.get(method_name, "method")
    pairs = []
    if method_class.needs.layers:
        shapes = distilled_groups(TASK, params.teacher, student_config, "students.s", selection.modules)
        pairs = layer_pairs(TASK, teacher.model, student, selection.modules, selection.layer_mapping, shapes)
    settings = params.distill.settings[method_name]
    if method_name == "minilm":
        settings = replace(settings, relation_heads=2)
    method = method_class.build(settings, pairs)
    objective = DistillationObjective(TASK, method, params.distill.weights, params.distill.output.temperature)
    train_set = VQADataset(data, "train", student.preprocess, answers)
    cache = None
    if cache_mib is not None:
        cache = build_teacher_cache(
            teacher,
            train_set,
            lambda: capture_for(method, teacher.model, "teacher", detach=True),
            TASK,
            device=torch.device("cpu"),
            batch_size=16,
            max_mib=cache_mib,
            log=messages.append,
        )
    return DistillationStep(TASK, teacher, objective, cache), student, train_set


@pytest.mark.parametrize("method", ["logit", "amad", "minilm", "hidden"])
def test_cached_teacher_outputs_give_the_live_teachers_loss(data, method):
    messages = []
    cached_step, student, train_set = build_step(data, method, cache_mib=64, messages=messages)
    cache = cached_step.cache
    assert cache is not None and messages == [
        f"teacher outputs cached for 64 training samples ({cache.nbytes / 2**20:.0f} MiB)"
    ]
    live_step = DistillationStep(TASK, cached_step.teacher, cached_step.objective)
    batch = torch.utils.data.default_collate([train_set[i] for i in (37, 2, 63, 18, 5)])  # a shuffled batch
    live = live_step(student, batch)
    cached = cached_step(student, batch)
    assert live.terms.keys() == cached.terms.keys()
    for name, value in live.terms.items():
        assert cached.terms[name] == pytest.approx(value, abs=1e-5), name


def test_teacher_cache_is_skipped_when_it_does_not_fit(data):
    messages = []
    step, _, _ = build_step(data, "amad", cache_mib=0.01, messages=messages)
    assert step.cache is None
    assert messages and messages[0].startswith("teacher outputs not cached:") and "0.01" in messages[0]
    assert build_step(data, "amad", cache_mib=0, messages=[])[0].cache is None


def test_models_saved_before_tasks_were_plug_ins_still_load(data, tmp_path):
    answers = read_answers(data)
    model = tiny_model(answers).eval()
    save_model(tmp_path / "m", TASK, model, {"answers": answers}, model.preprocess)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    text = {k: v for k, v in config["model"]["text"].items() if not k.startswith("hf_")}  # the old text keys
    vision = {**{k: v for k, v in config["model"]["vision"].items() if k != "timm_weights"}, "timm_pretrained": False}
    old_model = {**config["model"], "text": text, "vision": vision}
    legacy = {"format": "amad.vqa/1", "model": old_model, "answers": answers}
    legacy.update(preprocess=config["preprocess"], extra={})
    (tmp_path / "m" / "config.json").write_text(json.dumps(legacy))
    loaded = load_model(tmp_path / "m")
    assert loaded.task_name == "vqa" and loaded.state == {"answers": answers}
    assert same_weights(loaded.model, model)
    (tmp_path / "m" / "config.json").write_text(json.dumps({**legacy, "format": "amad.vqa/0"}))
    with pytest.raises(AmadError, match=r"format 'amad.vqa/0' is not 'amad/2'; re-create the model"):
        load_model(tmp_path / "m")
