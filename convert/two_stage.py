"""The keyboard's two-stage output layer: every word previewed cheaply, a few exactly.

SVD-softmax (Shim et al. 2017). The output layer's logits are W h + b, W [V, H].
Its best rank-r copy P Q (P = U_r S_r [V, r], Q = V_r^T [r, H], from W's
singular value decomposition) previews all V logits at r (V + H)
multiply-adds; the N words of highest preview are the candidates; their exact
logits come from the rows of the layer's own weights (N x H, or N x rank for a
low-rank layer), so the words shown are ranked exactly, and only a word the
preview puts below N can be lost. `choose` picks r and N on validation text:
the least estimated cost (the cost model below) at which the words shown
agree with the full layer's at AGREEMENT of the positions or more. `step`,
for perplexity, stays exact.

The output layers with rows to read: a tied embedding (plain or low-rank), a
Dense layer and a low-rank FactoredDense. Others (rank-one updates,
tensor-train) keep the full layer: `exact_rows` says why.
"""
import numpy as np

from keras_models.backend import keras, tf

RANKS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
CANDIDATES = (8, 16, 32, 64, 128, 256, 512)
AGREEMENT = 0.995
CHOICE_TOKENS = 20000  # validation positions the choice is made on
CHUNK = 1000
# The cost model, in multiply-adds of the full layer's int8 FULLY_CONNECTED under XNNPACK
# (`python benchmarks/two_stage.py costs`, this project's x86 CPU): a candidate costs far more
# than a multiply-add, since TOPK_V2 and the per-row EMBEDDING_LOOKUP are LiteRT's own kernels.
HEAD_MACS = 161_000         # the head's extra ops
CANDIDATE_MACS = 25_000     # each candidate: its share of the wider top-k and its lookup
ROW_ELEMENT_MACS = 200      # each element of a candidate's row, dequantized one by one
GAIN = 0.9                  # "auto" takes a head estimated to cost at most this share of the full layer


class Rows:
    """The exact logits of some words from the output layer's own weights:
    `logits(h [1, H], ids [N]) -> [N]`, at `per_word` multiply-adds a word plus
    `fixed` once; `full` is what the whole layer costs."""

    def __init__(self, layer, vocab_size, hidden):
        from keras_models.factored import FactoredDense, LowRankEmbedding, _LowRank
        from keras_models.language_model import TiedOutput
        self.layer, self.vocab_size, self.bias = layer, vocab_size, layer.bias
        self.reason, self.fixed, self._z = None, 0, None  # _z: h -> what the rows multiply (h itself if None)
        kind = type(layer)
        if kind is TiedOutput and layer._update is None and layer._project is None:
            table = layer._matrix  # [V, H]: the embedding the model looks its input up in
            self._rows, self.per_word = lambda: table(), hidden
        elif kind is TiedOutput and layer._update is None and isinstance(layer._project.__self__, LowRankEmbedding):
            m = layer._project.__self__.matrix  # E = A B: logits = A (B h)
            self._z, self._rows = lambda h: tf.matmul(h, m.b, transpose_b=True), lambda: m.a
            self.per_word, self.fixed = m.a.shape[1], m.a.shape[1] * hidden
        elif kind is keras.layers.Dense:
            self._rows, self.per_word = lambda: tf.transpose(layer.kernel), hidden
        elif kind is FactoredDense and isinstance(layer.kernel_m, _LowRank):
            m = layer.kernel_m  # W = A B [H, V]: logits = (h A) B
            self._z, self._rows = lambda h: tf.matmul(h, m.a), lambda: tf.transpose(m.b)
            self.per_word, self.fixed = m.b.shape[0], m.b.shape[0] * hidden
        else:
            self.reason = f"the output layer ({kind.__name__}{', rank-one' if getattr(layer, '_update', None) else ''}) " \
                          "has no rows to read: the full layer ranks"
            return
        self.full = self.fixed + vocab_size * self.per_word

    def logits(self, h, ids):
        """h [1, H], ids [N] -> [N]. The rows are read as one_hot(ids) @ rows, which the
        converter writes as EMBEDDING_LOOKUP on the layer's own constant (quantized per row,
        as FULLY_CONNECTED reads it), not as a GATHER with a table of its own."""
        z = h if self._z is None else self._z(h)
        rows = tf.matmul(tf.one_hot(ids, self.vocab_size), self._rows())
        return tf.reshape(tf.matmul(rows, z, transpose_b=True), (-1,)) + tf.gather(self.bias, ids)


def output_layer(model):
    return model.get_layer("output")


def dense_output(layer, hidden):
    """(W [V, H], b [V]) float64: the layer applied to the unit vectors and to zero (it is affine)."""
    b = np.asarray(layer(tf.zeros((1, hidden))), np.float64).reshape(-1)
    w = np.asarray(layer(tf.eye(hidden)), np.float64).reshape(hidden, -1) - b
    return w.T, b


def hidden_states(model, stream, limit=CHOICE_TOKENS, chunk_len=128):
    """The output layer's input h [T, H] at each of the first `limit` positions of `stream`
    (the model run over it in chunks, its state carried, as `keras_models.evaluate` does)."""
    from keras_models.language_model import zero_states
    layer = output_layer(model)
    net = keras.Model(model.inputs, [layer.input] + model.outputs[1:])
    run = tf.function(lambda x, states: net([x] + states, training=False), reduce_retracing=True)
    states, out = [tf.constant(s) for s in zero_states(model, 1)], []
    stream = np.asarray(stream)[: limit]
    for start in range(0, len(stream), chunk_len):
        res = run(tf.constant(stream[start:start + chunk_len][None, :], tf.int32), states)
        out.append(np.asarray(res[0][0]))
        states = list(res[1:])
    return np.concatenate(out).astype(np.float64)


