"""Developer tools for this repository (run from a checkout): ``python tools/dvc_deps.py``."""
