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


def _counts(*arrays):
    out = [np.asarray(x, np.float64) for x in arrays]
    if any(x.shape != out[0].shape for x in out) or out[0].ndim != 2 or out[0].shape[1] != len(COUNTS):
        raise ValueError(f"paired counts must all be [sentences, {len(COUNTS)}], got "
                         f"{' and '.join(str(x.shape) for x in out)}")
    positions = COUNTS.index("positions")
    if any(not np.array_equal(out[0][:, positions], x[:, positions]) for x in out[1:]):
        raise ValueError("the two models were not scored on the same positions of the same sentences")
    return out


def _draws(n, replicates, seed):
    """Each replicate as the number of times each sentence is drawn: the sums are then one matrix product."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def _summary(diffs, **values):
    low, high = np.percentile(diffs, [2.5, 97.5])
    return dict({k: round(float(v), 4) for k, v in values.items()}, low=round(float(low), 4),
                high=round(float(high), 4))


def paired(a, b, names=tuple(RATIOS), replicates=REPLICATES, seed=0):
    """{figure: {"a", "b", "difference", "low", "high"}} for b - a: `a` and `b` are the
    [sentences, len(COUNTS)] counts of two models on the same sentences (KeyboardScore.sentences)."""
    a, b = _counts(a, b)
    weights = _draws(len(a), replicates, seed)
    ra, rb = weights @ a, weights @ b
    out = {}
    for name in names:
        fa, fb = figure(name, a.sum(0)), figure(name, b.sum(0))
        out[name] = _summary(figure(name, rb) - figure(name, ra), a=fa, b=fb, difference=fb - fa)
    return out


def change(a, b, a2, b2, names=tuple(RATIOS), replicates=REPLICATES, seed=0):
    """{figure: {"before", "after", "difference", "low", "high"}}: how b's lead over a moved, from
    (b - a) to (b2 - a2), all four scored on the same sentences (the same two models, say, without
    and then with something added to both); one draw of sentences for all four."""
    a, b, a2, b2 = _counts(a, b, a2, b2)
    weights = _draws(len(a), replicates, seed)
    r = [weights @ x for x in (a, b, a2, b2)]
    out = {}
    for name in names:
        f = [figure(name, x.sum(0)) for x in (a, b, a2, b2)]
        fr = [figure(name, x) for x in r]
        out[name] = _summary((fr[3] - fr[2]) - (fr[1] - fr[0]), before=f[1] - f[0], after=f[3] - f[2],
                             difference=(f[3] - f[2]) - (f[1] - f[0]))
    return out


def interval(c, name, replicates=REPLICATES, seed=0):
    """{"low", "high"}: the 95% interval of one model's figure, from its per-sentence counts `c`."""
    c = np.asarray(c, np.float64)
    weights = _draws(len(c), replicates, seed)
    low, high = np.percentile(figure(name, weights @ c), [2.5, 97.5])
    return dict(low=round(float(low), 4), high=round(float(high), 4))


def verdict(d):
    """'better', 'worse' or 'tie' for b against a: a win only where the interval excludes zero."""
    return "better" if d["low"] > 0 else "worse" if d["high"] < 0 else "tie"
