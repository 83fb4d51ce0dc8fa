"""What a model costs: its weight matrices, parameters and MACs per token.

MACs count the multiply-accumulates of the matrix products for one token
(the embedding lookup is free; element-wise gate arithmetic is not counted),
from the shapes the model actually has, so a model whose neurons were
removed counts smaller. "Nonzero" counts only nonzero weights.
"""
import numpy as np

from keras_models.backend import keras


def weight_matrices(model):
    """[(layer name, weight name, array, used per token)] of the model's matrices.

    `used per token` is False for the embedding when it only serves as a
    lookup table (untied), so it adds no MACs.
    """
    out = []
    tied = getattr(model, "spec", {}).get("tie_embeddings", False)
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # through a pruning wrapper
        name = inner.name
        if isinstance(inner, keras.layers.Embedding):
            out.append((name, "embeddings", inner.embeddings.numpy(), tied))
        elif isinstance(inner, keras.layers.LSTM):
            out.append((name, "kernel", inner.cell.kernel.numpy(), True))
            out.append((name, "recurrent_kernel", inner.cell.recurrent_kernel.numpy(), True))
        elif hasattr(inner, "kernel"):  # Dense, QRNN, our LSTM
            out.append((name, "kernel", inner.kernel.numpy(), True))
            for extra in ("recurrent_kernel", "output_kernel"):  # LSTM, H-LSTM
                if hasattr(inner, extra):
                    out.append((name, extra, getattr(inner, extra).numpy(), True))
        # rank-one updates: (x . v) u costs len(u) + len(v) MACs; a lookup costs none
        for w in inner.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short.endswith(("_u", "_v")):
                used = tied or not isinstance(inner, keras.layers.Embedding)
                out.append((name, short, w.numpy(), used))
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
    for layer, weight, a, used in weight_matrices(model):
        nnz = int(np.count_nonzero(a))
        rows.append(dict(layer=layer, weight=weight, shape=list(a.shape), params=int(a.size),
                         nonzero=nnz, sparsity=round(1.0 - nnz / a.size, 6),
                         macs=int(a.size) if used else 0, macs_nonzero=nnz if used else 0))
    return rows


def macs_per_token(model):
    rows = layer_report(model)
    return sum(r["macs"] for r in rows), sum(r["macs_nonzero"] for r in rows)


def macs_from_spec(spec):
    """Dense MACs per token of the model `spec` describes, from the shapes alone
    (the same count as `macs_per_token` of the built model, rank-one updates aside)."""
    total, in_dim = 0, spec["embed"]
    for i, units in enumerate(spec["hidden_sizes"]):
        if spec["arch"] == "qrnn":
            total += (spec["window"] if i == 0 else 1) * in_dim * 3 * units
        elif spec["arch"] == "hlstm":
            total += (in_dim + units) * 4 * spec["gate_hidden"] + 4 * spec["gate_hidden"] * units
        else:
            total += in_dim * 4 * units + units * 4 * units
        in_dim = units
    return total + in_dim * spec["vocab_size"]
