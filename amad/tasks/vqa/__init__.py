"""The ``vqa`` task (see :mod:`amad.tasks.vqa.task`)."""
