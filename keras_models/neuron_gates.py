"""Gates on neurons: hard-concrete L0 gates (Louizos et al. 2018) and fixed masks.

A gate multiplies one neuron's output by z. For `kind="l0"`
    s = sigmoid((log u - log(1 - u) + log_alpha) / beta),  u ~ U(0, 1)
    z = clip(s * (zeta - gamma) + gamma, 0, 1)
while training, and at test time the deterministic
    z = clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1).
The expected L0 norm, the penalty, is sum sigmoid(log_alpha - beta * log(-gamma / zeta)).
For `kind="mask"` (filter pruning) z is a fixed 0/1 vector.

One noise sample per training step (`resample()`, called by the training
step), kept in a variable, so a gate used at two places in the graph (the
tied embedding: input of the first layer and output of the last) gives the
same z at both within a step.

`log_alpha` starts at `init` (default 3.0: the deterministic gate is 1 and a
sampled gate is 1 most of the time), so gating starts from the dense model.
"""
import numpy as np

from keras_models import noise
from keras_models.backend import keras, tf

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1
INIT_LOG_ALPHA = 3.0
KINDS = ("l0", "mask")


def expected_l0(log_alpha, beta=BETA, gamma=GAMMA, zeta=ZETA):
    """P(z != 0) per gate (a tensor): the expected L0 norm is its sum."""
    return tf.sigmoid(log_alpha - beta * np.log(-gamma / zeta))


def deterministic_gate(log_alpha, gamma=GAMMA, zeta=ZETA):
    """The test-time gate values (numpy)."""
    s = 1.0 / (1.0 + np.exp(-np.asarray(log_alpha, dtype=np.float64)))
    return np.clip(s * (zeta - gamma) + gamma, 0.0, 1.0).astype(np.float32)


@keras.utils.register_keras_serializable("edgelm")
class NeuronGate(keras.layers.Layer):
    """x * z over the last axis; z per neuron (see the module docstring)."""

    def __init__(self, units, kind="l0", beta=BETA, gamma=GAMMA, zeta=ZETA,
                 init=INIT_LOG_ALPHA, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"unknown gate kind {kind!r}")
        if not (beta > 0 and gamma < 0 and zeta > 1):
            raise ValueError("hard-concrete constants need beta > 0, gamma < 0, zeta > 1")
        self.units, self.kind = int(units), kind
        self.beta, self.gamma, self.zeta, self.init = float(beta), float(gamma), float(zeta), float(init)
        if kind == "l0":
            self.log_alpha = self.add_weight(
                "log_alpha", shape=(self.units,),
                initializer=keras.initializers.Constant(self.init))
            self.noise = self.add_weight("noise", shape=(self.units,), trainable=False,
                                         initializer=keras.initializers.Constant(0.5))
        else:
            self.mask = self.add_weight("mask", shape=(self.units,), trainable=False, initializer="ones")

    def resample(self):
        if self.kind == "l0":
            self.noise.assign(noise.uniform((self.units,), 1e-6, 1.0 - 1e-6))

    def values(self, training=None):
        if self.kind == "mask":
            return self.mask
        if training:
            u = self.noise
            s = tf.sigmoid((tf.math.log(u) - tf.math.log(1.0 - u) + self.log_alpha) / self.beta)
        else:
            s = tf.sigmoid(self.log_alpha)
        return tf.clip_by_value(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    def penalty(self):
        """Expected number of open gates (0 for a fixed mask)."""
        if self.kind == "mask":
            return tf.constant(0.0)
        return tf.reduce_sum(expected_l0(self.log_alpha, self.beta, self.gamma, self.zeta))

    def test_values(self):
        """The deterministic gate values as numpy."""
        if self.kind == "mask":
            return self.mask.numpy()
        return deterministic_gate(self.log_alpha.numpy(), self.gamma, self.zeta)

    def call(self, x, training=None):
        return x * self.values(training)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, kind=self.kind, beta=self.beta, gamma=self.gamma,
                   zeta=self.zeta, init=self.init)
        return cfg


def gate_layers(model):
    return [l for l in model.layers if isinstance(l, NeuronGate)]


def gate_values(model):
    """{group: test-time z} of a gated model: "embedding", "rnn_0", ... (the
    groups `surgery.shrink` takes)."""
    return {g.name[len("gate_"):]: g.test_values() for g in gate_layers(model)}


def l0_penalty(model, kind="count"):
    """The L0 term of the loss (before lambda) of a gated model.

    count: the expected number of open gates (Louizos et al.; the papers).
    macs:  the expected MACs per token as a fraction of the ungated model's,
           from the expected open units per group (gates are independent, so
           E[n_in * n_out] = E[n_in] E[n_out]; the LSTM's n_h^2 term is taken
           as E[n_h]^2). Each gate then costs what its neuron costs: an
           embedding dimension of a tied model reads and writes the 10k-word
           output matrix, a first-layer unit far less.
    """
    from keras_models.cost import macs_from_spec
    gates = {g.name[len("gate_"):]: g for g in gate_layers(model)}
    if kind == "count":
        return tf.add_n([g.penalty() for g in gates.values()])
    expected = macs_from_spec(counted_spec(model.spec, {k: g.penalty() for k, g in gates.items()}))
    return expected / float(macs_from_spec(model.spec))


def counted_spec(spec, counts):
    """The spec with `counts` {group: open units} as its sizes (with tied
    embeddings the last layer is the embedding's group)."""
    last = len(spec["hidden_sizes"]) - 1
    sizes = [counts["embedding" if spec["tie_embeddings"] and i == last else f"rnn_{i}"] for i in range(last + 1)]
    return dict(spec, embed=counts["embedding"], hidden_sizes=sizes)
