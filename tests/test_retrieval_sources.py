"""Caption readers for retrieval: open_clip CSV, COCO captions, Karpathy splits and the prepared JSONL."""

import json

import pytest

from amad.data.captions.sources import (
    ImageRecord,
    read_coco,
    read_csv,
    read_karpathy,
    read_records,
    write_records,
)
from amad.errors import DataError

TSV = {"separator": "\t", "image_column": "filepath", "caption_column": "title"}


def write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def write_json(path, data):
    return write(path, json.dumps(data, ensure_ascii=False, indent=1))


def raises(match_parts, call, *args, **kwargs):
    """Call, expect a DataError, and check each part appears in its message."""
    with pytest.raises(DataError) as error:
        call(*args, **kwargs)
    message = str(error.value)
    for part in match_parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------------------------------
# open_clip CSV


def test_csv_groups_captions_by_image_in_order_of_first_appearance(tmp_path):
    path = write(
        tmp_path / "train.tsv",
        "filepath\ttitle\n"
        "b/2.jpg\t  a dog runs \n"
        "a/1 x.jpg\tun café près de la gare\n"
        "b/2.jpg\ta dog runs\n"
        "\n"
        "b/2.jpg\t犬が走る\n",
    )
    records = read_csv(path, **TSV)
    assert records == [
        ImageRecord("b/2.jpg", "b/2.jpg", ("a dog runs", "a dog runs", "犬が走る")),
        ImageRecord("a/1 x.jpg", "a/1 x.jpg", ("un café près de la gare",)),
    ]


def test_csv_class_column_labels_each_image_and_must_agree_across_its_rows(tmp_path):
    text = "filepath\ttitle\tlabel\nb.jpg\ta dog\t dog \na.jpg\ta cat\tcat\nb.jpg\tdog again\tdog\n"
    path = write(tmp_path / "train.tsv", text)
    records = read_csv(path, **TSV, class_column="label")
    assert records == [
        ImageRecord("b.jpg", "b.jpg", ("a dog", "dog again"), "dog"),
        ImageRecord("a.jpg", "a.jpg", ("a cat",), "cat"),
    ]
    assert read_csv(path, **TSV)[0].label is None  # the column is ignored unless named
    raises([f"{path}:1: header has no column 'class'"], read_csv, path, **TSV, class_column="class")
    conflict = write(tmp_path / "c.tsv", text + "a.jpg\tanother\tdog\n")
    raises(
        [f"{conflict}:5: image 'a.jpg' has class 'dog' here but 'cat' at {conflict}:3"],
        read_csv,
        conflict,
        **TSV,
        class_column="label",
    )
    empty = write(tmp_path / "e.tsv", "filepath\ttitle\tlabel\na.jpg\tx\t \n")
    raises([f"{empty}:2: field 'label' is empty"], read_csv, empty, **TSV, class_column="label")
    with pytest.raises(ValueError, match="columns must differ"):
        read_csv(path, **TSV, class_column="title")


def test_csv_quoted_field_may_hold_the_separator_and_a_newline(tmp_path):
    path = write(
        tmp_path / "train.tsv",
        'filepath\ttitle\nx.jpg\t"a cat\tsits,\non a ""mat"""\r\ny.jpg\tplain\r\n',
    )
    records = read_csv(path, **TSV)
    assert records == [
        ImageRecord("x.jpg", "x.jpg", ('a cat\tsits,\non a "mat"',)),
        ImageRecord("y.jpg", "y.jpg", ("plain",)),
    ]


def test_csv_custom_separator_and_columns_in_any_order(tmp_path):
    path = write(
        tmp_path / "data.csv",
        '\ufefftext,source,img\n"red, round ball",web,balls/1.png\nsecond,web,balls/1.png\nok,web,2.png\n',
    )
    records = read_csv(path, separator=",", image_column="img", caption_column="text")
    assert records == [
        ImageRecord("balls/1.png", "balls/1.png", ("red, round ball", "second")),
        ImageRecord("2.png", "2.png", ("ok",)),
    ]


