"""Saving and loading the models of any task (the models themselves are built by their task)."""

from amad.models.io import LoadedModel, load_model, save_model

__all__ = ["LoadedModel", "load_model", "save_model"]
