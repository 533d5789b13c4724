"""Task models: vision tower + text tower + fusion + task head."""

from amad.models.io import LoadedModel, load_model, save_model
from amad.models.vqa import ATTENTION_GROUPS, VQAModel

__all__ = ["ATTENTION_GROUPS", "LoadedModel", "VQAModel", "load_model", "save_model"]
