"""Distillation methods as plug-ins: ``METHODS`` maps a ``distill.methods`` name to its class.

Built in: ``none`` (ground truth only), ``logit`` (output distillation), ``one2one``, ``minilm``,
``hidden`` and ``amad``. A new method is one file with a :class:`~amad.methods.base.Method`
subclass decorated with ``@METHODS.register("name")``, imported here (or by the code that uses it).
"""

from amad.registry import Registry

METHODS: Registry = Registry("distillation method")

from amad.methods import amad, hidden, logit, minilm, none, one2one  # noqa: E402  (registration)

__all__ = ["METHODS", "amad", "hidden", "logit", "minilm", "none", "one2one"]
