"""Physical removal of gated neurons: a gated model becomes a smaller dense one.

`shrink(spec, weights, gates)` takes a model's weights by layer name and the
test-time gate values z per group ("embedding": the embedding dimensions,
which are also the last layer's units when tied; "rnn_i": the hidden units
of layer i), and returns the spec and weights of the plain model that
computes the same function:

- a neuron with z = 0 is removed: its column in the embedding, its rows in
  the next matrix (the next layer's kernel, the output layer), and, for a
  hidden unit, its columns in every gate of its own layer and its row and
  columns in the LSTM recurrent kernel;
- a kept neuron's z is folded into the matrices that read it (the gated
  model multiplies the neuron's value by z before anyone reads it), so the
  smaller model needs no gates;
- a group left with an odd number of neurons keeps one removed neuron more
  (`even_width`): its z = 0 zeroes every matrix that reads it, so the
  function is the same, and an int4 file's matrices get an even number of
  inputs, which XNNPACK needs to run them (with an odd number LiteRT's own
  kernel runs them, 2x slower than the dynamic-range file), and its table
  can be int4 too (the converter keeps an odd-width table in int8).

Pure numpy: the same code serves L0 gates and filter-pruning masks.
"""
import numpy as np


def even_width(n, size):
    """The width a group of `size` neurons has after `shrink` keeps `n` of them."""
    return n + 1 if n % 2 and n < size else n


def _keep(z, name, warn):
    keep = np.asarray(z) > 0
    if not keep.any():
        keep[int(np.argmax(z))] = True
        warn(f"warning: every unit of {name} would be removed; keeping one")
    if even_width(int(keep.sum()), len(keep)) > keep.sum():  # a dead neuron: its z = 0 zeroes its readers
        keep[np.flatnonzero(~keep)[0]] = True
    return keep


def _gate_blocks(matrix, n_blocks, keep):
    """Keep columns `keep` in each of the matrix's `n_blocks` gate blocks."""
    rows = matrix.shape[0]
    return matrix.reshape(rows, n_blocks, -1)[:, :, keep].reshape(rows, -1)


def shrink(spec, weights, gates, warn=print):
    """-> (new spec, new weights by layer name); see the module docstring."""
    if spec.get("rank_one"):
        raise ValueError("shrink a model before adding rank-one updates")
    tied = spec["tie_embeddings"]
    sizes = spec["hidden_sizes"]
    n_gates = 3 if spec["arch"] == "qrnn" else 4
    z_emb = np.asarray(gates["embedding"], dtype=np.float32)
    keep_emb = _keep(z_emb, "the embedding", warn)
    z_hidden, keep_hidden = [], []
    for i in range(len(sizes)):
        key = "embedding" if tied and i == len(sizes) - 1 else f"rnn_{i}"
        z = np.asarray(gates[key], dtype=np.float32)
        z_hidden.append(z)
        keep_hidden.append(keep_emb if key == "embedding" else _keep(z, f"layer {key}", warn))

    new = {"embedding": [weights["embedding"][0][:, keep_emb] * z_emb[keep_emb]]}
    for i in range(len(sizes)):
        name = f"rnn_{i}"
        keep_h, z_h = keep_hidden[i], z_hidden[i]
        if i == 0:  # the input gate is folded into the embedding already
            keep_in, z_in = keep_emb, np.ones_like(z_emb)
        else:
            keep_in, z_in = keep_hidden[i - 1], z_hidden[i - 1]
        w = weights[name]
        kernel = w[0]
        window = kernel.shape[0] // len(z_in)  # QRNN: [window * D, 3H], rows grouped by shift
        kernel = kernel.reshape(window, len(z_in), -1) * z_in[None, :, None]
        kernel = kernel[:, keep_in].reshape(window * int(keep_in.sum()), -1)
        out = [_gate_blocks(kernel, n_gates, keep_h)]
        if spec["arch"] != "qrnn":  # the LSTM recurrent kernel reads z * h_{t-1}
            recurrent = (w[1] * z_h[:, None])[keep_h]
            out.append(_gate_blocks(recurrent, n_gates, keep_h))
        bias = w[-1]
        out.append(bias.reshape(n_gates, -1)[:, keep_h].reshape(-1))
        new[name] = out
    if tied:
        new["output"] = [weights["output"][0]]
    else:
        kernel, bias = weights["output"]
        new["output"] = [(kernel * z_hidden[-1][:, None])[keep_hidden[-1]], bias]

    new_spec = dict(spec, embed=int(keep_emb.sum()),
                    hidden_sizes=[int(k.sum()) for k in keep_hidden])
    return new_spec, new
