"""Each architecture's matrices, from the spec alone (no TensorFlow): the one
list the cost code (`cost.macs_from_spec`) and factorization
(`methods/factorize.py`) both read.

A matrix is (key "LAYER/WEIGHT", rows, cols, group): a step multiplies a
vector by it once per token (rows x cols MACs, dense), and `group` says
which `--factorize-scope` it falls in: "recurrent" (the layers' matrices) or
"output" (the output matrix, or with tied embeddings the shared embedding).
"""


def matrices(spec):
    """[(key, rows, cols, group)] of the model `spec` describes, in layer order."""
    out, in_dim = [], spec["embed"]
    for i, units in enumerate(spec["hidden_sizes"]):
        if spec["arch"] == "qrnn":
            out.append((f"rnn_{i}/kernel", (spec["window"] if i == 0 else 1) * in_dim, 3 * units, "recurrent"))
        elif spec["arch"] == "hlstm":  # each gate's MLP: [x, h] -> g hidden -> h, four gates
            g = spec["gate_hidden"]
            out += [(f"rnn_{i}/kernel", in_dim + units, 4 * g, "recurrent"),
                    (f"rnn_{i}/output_kernel", 4 * g, units, "recurrent")]
        else:
            out += [(f"rnn_{i}/kernel", in_dim, 4 * units, "recurrent"),
                    (f"rnn_{i}/recurrent_kernel", units, 4 * units, "recurrent")]
        in_dim = units
    if spec["tie_embeddings"]:
        out.append(("embedding/embeddings", spec["vocab_size"], spec["embed"], "output"))
    else:
        out.append(("output/kernel", in_dim, spec["vocab_size"], "output"))
    return out
