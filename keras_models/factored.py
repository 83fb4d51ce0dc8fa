"""Weight matrices stored as factors: low rank and tensor train (TT).

A layer asks `add_matrix(layer, name, rows, cols, factor)` for each of its
matrices W (used as x @ W, shape [rows, cols]) and gets an object with
`matmul(x)`, `dense()` and `costs()`. `factor` is None (a plain weight, named
as before, so unfactored models are unchanged), or from the model spec:

- {"kind": "lowrank", "rank": r}: W = A B, A [rows, r] (`NAME_a`), B [r, cols]
  (`NAME_b`), computed as (x A) B: r (rows + cols) numbers and MACs instead
  of rows x cols; it pays when r < rows cols / (rows + cols).
- {"kind": "tt", "rows": [m_1..m_d], "cols": [n_1..n_d], "ranks": [1, r_1..r_{d-1}, 1]}:
  Novikov et al. 2015. rows = prod m_k, cols = prod n_k, and
  W[(i_1..i_d), (j_1..j_d)] = G_1[i_1, j_1] G_2[i_2, j_2] ... G_d[i_d, j_d],
  core G_k (`NAME_core_k`) of shape [r_{k-1}, m_k, n_k, r_k]. x W contracts
  the cores one at a time, a reshape, a transpose and a matmul each, so the
  step model converts to builtin LiteRT ops.

Initialisation from a trained W (`from_dense`): the truncated SVD
(A = U_r sqrt(S_r), B = sqrt(S_r) V_r^T) or TT-SVD (Oseledets 2011, tensorly's
`tensor_train_matrix`).
"""
import math

import numpy as np

from keras_models.backend import keras, tf

KINDS = ("lowrank", "tt")


def lowrank_pays(rows, cols, rank):
    """Does rank r store (and multiply) fewer numbers than the dense matrix?"""
    return 1 <= rank and rank * (rows + cols) < rows * cols


def near_equal_factors(n, d):
    """n as d factors (ascending) as nearly equal as possible, or None when
    that needs a factor of 1 or n itself is prime-like (a TT core would be wasted)."""
    best = None
    for combo in _factorizations(n, d):
        if min(combo) < 2:
            continue
        score = max(combo) / min(combo)
        if best is None or score < best[0]:
            best = (score, combo)
    return list(best[1]) if best else None