def test_csv_rejects_a_bad_separator_or_equal_columns(tmp_path):
    path = write(tmp_path / "a.csv", "a,b\nx,y\n")
    with pytest.raises(ValueError, match="single character"):
        read_csv(path, separator="::", image_column="a", caption_column="b")
    with pytest.raises(ValueError, match="columns must differ"):
        read_csv(path, separator=",", image_column="a", caption_column="a")


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("", None, "empty file"),
        ("\n\n", None, "empty file"),
        ("filepath\ttitle\n", None, "no rows after the header"),
        ("filepath,title\nx.jpg,a\n", 1, "header has no column 'filepath' (columns: 'filepath,title'"),
        ("path\ttitle\nx.jpg\ta\n", 1, "columns: 'path', 'title'"),
        ("filepath\ttitle\tfilepath\nx\ta\tb\n", 1, "appears 2 times"),
        ("filepath\ttitle\nx.jpg\ta\ny.jpg\tb\textra\n", 3, "expected 2 fields (as in the header), got 3"),
        ("filepath\ttitle\nx.jpg\n", 2, "expected 2 fields"),
        ("filepath\ttitle\nx.jpg\t   \n", 2, "field 'title' is empty"),
        ("filepath\ttitle\n\ta caption\n", 2, "field 'filepath' is empty"),
        ("filepath\ttitle\n/abs/x.jpg\ta\n", 2, "must be a path relative"),
        ("filepath\ttitle\nimg/../../x.jpg\ta\n", 2, "may not contain '..'"),
        # rows are named by their first line: the bad row spans lines 4-5, after one spanning 2-3
        ('filepath\ttitle\nx.jpg\t"two\nlines"\n\t"no\nimage"\n', 4, "field 'filepath' is empty"),
        ('filepath\ttitle\nx.jpg\tok\ny.jpg\t"quoted" then text\n', 3, "malformed CSV"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, text, line, problem):
    path = write(tmp_path / "bad.tsv", text)
    where = f"{path}:{line}:" if line else f"{path}:"
    raises([where, problem], read_csv, path, **TSV)


def test_csv_missing_file_and_bytes_that_are_not_utf8(tmp_path):
    raises([f"{tmp_path / 'none.tsv'}: file not found"], read_csv, tmp_path / "none.tsv", **TSV)
    path = tmp_path / "latin1.tsv"
    path.write_bytes(b"filepath\ttitle\nx.jpg\tok\ny.jpg\tcaf\xe9\n")
    raises([f"{path}:3: not valid UTF-8"], read_csv, path, **TSV)


# ---------------------------------------------------------------------------------------------
# COCO captions JSON


def coco(**overrides):
    data = {
        "info": {"year": 2014},
        "images": [
            {"id": 42, "file_name": "val2014/COCO_val2014_000000000042.jpg", "width": 640},
            {"id": 7, "file_name": "val2014/ünïcode name.jpg"},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "caption": " A man rides a horse.\n"},
            {"id": 2, "image_id": 42, "caption": "Two cats."},
            {"id": 3, "image_id": 7, "caption": "Ein Mann reitet 🐎"},
            {"id": 4, "image_id": 42, "caption": "Two cats."},
        ],
    }
    data.update(overrides)
    return data


def test_coco_records_follow_images_and_captions_follow_annotations(tmp_path):
    records = read_coco(write_json(tmp_path / "captions_val2014.json", coco()))
    assert records == [
        ImageRecord("42", "val2014/COCO_val2014_000000000042.jpg", ("Two cats.", "Two cats.")),
        ImageRecord("7", "val2014/ünïcode name.jpg", ("A man rides a horse.", "Ein Mann reitet 🐎")),
    ]


