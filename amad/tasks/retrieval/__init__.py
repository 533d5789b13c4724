"""The ``retrieval`` task: CLIP-style image-text retrieval (see :mod:`amad.tasks.retrieval.task`)."""