def _factorizations(n, d):
    if d == 1:
        yield (n,)
        return
    for f in range(1, int(round(n ** (1.0 / d))) + 2):
        if n % f == 0:
            for rest in _factorizations(n // f, d - 1):
                if rest[0] >= f:
                    yield (f,) + rest


def tt_ranks(rows, cols, rank):
    """[1, r, ..., r, 1], each inner rank capped at what the unfolding allows."""
    d = len(rows)
    sizes = [m * n for m, n in zip(rows, cols)]
    ranks = [1]
    for k in range(1, d):
        left, right = math.prod(sizes[:k]), math.prod(sizes[k:])
        ranks.append(int(min(rank, left, right)))
    return ranks + [1]


def tt_spec(rows, cols, rank, cores=3, shape=None):
    """The TT factor of a rows x cols matrix; ValueError with a one-line reason."""
    if rank < 1:
        raise ValueError(f"a TT rank must be at least 1, got {rank}")
    if shape is not None:
        m, n = shape
        if math.prod(m) != rows or math.prod(n) != cols:
            raise ValueError(f"--tt-shape {'x'.join(map(str, m))}:{'x'.join(map(str, n))} multiplies out to "
                             f"{math.prod(m)} x {math.prod(n)}, not the matrix's {rows} x {cols}")
    else:
        m, n = near_equal_factors(rows, cores), near_equal_factors(cols, cores)
        if m is None or n is None:
            raise ValueError(f"{rows} x {cols} has no factorization into {cores} near-equal factors "
                             "per side; give --tt-shape")
    return dict(kind="tt", rows=list(m), cols=list(n), ranks=tt_ranks(m, n, rank))


def factor_params(rows, cols, factor):
    if factor is None:
        return rows * cols
    if factor["kind"] == "lowrank":
        return factor["rank"] * (rows + cols)
    r = factor["ranks"]
    return sum(r[k] * m * n * r[k + 1] for k, (m, n) in enumerate(zip(factor["rows"], factor["cols"])))


def factor_macs(rows, cols, factor):
    """MACs of x @ W for one row x."""
    if factor is None or factor["kind"] == "lowrank":
        return factor_params(rows, cols, factor)
    return sum(c[2] for c in _tt_steps(factor))


def _tt_steps(factor):
    """Per core: (rows left after it, columns done before it, MACs of its matmul)."""
    m, n, r = factor["rows"], factor["cols"], factor["ranks"]
    out = []
    for k in range(len(m)):
        rest, done = math.prod(m[k + 1:]), math.prod(n[:k])
        out.append((rest, done, rest * done * r[k] * m[k] * n[k] * r[k + 1]))
    return out


class _Plain:
    def __init__(self, layer, name, rows, cols, initializer):
        self.w = layer.add_weight(name, shape=(rows, cols), initializer=initializer)
        self.weights = [self.w]

    def matmul(self, x):
        return tf.matmul(x, self.w)

    def dense(self):
        return self.w


class _LowRank:
    def __init__(self, layer, name, rows, cols, rank):
        # A B has the variance of a Glorot-uniform matrix when each factor is scaled so
        std = (2.0 / (rows + cols) / rank) ** 0.25
        self.a = layer.add_weight(f"{name}_a", shape=(rows, rank), initializer=keras.initializers.RandomNormal(0.0, std))
        self.b = layer.add_weight(f"{name}_b", shape=(rank, cols), initializer=keras.initializers.RandomNormal(0.0, std))
        self.weights = [self.a, self.b]

    def matmul(self, x):
        return tf.matmul(tf.matmul(x, self.a), self.b)

    def dense(self):
        return tf.matmul(self.a, self.b)


class _TT:
    def __init__(self, layer, name, rows, cols, factor):
        self.factor, self.rows, self.cols = factor, rows, cols
        m, n, r = factor["rows"], factor["cols"], factor["ranks"]
        d = len(m)
        # the product of d cores, summed over the inner ranks, has Glorot's variance
        std = (2.0 / (rows + cols) / math.prod(r[1:-1])) ** (0.5 / d)
        self.cores = [layer.add_weight(f"{name}_core_{k}", shape=(r[k], m[k], n[k], r[k + 1]),
                                       initializer=keras.initializers.RandomNormal(0.0, std)) for k in range(d)]
        self.weights = list(self.cores)

    def matmul(self, x):
        """x [..., rows] @ W -> [..., cols]; T is [B, m_k, rows left x columns done, r_{k-1}]."""
        lead = tf.shape(x)[:-1]
        m, n, r = self.factor["rows"], self.factor["cols"], self.factor["ranks"]
        t = tf.reshape(x, (-1, m[0], math.prod(m[1:]), 1))
        for k, (core, (rest, done, _)) in enumerate(zip(self.cores, _tt_steps(self.factor))):
            t = tf.reshape(t, (-1, m[k], rest * done, r[k]))
            t = tf.transpose(t, (0, 2, 3, 1))  # [B, rest x done, r_{k-1}, m_k]
            t = tf.matmul(tf.reshape(t, (-1, r[k] * m[k])), tf.reshape(core, (r[k] * m[k], n[k] * r[k + 1])))
            t = tf.reshape(t, (-1, rest, done * n[k], r[k + 1]))
        return tf.reshape(t, tf.concat([lead, [self.cols]], 0))

    def dense(self):
        return self.matmul(tf.eye(self.rows))


def add_matrix(layer, name, rows, cols, factor=None, initializer="glorot_uniform"):
    """The matrix `name` of `layer` (call inside its build)."""
    if factor is None:
        return _Plain(layer, name, rows, cols, initializer)
    if factor["kind"] == "lowrank":
        return _LowRank(layer, name, rows, cols, factor["rank"])
    if factor["kind"] == "tt":
        return _TT(layer, name, rows, cols, factor)
    raise ValueError(f"unknown factorization {factor['kind']!r}; choose from {', '.join(KINDS)}")


def from_dense(w, factor):
    """The factor arrays (in `add_matrix`'s weight order) nearest to the dense `w`,
    and the relative Frobenius error of what they give back."""
    w = np.asarray(w, dtype=np.float64)
    if factor["kind"] == "lowrank":
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        r = factor["rank"]
        root = np.sqrt(s[:r])
        arrays = [u[:, :r] * root, root[:, None] * vt[:r]]
        approx = arrays[0] @ arrays[1]
    else:
        from tensorly.decomposition import tensor_train_matrix  # the `train` extra
        from tensorly.tt_matrix import tt_matrix_to_tensor
        m, n = factor["rows"], factor["cols"]
        tt = tensor_train_matrix(w.reshape(m + n), rank=factor["ranks"])
        arrays = [np.asarray(c) for c in tt.factors]
        approx = np.asarray(tt_matrix_to_tensor(tt)).reshape(w.shape)
        if [a.shape for a in arrays] != [(r0, mk, nk, r1) for r0, mk, nk, r1 in
                                         zip(factor["ranks"], m, n, factor["ranks"][1:])]:
            raise ValueError("TT-SVD gave cores of other ranks than asked")  # tensorly caps ranks too
    error = float(np.linalg.norm(w - approx) / max(np.linalg.norm(w), 1e-30))
    return [a.astype(np.float32) for a in arrays], error


@keras.utils.register_keras_serializable("edgelm")
class FactoredDense(keras.layers.Layer):
    """x @ W + b with W stored as factors (the untied output layer)."""

    def __init__(self, units, factor=None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.factor = int(units), factor

    def build(self, input_shape):
        self.kernel_m = add_matrix(self, "kernel", int(input_shape[-1]), self.units, self.factor)
        self.bias = self.add_weight("bias", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        return self.kernel_m.matmul(x) + self.bias

    def matrix_costs(self):
        return matrix_costs(self, [("kernel", self.kernel_m)])

    def get_config(self):
        return dict(super().get_config(), units=self.units, factor=self.factor)


@keras.utils.register_keras_serializable("edgelm")
class LowRankEmbedding(keras.layers.Layer):
    """A tied embedding E = A B [vocab, dim]: lookup A[token] B, and the output
    h E^T computed as (h B^T) A^T, so the vocabulary-sized product has r
    columns, not dim."""

    def __init__(self, input_dim, output_dim, rank, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim, self.rank = int(input_dim), int(output_dim), int(rank)

    def build(self, input_shape):
        self.matrix = add_matrix(self, "embeddings", self.input_dim, self.output_dim,
                                 dict(kind="lowrank", rank=self.rank))
        super().build(input_shape)

    def call(self, ids):
        return tf.matmul(tf.gather(self.matrix.a, tf.cast(ids, tf.int32)), self.matrix.b)

    def project_out(self, h):
        """h [N, dim] @ E^T -> [N, vocab]."""
        return tf.matmul(tf.matmul(h, self.matrix.b, transpose_b=True), self.matrix.a, transpose_b=True)

    def matrix_costs(self):
        a, b = self.matrix.a.numpy(), self.matrix.b.numpy()
        # B serves the lookup and the output, A the output only
        return [("embeddings_a", a, a.size), ("embeddings_b", b, 2 * b.size)]

    def get_config(self):
        return dict(super().get_config(), input_dim=self.input_dim, output_dim=self.output_dim, rank=self.rank)


def matrix_costs(layer, matrices):
    """[(weight name, array, MACs per token)] of a layer's (possibly factored) matrices."""
    out = []
    for name, m in matrices:
        if isinstance(m, _Plain):
            a = m.w.numpy()
            out.append((name, a, a.size))
        elif isinstance(m, _LowRank):
            out += [(f"{name}_a", m.a.numpy(), int(m.a.shape.num_elements())),
                    (f"{name}_b", m.b.numpy(), int(m.b.shape.num_elements()))]
        else:
            out += [(f"{name}_core_{k}", c.numpy(), step[2])
                    for k, (c, step) in enumerate(zip(m.cores, _tt_steps(m.factor)))]
    return out