def coco_case(name):
    """A broken COCO file by name -> (data, expected message parts after the file name)."""
    base = coco()
    images, annotations = base["images"], base["annotations"]
    if name == "no images":
        del base["images"]
        return base, ["missing 'images'"]
    if name == "annotations not a list":
        base["annotations"] = {"a": 1}
        return base, ["annotations: expected an array, got object"]
    if name == "image not an object":
        images[1] = "x.jpg"
        return base, ["images[1]: expected an object, got string"]
    if name == "missing file_name":
        del images[1]["file_name"]
        return base, ["images[1]: missing 'file_name'"]
    if name == "string id":
        images[0]["id"] = "42"
        return base, ["images[0].id: expected an integer, got string '42'"]
    if name == "boolean id":
        images[0]["id"] = True
        return base, ["images[0].id: expected an integer, got boolean"]
    if name == "absolute file_name":
        images[1]["file_name"] = "/data/x.jpg"
        return base, ["images[1]: field 'file_name' must be a path relative"]
    if name == "duplicate id":
        images.append({"id": 42, "file_name": "other.jpg"})
        return base, ["images[2].id: duplicate image id 42 (first at images[0])"]
    if name == "unknown image_id":
        annotations[2]["image_id"] = 5
        return base, ["annotations[2].image_id: no image with id 5"]
    if name == "missing caption":
        del annotations[3]["caption"]
        return base, ["annotations[3]: missing 'caption'"]
    if name == "caption not a string":
        annotations[0]["caption"] = ["a"]
        return base, ["annotations[0].caption: expected a string, got array"]
    if name == "empty caption":
        annotations[1]["caption"] = " \t\n"
        return base, ["annotations[1].caption: empty caption"]
    if name == "image without caption":
        images.append({"id": 9, "file_name": "x.jpg"})
        return base, ["images[2] (id 9, x.jpg) has no caption in annotations"]
    raise AssertionError(name)


COCO_CASES = [
    "no images",
    "annotations not a list",
    "image not an object",
    "missing file_name",
    "string id",
    "boolean id",
    "absolute file_name",
    "duplicate id",
    "unknown image_id",
    "missing caption",
    "caption not a string",
    "empty caption",
    "image without caption",
]


@pytest.mark.parametrize("name", COCO_CASES)
def test_coco_errors_name_file_and_json_path(tmp_path, name):
    data, parts = coco_case(name)
    path = write_json(tmp_path / "captions_val.json", data)
    raises([f"{path}: {parts[0]}", *parts[1:]], read_coco, path)


def test_coco_file_level_errors(tmp_path):
    raises([f"{tmp_path / 'none.json'}: file not found"], read_coco, tmp_path / "none.json")
    broken = write(tmp_path / "broken.json", '{\n  "images": [],\n  "annotations": [,]\n}\n')
    raises([f"{broken}:3: invalid JSON"], read_coco, broken)
    array = write(tmp_path / "array.json", "[]")
    raises([f"{array}: expected a JSON object at the top level, got array"], read_coco, array)


# ---------------------------------------------------------------------------------------------
# Karpathy split JSON


def karpathy():
    return {
        "dataset": "coco",
        "images": [
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000000042.jpg",
                "split": "test",
                "imgid": 0,
                "cocoid": 42,
                "sentids": [0, 1],
                "sentences": [
                    {"raw": " Two cats sleep. ", "tokens": ["two", "cats", "sleep"]},
                    {"raw": "Deux chats dorment.", "tokens": ["deux", "chats", "dorment"]},
                ],
            },
            {
                "filepath": "train2014",
                "filename": "a.jpg",
                "split": "restval",
                "imgid": 1,
                "cocoid": 7,
                "sentences": [{"raw": "A horse."}],
            },
            {"filename": "1000.jpg", "split": "train", "imgid": 2, "sentences": [{"tokens": ["a", "dog", "runs"]}]},
            {"filename": "sub/ü.jpg", "split": "val", "sentences": [{"raw": "見る"}, {"raw": "見る"}]},
            {"filepath": "", "filename": "b.jpg", "split": "test", "sentences": [{"raw": "B."}]},
        ],
    }


def test_karpathy_splits_ids_paths_and_captions(tmp_path):
    path = write_json(tmp_path / "dataset_coco.json", karpathy())
    assert read_karpathy(path, "train") == [
        ImageRecord("7", "train2014/a.jpg", ("A horse.",)),
        ImageRecord("2", "1000.jpg", ("a dog runs",)),
    ]
    assert read_karpathy(path, "val") == [ImageRecord("sub/ü.jpg", "sub/ü.jpg", ("見る", "見る"))]
    assert read_karpathy(path, "test") == [
        ImageRecord("42", "val2014/COCO_val2014_000000000042.jpg", ("Two cats sleep.", "Deux chats dorment.")),
        ImageRecord("b.jpg", "b.jpg", ("B.",)),
    ]


