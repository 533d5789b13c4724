"""Tiny configurations and data shared by the integration tests, built from the default params.yaml
(the one place where defaults live) with small overrides."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from amad.config.params import Params, parse_params
from amad.tasks.vqa.config import DataConfig, ModelConfig
from amad.tasks.vqa.task import VQATask

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
TASK = VQATask()


def tiny_model_dict(width: int = 32, heads: int = 4) -> dict:
    vision = {"timm_name": None, "timm_weights": None, "image_size": 24, "patch_size": 6}
    return {
        "vision": {**vision, "width": width, "depth": 2, "heads": heads, "mlp_ratio": 4.0},
        "text": {
            "context_length": 12,
            "width": width,
            "depth": 1,
            "heads": heads,
            "mlp_ratio": 4.0,
            "hf_model": None,
            "hf_pretrained": False,
        },
        "fusion": {"depth": 1, "heads": heads, "mlp_ratio": 4.0},
        "pretrained": None,
    }


TINY_SHAPES = {"train": 64, "val": 16, "test": 16, "image_size": 24, "grid": 4, "min_objects": 2, "max_objects": 5}


def _tiny(profile: dict, shapes: dict, teacher: dict, student: dict, sections: dict) -> dict:
    """``profile`` with tiny data, ``teacher``, one student ``h2``, one-epoch training and ``sections``."""
    params = copy.deepcopy(profile)
    params["data"]["path"] = str(ROOT / "data" / "source")
    params["data"]["shapes"] = dict(shapes)
    params["teacher"] = teacher
    params["students"] = {"h2": student}
    optim = {**params["train"], "epochs": 1, "batch_size": 16, "lr": 0.001}
    params["train"] = optim
    params["distill"]["train"] = dict(optim)
    params["export"]["models"] = ["teacher"]
    params["deploy"]["model"] = None
    params["export"]["int8_max_drop"] = 1.0  # tiny random models: keep an int8 file whatever it costs them
    params["serving"] = {"concurrency": [1, 2], "duration_s": 0.5, "timeout_s": 5.0, "max_requests": 1000}
    params.update(sections)
    return params


def tiny_params_dict(**sections) -> dict:
    """The default params.yaml with tiny data, teacher (width 32, 4 heads) and one student ``h2``."""
    return _tiny(DEFAULT_PARAMS, TINY_SHAPES, tiny_model_dict(), tiny_model_dict(width=16, heads=2), sections)


def tiny_params(**sections) -> Params:
    return parse_params(tiny_params_dict(**sections))


def tiny_model_config(width: int = 32, heads: int = 4) -> ModelConfig:
    return tiny_params(students={"s": tiny_model_dict(width, heads)}).students["s"]


def tiny_data_config(train: int = 64, val: int = 16, test: int = 16) -> DataConfig:
    params = tiny_params_dict()
    params["data"]["shapes"].update(train=train, val=val, test=test)
    return parse_params(params).data


def prepared_data(folder: Path, **sizes) -> Path:
    TASK.prepare(tiny_data_config(**sizes), 0, folder, log=lambda _: None)
    return folder


RETRIEVAL_PARAMS = yaml.safe_load((ROOT / "profiles" / "retrieval.yaml").read_text())
TINY_CAPTION_SHAPES = {**TINY_SHAPES, "train": 24, "val": 8, "test": 8, "max_objects": 3, "captions": 3}


def tiny_clip_dict(width: int = 32, heads: int = 4) -> dict:
    return {
        "architecture": None,
        "checkpoint": None,
        "embed_dim": 16,
        "vision": {"image_size": 24, "patch_size": 6, "width": width, "depth": 2, "heads": heads, "mlp_ratio": 2.0},
        "text": {
            "context_length": 16,
            "width": width,
            "depth": 1,
            "heads": heads,
            "mlp_ratio": 2.0,
            "hf_model": None,
            "hf_pretrained": False,
        },
        "frozen": {"vision": False, "text": False},
        "pretrained": None,
    }


def tiny_retrieval_params_dict(**sections) -> dict:
    """profiles/retrieval.yaml with tiny data, a tiny CLIP teacher (width 32, 4 heads) and one student ``h2``."""
    teacher, student = tiny_clip_dict(), tiny_clip_dict(width=16, heads=2)
    return _tiny(RETRIEVAL_PARAMS, TINY_CAPTION_SHAPES, teacher, student, sections)


def readme_commands(prefix: str) -> list[str]:
    """The lines of the README's ``bash`` blocks that start with ``prefix``, as written (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:]
    lines = [line for block in blocks for line in block.split("```")[0].splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line.startswith(prefix)]


