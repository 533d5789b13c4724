"""The ``retrieval`` task: CLIP-style image-text retrieval (see :mod:`amad.tasks.retrieval.task`)."""

from amad.tasks.retrieval import task  # noqa: F401  (registration)
