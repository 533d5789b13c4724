"""Configuration: the typed-dataclass machinery (:mod:`~amad.config.typed`) and the whole
``params.yaml`` with its two tiers of checks (:mod:`~amad.config.params`). Torch-free: a section
that belongs to a subsystem lives with it (``amad/export/config.py``, ...)."""
