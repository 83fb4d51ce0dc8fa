"""Word-level recurrent language models with explicit state.

One builder for every use: `build_language_model(...)` gives a model
    inputs:  token (B, T) int32, then each layer's state tensors
    outputs: logits (B, T, V) (or, for the step model, log-probabilities
             (1, V)), then each layer's new state
so a long text is fed in pieces with the state carried over (the PTB
practice), and the device feeds one token at a time. The step model
(`build_step_model`) is the same graph at batch 1, one step, with the LSTM
unrolled so it converts to builtin LiteRT ops; it takes the trained weights.

Tied embeddings (AWD recipe): the output layer uses the embedding matrix, so
the last recurrent layer has `embed` units.

Structured pruning builds the same graph with neuron gates (`gates=`, see
`neuron_gates.py`): `gate_embedding` on the embedding dimensions (the first
layer's input neurons) and `gate_rnn_i` on each layer's hidden units. The
hidden units of one layer are the input neurons of the next, so one gate
serves both. Tied, the last layer's hidden units are the embedding
dimensions, and `gate_embedding` gates them too. `rank_one=True` (in the
spec) adds the single-rank update to every weight matrix (`rank_one.py`).
"""
import json
import os
import shutil

import numpy as np

from edge_runtime.files import make_temp_dir, replace_dir
from keras_models import ARCHS
from keras_models.backend import keras, tf
from keras_models.factored import FactoredDense, LowRankEmbedding
from keras_models.hlstm import HLSTM
from keras_models.lstm import LSTM
from keras_models.neuron_gates import NeuronGate
from keras_models.noise import Dropout
from keras_models.qrnn import QRNN
from keras_models.rank_one import RankOneDense, RankOneEmbedding

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.h5"


class TiedOutput(keras.layers.Layer):
    """logits = h @ E^T + b with E the embedding matrix of another layer.

    The matrix is reached through a getter, not tracked as this layer's own
    weight, so it is saved and pruned once, with the embedding.
    """

    def __init__(self, matrix_getter, vocab_size, update_getter=None, project=None, **kwargs):
        super().__init__(**kwargs)
        self._matrix = matrix_getter
        self._update = update_getter  # -> (u, v) of a rank-one embedding
        self._project = project  # h -> h E^T of a factored embedding, instead of the matrix
        self.vocab_size = vocab_size

    def build(self, input_shape):
        self.bias = self.add_weight("bias", shape=(self.vocab_size,), initializer="zeros")
        super().build(input_shape)

    def call(self, h):
        flat = tf.reshape(h, (-1, h.shape[-1]))
        if self._project is not None:
            logits = self._project(flat) + self.bias
        else:
            logits = tf.matmul(flat, self._matrix(), transpose_b=True) + self.bias
        if self._update is not None:  # h (E + u v^T)^T = h E^T + (h . v) u^T
            u, v = self._update()
            logits += tf.reduce_sum(flat * v, axis=-1, keepdims=True) * u
        return tf.reshape(logits, tf.concat([tf.shape(h)[:-1], [self.vocab_size]], 0))


def default_hidden_sizes(layers, hidden, embed, tie_embeddings):
    sizes = [hidden] * layers
    if tie_embeddings:
        sizes[-1] = embed
    return sizes


