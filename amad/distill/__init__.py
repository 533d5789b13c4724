"""Distillation's task-neutral core: capturing attention from unmodified models
(:mod:`~amad.distill.capture`), which teacher layer teaches which student layer
(:mod:`~amad.distill.layer_mapping`) and the objective that sums the method terms
(:mod:`~amad.distill.objective`). The training loop is :mod:`amad.training.distillation`."""