def readme_inputs(folder: Path) -> None:
    """The files the README's predict commands name (scene.png, a.jpg, b.jpg, questions.jsonl), in ``folder``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("scene.png", "a.jpg", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(folder / name)
    rows = [{"id": "q1", "image": "scene.png", "question": "what color is the circle?"}]
    (folder / "questions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


CAPTIONING_PARAMS = yaml.safe_load((ROOT / "profiles" / "captioning.yaml").read_text())


def tiny_coca_dict(width: int = 32, heads: int = 4, context: int = 24) -> dict:
    return {
        "architecture": None,
        "checkpoint": None,
        "embed_dim": width,
        "vision": {
            "image_size": 24,
            "patch_size": 6,
            "width": width,
            "depth": 1,
            "heads": heads,
            "mlp_ratio": 2.0,
            "pooler_queries": 5,
            "pooler_heads": heads,
        },
        "text": {"context_length": context, "depth": 1, "heads": heads, "mlp_ratio": 2.0},
        "decoder": {"depth": 1, "heads": heads, "mlp_ratio": 2.0},
        "loss": {"caption": 1.0, "contrastive": 0.0},
        "pretrained": None,
    }


def tiny_captioning_params_dict(**sections) -> dict:
    """profiles/captioning.yaml with tiny data, a tiny CoCa teacher (width 32, 4 heads) and one student ``h2``."""
    context = CAPTIONING_PARAMS["data"]["context_length"]
    teacher, student = tiny_coca_dict(context=context), tiny_coca_dict(width=16, heads=2, context=context)
    params = _tiny(CAPTIONING_PARAMS, TINY_CAPTION_SHAPES, teacher, student, sections)
    params["evaluate"]["generation"] = {**params["evaluate"]["generation"], "max_length": 12}
    return params


TRANSLATION_PARAMS = yaml.safe_load((ROOT / "profiles" / "translation.yaml").read_text())
TINY_TRANSLATION_SHAPES = {**TINY_SHAPES, "train": 48, "val": 8, "test": 8, "max_objects": 3, "hypernym": 0.5}


def tiny_translation_model_dict(width: int = 32, heads: int = 4, context: int = 40, image: bool = True) -> dict:
    vision = {
        "patch_size": 6,
        "width": width,
        "depth": 1,
        "heads": heads,
        "mlp_ratio": 2.0,
        "pooler_queries": 5,
        "pooler_heads": heads,
    }
    return {
        "embed_dim": width,
        "context_length": context,
        "image_size": 24,
        "vision": vision if image else None,
        "source": {
            "depth": 1,
            "heads": heads,
            "mlp_ratio": 2.0,
            "width": width,
            "hf_model": None,
            "hf_pretrained": False,
        },
        "decoder": {"depth": 1, "heads": heads, "mlp_ratio": 2.0},
        "pretrained": None,
    }


def tiny_translation_params_dict(**sections) -> dict:
    """profiles/translation.yaml with tiny data, a tiny teacher (width 32, 4 heads), a student ``h2`` and
    the text-only student ``textonly``."""
    context = TRANSLATION_PARAMS["data"]["context_length"]
    teacher = tiny_translation_model_dict(context=context)
    student = tiny_translation_model_dict(width=16, heads=2, context=context)
    params = _tiny(TRANSLATION_PARAMS, TINY_TRANSLATION_SHAPES, teacher, student, sections)
    params["students"]["textonly"] = tiny_translation_model_dict(width=16, heads=2, context=context, image=False)
    params["data"]["vocabulary"] = {**params["data"]["vocabulary"], "size": 300}
    params["data"]["max_truncated"] = 1.0  # 48 sentences learn few merges: many are cut, as they may be
    params["evaluate"]["generation"] = {**params["evaluate"]["generation"], "max_length": 12}
    return params
