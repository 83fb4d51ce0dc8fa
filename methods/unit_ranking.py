"""Filter pruning: which hidden units to keep (Tang & Lin's baselines).

Scores per unit group ("rnn_i", or "embedding" for the last layer of a
tied model, whose units are the embedding dimensions):
- random: a uniform draw (seeded);
- norm: L1 norm of the unit's candidate-gate row, the weights that make
  z (QRNN) or the cell candidate (LSTM, over [x_t; h_{t-1}]);
- activation: mean |h_i| over a pass of the training data.
The units with the highest scores are kept, `fraction` of each layer
(rounded, at least one: a layer is never removed).
Untied, the embedding dimensions are not filter-pruned (mask of ones).
"""
import numpy as np

RANKINGS = ("random", "norm", "activation")


def groups(spec):
    """[(group, layer index)] of the hidden-unit groups, in layer order."""
    n = len(spec["hidden_sizes"])
    return [("embedding" if spec["tie_embeddings"] and i == n - 1 else f"rnn_{i}", i) for i in range(n)]


def norm_scores(spec, weights):
    out = {}
    n_gates = 3 if spec["arch"] == "qrnn" else 4
    cand = 0 if spec["arch"] == "qrnn" else 2  # z block of [z|f|o]; c block of [i|f|c|o]
    for group, i in groups(spec):
        w = weights[f"rnn_{i}"]
        mats = [w[0]] if spec["arch"] == "qrnn" else [w[0], w[1]]
        out[group] = sum(np.abs(m.reshape(m.shape[0], n_gates, -1)[:, cand]).sum(axis=0) for m in mats)
    return out


def activation_scores(model, spec, batches):
    """Mean |h| per unit of each layer's output (before any gate), over `batches`
    of (B, T) token ids fed in order with the state carried."""
    from keras_models.backend import keras, tf
    from keras_models.language_model import zero_states
    names = [f"rnn_{i}" for i in range(len(spec["hidden_sizes"]))]
    probe = keras.Model(model.inputs, [model.get_layer(n).output[0] for n in names]
                        + list(model.outputs[1:]))
    run = tf.function(lambda inputs: probe(inputs, training=False), reduce_retracing=True)
    sums = [np.zeros(s) for s in spec["hidden_sizes"]]
    count = 0
    states = None
    for x in batches:
        states = states if states is not None else zero_states(model, x.shape[0])
        out = run([tf.constant(x)] + [tf.constant(s) for s in states])
        for k in range(len(names)):
            sums[k] += np.abs(out[k].numpy()).sum(axis=(0, 1))
        states = [s.numpy() for s in out[len(names):]]
        count += x.shape[0] * x.shape[1]
    return {group: sums[i] / max(count, 1) for group, i in groups(spec)}


def random_scores(spec, seed):
    rng = np.random.default_rng(seed)
    return {group: rng.random(spec["hidden_sizes"][i]) for group, i in groups(spec)}


def keep_masks(spec, scores, fraction, alive=None, warn=print):
    """{group: 0/1 mask} keeping round(fraction * size) units with the highest
    scores (at least one) among the `alive` ones (all, if not given)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction of units kept must be in (0, 1], got {fraction}")
    masks = {}
    for group, i in groups(spec):
        size = spec["hidden_sizes"][i]
        live = np.ones(size, bool) if alive is None else np.asarray(alive[group]) > 0
        n = int(round(fraction * size))
        if n < 1:
            warn(f"warning: keeping {fraction:g} of layer {i}'s {size} units would remove them all; keeping one")
            n = 1
        s = np.where(live, np.asarray(scores[group], np.float64), -np.inf)
        keep = np.argsort(-s, kind="stable")[:min(n, int(live.sum()))]
        mask = np.zeros(size, np.float32)
        mask[keep] = 1.0
        masks[group] = mask
    if not spec["tie_embeddings"]:
        masks["embedding"] = np.ones(spec["embed"], np.float32)
    return masks
