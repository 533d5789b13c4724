"""amad's decode loop against independent references: a step-by-step greedy loop and exhaustive
search over every output a tiny vocabulary allows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from amad.errors import ConfigError
from amad.generation.config import GenerationConfig
from amad.generation.search import SpecialTokens, generate, log_softmax

TOKENS = SpecialTokens(start=0, end=1, pad=2)
VOCAB = 5  # 0 start, 1 end, 2 pad, 3 and 4 words: the pad and start tokens are ordinary choices too


def table_logits(row_bias: np.ndarray, prefix: list[int]) -> np.ndarray:
    """A fixed function of the whole prefix (not only its last token), so search order matters."""
    rng = np.random.default_rng(abs(hash(tuple(prefix))) % (2**32))
    return rng.normal(size=VOCAB) * 2.0 + row_bias


class TableState:
    """A decoder state whose logits come from :func:`table_logits`; it counts rows as the loop selects them."""

    def __init__(self, biases: np.ndarray) -> None:
        self.biases = np.asarray(biases, dtype=np.float64)  # (N, V), one per input
        self.calls = 0

    def step(self, prefixes: np.ndarray) -> np.ndarray:
        assert prefixes.shape[0] == self.biases.shape[0]
        self.calls += 1
        return np.stack([table_logits(bias, prefix) for bias, prefix in zip(self.biases, prefixes.tolist())])

    def select(self, rows: np.ndarray) -> None:
        self.biases = self.biases[rows]


def config(**changes) -> GenerationConfig:
    settings = {"beams": 1, "max_length": 4, "min_length": 0, "length_penalty": 1.0, "no_repeat_ngram": 0}
    return GenerationConfig(**{**settings, **changes})


def biases(count: int) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(count, VOCAB))


def allowed(prefix: list[int], token: int, generated: int, settings: GenerationConfig) -> bool:
    """Whether the rules let ``token`` follow ``prefix`` (reference of amad's banned tokens)."""
    if token == TOKENS.end and generated < settings.min_length:
        return False
    n = settings.no_repeat_ngram
    if n:
        sequence = [*prefix, token]
        grams = [tuple(sequence[i : i + n]) for i in range(len(sequence) - n + 1)]
        if len(grams) != len(set(grams)):
            return False
    return True


def exhaustive_best(bias: np.ndarray, settings: GenerationConfig) -> tuple[float, list[int]]:
    """The best output by the ranking score, over every output the rules allow."""
    best = (-np.inf, [])
    for length in range(1, settings.max_length + 1):
        for words in itertools.product(range(VOCAB), repeat=length):
            if TOKENS.end in words[:-1] or (length < settings.max_length and words[-1] != TOKENS.end):
                continue  # an end token only last; shorter outputs must end
            prefix, total = [TOKENS.start], 0.0
            for generated, token in enumerate(words):
                if not allowed(prefix, token, generated, settings):
                    total = -np.inf
                    break
                total += log_softmax(table_logits(bias, prefix)[None])[0, token]
                prefix.append(token)
            score = total / length**settings.length_penalty
            output = list(words[:-1]) if words[-1] == TOKENS.end else list(words)
            if score > best[0]:
                best = (score, output)
    return best


def reference_greedy(bias: np.ndarray, settings: GenerationConfig) -> list[int]:
    prefix = [TOKENS.start]
    for generated in range(settings.max_length):
        logprobs = log_softmax(table_logits(bias, prefix)[None])[0]
        for token in range(VOCAB):
            if not allowed(prefix, token, generated, settings):
                logprobs[token] = -np.inf
        token = int(np.argmax(logprobs))
        if token == TOKENS.end:
            return prefix[1:]
        prefix.append(token)
    return prefix[1:]


@pytest.mark.parametrize("settings", [config(), config(min_length=2), config(no_repeat_ngram=2, max_length=5)])
def test_greedy_equals_a_step_by_step_loop(settings):
    rows = biases(6)
    result = generate(TableState(rows), len(rows), settings, TOKENS)
    assert result.tokens == [reference_greedy(bias, settings) for bias in rows]
    for output in result.tokens:
        assert TOKENS.end not in output and len(output) <= settings.max_length


@pytest.mark.parametrize(
    "settings",
    [
        config(beams=64, max_length=3),
        config(beams=64, max_length=3, length_penalty=0.0),
        config(beams=64, max_length=3, min_length=2),
        config(beams=64, max_length=3, no_repeat_ngram=1),
    ],
)
def test_beam_search_with_every_prefix_kept_finds_the_exhaustive_best(settings):
    rows = biases(12)
    result = generate(TableState(rows), len(rows), settings, TOKENS)
    for bias, output, score in zip(rows, result.tokens, result.scores):
        best_score, best_output = exhaustive_best(bias, settings)
        assert output == best_output
        assert score == pytest.approx(best_score, abs=1e-9)


def test_a_batch_decodes_as_its_inputs_would_one_by_one():
    rows = biases(4)
    for settings in (config(max_length=6), config(beams=3, max_length=6, no_repeat_ngram=2)):
        batched = generate(TableState(rows), len(rows), settings, TOKENS)
        for i, bias in enumerate(rows):
            single = generate(TableState(bias[None]), 1, settings, TOKENS)
            assert single.tokens[0] == batched.tokens[i]
            assert single.scores[0] == pytest.approx(batched.scores[i], abs=1e-12)
        assert generate(TableState(rows), len(rows), settings, TOKENS).tokens == batched.tokens  # deterministic


def test_beam_search_scores_at_least_greedy_and_respects_the_rules():
    rows = biases(8)
    settings = config(beams=4, max_length=6, min_length=3, no_repeat_ngram=2, length_penalty=0.0)
    greedy = generate(
        TableState(rows), len(rows), config(max_length=6, min_length=3, no_repeat_ngram=2, length_penalty=0.0), TOKENS
    )
    beam = generate(TableState(rows), len(rows), settings, TOKENS)
    assert np.all(beam.scores >= greedy.scores - 1e-12)
    for output in beam.tokens:
        assert len(output) >= 3
        grams = list(itertools.pairwise(output))
        assert len(grams) == len(set(grams))


def test_greedy_keeps_each_steps_logits_and_stops_when_every_input_has_ended():
    rows = biases(2)
    state = TableState(rows)
    result = generate(state, 2, config(max_length=30), TOKENS, keep_logits=True)
    assert result.steps == state.calls == len(result.step_logits) == min(30, max(map(len, result.tokens)) + 1)
    assert all(logits.shape == (2, VOCAB) for logits in result.step_logits)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"beams": 0}, "g.beams"),
        ({"min_length": 4}, "g.min_length"),
        ({"length_penalty": -1.0}, "g.length_penalty"),
        ({"no_repeat_ngram": -1}, "g.no_repeat_ngram"),
    ],
)
def test_bad_generation_settings_name_their_key(changes, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config(**changes).validate("g")


class ScriptedState:
    """The same logits for every row at a step, from a script of per-step logits."""

    def __init__(self, script: list[list[float]], rows: int) -> None:
        self.script, self.rows = script, rows

    def step(self, prefixes: np.ndarray) -> np.ndarray:
        return np.tile(np.asarray(self.script[prefixes.shape[1] - 1]), (prefixes.shape[0], 1))

    def select(self, rows: np.ndarray) -> None:
        self.rows = len(rows)


def test_an_end_token_ranked_below_the_first_still_finishes_a_hypothesis():
    # step 0: word 3 first, end second; afterwards every continuation is poor, so "" (end at once) wins
    script = [[-9.0, 1.0, -9.0, 2.0, -9.0], [0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    result = generate(ScriptedState(script, 1), 1, config(beams=2, max_length=3, length_penalty=0.0), TOKENS)
    assert result.tokens == [[]]
    assert result.scores[0] == pytest.approx(log_softmax(np.array([script[0]]))[0, TOKENS.end])
