"""R@3 and perplexity against hand-worked examples (a fake model, no LiteRT
file), and R@3 against what `suggest` shows."""
import math

import numpy as np
import pytest

from edge_runtime.metrics import suggestion_hits, top_words
from edge_runtime.runner import evaluate_ids

EOS, UNK = 0, 1  # ids never suggested, as in every vocabulary edgelm builds


class Scripted:
    """Returns preset log-probabilities, one row per step."""

    def __init__(self, rows):
        self.rows = [np.log(np.asarray(r, dtype=np.float64)) for r in rows]

    def reset(self):
        self.i = 0

    def step(self, token):
        self.i += 1
        return self.rows[self.i - 1]


def test_perplexity_and_r_at_3_hand_worked():
    rows = [
        # ids:  eos   unk   2     3     4     5
        [0.30, 0.02, 0.20, 0.25, 0.15, 0.08],  # target 4: 4th of all, 3rd of the words shown -> hit
        [0.02, 0.40, 0.30, 0.10, 0.10, 0.08],  # target 1 (<unk>): top of all, never shown -> miss
        [0.02, 0.02, 0.24, 0.24, 0.24, 0.24],  # target 5: tied, after 2, 3, 4 (lower ids first) -> miss
        [0.02, 0.02, 0.24, 0.24, 0.24, 0.24],  # target 4: tied, third -> hit
        [0.40, 0.02, 0.20, 0.18, 0.12, 0.08],  # target 0 (<eos>): never shown -> miss
    ]
    r = evaluate_ids(Scripted(rows), [9, 4, 1, 5, 4, 0], (UNK, EOS))
    assert r["tokens"] == 5
    expected_nll = -sum(math.log(p) for p in (0.15, 0.40, 0.24, 0.24, 0.40))
    assert r["perplexity"] == pytest.approx(math.exp(expected_nll / 5))
    assert r["r_at_3"] == pytest.approx(2 / 5)


def test_a_hit_is_exactly_a_word_suggest_shows():
    rng = np.random.default_rng(0)
    logp = np.round(rng.normal(size=(40, 12)), 1)  # coarse values: many ties, as in int8 outputs
    for excluded in ((), (0, 1), (3, 7)):
        hits = np.stack([suggestion_hits(logp, np.full(40, t), excluded) for t in range(12)], axis=1)
        shown = np.array([[t in top_words(row, 3, excluded) for t in range(12)] for row in logp])
        np.testing.assert_array_equal(hits, shown)
        assert (hits.sum(axis=1) == 3).all()  # exactly the three shown words


def test_top_words_hand_worked():
    assert top_words(np.log([0.3, 0.02, 0.2, 0.25, 0.15]), 3, (0, 1)) == [3, 2, 4]
    assert top_words(np.zeros(5), 2, (1,)) == [0, 2]


def test_nothing_to_evaluate():
    with pytest.raises(ValueError):
        evaluate_ids(Scripted([]), [5], (UNK, EOS))
