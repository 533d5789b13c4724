"""Tiny configurations and data shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

from amad.config import DataConfig, FusionConfig, ModelConfig, ShapesConfig, TextConfig, VisionConfig
from amad.data.prepare import prepare


def tiny_model_config(width: int = 32, heads: int = 4) -> ModelConfig:
    return ModelConfig(
        vision=VisionConfig(image_size=24, patch_size=6, width=width, depth=2, heads=heads),
        text=TextConfig(context_length=12, width=width, depth=1, heads=heads),
        fusion=FusionConfig(depth=1, heads=heads),
    )


def tiny_data_config(train: int = 64, val: int = 16, test: int = 16) -> DataConfig:
    return DataConfig(shapes=ShapesConfig(train=train, val=val, test=test, image_size=24, grid=4, max_objects=5))


def prepared_data(folder: Path, **sizes) -> Path:
    prepare(tiny_data_config(**sizes), seed=0, out=folder)
    return folder
