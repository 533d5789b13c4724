"""DVC stage `teacher_sequences`: params `task`, `distill.sequence.generation` + models/teacher +
data/prepared -> data/teacher_sequences/ (the teacher's output of every training input, decoded once
for the `sequence` method; for a task that is not generative, a summary saying so).
"""

from amad.config.params import Params
from amad.pipeline import paths
from amad.pipeline.stage import run_stage
from amad.training.sequences import write_teacher_sequences


def main(params: Params) -> None:
    write_teacher_sequences(params, paths.TEACHER, paths.PREPARED, paths.TEACHER_SEQUENCES)


if __name__ == "__main__":
    run_stage(main)
