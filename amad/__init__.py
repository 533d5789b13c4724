"""amad: Attention Map Alignment Distillation for vision-language transformers."""

__version__ = "0.1.0"
