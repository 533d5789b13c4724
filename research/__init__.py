"""Research drivers and measurement tools that use the amad library (run from a checkout, not installed):
multi-seed studies, tuned method comparisons, the loss benchmark, the GPU check, the question-only
baseline. Each runs as ``python -m research.<name>``."""