def preview_factors(w, rank):
    """(P [V, r], Q [r, H]): the best rank-r approximation P Q of W."""
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    return u[:, :rank] * s[:rank], vt[:rank]


def top(x, k):
    """[T, k] column ids of each row's k largest, best first, ties to the lower id."""
    idx = np.sort(np.argpartition(-x, k - 1, axis=1)[:, :k], axis=1)
    order = np.argsort(-np.take_along_axis(x, idx, 1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1)


def shown(logits, excluded, k):
    """The k words a keyboard shows at each row of `logits` [T, V] (metrics.top_words)."""
    x = np.array(logits)
    x[:, list(excluded)] = -np.inf
    return top(x, k)


def two_stage_shown(logits, preview, n, excluded, k):
    """The words the two-stage head shows: the n best previews, ranked by their exact `logits`."""
    cand = top(preview, n)
    exact = np.take_along_axis(logits, cand, 1)
    exact[np.isin(cand, list(excluded))] = -np.inf
    return np.take_along_axis(cand, top(exact, k), 1)


def agreement_grid(w, b, h, excluded, k, ranks, candidates):
    """{(r, N): share of the rows of h whose shown words (in order) are the full layer's}."""
    same = {}
    for r in ranks:
        p, q = preview_factors(w, r)
        for start in range(0, len(h), CHUNK):
            hc = h[start:start + CHUNK]
            logits = hc @ w.T + b
            want = shown(logits, excluded, k)
            preview = (hc @ q.T) @ p.T + b
            for n in candidates:
                got = two_stage_shown(logits, preview, n, excluded, k)
                same[r, n] = same.get((r, n), 0) + int(np.all(got == want, axis=1).sum())
    return {key: v / len(h) for key, v in same.items()}


def cost(rows, vocab, hidden, rank, n):
    """The two-stage head's cost in the full layer's multiply-adds (the cost model above)."""
    return HEAD_MACS + rank * (hidden + vocab) + rows.fixed + n * (CANDIDATE_MACS + ROW_ELEMENT_MACS * rows.per_word)


def choose(model, stream, excluded, k, mode="auto", target=AGREEMENT, limit=CHOICE_TOKENS):
    """The (r, N) of least estimated cost whose shown words agree with the full layer's at
    `target` of the validation positions, as a dict for the manifest (`chosen`, and why not).
    "auto" takes it only where it is estimated to cost at most GAIN of the full layer (and
    measures agreement only for those); "on" takes the cheapest that agrees, whatever it costs."""
    layer = output_layer(model)
    hidden = int(layer.input.shape[-1])
    vocab = model.spec["vocab_size"]
    rows = Rows(layer, vocab, hidden)
    if rows.reason:
        return dict(chosen=False, reason=rows.reason)
    limit_cost = GAIN * rows.full if mode == "auto" else float("inf")
    est = {(r, n): cost(rows, vocab, hidden, r, n) for r in RANKS for n in CANDIDATES
           if r < min(hidden, rows.per_word) and n < vocab // 2}
    est = {key: c for key, c in est.items() if c <= limit_cost}
    base = dict(mode=mode, target=target, full_macs=rows.full)
    if not est:
        return dict(base, chosen=False, reason=f"no rank and candidate count is estimated to cost at most "
                                                f"{GAIN:.0%} of the full layer ({rows.full:,} multiply-adds)")
    w, b = dense_output(layer, hidden)
    h = hidden_states(model, stream, limit)
    grid = agreement_grid(w, b, h, excluded, k, sorted({r for r, _ in est}), sorted({n for _, n in est}))
    fits = sorted((est[key], key) for key, share in grid.items() if key in est and share >= target)
    base.update(tokens=len(h), grid=[dict(rank=r, candidates=n, agreement=round(grid[r, n], 5), cost=int(c))
                                     for (r, n), c in sorted(est.items())])
    if not fits:
        return dict(base, chosen=False, reason=f"none estimated to cost at most {GAIN:.0%} of the full layer agrees "
                                                f"with it at {target:.1%} of {len(h)} validation positions"
                    if mode == "auto" else f"none agrees with the full layer at {target:.1%} of {len(h)} "
                                           "validation positions")
    c, (r, n) = fits[0]
    p, q = preview_factors(w, r)
    return dict(base, chosen=True, rank=r, candidates=n, agreement=round(grid[r, n], 5), cost=int(c),
                preview=p.astype(np.float32), project=q.astype(np.float32))


class Head:
    """The two-stage ranking in the graph: `top(h [1, H], width) -> (values, ids)` [1, width]."""

    def __init__(self, step_model, choice):
        layer = output_layer(step_model)
        self.rows = Rows(layer, step_model.spec["vocab_size"], int(layer.input.shape[-1]))
        self.p, self.q, self.n = choice["preview"], choice["project"], choice["candidates"]

    def top(self, h, width):
        h = tf.reshape(h, (1, -1))
        preview = tf.matmul(tf.matmul(h, self.q, transpose_b=True), self.p, transpose_b=True) + self.rows.bias
        cand = tf.math.top_k(preview, k=self.n).indices[0]
        values, j = tf.math.top_k(tf.reshape(self.rows.logits(h, cand), (1, -1)), k=width)
        return values, tf.reshape(tf.gather(cand, j[0]), (1, -1))
