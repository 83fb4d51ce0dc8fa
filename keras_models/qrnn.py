"""Quasi-recurrent layer (Bradbury et al. 2016) with fo-pooling.

For all time steps at once a causal convolution of width `window` gives
    z = tanh(Wz x), f = sigmoid(Wf x), o = sigmoid(Wo x)
and only the element-wise fo-pooling is sequential:
    c_t = f_t * c_{t-1} + (1 - f_t) * z_t,   h_t = o_t * c_t.
The convolution is one matmul over the `window` shifted copies of the input,
so the kernel has shape [window * input_dim, 3 * units], columns [z | f | o].

State (so a long text can be fed in pieces, and one token at a time on the
device): `c` [batch, units] and, for window > 1, the last window - 1 inputs
`x_prev` [batch, window - 1, input_dim].

fo-pooling over a sequence is a `tf.scan` of the element-wise recurrence.
Measured here (forward + backward, batch 32, 35 steps, 512 units, 2-core
CPU): scan 8 ms, a Python-unrolled loop 26 ms, the parallel log-space
[T, T] matrix form 216 ms. T = 1 (the step model) skips the scan, so the
converted step model is plain element-wise ops.

Zoneout (Krueger et al.; AWD-QRNN applies it to f): while training, each
unit keeps its previous c with probability `zoneout` (f is set to 1); at
test time, and so in the step model, f is its expectation f + p (1 - f), as
in Krueger et al. and the QRNN reference code.
"""
from keras_models import factored, noise, rank_one
from keras_models.backend import keras, tf, tfmot


@keras.utils.register_keras_serializable("edgelm")
class QRNN(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    def __init__(self, units, window=1, zoneout=0.0, kernel_initializer="glorot_uniform",
                 rank_one_update=False, factor=None, **kwargs):
        super().__init__(**kwargs)
        if units < 1 or window < 1:
            raise ValueError("QRNN needs units >= 1 and window >= 1")
        if not 0.0 <= zoneout < 1.0:
            raise ValueError("zoneout must be in [0, 1)")
        self.units = int(units)
        self.window = int(window)
        self.zoneout = float(zoneout)
        self.rank_one_update = bool(rank_one_update)
        self.factor = factor  # the kernel as factors (factored.py), or None
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        x_shape = input_shape[0]
        self.input_dim = int(x_shape[-1])
        self.kernel_m = factored.add_matrix(self, "kernel", self.window * self.input_dim, 3 * self.units,
                                            self.factor, self.kernel_initializer)
        if self.factor is None:
            self.kernel = self.kernel_m.w
        self.bias = self.add_weight("bias", shape=(3 * self.units,), initializer="zeros")
        if self.rank_one_update:
            self.kernel_u, self.kernel_v = rank_one.add_update(
                self, "kernel", self.window * self.input_dim, 3 * self.units)
        super().build(input_shape)

    def get_prunable_weights(self):
        return self.kernel_m.weights

    def matrix_costs(self):
        return factored.matrix_costs(self, [("kernel", self.kernel_m)])

    def call(self, inputs, training=None):
        """inputs = [x (B, T, D), c0 (B, H), (x_prev (B, window-1, D))] -> [h, c_T, (x_prev_T)]."""
        x, c0 = inputs[0], inputs[1]
        steps = x.shape[1]
        if self.window > 1:
            x_ext = tf.concat([inputs[2], x], axis=1)  # (B, T + k - 1, D)
            if steps == 1:  # the step model: the window is x_ext itself, a reshape, not k slices
                x_win = tf.reshape(x_ext, (-1, 1, self.window * x.shape[-1]))
            else:
                t_dyn = tf.shape(x)[1]
                x_win = tf.concat([x_ext[:, j:j + t_dyn] for j in range(self.window)], axis=-1)
            new_prev = x_ext[:, -(self.window - 1):]
        else:
            x_win = x
        gates = self.kernel_m.matmul(x_win) + self.bias  # (B, T, 3H)
        if self.rank_one_update:
            gates += rank_one.apply(x_win, self.kernel_u, self.kernel_v)
        z_pre, f_pre, o_pre = tf.split(gates, 3, axis=-1)
        z = tf.tanh(z_pre)
        o = tf.sigmoid(o_pre)
        f = tf.sigmoid(f_pre)
        if self.zoneout > 0:
            if training:  # a zoned-out unit keeps its c: f = 1
                f = tf.where(noise.uniform(tf.shape(f)) < self.zoneout, tf.ones_like(f), f)
            else:  # the expectation of that: f + p (1 - f)
                f = f + self.zoneout * (1.0 - f)
        if steps == 1:  # the step model: reshapes, not slices
            f1, z1 = tf.reshape(f, tf.shape(c0)), tf.reshape(z, tf.shape(c0))
            c_last = f1 * c0 + (1.0 - f1) * z1
            c_seq = tf.reshape(c_last, tf.shape(o))
        else:
            c_seq = fo_pool(f, (1.0 - f) * z, c0)
            c_last = c_seq[:, -1]
        h = o * c_seq
        outputs = [h, c_last]
        if self.window > 1:
            outputs.append(new_prev)
        return outputs

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, window=self.window, zoneout=self.zoneout,
                   rank_one_update=self.rank_one_update, factor=self.factor,
                   kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return cfg


def fo_pool(f, inputs, c0):
    """c_t = f_t * c_{t-1} + inputs_t for every t; f, inputs (B, T, H), c0 (B, H)."""
    seq = tf.scan(lambda c, a: a[0] * c + a[1],
                  (tf.transpose(f, [1, 0, 2]), tf.transpose(inputs, [1, 0, 2])), initializer=c0)
    return tf.transpose(seq, [1, 0, 2])
