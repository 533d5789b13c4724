"""The ``vqa`` task (see :mod:`amad.tasks.vqa.task`)."""

from amad.tasks.vqa.task import VQATask

__all__ = ["VQATask"]
