"""Perplexity and R@3 of a Keras language model over a whole token stream.

Batch 1, the stream fed in chunks with the state carried across them, so the
figure is the one the device computes token by token:
    perplexity = exp(total NLL / number of predicted tokens)
    R@3        = share of positions whose true next token is among the 3
                 words a keyboard shows (`edge_runtime/metrics.py`, the code
                 the device uses too).
"""
import math

from edge_runtime.metrics import suggestion_hits
from keras_models.backend import tf
from keras_models.language_model import zero_states


def perplexity(mean_nll):
    """exp(mean NLL); inf rather than an OverflowError for a model gone wild."""
    return math.exp(mean_nll) if mean_nll < 700 else float("inf")


def make_eval_fn(model):
    @tf.function(reduce_retracing=True)
    def chunk(x, y, states):
        out = model([x] + states, training=False)
        logp = tf.nn.log_softmax(out[0][0])  # (T, V)
        idx = tf.stack([tf.range(tf.shape(y)[1]), y[0]], axis=1)
        nll = -tf.reduce_sum(tf.gather_nd(logp, idx))
        return nll, logp, out[1:]
    return chunk


def evaluate(model, stream, excluded, chunk_len=128, eval_fn=None):
    """{'perplexity', 'r_at_3', 'tokens', 'nll'} over `stream` (ids, <eos> first);
    `excluded`: the ids never suggested (`Vocab.never_suggested`)."""
    fn = eval_fn or make_eval_fn(model)
    states = [tf.constant(s) for s in zero_states(model, 1)]
    total_nll, total_hits, n = 0.0, 0, 0
    for start in range(0, len(stream) - 1, chunk_len):
        end = min(start + chunk_len, len(stream) - 1)
        x = tf.constant(stream[start:end][None, :], dtype=tf.int32)
        targets = stream[start + 1:end + 1]
        nll, logp, states = fn(x, tf.constant(targets[None, :], dtype=tf.int32), list(states))
        total_nll += float(nll)
        total_hits += int(suggestion_hits(logp.numpy(), targets, excluded).sum())
        n += end - start
    return dict(perplexity=perplexity(total_nll / n), r_at_3=total_hits / n, tokens=n, nll=total_nll)
