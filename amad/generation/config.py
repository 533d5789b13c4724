"""How a generative task decodes: the ``generation`` settings of its ``evaluate`` section.

No defaults here: ``params.yaml`` holds every value.
"""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import require


@dataclass(frozen=True)
class GenerationConfig:
    """Greedy (``beams: 1``) or beam search.

    Attributes:
        beams: hypotheses kept per input; 1 is greedy decoding.
        max_length: the most tokens generated per input, the end token included.
        min_length: the fewest tokens before the end token may be chosen.
        length_penalty: a finished hypothesis ranks by ``sum log p / length ** length_penalty``
            (0: raw sum, which favours short outputs; 1: mean log-probability).
        no_repeat_ngram: no n-gram of this size occurs twice in one output (0: off).
    """

    beams: int
    max_length: int
    min_length: int
    length_penalty: float
    no_repeat_ngram: int

    def validate(self, key: str) -> None:
        require(self.beams >= 1, f"{key}.beams", f"must be >= 1, got {self.beams}")
        require(self.max_length >= 1, f"{key}.max_length", f"must be >= 1, got {self.max_length}")
        require(
            0 <= self.min_length < self.max_length,
            f"{key}.min_length",
            f"must be >= 0 and below {key}.max_length ({self.max_length}), got {self.min_length}",
        )
        require(self.length_penalty >= 0, f"{key}.length_penalty", f"must be >= 0, got {self.length_penalty}")
        require(
            self.no_repeat_ngram >= 0, f"{key}.no_repeat_ngram", f"must be >= 0 (0: off), got {self.no_repeat_ngram}"
        )


def greedy(max_length: int) -> GenerationConfig:
    """Plain greedy decoding up to ``max_length`` tokens (validation during training, parity checks)."""
    return GenerationConfig(beams=1, max_length=max_length, min_length=0, length_penalty=0.0, no_repeat_ngram=0)


def fixed_length(length: int) -> GenerationConfig:
    """Greedy decoding of exactly ``length`` tokens (the end token held back to the last step): what
    the benchmark times, so that every model does the same work whatever it would write."""
    return GenerationConfig(beams=1, max_length=length, min_length=length - 1, length_penalty=0.0, no_repeat_ngram=0)
