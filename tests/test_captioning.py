"""The captioning task: prepare's vocabulary and truncation counts, the CoCa model's cached decoder
against its teacher-forced forward, the attention groups, top-k token distillation, and the ONNX
graphs' parity with torch through the one decode loop."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT, TINY_CAPTION_SHAPES

from amad.config.params import parse_params
from amad.distill.capture import capture_attention
from amad.errors import DataError
from amad.generation.config import GenerationConfig
from amad.generation.decoder_state import PRESENT
from amad.generation.search import SpecialTokens
from amad.losses.logit import logit_kd_loss
from amad.losses.topk_kd import top_k_kd_loss, top_k_logits
from amad.tasks.captioning.config import LossConfig, ModelConfig, TextConfig, TowerConfig, VisionConfig
from amad.tasks.captioning.model import CaptioningModel
from amad.tasks.captioning.predictor import CACHE_NAMES, CaptionPredictor
from amad.tasks.captioning.task import CaptioningTask

TASK = CaptioningTask()
PROFILE = yaml.safe_load((ROOT / "profiles" / "captioning.yaml").read_text())
SPECIAL = SpecialTokens(start=1, end=2, pad=0)


def tiny_coca(embed: int = 32, heads: int = 4, context: int = 12, vocab: int = 300, seed: int = 0) -> CaptioningModel:
    config = ModelConfig(
        architecture=None,
        checkpoint=None,
        embed_dim=embed,
        vision=VisionConfig(24, 6, embed, 2, heads, 2.0, pooler_queries=5, pooler_heads=heads),
        text=TextConfig(depth=2, heads=heads, mlp_ratio=2.0, context_length=context),
        decoder=TowerConfig(depth=2, heads=heads, mlp_ratio=2.0),
        loss=LossConfig(1.0, 0.0),
        pretrained=None,
    )
    torch.manual_seed(seed)
    return CaptioningModel(config, vocab, context, SPECIAL).eval()


def captions(batch: int, context: int = 12, vocab: int = 300) -> torch.Tensor:
    tokens = torch.randint(3, vocab, (batch, context), generator=torch.Generator().manual_seed(1))
    tokens[:, 0] = SPECIAL.start
    tokens[0, 6], tokens[0, 7:] = SPECIAL.end, 0  # a short caption, padded
    return tokens


def tiny_params_dict(**sections) -> dict:
    params = copy.deepcopy(PROFILE)
    params["data"]["path"] = str(ROOT / "data" / "source")
    params["data"]["shapes"] = dict(TINY_CAPTION_SHAPES)
    params.update(sections)
    return params


def test_the_cached_decoder_gives_the_teacher_forced_logits_step_by_step():
    model = tiny_coca()
    pixels, tokens = torch.randn(3, 3, 24, 24), captions(3)
    graphs = TASK.graphs(model)
    with torch.no_grad():
        forced = model(pixels, tokens)["logits"]  # (B, L-1, V)
        first = graphs["image"](pixels)
        torch.testing.assert_close(first["logits"], forced[:, 0], atol=1e-5, rtol=1e-5)
        cache = tuple(first[name] for name in CACHE_NAMES)
        for t in range(1, 6):  # row 0 is real up to position 6
            step = graphs["decoder"](tokens[:, t : t + 1], first["cross_keys"], first["cross_values"], *cache)
            cache = tuple(step[PRESENT + name] for name in CACHE_NAMES)
            torch.testing.assert_close(step["logits"], forced[:, t], atol=1e-5, rtol=1e-5)
        assert cache[0].shape == (2, 3, 4, 6, 8)  # text layers, batch, heads, tokens so far, head width
        whole = graphs["decoder"](
            tokens[:, 1:6], first["cross_keys"], first["cross_values"], *[first[n] for n in CACHE_NAMES]
        )
        torch.testing.assert_close(whole["logits"], forced[:, 5], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("beams", [1, 3])
def test_cached_and_uncached_decoding_and_a_batch_and_its_rows_give_the_same_captions(beams):
    model = tiny_coca()
    pixels = torch.randn(4, 3, 24, 24)
    generation = GenerationConfig(beams=beams, max_length=8, min_length=2, length_penalty=1.0, no_repeat_ngram=2)
    predictor = CaptionPredictor(TASK.graphs(model), generation)
    with torch.no_grad():
        cached = predictor({"pixels": pixels})["tokens"]
        uncached = predictor.with_settings(cached=False)({"pixels": pixels})["tokens"]
        rows = torch.cat([predictor({"pixels": pixels[i : i + 1]})["tokens"] for i in range(4)])
    assert torch.equal(cached, uncached) and torch.equal(cached, rows)
    assert cached.shape == (4, 8) and (cached != SPECIAL.end).all()  # ids only: no start or end token
    assert ((cached != 0).sum(1) >= 2).all(), "min_length: at least 2 tokens before the end"


def test_the_cache_holds_two_x_layers_x_heads_x_head_width_per_token_and_shrinks_with_heads():
    sizes = {}
    for heads, embed in ((4, 32), (2, 16)):
        predictor = CaptionPredictor(TASK.graphs(tiny_coca(embed=embed, heads=heads)))
        with torch.no_grad():
            _, state = predictor.generate(torch.randn(2, 3, 24, 24))
        tokens = state.cache[0].shape[3]
        sizes[heads] = state.cache_bytes()["self_attention"] / tokens
        # text tower and decoder: 2 layers each, keys and values, float32
        assert sizes[heads] == 2 * (2 + 2) * embed * 4
    assert sizes[2] < sizes[4]


def test_every_attention_group_is_captured_at_the_shapes_the_config_declares():
    model = tiny_coca()
    shapes = TASK.group_shapes(model.config, "teacher")
    groups = TASK.module_groups(model)
    paths = [path for group in groups.values() for path in group]
    tokens = captions(2)
    with capture_attention(model, paths) as capture:
        model(torch.randn(2, 3, 24, 24), tokens)
    batch = {"tokens": tokens}
    for group, modules in groups.items():
        shape = shapes[group]
        query_mask, key_mask = TASK.attention_masks(group, batch)
        for path in modules:
            probs = capture.probs(path)
            assert probs.shape == (2, shape.heads, shape.queries, shape.keys), group
            torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
            if query_mask is not None:
                assert query_mask.shape == (2, shape.queries)
            if key_mask is not None:
                assert key_mask.shape == (2, shape.keys)
    cross = capture.probs("text_decoder.cross_attn.0.attn")
    assert cross.shape[-1] == 4, "the decoder reads pooler_queries - 1 image tokens"


def test_top_k_token_distillation_is_the_exact_kl_when_k_covers_the_vocabulary_and_a_golden_value_otherwise():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    values, ids = top_k_logits(teacher, None)
    full = top_k_kd_loss(student, values, ids, mask, temperature=2.0)
    torch.testing.assert_close(full, logit_kd_loss(student[mask], teacher[mask], temperature=2.0))
    # k = 1: the teacher puts all its mass on its argmax, the loss is -T^2 log q_s(argmax) averaged
    values, ids = top_k_logits(teacher, 1)
    one = top_k_kd_loss(student, values, ids, mask, temperature=1.0)
    expected = -torch.log_softmax(student[mask], -1).gather(-1, teacher[mask].argmax(-1, keepdim=True)).mean()
    torch.testing.assert_close(one, expected)
    s = torch.tensor([[[0.0, 1.0, 2.0]]])
    t_values, t_ids = torch.tensor([[[3.0, 1.0]]]), torch.tensor([[[2, 0]]])
    golden = top_k_kd_loss(s, t_values, t_ids, torch.tensor([[True]]))
    # p = softmax([3, 1]) over ids 2, 0; q = softmax([0, 1, 2]); KL = sum p (log p - log q)
    p = torch.softmax(torch.tensor([3.0, 1.0]), 0)
    log_q = torch.log_softmax(torch.tensor([0.0, 1.0, 2.0]), 0)[[2, 0]]
    torch.testing.assert_close(golden, (p * (p.log() - log_q)).sum())
    assert abs(float(golden) - 0.28068) < 1e-4


def test_teacher_targets_keep_the_top_k_logits_and_the_distillation_reads_them():
    logits = torch.randn(2, 3, 10)
    outputs = {"logits": logits}
    batch = {"tokens": torch.tensor([[1, 5, 2, 0], [1, 6, 7, 2]])}
    kept = TASK.teacher_targets(outputs, batch, 4)
    assert kept["top_logits"].shape == (2, 3, 4) and kept["top_ids"].dtype == torch.long
    assert set(TASK.teacher_targets(outputs, batch, 10)) == {"logits"}
    same = TASK.output_distillation(outputs, TASK.teacher_targets(outputs, batch, None), batch, 1.0)
    torch.testing.assert_close(same, torch.tensor(0.0), atol=1e-6, rtol=0)


def test_prepare_learns_a_vocabulary_counts_long_captions_and_refuses_above_the_limit(tmp_path):
    params = parse_params(tiny_params_dict(), models=False)
    summary = TASK.prepare(params.data, 0, tmp_path / "prepared", log=lambda _: None)
    state = TASK.read_state(tmp_path / "prepared")
    assert state["vocabulary"] is not None and state["special_tokens"] == {"start": 1, "end": 2, "pad": 0}
    train = summary["splits"]["train"]
    assert train["captions"] == 24 * 3 and train["truncated"] == 0 and train["longest_tokens"] <= 36
    preprocess = TASK.preprocess(params.teacher, state)
    record = json.loads((tmp_path / "prepared" / "train.jsonl").read_text().splitlines()[0])
    ids = preprocess.token_ids([record["captions"][0]])[0].tolist()
    assert ids[0] == 1 and 2 in ids and preprocess.decode(ids[1:]) == record["captions"][0].lower()

    short = tiny_params_dict()
    short["data"]["context_length"] = 8
    short["teacher"]["text"]["context_length"] = 8
    for student in short["students"].values():
        student["text"]["context_length"] = 8
    short["evaluate"]["generation"]["max_length"] = 7
    short["distill"]["sequence"]["generation"]["max_length"] = 7
    with pytest.raises(DataError, match=r"data.max_truncated: \d+ of 72 train captions .* longest \(\d+ tokens\)"):
        TASK.prepare(parse_params(short, models=False).data, 0, tmp_path / "refused", log=lambda _: None)
    assert not (tmp_path / "refused").exists()


def test_the_models_context_must_be_the_datas():
    params = tiny_params_dict()
    params["teacher"]["text"]["context_length"] = 20
    with pytest.raises(Exception, match=r"teacher.text.context_length: must equal data.context_length \(36\)"):
        parse_params(params, models=False)
    params = tiny_params_dict()
    params["evaluate"]["generation"]["max_length"] = 36
    with pytest.raises(Exception, match=r"evaluate.generation.max_length: 36 is longer than the models' captions"):
        parse_params(params, models=False)


@pytest.mark.slow
def test_the_onnx_graphs_caption_as_torch_does_cached_or_not(tmp_path):
    from amad.export.onnx_model import export_onnx
    from amad.export.onnx_runtime import OnnxModel

    model = tiny_coca()
    state = {
        "context_length": 12,
        "vocab_size": 300,
        "special_tokens": {"start": 1, "end": 2, "pad": 0},
        "vocabulary": None,
    }
    from amad.tasks.captioning.model import preprocess_of

    preprocess = preprocess_of(model.config, 12, None)
    graphs = TASK.graphs(model)
    specs = TASK.export_specs(preprocess, state, graphs)
    sessions = {}
    for name, spec in specs.items():
        export_onnx(graphs[name], spec, tmp_path / f"{name}.onnx", opset=18)
        sessions[name] = OnnxModel(tmp_path / f"{name}.onnx")
    pixels = torch.randn(5, 3, 24, 24)
    with torch.no_grad():
        reference = CaptionPredictor(graphs)({"pixels": pixels})["tokens"]
        for cached in (True, False):
            onnx = CaptionPredictor(sessions, cached=cached)({"pixels": pixels.numpy()})["tokens"]
            np.testing.assert_array_equal(onnx, reference.numpy())
        generation = GenerationConfig(beams=3, max_length=8, min_length=1, length_penalty=1.0, no_repeat_ngram=0)
        beam_torch = CaptionPredictor(graphs, generation)({"pixels": pixels})["tokens"]
        beam_onnx = CaptionPredictor(sessions, generation)({"pixels": pixels.numpy()})["tokens"]
    np.testing.assert_array_equal(beam_onnx, beam_torch.numpy())
    outputs = sessions["decoder"](*[x.numpy() for x in specs["decoder"].batch_inputs({"pixels": pixels})])
    assert outputs["present_text_keys"].shape[3] == 4, "3 cached tokens and the new one"


def test_sequence_targets_are_the_teachers_captions_of_every_training_image_and_replace_or_add_to_the_references(
    tmp_path,
):
    from amad.data.captions.pairs import PairDataset

    params = parse_params(tiny_params_dict(), models=False)
    TASK.prepare(params.data, 0, tmp_path, log=lambda _: None)
    state = TASK.read_state(tmp_path)
    preprocess = TASK.preprocess(params.teacher, state)
    train = TASK.dataset(tmp_path, "train", preprocess, state)
    teacher = TASK.build_model(params.teacher, state).eval()
    generation = GenerationConfig(beams=2, max_length=6, min_length=1, length_penalty=1.0, no_repeat_ngram=0)
    rows = TASK.sequence_targets(TASK.predictor(TASK.graphs(teacher)), train, generation, "cpu")
    assert [row["id"] for row in rows] == [record.id for record in train.records]
    assert all(len(preprocess.token_ids([row["caption"]])[0].nonzero()) <= 8 for row in rows), (
        "max_length 6 + start/end"
    )
    rows[1]["caption"] = "  "  # an empty teacher caption: the image keeps its references
    replaced = TASK.with_sequence_targets(train, rows, "replace", "rows.jsonl")
    assert len(replaced) == len(train), "one teacher caption per reference: an epoch as long"
    assert set(replaced.records[0].captions) == {rows[0]["caption"].strip()}
    assert replaced.records[1].captions == train.records[1].captions
    torch.testing.assert_close(replaced.tokens[0], preprocess.tokenize([rows[0]["caption"].strip()])[0])
    added = TASK.with_sequence_targets(train, rows, "add", "rows.jsonl")
    assert added.records[0].captions == (*train.records[0].captions, rows[0]["caption"].strip())
    assert len(added) == len(train) + len(train.records) - 1
    assert isinstance(added, PairDataset) and train.records[0].captions != added.records[0].captions
    with pytest.raises(DataError, match=r"rows.jsonl:2: expected \{'id': "):
        TASK.with_sequence_targets(
            train, [rows[0], {"id": "elsewhere", "caption": "x"}, *rows[2:]], "add", "rows.jsonl"
        )
    with pytest.raises(DataError, match=r"rows.jsonl: 1 teacher captions for 24 training images"):
        TASK.with_sequence_targets(train, rows[:1], "add", "rows.jsonl")


def test_the_sequence_method_needs_a_generative_task():
    vqa = yaml.safe_load((ROOT / "profiles" / "vqa.yaml").read_text())
    vqa["distill"]["methods"] = ["logit", "sequence"]
    with pytest.raises(
        Exception, match=r"distill.methods\[1\]: 'sequence' learns from the teacher's generated outputs"
    ):
        parse_params(vqa, models=False)
    params = tiny_params_dict()
    params["distill"]["sequence"]["generation"]["max_length"] = 36
    with pytest.raises(Exception, match=r"distill.sequence.generation.max_length: 36 is longer"):
        parse_params(params, models=False)


def test_the_report_pages_show_every_models_caption_and_the_cross_attention_of_chosen_words(tmp_path):
    from helpers import tiny_captioning_params_dict
    from PIL import Image

    from amad.models import save_model

    params = parse_params(tiny_captioning_params_dict())
    TASK.prepare(params.data, 0, tmp_path / "prepared", log=lambda _: None)
    state = TASK.read_state(tmp_path / "prepared")
    preprocess = TASK.preprocess(params.teacher, state)
    folders = {}
    for name, config in (("teacher", params.teacher), ("h2-amad", params.students["h2"])):
        torch.manual_seed(0)
        folders[name] = tmp_path / "models" / name
        save_model(folders[name], TASK, TASK.build_model(config, state), state, preprocess)
    teacher_dir = folders.pop("teacher")
    markdown = TASK.report_pages(teacher_dir, folders, ["h2-amad"], tmp_path / "prepared", tmp_path)
    val_images = len((tmp_path / "prepared" / "val.jsonl").read_text().splitlines())
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0] == "| image | teacher | h2-amad | first reference |"
    assert len(lines) == 1 + min(6, val_images)
    assert Image.open(tmp_path / "captions.png").size[0] > 500
    pictures = list((tmp_path / "cross_attention").glob("*.png"))
    # a random-init teacher may write no word at all; with one, the student's page is drawn
    assert [p.name for p in pictures] in (["h2-amad.png"], [])


def test_chosen_words_are_content_words_and_the_map_goes_through_the_pooler():
    from amad.report.decoder_pages import chosen_words

    assert chosen_words(["<s>", "a", "red", "circle", "and", "two", "squares", "</s>"]) == [2, 3, 5]
    assert chosen_words(["<s>", "a", "of", "</s>"]) == [1, 2]
