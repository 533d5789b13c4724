"""Tasks as plug-ins: ``TASKS`` maps ``params.yaml: task`` (and a saved model's ``task``) to its class.

Built in: ``vqa``, ``retrieval``. A new task is a :class:`~amad.tasks.base.Task` subclass decorated with
``@TASKS.register("name")``, imported here (or by the code that uses it).
"""

from amad.registry import Registry

TASKS: Registry = Registry("task")

from amad.tasks import retrieval, vqa  # noqa: E402  (registration)


def get_task(name: str, key: str = "task"):
    """An instance of the task registered as ``name`` (ConfigError naming ``key`` if there is none)."""
    return TASKS.get(name, key)()


__all__ = ["TASKS", "get_task", "retrieval", "vqa"]