def test_karpathy_rejects_an_unknown_requested_split(tmp_path):
    path = write_json(tmp_path / "dataset_coco.json", karpathy())
    for split in ("restval", "validation"):
        with pytest.raises(ValueError, match="split must be"):
            read_karpathy(path, split)


def karpathy_case(name):
    """A broken Karpathy file by name -> (data, requested split, expected message after the file name)."""
    base = karpathy()
    images = base["images"]
    if name == "no images":
        del base["images"]
        return base, "test", "missing 'images'"
    if name == "unknown split":
        images[2]["split"] = "dev"
        return base, "test", "images[2].split: unknown split 'dev' (expected one of train, restval, val, test)"
    if name == "split not a string":
        images[1]["split"] = 1
        return base, "test", "images[1].split: expected a string, got integer 1"
    if name == "missing filename":
        del images[3]["filename"]
        return base, "val", "images[3]: missing 'filename'"
    if name == "bad filepath":
        images[0]["filepath"] = "../elsewhere"
        return base, "test", "images[0]: field 'filepath' may not contain '..'"
    if name == "no sentences":
        images[1]["sentences"] = []
        return base, "train", "images[1].sentences: empty"
    if name == "sentence without raw or tokens":
        images[0]["sentences"][1] = {"imgid": 0}
        return base, "test", "images[0].sentences[1]: missing 'raw' (and no 'tokens' to fall back to)"
    if name == "empty raw":
        images[0]["sentences"][0]["raw"] = "  "
        return base, "test", "images[0].sentences[0].raw: empty caption"
    if name == "empty tokens":
        images[2]["sentences"][0]["tokens"] = []
        return base, "train", "images[2].sentences[0].tokens: empty caption"
    if name == "token not a string":
        images[2]["sentences"][0]["tokens"] = ["a", 3]
        return base, "train", "images[2].sentences[0].tokens[1]: expected a string, got integer"
    if name == "bad cocoid":
        images[1]["cocoid"] = None
        return base, "train", "images[1].cocoid: expected an integer or a non-empty string, got null"
    if name == "duplicate id":
        images[4]["cocoid"] = 42
        return base, "test", "images[4]: duplicate id '42' in split 'test' (first at images[0])"
    if name == "broken entry in another split":
        del images[3]["sentences"]
        return base, "test", "images[3]: missing 'sentences'"
    if name == "no image in split":
        del images[3]
        return base, "val", "no image in split 'val'"
    if name == "no train image":
        del images[1:3]
        return base, "train", "no image in split 'train' (nor 'restval')"
    raise AssertionError(name)


KARPATHY_CASES = [
    "no images",
    "unknown split",
    "split not a string",
    "missing filename",
    "bad filepath",
    "no sentences",
    "sentence without raw or tokens",
    "empty raw",
    "empty tokens",
    "token not a string",
    "bad cocoid",
    "duplicate id",
    "broken entry in another split",
    "no image in split",
    "no train image",
]


@pytest.mark.parametrize("name", KARPATHY_CASES)
def test_karpathy_errors_name_file_and_json_path(tmp_path, name):
    data, split, part = karpathy_case(name)
    path = write_json(tmp_path / "dataset_flickr30k.json", data)
    raises([f"{path}: {part}"], read_karpathy, path, split)


def test_karpathy_invalid_json_names_the_line(tmp_path):
    path = write(tmp_path / "dataset_flickr8k.json", '{"images": [\n{"split": "test"}\n{}]}')
    raises([f"{path}:3: invalid JSON"], read_karpathy, path, "test")


# ---------------------------------------------------------------------------------------------
# Prepared JSONL


