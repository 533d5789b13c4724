"""Triton model names of an exported amad graph (shared by the repository writer, the PyTriton
server command, the client and the load test)."""


def triton_model_name(task: str, graph: str) -> str:
    """``amad_<task>`` for a one-graph model (graph ``model``: ``amad_vqa``); ``amad_<task>_<graph>``
    otherwise (``amad_retrieval_image``)."""
    return f"amad_{task}" if graph == "model" else f"amad_{task}_{graph}"
