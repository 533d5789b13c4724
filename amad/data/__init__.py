"""Data helpers shared by the tasks: the synthetic shapes generator, path and image checks."""
