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
"""
import json
import os
import shutil

import numpy as np

from edge_runtime.files import make_temp_dir
from keras_models import ARCHS
from keras_models.backend import keras, tf
from keras_models.qrnn import QRNN

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.h5"


class TiedOutput(keras.layers.Layer):
    """logits = h @ E^T + b with E the embedding matrix of another layer.

    The matrix is reached through a getter, not tracked as this layer's own
    weight, so it is saved and pruned once, with the embedding.
    """

    def __init__(self, matrix_getter, vocab_size, **kwargs):
        super().__init__(**kwargs)
        self._matrix = matrix_getter
        self.vocab_size = vocab_size

    def build(self, input_shape):
        self.bias = self.add_weight("bias", shape=(self.vocab_size,), initializer="zeros")
        super().build(input_shape)

    def call(self, h):
        matrix = self._matrix()
        flat = tf.reshape(h, (-1, h.shape[-1]))
        logits = tf.matmul(flat, matrix, transpose_b=True) + self.bias
        return tf.reshape(logits, tf.concat([tf.shape(h)[:-1], [self.vocab_size]], 0))


def default_hidden_sizes(layers, hidden, embed, tie_embeddings):
    sizes = [hidden] * layers
    if tie_embeddings:
        sizes[-1] = embed
    return sizes


def make_spec(arch, vocab_size, embed, hidden, layers, dropout=0.0, tie_embeddings=True,
              window=2, zoneout=0.0, hidden_sizes=None):
    """The architecture as a JSON-able dict (what `model/spec.json` holds)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    sizes = list(hidden_sizes) if hidden_sizes else default_hidden_sizes(layers, hidden, embed, tie_embeddings)
    if tie_embeddings and sizes[-1] != embed:
        raise ValueError("tied embeddings need the last layer to have `embed` units")
    return dict(arch=arch, vocab_size=int(vocab_size), embed=int(embed),
                hidden_sizes=[int(s) for s in sizes], dropout=float(dropout),
                tie_embeddings=bool(tie_embeddings), window=int(window), zoneout=float(zoneout))


def build_language_model(arch, vocab_size, embed, hidden=None, layers=None, dropout=0.0,
                         tie_embeddings=True, window=2, zoneout=0.0, hidden_sizes=None,
                         batch_size=None, seq_len=None, step=False, wrap=None, name="lm"):
    """Build the model. `wrap(layer) -> layer` lets training wrap the prunable
    layers (TF-MOT); the layer names stay the same inside the wrappers."""
    spec = make_spec(arch, vocab_size, embed, hidden, layers or len(hidden_sizes or []), dropout,
                     tie_embeddings, window, zoneout, hidden_sizes)
    if step:
        batch_size, seq_len = 1, 1
    wrap = wrap or (lambda layer: layer)
    token = keras.Input(shape=(seq_len,), batch_size=batch_size, dtype=tf.int32, name="token")
    state_inputs, state_outputs = [], []

    embedding = keras.layers.Embedding(spec["vocab_size"], spec["embed"], name="embedding")
    # Untied, the embedding is only a lookup table: nothing to gain by pruning it.
    x = (wrap(embedding) if spec["tie_embeddings"] else embedding)(token)
    drop = spec["dropout"]
    x = keras.layers.Dropout(drop, name="embedding_dropout")(x) if drop and not step else x
    in_dim = spec["embed"]
    for i, units in enumerate(spec["hidden_sizes"]):
        if arch == "qrnn":
            k = spec["window"] if i == 0 else 1
            layer = QRNN(units, window=k, zoneout=spec["zoneout"], name=f"rnn_{i}")
            states = [keras.Input(shape=(units,), batch_size=batch_size, name=f"l{i}_c")]
            if k > 1:
                states.append(keras.Input(shape=(k - 1, in_dim), batch_size=batch_size, name=f"l{i}_x_prev"))
            out = wrap(layer)([x] + states)
        else:
            layer = keras.layers.LSTM(units, return_sequences=True, return_state=True,
                                      unroll=step, name=f"rnn_{i}")
            states = [keras.Input(shape=(units,), batch_size=batch_size, name=f"l{i}_h"),
                      keras.Input(shape=(units,), batch_size=batch_size, name=f"l{i}_c")]
            out = wrap(layer)(x, initial_state=states)
        x = out[0]
        state_inputs += states
        state_outputs += list(out[1:])
        if drop and not step:
            x = keras.layers.Dropout(drop, name=f"rnn_{i}_dropout")(x)
        in_dim = units

    if spec["tie_embeddings"]:
        # The getter resolves the (possibly wrapped) embedding's own variable.
        logits = TiedOutput(lambda: embedding.embeddings, spec["vocab_size"], name="output")(x)
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


def state_shapes(model):
    """Per-example shapes of the model's state inputs, in input order."""
    return [tuple(t.shape[1:]) for t in model.inputs[1:]]


def zero_states(model, batch_size):
    return [np.zeros((batch_size,) + s, dtype=np.float32) for s in state_shapes(model)]


def save_model(model, directory):
    """Write spec.json + weights.h5 to `directory` atomically (temp dir, rename)."""
    tmp = make_temp_dir(directory)
    try:
        with open(os.path.join(tmp, SPEC_FILE), "w") as f:
            json.dump(model.spec, f, indent=2)
        model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
        if os.path.exists(directory):
            shutil.rmtree(directory)
        os.replace(tmp, directory)
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
