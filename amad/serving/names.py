"""Triton model names of an exported amad graph (shared by the repository writer, the PyTriton
server, the client and the load test; imports nothing, and neither do ``amad`` and
``amad.serving``, so the PyTriton venv, which has no torch, can import it from the source tree)."""


def triton_model_name(task: str, graph: str) -> str:
    """``amad_vqa`` for VQA's one graph; ``amad_<task>_<graph>`` otherwise (``amad_retrieval_image``)."""
    return "amad_vqa" if task == "vqa" else f"amad_{task}_{graph}"
