"""The trainable terms of the built-in distillation methods (``nn.Module``; their declarations are
in :mod:`amad.methods`)."""
