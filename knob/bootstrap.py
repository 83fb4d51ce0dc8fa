"""The difference between two models' keyboard figures on the same text, with
a 95% interval from a paired bootstrap over sentences.

Each figure (R@1, R@3, completion recall, KSR) is a ratio of two sums of
per-sentence counts (edge_runtime/keyboard_metrics.py: `COUNTS`, `RATIOS`).
A replicate draws the text's sentences with replacement, the same draw for
both models (paired: a hard sentence is hard for both, so its difficulty
cancels in the difference), and recomputes both ratios from the drawn
counts; the interval is the 2.5th and 97.5th percentiles of the replicates'
differences. Sentences, not tokens, are drawn because the tokens of one
sentence are not independent of each other.
"""
import numpy as np

from edge_runtime.keyboard_metrics import COUNTS, RATIOS

REPLICATES = 2000


def figure(name, sums):
    """A figure from summed counts (the last axis in COUNTS order); KSR is 1 - presses / baseline."""
    num, den = RATIOS[name]
    ratio = sums[..., COUNTS.index(num)] / sums[..., COUNTS.index(den)]
    return 1.0 - ratio if name == "ksr" else ratio


def paired(a, b, names=tuple(RATIOS), replicates=REPLICATES, seed=0):
    """{figure: {"a", "b", "difference", "low", "high"}} for b - a: `a` and `b` are the
    [sentences, len(COUNTS)] counts of two models on the same sentences (KeyboardScore.sentences)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != len(COUNTS):
        raise ValueError(f"paired counts must both be [sentences, {len(COUNTS)}], got {a.shape} and {b.shape}")
    if not np.array_equal(a[:, COUNTS.index("positions")], b[:, COUNTS.index("positions")]):
        raise ValueError("the two models were not scored on the same positions of the same sentences")
    n = len(a)
    # each replicate as the number of times each sentence is drawn: the sums are then one matrix product
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)
    ra, rb = weights @ a, weights @ b
    out = {}
    for name in names:
        fa, fb = figure(name, a.sum(0)), figure(name, b.sum(0))
        diffs = figure(name, rb) - figure(name, ra)
        low, high = np.percentile(diffs, [2.5, 97.5])
        out[name] = dict(a=round(float(fa), 4), b=round(float(fb), 4), difference=round(float(fb - fa), 4),
                         low=round(float(low), 4), high=round(float(high), 4))
    return out


def interval(c, name, replicates=REPLICATES, seed=0):
    """{"low", "high"}: the 95% interval of one model's figure, from its per-sentence counts `c`."""
    c = np.asarray(c, np.float64)
    weights = np.random.default_rng(seed).multinomial(len(c), np.full(len(c), 1.0 / len(c)), size=replicates)
    low, high = np.percentile(figure(name, weights @ c), [2.5, 97.5])
    return dict(low=round(float(low), 4), high=round(float(high), 4))


def verdict(d):
    """'better', 'worse' or 'tie' for b against a: a win only where the interval excludes zero."""
    return "better" if d["low"] > 0 else "worse" if d["high"] < 0 else "tie"
