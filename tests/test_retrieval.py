"""The retrieval task: captions, losses, recall, the CLIP model and open_clip checkpoints, and a
tiny teacher -> student -> export -> predict run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_clip_dict, tiny_retrieval_params_dict
from PIL import Image

from amad.cli import main as amad_main
from amad.config.params import parse_params
from amad.contracts.task import get_task
from amad.data.captions.scenes import count_name, scene_captions
from amad.data.shapes import SHAPES, ShapesGenerator
from amad.errors import AmadError, ConfigError, DataError
from amad.losses.contrastive import contrastive_loss, similarity_distillation
from amad.tasks.retrieval.evaluation import recall_report, zero_shot_top1

TASK = get_task("retrieval")


# -- captions ------------------------------------------------------------------------------------
def test_every_caption_names_every_object_and_captions_differ():
    generator = ShapesGenerator(0, image_size=32, grid=4, min_objects=1, max_objects=5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        objects = generator.scene()
        captions = scene_captions(objects, 4, 5, rng)
        assert len(captions) == 5
        if len(objects) > 1:
            assert len(set(captions)) == 5
        for caption in captions:
            for obj in objects:
                assert f"{obj.color} {obj.shape}" in caption, (caption, objects)


# -- losses (golden values) ----------------------------------------------------------------------
def test_contrastive_loss_golden_values_and_repeated_images_are_positives():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [0.2, -0.4, 1.5]])
    distinct = contrastive_loss(logits, torch.tensor([0, 1, 2]))
    expected = (
        torch.nn.functional.cross_entropy(logits, torch.arange(3))
        + torch.nn.functional.cross_entropy(logits.t(), torch.arange(3))
    ) / 2
    assert distinct.item() == pytest.approx(expected.item(), abs=1e-6)
    assert distinct.item() == pytest.approx(0.4034340, abs=1e-6)
    # pairs 0 and 1 show the same image: each is a match of the other, half the target mass each
    shared = contrastive_loss(logits, torch.tensor([7, 7, 2]))
    log_rows, log_cols = logits.log_softmax(1), logits.t().log_softmax(1)
    targets = torch.tensor([[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1.0]])
    reference = (-(targets * log_rows).sum(1).mean() - (targets * log_cols).sum(1).mean()) / 2
    assert shared.item() == pytest.approx(reference.item(), abs=1e-6)
    assert shared.item() == pytest.approx(0.8201007, abs=1e-6)


def test_similarity_distillation_is_zero_when_equal_and_matches_golden_values():
    teacher = torch.tensor([[3.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, 0.1, 2.5]])
    student = torch.tensor([[1.0, 0.2, 0.0], [0.0, 1.0, 0.5], [0.3, 0.0, 1.0]])
    assert similarity_distillation(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    value = similarity_distillation(student, teacher, 2.0).item()

    def kl(s, t, temperature):
        p = (t / temperature).softmax(1)
        return (p * (p.log() - (s / temperature).log_softmax(1))).sum(1).mean()

    reference = (kl(student, teacher, 2.0) + kl(student.t(), teacher.t(), 2.0)) / 2 * 4
    assert value == pytest.approx(reference.item(), abs=1e-6)
    assert value == pytest.approx(0.4045748, abs=1e-6)


# -- recall ----------------------------------------------------------------------------------------
def test_recall_matches_a_loop_reference_with_several_captions_per_image(monkeypatch):
    import amad.tasks.retrieval.evaluation as evaluation

    generator = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(40, 8, generator=generator), dim=-1)
    image_of_caption = torch.arange(40).repeat_interleave(3)[:-2]  # the last image has one caption
    captions = images[image_of_caption] + 0.4 * torch.randn(len(image_of_caption), 8, generator=generator)
    captions = torch.nn.functional.normalize(captions, dim=-1)
    scores = images @ captions.t()

    def image_to_text(k):  # found when any of the image's captions is in its top k
        return np.mean([bool((image_of_caption[scores[i].argsort(descending=True)[:k]] == i).any()) for i in range(40)])

    def text_to_image(k):
        return np.mean([image_of_caption[j] in scores[:, j].argsort(descending=True)[:k] for j in range(len(captions))])

    monkeypatch.setattr(evaluation, "CHUNK", 7)  # chunked scoring gives the same answer
    report = recall_report(images, captions, image_of_caption)
    for k in (1, 5, 10):
        assert report["breakdown"][f"i2t_r{k}"] == pytest.approx(image_to_text(k))
        assert report["breakdown"][f"t2i_r{k}"] == pytest.approx(text_to_image(k))
    assert 0 < report["breakdown"]["i2t_r1"] < 1 and 0 < report["breakdown"]["t2i_r1"] < 1
    assert report["mean_recall"] == pytest.approx(report["breakdown"]["rsum"] / 6)


def test_zero_shot_classes_are_their_prompts_mean_embedding_golden_values():
    prompts = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, 1.0]]])  # 2 classes x 2 templates
    # class 0 -> (1, 1)/sqrt2, class 1 -> (-1, 1)/sqrt2
    images = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [-1.0, 0.1], [0.1, 1.0], [-0.3, -1.0]]), dim=-1)
    assert zero_shot_top1(images, prompts, torch.tensor([0, 1, 0, 0])) == 0.75
    assert zero_shot_top1(images, prompts, torch.tensor([1, 0, 1, 1])) == 0.25


def test_zero_shot_settings_are_checked_by_key():
    raw = tiny_retrieval_params_dict()
    raw["evaluate"]["zero_shot"]["templates"] = ["a photo of a {}.", "a photo"]
    with pytest.raises(ConfigError, match=r"evaluate\.zero_shot\.templates\[1\]: needs exactly one"):
        parse_params(raw)
    raw = tiny_retrieval_params_dict()
    raw["data"]["csv"]["class_column"] = "title"
    with pytest.raises(ConfigError, match=r"data\.csv\.class_column: must differ"):
        parse_params(raw)


# -- the model and open_clip checkpoints ----------------------------------------------------------
def model_config(**changes):
    """The tiny teacher with ``changes`` (the student shares its architecture, as it must)."""
    student = {**tiny_clip_dict(width=16, heads=2), "architecture": changes.get("architecture")}
    return parse_params(
        tiny_retrieval_params_dict(teacher={**tiny_clip_dict(), **changes}, students={"h2": student})
    ).teacher


def test_an_open_clip_checkpoint_loads_with_other_head_counts_and_embeds_like_open_clip(tmp_path):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from amad.tasks.retrieval.model import load_open_clip_checkpoint

    torch.manual_seed(0)
    reference = CLIP(
        16,
        CLIPVisionCfg(layers=2, width=32, head_width=8, mlp_ratio=2.0, patch_size=6, image_size=24),
        CLIPTextCfg(context_length=16, width=32, heads=4, layers=1, mlp_ratio=2.0),
    ).eval()
    path = tmp_path / "open_clip_model.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    config = model_config(architecture="ViT-B-32", checkpoint=str(path))  # its non-shape settings: open_clip's defaults
    TASK.check_model(config, "teacher")
    model = TASK.build_model(config, {}).eval()
    pixels = torch.randn(2, 3, 24, 24)
    tokens = TASK.preprocess(config).tokenize(["a red circle", "two shapes"])
    with torch.no_grad():
        expected_image = torch.nn.functional.normalize(reference.encode_image(pixels), dim=-1)
        expected_text = torch.nn.functional.normalize(reference.encode_text(tokens), dim=-1)
        assert torch.allclose(model.encode_image(pixels), expected_image, atol=1e-5)
        assert torch.allclose(model.encode_text(tokens), expected_text, atol=1e-5)
    # a student with fewer heads takes the same tensors (regrouped)
    student = config
    student = replace(student, vision=replace(student.vision, heads=2), text=replace(student.text, heads=2))
    TASK.build_model(student, {})
    # a checkpoint of another shape is refused, naming the key and the file
    wider = replace(config, vision=replace(config.vision, width=64))
    with pytest.raises(AmadError, match=r"checkpoint: .*open_clip_model.pt does not fit .*wrong shape"):
        load_open_clip_checkpoint(TASK.build_model(TASK.without_pretrained_weights(wider), {}), path, "checkpoint")


def test_an_open_clip_pretrained_tag_fails_at_once_offline_naming_the_tag():
    with pytest.raises(AmadError, match=r"teacher\.checkpoint: 'laion2b_s34b_b79k' is an open_clip pretrained tag"):
        model_config(architecture="ViT-B-32", checkpoint="laion2b_s34b_b79k")  # every stage checks this first
    with pytest.raises(ConfigError, match=r"teacher\.checkpoint.*no such file"):
        model_config(architecture="ViT-B-32", checkpoint="nowhere.pt")
    with pytest.raises(ConfigError, match=r"teacher\.checkpoint: .* is a folder: name the checkpoint file inside it"):
        model_config(architecture="ViT-B-32", checkpoint=str(Path(__file__).parent))
    with pytest.raises(ConfigError, match=r"teacher\.checkpoint: needs teacher\.architecture"):
        model_config(checkpoint="nowhere.pt")


def test_an_architecture_name_sets_the_image_preprocessing_and_unsupported_configs_are_refused():
    from open_clip.constants import OPENAI_DATASET_MEAN

    preprocess = TASK.preprocess(model_config(architecture="ViT-B-32"))
    assert preprocess.mean == tuple(OPENAI_DATASET_MEAN) and preprocess.resize_mode == "shortest"
    for name, reason in (("RN50", "ResNet image tower"), ("coca_ViT-B-32", "multimodal_cfg")):
        with pytest.raises(ConfigError, match=rf"teacher\.architecture: {name} uses open_clip settings .*{reason}"):
            model_config(architecture=name)
    with pytest.raises(ConfigError, match=r"\.architecture: .ViT-Nope. is not an open_clip model config"):
        model_config(architecture="ViT-Nope")


def test_frozen_towers_keep_their_weights_but_train_their_projections():
    model = TASK.build_model(model_config(frozen={"vision": True, "text": True}), {})
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"visual.proj", "text.text_projection", "logit_scale"}


def test_attention_of_both_towers_is_captured_per_head():
    from amad.distill.capture import capture_attention

    config = model_config()
    model = TASK.build_model(config, {}).eval()
    groups = TASK.module_groups(model)
    shapes = TASK.group_shapes(config, "teacher")
    tokens = TASK.preprocess(config).tokenize(["a red circle", "a blue square and a green triangle"])
    with torch.no_grad(), capture_attention(model, groups["vision_self"] + groups["text_self"]) as capture:
        model(torch.randn(2, 3, 24, 24), tokens)
    for group in ("vision_self", "text_self"):
        shape = shapes[group]
        probs = capture.probs(groups[group][0])
        assert probs.shape == (2, shape.heads, shape.queries, shape.keys)
        assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)


def test_a_clip_student_of_the_same_shape_inherits_the_teachers_function():
    from amad.student_init.inherit import inherit

    config = model_config()
    torch.manual_seed(0)
    teacher = TASK.build_model(config, {}).eval()
    torch.manual_seed(1)
    student = TASK.build_model(config, {}).eval()
    inherit(teacher, student, TASK.module_groups, "uniform", "merge")
    pixels, tokens = torch.randn(2, 3, 24, 24), TASK.preprocess(config).tokenize(["a red circle", "two shapes"])
    with torch.no_grad():
        torch.testing.assert_close(student(pixels, tokens), teacher(pixels, tokens), atol=1e-5, rtol=0)


def test_shortest_side_resize_centre_crops_like_open_clip():
    from amad.data.preprocess import Preprocess

    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # a blue band on the left, cropped away
    cropped = Preprocess(10, 8, resize_mode="shortest").resized(image)
    squashed = Preprocess(10, 8).resized(image)
    assert cropped.shape == squashed.shape == (10, 10, 3)
    assert (cropped[..., 0] > 200).all() and (squashed[:, 0, 2] > 200).all()


# -- data sources -----------------------------------------------------------------------------------
def write_images(folder: Path, names):
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.new("RGB", (30 + index, 20), (index * 40, 0, 0)).save(folder / name)


def prepare(tmp_path, data: dict):
    raw = tiny_retrieval_params_dict()
    raw["data"].update(data)
    config = parse_params(raw).data
    return TASK.prepare(config, 0, tmp_path / "prepared", log=lambda _: None)


@pytest.mark.parametrize("source", ["csv", "coco", "karpathy"])
def test_every_source_format_prepares_the_same_records(tmp_path, source):
    source_dir = tmp_path / "source"
    write_images(source_dir / "photos", ["a.jpg", "b.jpg", "c.jpg"])
    splits = {"train": ["a.jpg", "b.jpg"], "val": ["c.jpg"], "test": ["c.jpg"]}
    captions = {"a.jpg": ["a dog", "a brown dog"], "b.jpg": ["a cat"], "c.jpg": ["two birds", "birds", "a sky"]}
    files = {}
    if source == "csv":
        for split, names in splits.items():
            rows = ["filepath\ttitle"] + [f"{n}\t{c}" for n in names for c in captions[n]]
            (source_dir / f"{split}.csv").write_text("\n".join(rows) + "\n")
            files[split] = f"{split}.csv"
    elif source == "coco":
        for split, names in splits.items():
            images = [{"id": i, "file_name": n} for i, n in enumerate(names)]
            notes = [{"image_id": i, "caption": c} for i, n in enumerate(names) for c in captions[n]]
            (source_dir / f"captions_{split}.json").write_text(json.dumps({"images": images, "annotations": notes}))
            files[split] = f"captions_{split}.json"
    else:
        images = [
            {
                "filename": n,
                "split": "restval" if split == "train" else split,
                "sentences": [{"raw": c} for c in captions[n]],
            }
            for split in ("train", "val")
            for n in splits[split]
        ]
        (source_dir / "dataset_x.json").write_text(json.dumps({"images": images}))
        files = dict.fromkeys(("train", "val", "test"), "dataset_x.json")
        images.append({"filename": "c.jpg", "split": "test", "sentences": [{"raw": c} for c in captions["c.jpg"]]})
        (source_dir / "dataset_x.json").write_text(json.dumps({"images": images}))
    summary = prepare(tmp_path, {"source": source, "path": str(source_dir), "images": "photos", "files": files})
    assert summary["splits"]["train"] == {"images": 2, "captions": 3}
    assert summary["splits"]["val"] == {"images": 1, "captions": 3}
    prepared = tmp_path / "prepared"
    config = model_config()
    dataset = TASK.dataset(prepared, "train", TASK.preprocess(config), {})
    assert dataset.captions == ["a dog", "a brown dog", "a cat"] and dataset.image_of_caption.tolist() == [0, 0, 1]
    assert dataset[2]["pixels"].shape == (3, 24, 24)  # any size and mode is resized
    assert TASK.split_sizes(prepared) == {"train": 3, "val": 3, "test": 3}


def test_a_csv_class_column_gives_every_split_the_data_sets_classes(tmp_path):
    source_dir = tmp_path / "source"
    write_images(source_dir, ["a.jpg", "b.jpg", "c.jpg"])
    rows = {"train": ["a.jpg\ta dog\tdog", "b.jpg\ta cat\tcat"], "val": ["c.jpg\tbirds\tbird"]}
    rows["test"] = rows["val"]
    for split, lines in rows.items():
        (source_dir / f"{split}.csv").write_text("filepath\ttitle\tclass\n" + "\n".join(lines) + "\n")
    csv = {"separator": "\t", "image_column": "filepath", "caption_column": "title", "class_column": "class"}
    summary = prepare(tmp_path, {"source": "csv", "path": str(source_dir), "images": ".", "csv": csv})
    assert summary["classes"] == ["bird", "cat", "dog"]
    test_set = TASK.dataset(tmp_path / "prepared", "test", TASK.preprocess(model_config()), {})
    assert test_set.classes == ["bird", "cat", "dog"] and test_set.labels.tolist() == [0]


def test_a_missing_or_broken_image_names_the_file_and_writes_nothing(tmp_path):
    source_dir = tmp_path / "source"
    write_images(source_dir, ["a.jpg"])
    (source_dir / "broken.jpg").write_text("not an image")
    for split, name in (("train", "a.jpg"), ("val", "missing.jpg"), ("test", "a.jpg")):
        (source_dir / f"{split}.csv").write_text(f"filepath\ttitle\n{name}\tsomething\n")
    data = {"source": "csv", "path": str(source_dir), "images": "."}
    with pytest.raises(DataError, match=r"val\.csv: val image 'missing\.jpg': image not found"):
        prepare(tmp_path, data)
    (source_dir / "val.csv").write_text("filepath\ttitle\nbroken.jpg\tsomething\n")
    with pytest.raises(DataError, match=r"val\.csv: val image 'broken\.jpg'.*cannot be decoded"):
        prepare(tmp_path, data)
    assert not (tmp_path / "prepared").exists()


# -- teacher -> student -> export -> predict -------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from amad.training.distributed import Runtime
    from amad.training.jobs import distill_student, train_teacher

    root = tmp_path_factory.mktemp("retrieval")
    raw = tiny_retrieval_params_dict()
    raw["distill"]["methods"] = ["logit", "one2one", "minilm", "amad", "hidden"]
    raw["distill"]["minilm"]["relation_heads"] = 2
    raw["distill"]["init"] = {"strategy": "inherit", "heads": "importance", "batches": 2}  # head dim 8 on both
    params = parse_params(raw)
    TASK.prepare(params.data, 0, root / "data", log=lambda _: None)
    cpu = Runtime(rank=0, world_size=1, device=torch.device("cpu"))
    common = {"checkpoint_dir": root / "checkpoints", "log_dir": None, "log": lambda _: None}
    train_teacher(params, root / "data", root / "models" / "teacher", cpu, **common)
    results = {
        method: distill_student(
            params,
            "h2",
            method,
            root / "models" / "teacher",
            root / "data",
            root / "models" / f"h2-{method}",
            cpu,
            **common,
        )
        for method in params.distill.methods
    }
    return root, params, results


def test_every_method_distils_a_clip_student(trained):
    _, _, results = trained
    assert results["logit"].final["train/output_kd"] > 0
    for method in ("one2one", "minilm", "amad", "hidden"):
        assert results[method].final["train/attention"] > 0, method
    for result in results.values():
        assert 0 <= result.final["val/mean_recall"] <= 1


def test_zero_shot_classifies_the_built_in_scenes_by_object_count_like_a_reference(trained):
    from amad.models import load_model
    from amad.models.evaluation import evaluate_model

    root, params, _ = trained
    loaded = load_model(root / "models" / "teacher")
    test_set = TASK.dataset(root / "data", "test", loaded.preprocess, loaded.state)
    counts = range(params.data.shapes.min_objects, params.data.shapes.max_objects + 1)
    assert test_set.classes == sorted(f"{count_name(n)} shapes" for n in counts)  # every count occurs
    for record in test_set.records:  # the class is the object count, which the counting caption states
        stated = [c.split(":")[0] for c in record.captions if c.endswith(tuple(SHAPES)) and ": " in c]
        assert all(record.label == count for count in stated), (record.label, record.captions)
    report = evaluate_model(TASK, loaded.model, test_set, settings=params.evaluate)
    assert "zero_shot_top1" not in evaluate_model(TASK, loaded.model, test_set)["breakdown"]
    model = loaded.model.eval()
    templates = params.evaluate.zero_shot.templates
    with torch.no_grad():
        images = torch.stack([model.encode_image(test_set.pixels(i)[None])[0] for i in range(len(test_set.records))])
        classes = []
        for name in test_set.classes:
            prompts = model.encode_text(loaded.preprocess.tokenize([t.replace("{}", name) for t in templates]))
            classes.append(torch.nn.functional.normalize(prompts, dim=-1).mean(0))
        scores = torch.nn.functional.normalize(images, dim=-1) @ torch.stack(classes).t()
    expected = [test_set.classes[i] for i in scores.argmax(1).tolist()]
    truth = [record.label for record in test_set.records]
    assert report["breakdown"]["zero_shot_top1"] == pytest.approx(np.mean([a == b for a, b in zip(expected, truth)]))
    assert report["breakdown"]["zero_shot_classes"] == len(test_set.classes)


def test_both_encoders_export_with_parity_and_benchmark_separately(trained):
    from amad.bench.latency import run_benchmark, speedups
    from amad.export.pipeline import export_model
    from amad.serving.repository import write_model_repository

    root, params, _ = trained
    config = replace(params.export, models=("teacher", "h2-amad"), parity_samples=24)
    for name in config.models:
        report = export_model(name, root / "models" / name, root / "exported" / name, root / "data", config, log=print)
        assert report["graphs"] == ["image", "text"]
        assert report["parity"]["max_abs_diff"] <= 1e-4 and report["parity"]["agreement"] == 1.0
        assert {"image.onnx", "text.onnx", "image.int8.onnx", "text.int8.onnx"} <= set(report["files"])
        assert 0 <= report["accuracy"]["onnx_int8"] <= 1
    names = write_model_repository(root / "exported" / "h2-amad", root / "triton", max_batch=8)
    assert names == ["amad_retrieval_image", "amad_retrieval_text"]
    image_config = (root / "triton" / "amad_retrieval_image" / "config.pbtxt").read_text()
    assert 'name: "pixels" data_type: TYPE_FP32 dims: [ 3, 24, 24 ]' in image_config
    assert 'name: "image_embedding" data_type: TYPE_FP32 dims: [ 16 ]' in image_config
    text_config = (root / "triton" / "amad_retrieval_text" / "config.pbtxt").read_text()
    assert 'name: "tokens" data_type: TYPE_INT64 dims: [ 16 ]' in text_config and "amad.data.preprocess" in text_config
    bench = replace(params.benchmark, batch_sizes=(1, 2), warmup=1, repeats=2, backends=("torch", "onnxruntime"))
    latency = run_benchmark(
        list(config.models),
        bench,
        data_dir=root / "data",
        models_dir=root / "models",
        exported_dir=root / "exported",
        log=lambda _: None,
    )
    assert set(latency["results"]) == {"teacher.image", "teacher.text", "h2-amad.image", "h2-amad.text"}
    assert {"h2-amad.image_vs_teacher_onnxruntime_b1", "h2-amad.text_vs_teacher_onnxruntime_b1"} <= set(
        speedups(latency)
    )


def test_predict_ranks_captions_and_images_from_the_model_and_its_export(trained, capsys):
    root, _, _ = trained
    images = sorted((root / "data" / "images").glob("test_*.png"))[:2]
    captions = ["a red circle", "two shapes: a blue square and a green triangle", "a yellow square"]
    rankings = []
    for source, extra in (("models/h2-amad", []), ("exported/h2-amad", []), ("exported/h2-amad", ["--int8"])):
        args = ["predict", "--model", str(root / source), *extra]
        for image in images:
            args += ["--image", str(image)]
        for caption in captions:
            args += ["--caption", caption]
        amad_main(args)
        ranked = json.loads(capsys.readouterr().out)
        assert [len(entry["captions"]) for entry in ranked["images"]] == [3, 3]
        assert [len(entry["images"]) for entry in ranked["captions"]] == [2, 2, 2]
        scores = [c["score"] for c in ranked["images"][0]["captions"]]
        assert scores == sorted(scores, reverse=True)
        rankings.append(ranked)
    onnx_scores = {c["caption"]: c["score"] for c in rankings[1]["images"][0]["captions"]}
    for entry in rankings[0]["images"][0]["captions"]:  # the ONNX export scores like the model
        assert onnx_scores[entry["caption"]] == pytest.approx(entry["score"], abs=1e-4)
    with pytest.raises(SystemExit):
        amad_main(["predict", "--model", str(root / "models" / "h2-amad"), "--image", str(images[0])])
    assert "--caption" in capsys.readouterr().err