def test_records_round_trip_as_utf8_lines(tmp_path):
    records = [
        ImageRecord("1", "a b/ü.jpg", ("first\tcaption", "second — «quoted»", "first\tcaption")),
        ImageRecord("x", "c.png", ("line\nbreak \u2028 separator",)),
    ]
    path = tmp_path / "out" / "test.jsonl"
    write_records(path, records)
    raw = path.read_bytes().decode("utf-8")
    assert raw.count("\n") == 2 and raw.endswith("\n")
    assert raw.splitlines()[0] == (
        '{"id": "1", "image": "a b/ü.jpg", "captions": ["first\\tcaption", "second — «quoted»", "first\\tcaption"]}'
    )
    assert read_records(path) == records
    assert [p.name for p in path.parent.iterdir()] == ["test.jsonl"]  # no staging file left


def test_labels_round_trip_and_a_file_labels_every_image_or_none(tmp_path):
    records = [ImageRecord("1", "a.jpg", ("x",), "dog"), ImageRecord("2", "b.jpg", ("y",), "cat")]
    path = tmp_path / "test.jsonl"
    write_records(path, records)
    assert path.read_text().splitlines()[1] == '{"id": "2", "image": "b.jpg", "captions": ["y"], "label": "cat"}'
    assert read_records(path) == records
    mixed = write(tmp_path / "mixed.jsonl", f"{records[0].to_json()}\n\n{GOOD}\n")
    raises([f"{mixed}:3: no 'label' where other lines have one"], read_records, mixed)
    bad = write(tmp_path / "bad.jsonl", '{"id": "a", "image": "a.jpg", "captions": ["x"], "label": 3}\n')
    raises([f"{bad}:1: field 'label' must be a non-empty string, got integer 3"], read_records, bad)


def test_read_records_skips_blank_lines_and_strips_captions(tmp_path):
    path = write(tmp_path / "r.jsonl", '\n{"id": "a", "image": "a.jpg", "captions": [" x "], "extra": 1}\n\n')
    assert read_records(path) == [ImageRecord("a", "a.jpg", ("x",))]


GOOD = '{"id": "a", "image": "a.jpg", "captions": ["x"]}'


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"id": "b", "image": "b.jpg", "captions": ["x"]', "invalid JSON"),
        ('["b"]', "expected a JSON object, got array"),
        ('{"image": "b.jpg", "captions": ["x"]}', "missing field 'id'"),
        ('{"id": "b", "captions": ["x"]}', "missing field 'image'"),
        ('{"id": "b", "image": "b.jpg"}', "missing field 'captions'"),
        ('{"id": 3, "image": "b.jpg", "captions": ["x"]}', "field 'id' must be a string, got integer 3"),
        ('{"id": "", "image": "b.jpg", "captions": ["x"]}', "field 'id' is empty"),
        ('{"id": "b", "image": "b.jpg", "captions": "x"}', "field 'captions' must be an array, got string"),
        ('{"id": "b", "image": "b.jpg", "captions": []}', "field 'captions' is an empty list"),
        ('{"id": "b", "image": "b.jpg", "captions": ["x", 1]}', "captions[1]: expected a string, got integer"),
        ('{"id": "b", "image": "b.jpg", "captions": ["x", " "]}', "captions[1]: empty caption"),
        ('{"id": "b", "image": "/b.jpg", "captions": ["x"]}', "field 'image' must be a path relative"),
        ('{"id": "a", "image": "b.jpg", "captions": ["x"]}', "duplicate id 'a' (first on line 1)"),
    ],
)
def test_read_records_errors_name_file_and_line(tmp_path, line, problem):
    path = write(tmp_path / "test.jsonl", f"{GOOD}\n\n{line}\n")
    raises([f"{path}:3: {problem}"], read_records, path)


def test_read_records_file_level_errors(tmp_path):
    raises([f"{tmp_path / 'none.jsonl'}: file not found"], read_records, tmp_path / "none.jsonl")
    empty = write(tmp_path / "empty.jsonl", "\n \n")
    raises([f"{empty}: no records"], read_records, empty)


def test_csv_reports_every_bad_row_with_its_line(tmp_path):
    path = write(tmp_path / "train.tsv", "filepath\ttitle\na.jpg\t \nb.jpg\tok\n/abs.jpg\tx\nc.jpg\n")
    expected = ["3 bad records:", ":2: field 'title' is empty", ":4: field 'filepath'"]
    message = raises(expected, read_csv, path, **TSV)
    assert ":5: expected 2 fields" in message and ":3:" not in message
