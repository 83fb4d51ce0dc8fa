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
SUGGEST_SLACK = 2  # a suggest signature returns k + 2 ids: <unk> and <eos> may be among them


def check_top_k(k, vocab_size, excluded):
    """ValueError unless 1 <= k <= the number of words a keyboard may show."""
    most = vocab_size - len(set(excluded))
    if not 1 <= k <= most:
        raise ValueError(f"--top-k must be between 1 and {most} (the vocabulary's {vocab_size} ids "
                         f"less <unk> and <eos>); got {k}")


def top_words(logp, k, excluded):
    """The ids a keyboard shows for log-probabilities `logp` [V], best first."""
    order = np.argsort(-np.asarray(logp), kind="stable")  # stable: ties keep the lower id first
    excluded = set(int(i) for i in excluded)
    return [int(i) for i in order[: k + len(excluded)] if int(i) not in excluded][:k]


def is_hit(logp, target, excluded, k=K):
    """Is `target` among `top_words(logp, k, excluded)`? The same ranking without
    sorting: a word comes before the target if it is more probable, or as
    probable with a lower id; a hit has fewer than k shown words before it.
    Two passes over V, so it costs a few microseconds a token on the device."""
    own = logp[target]
    if target in excluded or not np.isfinite(own):
        return False
    before = int(np.count_nonzero(logp > own)) + int(np.count_nonzero(logp[:target] == own))
    before -= sum(1 for e in excluded if logp[e] > own or (logp[e] == own and e < target))
    return before < k


def suggestion_hits(logp, targets, excluded, k=K):
    """`is_hit` for each row of `logp` [T, V] (or [V]) and its target."""
    excluded = tuple(int(e) for e in excluded)
    return np.array([is_hit(row, int(t), excluded, k) for row, t in zip(np.atleast_2d(logp), targets)], dtype=bool)
