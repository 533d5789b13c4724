"""The latency benchmark of exported models (the `benchmark` stage) and its timing helpers."""
