"""The contracts the plug-ins implement and the registries they register in.

This package sits below every plug-in (tasks, methods) and below the code that uses them; it
imports none of them (import-linter checks it, see ``pyproject.toml``). Its modules but
:mod:`amad.contracts.method_term` import no torch, timm or open_clip, so ``params.yaml`` can be
checked without loading them.
"""
