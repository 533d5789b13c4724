"""Shapes generator, manifest and VQAv2 readers, answers and the prepared folder."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from helpers import TINY_SHAPES, tiny_params_dict
from PIL import Image

from amad.config.params import parse_params
from amad.data.preprocess import Preprocess
from amad.data.shapes import FAMILIES, ShapesGenerator
from amad.errors import ConfigError, DataError
from amad.tasks.vqa.answers import build_vocabulary, normalize_answer, vqa_accuracy
from amad.tasks.vqa.dataset import VQADataset
from amad.tasks.vqa.manifest import read_manifest
from amad.tasks.vqa.prepare import prepare
from amad.tasks.vqa.task import VQATask
from amad.tasks.vqa.vqav2 import read_vqav2


def data_config(source="shapes", path=None, **shapes):
    params = tiny_params_dict()
    params["data"]["source"] = source
    if path is not None:
        params["data"]["path"] = path
    params["data"]["shapes"].update(shapes)
    return parse_params(params).data


SHAPES = {k: TINY_SHAPES[k] for k in ("image_size", "grid", "min_objects", "max_objects")}


def test_generator_is_deterministic():
    first, second = ShapesGenerator(3, **SHAPES), ShapesGenerator(3, **SHAPES)
    for _ in range(50):
        a, b = first.sample(), second.sample()
        assert a == b
        assert first.render(a.objects).tobytes() == second.render(b.objects).tobytes()
    assert ShapesGenerator(4, **SHAPES).sample() != ShapesGenerator(3, **SHAPES).sample()


def test_answers_are_balanced_and_families_covered():
    generator = ShapesGenerator(0, **SHAPES)
    samples = [generator.sample() for _ in range(4000)]
    answers = Counter(s.answer for s in samples)
    assert answers.most_common(1)[0][1] / len(samples) < 0.25
    assert set(s.family for s in samples) == set(FAMILIES)
    for family in FAMILIES:  # within a family no answer dominates
        counts = Counter(s.answer for s in samples if s.family == family)
        assert max(counts.values()) / sum(counts.values()) < 0.6, (family, counts)


@pytest.mark.parametrize("family", FAMILIES)
def test_answers_are_true_of_the_scene(family):
    generator = ShapesGenerator(1, **SHAPES)
    for _ in range(200):
        sample = generator.sample(family)
        objects = sample.objects
        words = sample.question.rstrip("?").split()
        if family == "count":
            noun = words[2]
            value = noun[:-1] if noun.endswith("s") and words[3] != "objects" else noun
            truth = sum(value in (o.color, o.shape) for o in objects)
            assert str(truth) == sample.answer
        elif family == "exist":
            truth = any((o.color, o.shape) == (words[3], words[4]) for o in objects)
            assert sample.answer == ("yes" if truth else "no")
        elif family == "query_color":
            (target,) = [o for o in objects if o.shape == words[-1]]
            assert target.color == sample.answer
        elif family == "compare":
            first, second = words[3][:-1], words[5][:-1]
            truth = sum(o.shape == first for o in objects) > sum(o.shape == second for o in objects)
            assert sample.answer == ("yes" if truth else "no")
        elif family == "query_shape":
            (target,) = [o for o in objects if o.color == words[4]]
            assert target.shape == sample.answer
        elif family == "relation":
            above = words[4] == "above"
            first, second = (words[2], words[3]), ((words[6], words[7]) if above else (words[7], words[8]))
            (a,) = [o for o in objects if (o.color, o.shape) == first]  # each description names one object
            (b,) = [o for o in objects if (o.color, o.shape) == second]
            truth = a.row < b.row if above else a.col < b.col
            assert (a.row != b.row) if above else (a.col != b.col)
            assert sample.answer == ("yes" if truth else "no")
        elif family == "nearest":
            (anchor,) = [o for o in objects if (o.color, o.shape) == (words[-2], words[-1])]
            others = sorted(
                ((o.row - anchor.row) ** 2 + (o.col - anchor.col) ** 2, o.shape) for o in objects if o != anchor
            )
            assert len(others) == 1 or others[0][0] < others[1][0]
            assert others[0][1] == sample.answer


def test_normalisation_and_accuracy():
    assert normalize_answer("  The Two!") == "2"
    assert normalize_answer("a red circle.") == "red circle"
    assert vqa_accuracy("two", ["2"]) == 1.0
    assert vqa_accuracy("yes", ["yes", "yes", "no", "yes"] + ["no"] * 6) == 1.0
    assert vqa_accuracy("yes", ["yes", "no", "no", "no"] + ["no"] * 6) == pytest.approx(1 / 3)
    assert vqa_accuracy("cat", ["dog"]) == 0.0
    assert build_vocabulary([["Yes"], ["yes"], ["no"]], 1) == ["yes"]


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")


def good_line(index=0, image="images/a.png"):
    return json.dumps({"id": str(index), "image": image, "question": "what?", "answers": ["yes"]})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"m\.jsonl:2: invalid JSON"),
        (json.dumps({"id": "1", "image": "images/a.png", "question": "q"}), r"m\.jsonl:2: missing field 'answers'"),
        (json.dumps({"id": "1", "image": "images/a.png", "question": "q", "answers": []}), r":2: field 'answers'"),
        (json.dumps({"id": "1", "image": 3, "question": "q", "answers": ["x"]}), r":2: field 'image' must be a str"),
        (good_line(1, "images/missing.png"), r"m\.jsonl:2: image not found"),
        (good_line(0), r":2: duplicate id '0' \(first on line 1\)"),
        (good_line(1, "../outside/secret.png"), r"m\.jsonl:2: field 'image' may not contain '\.\.'"),
        (good_line(1, "images/../../x.png"), r"m\.jsonl:2: field 'image' may not contain '\.\.'"),
        (good_line(1, "/etc/passwd"), r"m\.jsonl:2: field 'image' must be a path relative to the data folder"),
        (good_line(1, "C:\\x.png"), r"m\.jsonl:2: field 'image' must be a path relative"),
    ],
)
def test_manifest_errors_name_file_and_line(tmp_path, line, message):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "a.png")
    write_lines(tmp_path / "m.jsonl", [good_line(0), line])
    with pytest.raises(DataError, match=message):
        read_manifest(tmp_path / "m.jsonl")


def test_manifest_as_windows_tools_write_it_and_bytes_that_are_not_utf8(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "a.png")
    path = tmp_path / "m.jsonl"
    path.write_bytes(("\ufeff" + good_line(0) + "\r\n" + good_line(1) + "\r\n").encode("utf-8"))  # BOM, CRLF
    assert [record.id for record in read_manifest(path)] == ["0", "1"]
    path.write_bytes((good_line(0) + "\n").encode("utf-8") + b'{"id": "1", "question": "caf\xe9?"}\n')  # Latin-1
    with pytest.raises(DataError, match=r"m\.jsonl:2: not valid UTF-8"):
        read_manifest(path)


def make_vqav2(root, *, drop_image=False, broken_annotation=False):
    for split, ids in (("train2014", [1, 2]), ("val2014", [3, 4, 5, 6])):
        (root / split).mkdir(parents=True)
        questions, annotations = [], []
        for image_id in ids:
            if not (drop_image and image_id == 2):
                Image.new("RGB", (8, 8), (image_id * 30, 0, 0)).save(root / split / f"COCO_{split}_{image_id:012d}.jpg")
            questions.append({"question_id": image_id * 10, "image_id": image_id, "question": "what color?"})
            annotation = {
                "question_id": image_id * 10,
                "answer_type": "other",
                "answers": [{"answer": "red"}] * 7 + [{"answer": "blue"}] * 3,
            }
            if broken_annotation and image_id == 1:
                del annotation["answers"]
            annotations.append(annotation)
        (root / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(json.dumps({"questions": questions}))
        (root / f"v2_mscoco_{split}_annotations.json").write_text(json.dumps({"annotations": annotations}))


def test_vqav2_reader_and_prepare(tmp_path):
    make_vqav2(tmp_path / "vqa")
    splits = read_vqav2(tmp_path / "vqa", seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [2, 2, 2]
    assert len(splits["train"][0].answers) == 10
    summary = prepare(data_config("vqav2", str(tmp_path / "vqa")), 0, tmp_path / "prepared")
    assert summary["answers"] == ["red", "blue"]
    records = read_manifest(tmp_path / "prepared" / "val.jsonl")
    assert all((tmp_path / "prepared" / r.image).is_file() for r in records)


def test_vqav2_errors_name_the_file(tmp_path):
    make_vqav2(tmp_path / "a", drop_image=True)
    with pytest.raises(DataError, match=r"questions\.json: question #1: image not found"):
        read_vqav2(tmp_path / "a", seed=0)
    make_vqav2(tmp_path / "b", broken_annotation=True)
    with pytest.raises(DataError, match=r"annotations\.json: annotation #0"):
        read_vqav2(tmp_path / "b", seed=0)
    questions = tmp_path / "c" / "v2_OpenEnded_mscoco_train2014_questions.json"
    make_vqav2(tmp_path / "c")
    questions.write_bytes(b"\xef\xbb\xbf" + questions.read_bytes())  # a byte-order mark is fine
    assert len(read_vqav2(tmp_path / "c", seed=0)["train"]) == 2
    questions.write_bytes(questions.read_bytes().replace(b"what", b"wh\xe4t"))
    with pytest.raises(DataError, match=r"questions\.json:1: not valid UTF-8"):
        read_vqav2(tmp_path / "c", seed=0)
    questions.write_text("[]")  # valid JSON, not the object the format is
    with pytest.raises(DataError, match=r"questions\.json: expected a JSON object at the top level, got array"):
        read_vqav2(tmp_path / "c", seed=0)
    questions.write_text('{"questions": [\n')
    with pytest.raises(DataError, match=r"questions\.json:2: invalid JSON"):
        read_vqav2(tmp_path / "c", seed=0)


def test_prepare_jsonl_counts_out_of_vocabulary_and_leaves_nothing_on_error(tmp_path):
    source = tmp_path / "user"
    (source / "images").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(source / "images" / "a.png")
    write_lines(source / "train.jsonl", [good_line(0)])
    write_lines(
        source / "val.jsonl", [json.dumps({"id": "v", "image": "images/a.png", "question": "q", "answers": ["maybe"]})]
    )
    write_lines(source / "test.jsonl", [good_line(0)])
    summary = prepare(data_config("jsonl", str(source)), 0, tmp_path / "out")
    assert summary["splits"]["val"]["out_of_vocabulary"] == 1
    write_lines(source / "test.jsonl", [good_line(0), "{broken"])
    with pytest.raises(DataError, match=r"test\.jsonl:2"):
        prepare(data_config("jsonl", str(source)), 0, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_prepare_refuses_undecodable_images_and_small_training_splits_before_writing(tmp_path):
    source = tmp_path / "user"
    (source / "images").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(source / "images" / "a.png")
    (source / "images" / "b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    for split in ("train", "val", "test"):
        write_lines(source / f"{split}.jsonl", [good_line(0)])
    write_lines(source / "test.jsonl", [good_line(0), good_line(1, "images/b.jpg")])
    with pytest.raises(DataError, match=r"test record '1': image .*b\.jpg cannot be decoded"):
        prepare(data_config("jsonl", str(source)), 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    task = VQATask()
    check = lambda sizes: task.check_batch_sizes(sizes, {"distill.train.batch_size": 2})  # noqa: E731
    with pytest.raises(
        ConfigError, match=r"distill\.train\.batch_size: 2 is larger than the training split \(1 samples\)"
    ):
        prepare(data_config("jsonl", str(source)), 0, tmp_path / "out", check)
    assert not (tmp_path / "out").exists()


def test_dataset_image_cache_returns_the_decoded_pixels(tmp_path):
    config = data_config(train=8, val=8, test=8, image_size=32)
    summary = prepare(config, 0, tmp_path / "prepared")
    tmp_path = tmp_path / "prepared"
    preprocess = Preprocess(image_size=32, context_length=16)
    cached = VQADataset(tmp_path, "val", preprocess, summary["answers"])
    uncached = VQADataset(tmp_path, "val", preprocess, summary["answers"], cache_mib=0)
    assert uncached._cache is None and cached._cache == {}
    for _ in range(2):  # the second pass reads the cache
        for index in range(len(cached)):
            assert torch.equal(cached[index]["pixels"], uncached[index]["pixels"])
    assert len(cached._cache) == len(cached)
    record = cached.records[0]
    assert torch.equal(cached[0]["pixels"], preprocess.load_image(tmp_path / record.image))


def test_sixteen_bit_grayscale_images_are_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257 * 60, 257 * 200, 65535]], dtype=np.uint16).repeat(4, axis=0)  # 4 x 4
    Image.fromarray(levels).save(tmp_path / "sixteen.png")  # opens as I;16 (older Pillow: I)
    Image.fromarray(levels.astype(np.int32)).save(tmp_path / "thirty-two.tif")
    Image.fromarray((levels // 257).astype(np.uint8)).save(tmp_path / "eight.png")
    Image.fromarray(np.full((4, 4), 200, np.int32)).save(tmp_path / "eight-in-i.tif")
    preprocess = Preprocess(image_size=4, context_length=8)
    sixteen, thirty_two, eight, eight_in_i = (
        preprocess.read_resized(tmp_path / name)
        for name in ("sixteen.png", "thirty-two.tif", "eight.png", "eight-in-i.tif")
    )
    assert sixteen[0, :, 0].tolist() == [0, 60, 200, 255]
    assert np.array_equal(sixteen, eight) and np.array_equal(thirty_two, eight)
    assert (eight_in_i == 200).all()  # 8-bit values in a 32-bit image are left as they are


@pytest.mark.parametrize("size", [8, 33])
def test_pixel_normalisation_is_the_reference_formula_bit_for_bit(size):
    """``((x / 255) - mean) / std`` in float32, channels first: the in-place rewrite changes no bit."""
    rgb = np.random.default_rng(size).integers(0, 256, (size, size + 1, 3), dtype=np.uint8)
    preprocess = Preprocess(size, 8, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
    reference = (rgb.astype(np.float32) / 255.0 - np.asarray(preprocess.mean, np.float32)) / np.asarray(
        preprocess.std, np.float32
    )
    pixels = preprocess.normalize(rgb)
    assert pixels.dtype == np.float32 and pixels.flags.c_contiguous
    assert np.array_equal(pixels, reference.transpose(2, 0, 1))


def test_a_manifest_with_many_bad_lines_reports_up_to_twenty_of_them_at_once(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "a.png")
    lines = [good_line(0)] + [good_line(i, "images/missing.png") for i in range(1, 26)] + ["{not json"]
    write_lines(tmp_path / "m.jsonl", lines)
    with pytest.raises(DataError) as error:
        read_manifest(tmp_path / "m.jsonl")
    message = str(error.value).splitlines()
    assert message[0] == f"{tmp_path / 'm.jsonl'}: 26 bad records, the first 20:"
    assert message[1] == f"  {tmp_path / 'm.jsonl'}:2: image not found: {tmp_path / 'images' / 'missing.png'}"
    assert len(message) == 21 and message[-1].startswith(f"  {tmp_path / 'm.jsonl'}:21: ")
