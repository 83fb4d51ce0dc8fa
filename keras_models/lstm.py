"""An LSTM layer for the two things Keras' LSTM cannot do: a neuron gate
inside the recurrence, and the rank-one update of its matrices.

Same equations and weight layout as `keras.layers.LSTM` (kernel [D, 4H],
recurrent_kernel [H, 4H], bias [4H], gate order i, f, c, o, forget bias 1),
so weights move between the two unchanged. Plain models keep Keras' LSTM;
this one is built when a model has neuron gates or rank-one updates.

With a gate z on the hidden units (`gate`: a `NeuronGate`), the layer's
output z * h goes to the next layer and z * h_{t-1} into the recurrence,
i.e. the recurrent kernel is diag(z) R. A unit with z = 0 then influences
nothing and can be removed exactly. The state carried is the ungated h.
"""
from keras_models import rank_one
from keras_models.backend import keras, tf


@keras.utils.register_keras_serializable("edgelm")
class LSTM(keras.layers.Layer):
    def __init__(self, units, gate=None, rank_one_update=False, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.rank_one_update = bool(rank_one_update)
        # a getter, not the layer: the gate is the model's own layer, saved once
        self._gate_values = gate.values if gate is not None else None

    def build(self, input_shape):
        d, h = int(input_shape[0][-1]), self.units
        self.kernel = self.add_weight("kernel", shape=(d, 4 * h), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight("recurrent_kernel", shape=(h, 4 * h),
                                                initializer="orthogonal")
        self.bias = self.add_weight("bias", shape=(4 * h,), initializer=keras.initializers.Constant(
            [0.0] * h + [1.0] * h + [0.0] * 2 * h))
        if self.rank_one_update:
            self.kernel_u, self.kernel_v = rank_one.add_update(self, "kernel", d, 4 * h)
            self.recurrent_u, self.recurrent_v = rank_one.add_update(self, "recurrent", h, 4 * h)
        super().build(input_shape)

    def call(self, inputs, training=None):
        """inputs = [x (B, T, D), h0 (B, H), c0 (B, H)] -> [h (B, T, H), h_T, c_T]."""
        x, h0, c0 = inputs
        xw = tf.matmul(x, self.kernel) + self.bias
        recurrent = self.recurrent_kernel
        if self.rank_one_update:
            xw += rank_one.apply(x, self.kernel_u, self.kernel_v)
        if self._gate_values is not None:
            recurrent = self._gate_values(training)[:, None] * recurrent

        def cell(carry, xw_t):
            h, c = carry
            g = xw_t + tf.matmul(h, recurrent)
            if self.rank_one_update:
                g += rank_one.apply(h, self.recurrent_u, self.recurrent_v)
            i, f, cand, o = tf.split(g, 4, axis=-1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(cand)
            return tf.sigmoid(o) * tf.tanh(c), c

        return run_cell(cell, xw, h0, c0)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, rank_one_update=self.rank_one_update)
        return cfg


def run_cell(cell, xw, h0, c0):
    """Apply `cell((h, c), xw_t) -> (h, c)` over the time axis of xw (B, T, .);
    -> [h (B, T, H), h_T, c_T]. T = 1 (the step model) needs no loop: builtin ops only."""
    if xw.shape[1] == 1:
        h, c = cell((h0, c0), xw[:, 0])
        return [h[:, None], h, c]
    hs, cs = tf.scan(cell, tf.transpose(xw, [1, 0, 2]), initializer=(h0, c0))
    return [tf.transpose(hs, [1, 0, 2]), hs[-1], cs[-1]]
