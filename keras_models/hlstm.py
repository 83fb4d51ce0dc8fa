"""H-LSTM (Dai, Yin & Jha 2019): an LSTM whose four gates are each a small MLP.

For each gate k in (i, f, g, o), over u_t = [x_t; h_{t-1}]:
    a_k = dropout(relu(u_t W1_k + b1_k))            (gate_hidden units)
    gate_k = act_k(a_k W2_k + b2_k)                 sigmoid for i, f, o; tanh for g
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
Weights: `kernel` W1 [D + H, 4 G] (rows: x, then h; columns: the gates'
hidden layers i|f|g|o), `hidden_bias` [4 G], `output_kernel` W2 [4, G, H],
`bias` [4 H] (forget gate bias 1). Both matrices are TF-MOT-prunable.

`masked=True` (grow-and-prune training) adds a 0/1 mask per matrix
(`kernel_mask`, `output_kernel_mask`): the layer computes with W * mask,
and `apply_masks()` zeroes the masked weights after each optimizer step.
The x part of W1 is applied to the whole sequence at once; the recurrence
is a `tf.scan`, and T = 1 (the step model) needs no loop.
"""
from keras_models.backend import keras, tf, tfmot
from keras_models import noise
from keras_models.lstm import run_cell


@keras.utils.register_keras_serializable("edgelm")
class HLSTM(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    def __init__(self, units, gate_hidden, dropout=0.0, masked=False, **kwargs):
        super().__init__(**kwargs)
        if units < 1 or gate_hidden < 1:
            raise ValueError("H-LSTM needs units >= 1 and gate_hidden >= 1")
        self.units, self.gate_hidden = int(units), int(gate_hidden)
        self.dropout, self.masked = float(dropout), bool(masked)

    def build(self, input_shape):
        d, h, g = int(input_shape[0][-1]), self.units, self.gate_hidden
        self.input_dim = d
        self.kernel = self.add_weight("kernel", shape=(d + h, 4 * g), initializer="glorot_uniform")
        self.hidden_bias = self.add_weight("hidden_bias", shape=(4 * g,), initializer="zeros")
        self.output_kernel = self.add_weight("output_kernel", shape=(4, g, h), initializer="glorot_uniform")
        self.bias = self.add_weight("bias", shape=(4 * h,), initializer=keras.initializers.Constant(
            [0.0] * h + [1.0] * h + [0.0] * 2 * h))
        if self.masked:
            self.kernel_mask = self.add_weight("kernel_mask", shape=self.kernel.shape, trainable=False,
                                               initializer="ones")
            self.output_kernel_mask = self.add_weight("output_kernel_mask", shape=self.output_kernel.shape,
                                                      trainable=False, initializer="ones")
        super().build(input_shape)

    def get_prunable_weights(self):
        return [self.kernel, self.output_kernel]

    def masked_weights(self):
        """[(weight, mask)] of the gate matrices (grow-and-prune)."""
        return [(self.kernel, self.kernel_mask), (self.output_kernel, self.output_kernel_mask)]

    def apply_masks(self):
        for w, m in self.masked_weights():
            w.assign(w * m)

    def call(self, inputs, training=None):
        """inputs = [x (B, T, D), h0 (B, H), c0 (B, H)] -> [h (B, T, H), h_T, c_T]."""
        x, h0, c0 = inputs
        w1, w2 = self.kernel, self.output_kernel
        if self.masked:
            w1, w2 = w1 * self.kernel_mask, w2 * self.output_kernel_mask
        g = self.gate_hidden
        xw = tf.matmul(x, w1[:self.input_dim]) + self.hidden_bias  # (B, T, 4G)
        w1_h = w1[self.input_dim:]
        w2_k = tf.unstack(w2)
        b2 = tf.split(self.bias, 4)
        drop = self.dropout if training else 0.0

        def cell(carry, xw_t):
            h, c = carry
            a = tf.nn.relu(xw_t + tf.matmul(h, w1_h))
            if drop:
                a = noise.dropout(a, drop)
            pre = [tf.matmul(a[:, k * g:(k + 1) * g], w2_k[k]) + b2[k] for k in range(4)]
            c = tf.sigmoid(pre[1]) * c + tf.sigmoid(pre[0]) * tf.tanh(pre[2])
            return tf.sigmoid(pre[3]) * tf.tanh(c), c

        return run_cell(cell, xw, h0, c0)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, gate_hidden=self.gate_hidden, dropout=self.dropout, masked=self.masked)
        return cfg
