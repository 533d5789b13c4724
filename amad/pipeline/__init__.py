"""The DVC pipeline's shared plumbing: where each stage reads and writes
(:mod:`~amad.pipeline.paths`) and how a stage script runs (:mod:`~amad.pipeline.stage`)."""
