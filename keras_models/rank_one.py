"""The single-rank update of Tang & Lin ("Adaptive Pruning of Neural Language Models for Mobile Devices", 2018).

A pruned matrix W (used as x @ W, shape [n_in, n_out]) becomes W + v u^T,
computed as x @ W + (x . v) u: n_in + n_out numbers and as many MACs per
token. Recovery trains only u and v, with W frozen.

Initialisation: u ~ N(0, 0.1) as in the paper, but v = 0 (the paper draws
both from N(0, 0.1)), so the update starts as an exact no-op and recovery
starts from the pruned model instead of a randomly perturbed one; the
gradient reaches v at once through u.
"""
from keras_models.backend import keras, tf

U_STDDEV = 0.1


def add_update(layer, name, n_in, n_out):
    """Create `{name}_u` [n_out] and `{name}_v` [n_in] on `layer`; returns (u, v)."""
    u = layer.add_weight(f"{name}_u", shape=(n_out,),
                         initializer=keras.initializers.RandomNormal(0.0, U_STDDEV))
    v = layer.add_weight(f"{name}_v", shape=(n_in,), initializer="zeros")
    return u, v


def initialise(updates, normal):
    """u ~ N(0, U_STDDEV) drawn with `normal(shape, stddev)`, v = 0 (see above)."""
    for w in updates:
        is_u = w.name.split("/")[-1].split(":")[0].endswith("_u")
        w.assign(normal(w.shape, U_STDDEV) if is_u else tf.zeros(w.shape))


def apply(x, u, v):
    """(x . v) u for x [..., n_in]."""
    return tf.reduce_sum(x * v, axis=-1, keepdims=True) * u


def update_variables(model):
    """The u and v variables of a model (what recovery trains)."""
    return [w for w in model.trainable_weights if w.name.split("/")[-1].split(":")[0].endswith(("_u", "_v"))]


@keras.utils.register_keras_serializable("edgelm")
class RankOneEmbedding(keras.layers.Embedding):
    """Lookup in E + u v^T ([vocab, dim]): E[t] + u[t] v."""

    def build(self, input_shape):
        super().build(input_shape)
        self.u, self.v = add_update(self, "embeddings", self.output_dim, self.input_dim)

    def call(self, inputs):
        ids = tf.cast(inputs, tf.int32)
        return tf.gather(self.embeddings, ids) + tf.gather(self.u, ids)[..., None] * self.v


@keras.utils.register_keras_serializable("edgelm")
class RankOneDense(keras.layers.Dense):
    """x @ (W + v u^T) + b."""

    def build(self, input_shape):
        super().build(input_shape)
        self.u, self.v = add_update(self, "kernel", int(input_shape[-1]), self.units)

    def call(self, x):
        return super().call(x) + apply(x, self.u, self.v)
