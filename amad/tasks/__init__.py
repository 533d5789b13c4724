"""The task plug-ins: ``vqa`` and ``retrieval``, registered in :data:`amad.contracts.task.TASKS`
and loaded only when a run names them (``params.yaml: task``, a saved model's ``config.json``)."""
