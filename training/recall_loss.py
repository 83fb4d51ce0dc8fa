"""A loss term for what a keyboard counts (`--recall-loss BETA`): the true word among the 3 shown.

Cross-entropy asks the model for the whole distribution; R@3 asks only that the true word rank among
the three best words a keyboard may show. With a model too small for the whole distribution, a
term on that rank can move its capacity to where R@3 is decided (top-k losses: Lapin et al. 2015;
Berrada et al. 2018, whose smooth top-k loss helped most where labels are noisy, as next words are).

The term is the logistic loss of the true word's margin over the k-th best other word that can be
shown (never `<unk>`, `<eos>` or the corpus's blocked words):

    term = softplus(s_(k) - s_y),   s_(k) = the k-th largest logit other than y's, shown words only

It is log(2) at a tie and falls towards 0 as y climbs above the k-th rival; only y's logit and the
rival's get its gradient. Positions whose true word is never shown add nothing: no rank shows them.
The loss is CE + beta * (the term's mean over all positions).

Measured on PTB's 2x400 against its control (docs/benchmarks.md, "A loss term for R@3"): a tie on
every keyboard measure at beta 0.5, worse on all of them at 2; perplexity worse at both.
"""
import numpy as np

from keras_models.backend import tf

K = 3  # the words a keyboard shows, as R@3 counts them (edge_runtime/keyboard_metrics.py)


def blocked_mask(vocab):
    """float32 [V]: 1 for the ids a keyboard never shows (edge_runtime/keyboard.py's own set)."""
    from edge_runtime.keyboard import HIDDEN
    m = np.zeros(len(vocab), np.float32)
    m[list(vocab.never_suggested) + [vocab.index[w] for w in HIDDEN if w in vocab.index]] = 1.0
    return m


def margin_term(logits, labels, blocked, k=K):
    """The term at every position, [...]: softplus(k-th rival - true), 0 where the true word is blocked.
    logits [..., V]; labels [...] int; blocked [V] float (1 = never shown)."""
    labels = tf.cast(labels, tf.int32)
    v = tf.shape(logits)[-1]
    blocked = tf.cast(blocked, logits.dtype)
    true = tf.one_hot(labels, v, dtype=logits.dtype)
    # the rivals: shown words other than y (a large negative, not -inf, keeps 0 * inf out of the gradient)
    rivals = logits - 1e9 * tf.minimum(blocked + true, 1.0)
    kth = tf.math.top_k(rivals, k).values[..., k - 1]
    s_y = tf.reduce_sum(logits * true, -1)
    shown = 1.0 - tf.gather(blocked, labels)
    return tf.nn.softplus(kth - s_y) * shown
