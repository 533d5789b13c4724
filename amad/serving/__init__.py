"""Serving an exported model (a Triton server on the loopback address) and load-testing it."""
