"""Training for the int4 file (`--int4-aware`): every step runs on the weights the converter's int4
file will hold, and its gradient updates the float weights (quantization-aware training with the
straight-through estimator, Jacob et al. 2018; Bengio et al. 2013).

The rounding is the converter's own (convert/int4.py): symmetric int4 per output channel, levels
-8..7, the scale of each channel its largest weight or OCTAV's clip, whichever is smaller, over 7.
OCTAV's clip is the quantizer's Newton iteration (Sakr et al. 2022) from 1, at most 10 steps,
stopped once no channel moves (ai-edge-quantizer 0.10's `_guess_clipping_with_octav`), and floored
at 1e-9 as the converter floors it. Computed again at every step from the float weights, it is
the clip the converter will compute from the trained model, so the file holds the weights the
steps saw (tests/test_int4_aware.py reads them back out of the file).

Which matrices: each one a FULLY_CONNECTED or EMBEDDING_LOOKUP of the file reads, with its channel
axis: a Keras kernel [in, out] is the file's [out, in], one channel a column; an embedding table
[V, E] is looked up and (tied) multiplied by rows, one channel a row. The second factor of a
low-rank tied embedding is read both ways (the lookup's [E, r], the output's [r, E]), and an
odd-width table is looked up wrongly in int4: the converter keeps both in int8 (convert/int4.py),
so they stay float here.
"""
import contextlib
import math

from keras_models.backend import tf

QMIN, QMAX = -8.0, 7.0
BITS = 4
OCTAV_STEPS = 10
FLOOR = 1e-9  # the quantizer's least bound, and the converter's least clip
TABLES = {"embeddings", "embeddings_a"}  # looked up by rows (keras_models: Embedding, LowRankEmbedding)
BOTH_WAYS = {"embeddings_b"}


def _short(v):
    return v.name.split("/")[-1].split(":")[0]


def matrices(model):
    """[(variable, axes reduced to one scale per channel)] of the model's matrices the int4 file holds."""
    out, seen = [], set()
    for v in model.trainable_variables:
        name = _short(v)
        if id(v) in seen or v.shape.rank != 2 or name in BOTH_WAYS:
            continue
        seen.add(id(v))
        if name in TABLES:
            if v.shape[1] % 2:  # the converter keeps an odd-width table in int8
                continue
            out.append((v, (1,)))
        else:
            out.append((v, (0,)))
    return out


def octav_clip(w, axes):
    """Each channel's clip, as ai-edge-quantizer's OCTAV computes it (numpy there, float32 both)."""
    count = float(math.prod(int(w.shape[a]) for a in axes))
    s = 4.0 ** (-BITS) / 3.0
    guess = tf.ones([1 if k in axes else d for k, d in enumerate(w.shape)], tf.float32)
    stopped = tf.constant(False)
    for _ in range(OCTAV_STEPS):
        above, below = w >= guess, w <= -guess
        total = tf.reduce_sum(tf.where(above, w, 0.0), axes, keepdims=True) - \
            tf.reduce_sum(tf.where(below, w, 0.0), axes, keepdims=True)
        n = tf.reduce_sum(tf.cast(above, tf.float32), axes, keepdims=True) + \
            tf.reduce_sum(tf.cast(below, tf.float32), axes, keepdims=True)
        new = total / (n * (1.0 - s) + s * count)
        close = tf.reduce_all(tf.abs(guess - new) <= 1e-8 + 1e-5 * tf.abs(new))  # np.allclose
        guess = tf.where(stopped, guess, new)
        stopped = tf.logical_or(stopped, close)
    return tf.maximum(guess, FLOOR)


def rounded(w, axes):
    """`w` as the int4 file holds it: levels times each channel's scale."""
    bound = tf.maximum(tf.reduce_max(tf.abs(w), axes, keepdims=True), FLOOR)
    scale = tf.minimum(bound, octav_clip(w, axes)) / QMAX
    return tf.clip_by_value(tf.round(w / scale), QMIN, QMAX) * scale  # tf.round: half to even, as np.rint


def hooks(model, variables):
    """(before, after) for a training step: `before` moves each of `variables` that the int4 file
    holds to its rounded value and keeps what it moved; `after` (once the optimizer has stepped)
    moves it back by as much. The optimizer's update does not depend on the weight's value (SGD,
    Adam, clipping by the gradients' norm), so w - lr g is what is left: the gradient taken at the
    rounded weights applied to the float ones."""
    wanted = {id(v) for v in variables}
    pairs = [(v, axes) for v, axes in matrices(model) if id(v) in wanted]
    moved = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v, _ in pairs]

    def before():
        for (v, axes), m in zip(pairs, moved):
            m.assign(v - rounded(v, axes))
            v.assign_sub(m)

    def after():
        for (v, _), m in zip(pairs, moved):
            v.assign_add(m)
    return before, after


@contextlib.contextmanager
def weights_rounded(model):
    """The model with its int4 matrices rounded inside the block (to evaluate what the file will
    hold), its float weights back after it."""
    pairs = matrices(model)
    kept = [v.numpy() for v, _ in pairs]
    try:
        for v, axes in pairs:
            v.assign(rounded(v, axes))
        yield model
    finally:
        for (v, _), k in zip(pairs, kept):
            v.assign(k)