def make_spec(arch, vocab_size, embed, hidden, layers, dropout=0.0, tie_embeddings=True,
              window=2, zoneout=0.0, hidden_sizes=None, rank_one=False, gate_hidden=None, factors=None):
    """The architecture as a JSON-able dict (what `model/spec.json` holds)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    sizes = list(hidden_sizes) if hidden_sizes else default_hidden_sizes(layers, hidden, embed, tie_embeddings)
    if tie_embeddings and sizes[-1] != embed:
        raise ValueError("tied embeddings need the last layer to have `embed` units")
    if arch == "hlstm" and not (gate_hidden and gate_hidden >= 1):
        raise ValueError("an H-LSTM needs gate_hidden >= 1")
    return dict(arch=arch, vocab_size=int(vocab_size), embed=int(embed),
                hidden_sizes=[int(s) for s in sizes], dropout=float(dropout),
                tie_embeddings=bool(tie_embeddings), window=int(window), zoneout=float(zoneout),
                rank_one=bool(rank_one), gate_hidden=int(gate_hidden) if arch == "hlstm" else None,
                factors=dict(factors) if factors else None)


def build_language_model(arch, vocab_size, embed, hidden=None, layers=None, dropout=0.0,
                         tie_embeddings=True, window=2, zoneout=0.0, hidden_sizes=None,
                         rank_one=False, gate_hidden=None, factors=None, batch_size=None, seq_len=None,
                         step=False, wrap=None, gates=None, masks=False, name="lm"):
    """Build the model. `wrap(layer) -> layer` lets training wrap the prunable
    layers (TF-MOT); the layer names stay the same inside the wrappers.
    `gates`: NeuronGate options (kind, beta, gamma, zeta, init) for a gated model;
    `masks`: H-LSTM layers with weight masks (grow-and-prune); `factors`
    {"LAYER/WEIGHT": factor} (factored.py): matrices stored as factors."""
    spec = make_spec(arch, vocab_size, embed, hidden, layers or len(hidden_sizes or []), dropout,
                     tie_embeddings, window, zoneout, hidden_sizes, rank_one, gate_hidden, factors)
    if arch == "hlstm" and (gates or rank_one or factors):
        raise ValueError("neuron gates, rank-one updates and factors are not implemented for the H-LSTM")
    if factors and (gates or rank_one or wrap):
        raise ValueError("factored matrices do not combine with gates, rank-one updates or TF-MOT pruning yet")
    factors = spec["factors"] or {}
    if step:
        batch_size, seq_len = 1, 1
    wrap = wrap or (lambda layer: layer)
    token = keras.Input(shape=(seq_len,), batch_size=batch_size, dtype=tf.int32, name="token")
    state_inputs, state_outputs = [], []

    r1 = spec["rank_one"]
    if "embedding/embeddings" in factors:  # tied: the shared matrix as A B
        embedding = LowRankEmbedding(spec["vocab_size"], spec["embed"], factors["embedding/embeddings"]["rank"],
                                     name="embedding")
    else:
        embedding = (RankOneEmbedding if r1 else keras.layers.Embedding)(
            spec["vocab_size"], spec["embed"], name="embedding")
    # Untied, the embedding is only a lookup table: nothing to gain by pruning it.
    x = (wrap(embedding) if spec["tie_embeddings"] else embedding)(token)
    embed_gate = NeuronGate(spec["embed"], name="gate_embedding", **gates) if gates else None
    x = embed_gate(x) if gates else x
    drop = spec["dropout"]
    x = Dropout(drop, name="embedding_dropout")(x) if drop and not step else x
    in_dim = spec["embed"]
    sizes = spec["hidden_sizes"]
    for i, units in enumerate(sizes):
        gate = None
        if gates:
            tied_last = spec["tie_embeddings"] and i == len(sizes) - 1
            gate = embed_gate if tied_last else NeuronGate(units, name=f"gate_rnn_{i}", **gates)
        if arch == "qrnn":
            k = spec["window"] if i == 0 else 1
            layer = QRNN(units, window=k, zoneout=spec["zoneout"], rank_one_update=r1,
                         factor=factors.get(f"rnn_{i}/kernel"), name=f"rnn_{i}")
            states = [keras.Input(shape=(units,), batch_size=batch_size, name=f"l{i}_c")]
            if k > 1:
                states.append(keras.Input(shape=(k - 1, in_dim), batch_size=batch_size, name=f"l{i}_x_prev"))
            out = wrap(layer)([x] + states)
        else:
            states = [keras.Input(shape=(units,), batch_size=batch_size, name=f"l{i}_h"),
                      keras.Input(shape=(units,), batch_size=batch_size, name=f"l{i}_c")]
            if arch == "hlstm":
                layer = HLSTM(units, spec["gate_hidden"], dropout=0.0 if step else drop, masked=masks,
                              name=f"rnn_{i}")
                out = wrap(layer)([x] + states)
            elif gates or r1 or any(k.startswith(f"rnn_{i}/") for k in factors):
                mine = {k.split("/")[1]: f for k, f in factors.items() if k.startswith(f"rnn_{i}/")}
                out = LSTM(units, gate=gate, rank_one_update=r1, factors=mine, name=f"rnn_{i}")([x] + states)
            else:
                layer = keras.layers.LSTM(units, return_sequences=True, return_state=True,
                                          unroll=step, name=f"rnn_{i}")
                out = wrap(layer)(x, initial_state=states)
        x = gate(out[0]) if gate is not None else out[0]
        state_inputs += states
        state_outputs += list(out[1:])
        if drop and not step:
            x = Dropout(drop, name=f"rnn_{i}_dropout")(x)
        in_dim = units

    if spec["tie_embeddings"]:
        # The getter resolves the (possibly wrapped) embedding's own variable.
        update = (lambda: (embedding.u, embedding.v)) if r1 else None
        if isinstance(embedding, LowRankEmbedding):
            logits = TiedOutput(None, spec["vocab_size"], project=embedding.project_out, name="output")(x)
        else:
            logits = TiedOutput(lambda: embedding.embeddings, spec["vocab_size"], update, name="output")(x)
    elif r1:
        logits = RankOneDense(spec["vocab_size"], name="output")(x)
    elif "output/kernel" in factors:
        logits = FactoredDense(spec["vocab_size"], factors["output/kernel"], name="output")(x)
    else:
        logits = wrap(keras.layers.Dense(spec["vocab_size"], name="output"))(x)
    if step:
        logits = keras.layers.Lambda(
            lambda t: tf.nn.log_softmax(tf.reshape(t, (1, -1))), name="log_probs")(logits)
    model = keras.Model([token] + state_inputs, [logits] + state_outputs, name=name)
    model.spec = spec
    return model


def build_step_model(spec, weights):
    """Batch-1, one-token model for conversion, with the trained `weights`."""
    model = build_language_model(**spec, step=True, name="step")
    model.set_weights(weights)
    return model


def named_weights(model):
    """{layer name: [arrays]} for the layers with weights (through pruning wrappers)."""
    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if inner.weights and not isinstance(layer, NeuronGate):
            out[inner.name] = [w.numpy() for w in inner.weights]
    return out


def set_named_weights(model, named):
    """Set the listed layers' leading weights from `named` (gates and rank-one
    updates, absent from a plain model's weights, keep their initial values)."""
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # through a pruning wrapper
        if inner.name in named:
            arrays = named[inner.name]
            for var, a in zip(inner.weights[:len(arrays)], arrays):
                var.assign(a)


def state_shapes(model):
    """Per-example shapes of the model's state inputs, in input order."""
    return [tuple(t.shape[1:]) for t in model.inputs[1:]]


def zero_states(model, batch_size):
    return [np.zeros((batch_size,) + s, dtype=np.float32) for s in state_shapes(model)]


def save_model(model, directory):
    """Write spec.json + weights.h5 to `directory`: built in a temporary folder,
    then swapped in (`files.replace_dir`), so an old model stays whole until
    the new one is complete."""
    tmp = make_temp_dir(directory)
    try:
        with open(os.path.join(tmp, SPEC_FILE), "w") as f:
            json.dump(model.spec, f, indent=2)
        model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_model(directory, **overrides):
    """Rebuild a saved model (e.g. `step=True` for the step model)."""
    with open(os.path.join(directory, SPEC_FILE)) as f:
        spec = json.load(f)
    model = build_language_model(**spec, **overrides)
    model.load_weights(os.path.join(directory, WEIGHTS_FILE))
    return model
