"""The distillation methods' declarations (torch-free): settings, needs and checks of each method.

Built in: ``none`` (ground truth only), ``logit`` (output distillation), ``one2one``, ``minilm``,
``hidden`` and ``amad``, registered in :data:`amad.contracts.method.METHODS` and loaded when a run
names them. A method's trainable term lives in :mod:`amad.methods.terms`. A new method is a
:class:`~amad.contracts.method.Method` subclass decorated with ``@METHODS.register("name")`` whose
``build`` returns its :class:`~amad.contracts.method_term.MethodTerm`.
"""
