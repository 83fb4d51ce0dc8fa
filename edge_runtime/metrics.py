"""What a keyboard shows, and R@3, the metric that scores it: one definition,
used by `predict.py suggest`, by the device's evaluation and by Keras'.

A keyboard shows the `k` most probable *words*: `<unk>` and `<eos>` are never
shown (`excluded`). Among equal probabilities, common in int8 outputs, the
lower id (the more frequent word) comes first. R@3 is the share of
positions whose true next token is among the three words `top_words` shows,
so a position whose next token is `<unk>` or `<eos>` is always a miss.
"""
import numpy as np

K = 3


def top_words(logp, k, excluded):
    """The ids a keyboard shows for log-probabilities `logp` [V], best first."""
    order = np.argsort(-np.asarray(logp), kind="stable")  # stable: ties keep the lower id first
    excluded = set(int(i) for i in excluded)
    return [int(i) for i in order[: k + len(excluded)] if int(i) not in excluded][:k]


def suggestion_hits(logp, targets, excluded, k=K):
    """Per row of `logp` [T, V] (or [V]): is `targets[t]` among `top_words(logp[t], k, excluded)`?

    The same ranking without sorting: a word comes before the target if it is
    more probable, or as probable with a lower id; a hit has fewer than k
    shown words before it."""
    logp = np.atleast_2d(np.asarray(logp))
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    own = logp[np.arange(len(targets)), targets][:, None]
    ids = np.arange(logp.shape[1])
    before = (logp > own) | ((logp == own) & (ids < targets[:, None]))
    excluded = list(excluded)
    if excluded:
        before[:, excluded] = False
    return (before.sum(axis=1) < k) & ~np.isin(targets, excluded) & np.isfinite(own[:, 0])
