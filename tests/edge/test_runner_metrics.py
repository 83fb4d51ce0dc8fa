"""evaluate_ids against a hand-worked example (a fake model, no LiteRT file)."""
import math

import numpy as np
import pytest

from edge_runtime.runner import evaluate_ids


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
        [0.1, 0.2, 0.3, 0.4, 0.0 + 1e-9],   # target 0: 4th most probable -> miss
        [0.1, 0.4, 0.3, 0.2, 1e-9],         # target 2: 2nd -> hit
        [0.25, 0.25, 0.25, 0.25, 1e-9],     # target 3: 4 tied at the top -> ties count against: miss
    ]
    r = evaluate_ids(Scripted(rows), [9, 0, 2, 3])
    assert r["tokens"] == 3
    assert r["perplexity"] == pytest.approx(math.exp(-(math.log(0.1) + math.log(0.3) + math.log(0.25)) / 3))
    assert r["r_at_3"] == pytest.approx(1 / 3)


def test_nothing_to_evaluate():
    with pytest.raises(ValueError):
        evaluate_ids(Scripted([]), [5])
