"""Where the pipeline's stages read and write, relative to the repository root where ``dvc`` runs.

One place for every path the stage scripts, the research drivers and the CLI's defaults use;
``dvc.yaml`` names the same paths (``tests/test_dvc_graph.py`` checks that each one below is
declared there).
"""

from __future__ import annotations

from pathlib import Path

PREPARED = Path("data/prepared")  # prepare's out: the task's prepared splits
TEACHER_SEQUENCES = Path("data/teacher_sequences")  # the teacher's outputs of the training inputs (sequence KD)
MODELS = Path("models")  # one folder per trained model
TEACHER = MODELS / "teacher"
EXPORTED = Path("exported")  # one export folder per exported model
DEPLOYED = Path("deployed")  # the one model to serve (stage deploy)
DEPLOYED_MODEL = DEPLOYED / "model"  # its export folder (what amad predict / amad serve take)
DEPLOYED_TRITON = DEPLOYED / "triton"  # its Triton model repository
DEPLOY_CHOICE = DEPLOYED / "choice.json"  # which model, by which rule, among which candidates
METRICS = Path("metrics")
EVAL = METRICS / "eval.json"  # the primary test metric of every model (a DVC metric)
TRAINING = METRICS / "training.json"  # how each model's training ended (an out: not a column of dvc exp show)
COST = METRICS / "cost.json"  # parameter count and GFLOPs of every model (static: not a DVC metric)
BREAKDOWN = METRICS / "breakdown.json"  # the task's per-group breakdown of the test metric
LATENCY = METRICS / "latency.json"  # speed-ups (a DVC metric)
LATENCY_FULL = METRICS / "latency_full.json"  # every timing the benchmark took
LATENCY_PLOT = METRICS / "latency_plot.json"  # rows of the accuracy-latency plot
SERVING = METRICS / "serving.json"  # the load test (a DVC metric)
REPORTS = Path("reports")
LOGS = Path("logs")  # dvclive folders, one per model
PARAMS_CHECKED = LOGS / "params_checked.txt"  # stage check's out: every stage depends on it
CHECKPOINTS = Path("checkpoints")  # git-ignored, outside every stage's outs: interrupted stages resume


def model_dir(name: str) -> Path:
    """The folder of the model ``name`` (``teacher`` or ``<student>-<method>``)."""
    return MODELS / name


def export_dir(name: str) -> Path:
    """The export folder of the model ``name``."""
    return EXPORTED / name
