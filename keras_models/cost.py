"""What a model costs: its weight matrices, parameters and MACs per token.

MACs count the multiply-accumulates of the matrix products for one token
(the embedding lookup is free; element-wise gate arithmetic is not counted),
from the shapes the model actually has, so a model whose neurons were
removed counts smaller. "Nonzero" counts only nonzero weights.
"""
import numpy as np

from keras_models.backend import keras
from keras_models.factored import factor_macs
from keras_models.matrices import matrices


def weight_matrices(model):
    """[(layer name, weight name, array, MACs per token)] of the model's matrices.

    A matrix used as x @ W costs its size; the embedding costs nothing when it
    only serves as a lookup table (untied); a factored matrix costs what its
    factors' products cost (`matrix_costs`, factored.py).
    """
    out = []
    tied = getattr(model, "spec", {}).get("tie_embeddings", False)
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # through a pruning wrapper
        name = inner.name
        if hasattr(inner, "matrix_costs"):  # QRNN, our LSTM, factored output and embedding
            out += [(name, weight, a, macs) for weight, a, macs in inner.matrix_costs()]
        elif isinstance(inner, keras.layers.Embedding):
            a = inner.embeddings.numpy()
            out.append((name, "embeddings", a, a.size if tied else 0))
        elif isinstance(inner, keras.layers.LSTM):
            for weight in ("kernel", "recurrent_kernel"):
                a = getattr(inner.cell, weight).numpy()
                out.append((name, weight, a, a.size))
        elif hasattr(inner, "kernel"):  # Dense, H-LSTM
            for weight in ("kernel", "output_kernel"):
                if hasattr(inner, weight):
                    a = getattr(inner, weight).numpy()
                    out.append((name, weight, a, a.size))
        # rank-one updates: (x . v) u costs len(u) + len(v) MACs; a lookup costs none
        for w in inner.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short.endswith(("_u", "_v")):
                used = tied or not isinstance(inner, keras.layers.Embedding)
                a = w.numpy()
                out.append((name, short, a, a.size if used else 0))
    return out


def count_params(model):
    """Total and nonzero parameters over the model's distinct variables."""
    seen, total, nonzero = set(), 0, 0
    for v in model.weights:
        if id(v) in seen:
            continue
        seen.add(id(v))
        a = v.numpy()
        total += a.size
        nonzero += int(np.count_nonzero(a))
    return total, nonzero


def layer_report(model):
    """Per matrix: shape, sparsity and MACs per token (dense and nonzero)."""
    rows = []
    for layer, weight, a, macs in weight_matrices(model):
        nnz = int(np.count_nonzero(a))
        rows.append(dict(layer=layer, weight=weight, shape=list(a.shape), params=int(a.size),
                         nonzero=nnz, sparsity=round(1.0 - nnz / a.size, 6),
                         macs=int(macs), macs_nonzero=int(round(macs * nnz / a.size))))
    return rows


def macs_per_token(model):
    rows = layer_report(model)
    return sum(r["macs"] for r in rows), sum(r["macs_nonzero"] for r in rows)


def macs_from_spec(spec):
    """Dense MACs per token of the model `spec` describes, from the shapes alone
    (the same count as `macs_per_token` of the built model, rank-one updates aside)."""
    factors = spec.get("factors") or {}
    total = 0
    for key, rows, cols, _ in matrices(spec):
        if key == "embedding/embeddings" and key in factors:  # tied A B: the lookup's r x d, then h B^T A^T
            r = factors[key]["rank"]
            total += 2 * r * spec["hidden_sizes"][-1] + r * spec["vocab_size"]
        else:
            total += factor_macs(rows, cols, factors.get(key))
    return total


def closest_fraction(dense_spec, spec_for, target, grid):
    """(fraction, MACs share) of the `grid` fraction whose model comes closest to
    `target` of `dense_spec`'s MACs; of equally close ones, the largest. The
    one search of `--target-macs` (filter's units kept, low rank's rank
    fraction): `spec_for(f)` is the spec a fraction gives, or None where it
    cannot be made. None when no fraction can."""
    dense, best = macs_from_spec(dense_spec), None
    for f in grid:
        spec = spec_for(f)
        if spec is None:
            continue
        share = macs_from_spec(spec) / dense
        key = (abs(share - target), -f)
        if best is None or key < best[0]:
            best = (key, round(float(f), 3), round(share, 4))
    return None if best is None else best[1:]
