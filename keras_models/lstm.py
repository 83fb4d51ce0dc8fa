"""An LSTM layer for what Keras' LSTM cannot do: a neuron gate inside the
recurrence, the rank-one update of its matrices, and matrices stored as factors.

Same equations and weight layout as `keras.layers.LSTM` (kernel [D, 4H],
recurrent_kernel [H, 4H], bias [4H], gate order i, f, c, o, forget bias 1),
so weights move between the two unchanged. Plain models keep Keras' LSTM;
this one is built when a model has neuron gates, rank-one updates or
factored matrices (`factors`, see factored.py).

With a gate z on the hidden units (`gate`: a `NeuronGate`), the layer's
output z * h goes to the next layer and z * h_{t-1} into the recurrence,
i.e. the recurrent kernel is diag(z) R. A unit with z = 0 then influences
nothing and can be removed exactly. The state carried is the ungated h.
"""
from keras_models import factored, rank_one
from keras_models.backend import keras, tf


@keras.utils.register_keras_serializable("edgelm")
class LSTM(keras.layers.Layer):
    def __init__(self, units, gate=None, rank_one_update=False, factors=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.rank_one_update = bool(rank_one_update)
        self.factors = factors or {}  # {"kernel": ..., "recurrent_kernel": ...} (factored.py)
        # a getter, not the layer: the gate is the model's own layer, saved once
        self._gate_values = gate.values if gate is not None else None

    def build(self, input_shape):
        d, h = int(input_shape[0][-1]), self.units
        self.kernel_m = factored.add_matrix(self, "kernel", d, 4 * h, self.factors.get("kernel"))
        self.recurrent_m = factored.add_matrix(self, "recurrent_kernel", h, 4 * h,
                                               self.factors.get("recurrent_kernel"), "orthogonal")
        if not self.factors.get("kernel"):
            self.kernel = self.kernel_m.w
        if not self.factors.get("recurrent_kernel"):
            self.recurrent_kernel = self.recurrent_m.w
        self.bias = self.add_weight("bias", shape=(4 * h,), initializer=keras.initializers.Constant(
            [0.0] * h + [1.0] * h + [0.0] * 2 * h))
        if self.rank_one_update:
            self.kernel_u, self.kernel_v = rank_one.add_update(self, "kernel", d, 4 * h)
            self.recurrent_u, self.recurrent_v = rank_one.add_update(self, "recurrent", h, 4 * h)
        super().build(input_shape)

    def call(self, inputs, training=None):
        """inputs = [x (B, T, D), h0 (B, H), c0 (B, H)] -> [h (B, T, H), h_T, c_T]."""
        x, h0, c0 = inputs
        xw = self.kernel_m.matmul(x) + self.bias
        if self.rank_one_update:
            xw += rank_one.apply(x, self.kernel_u, self.kernel_v)
        z = self._gate_values(training) if self._gate_values is not None else None

        def cell(carry, xw_t):
            h, c = carry
            g = xw_t + self.recurrent_m.matmul(h if z is None else h * z)  # (z h) R = h diag(z) R
            if self.rank_one_update:
                g += rank_one.apply(h, self.recurrent_u, self.recurrent_v)
            i, f, cand, o = tf.split(g, 4, axis=-1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(cand)
            return tf.sigmoid(o) * tf.tanh(c), c

        return run_cell(cell, xw, h0, c0)

    def matrix_costs(self):
        return factored.matrix_costs(self, [("kernel", self.kernel_m), ("recurrent_kernel", self.recurrent_m)])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, rank_one_update=self.rank_one_update, factors=self.factors)
        return cfg


def run_cell(cell, xw, h0, c0):
    """Apply `cell((h, c), xw_t) -> (h, c)` over the time axis of xw (B, T, .);
    -> [h (B, T, H), h_T, c_T]. T = 1 (the step model) needs no loop: builtin ops only."""
    if xw.shape[1] == 1:  # reshapes, not slices: each slice is an op in the converted step
        h, c = cell((h0, c0), tf.reshape(xw, (-1, xw.shape[-1])))
        return [tf.reshape(h, (-1, 1, h.shape[-1])), h, c]
    hs, cs = tf.scan(cell, tf.transpose(xw, [1, 0, 2]), initializer=(h0, c0))
    return [tf.transpose(hs, [1, 0, 2]), hs[-1], cs[-1]]
