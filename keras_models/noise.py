"""The one random stream of training: dropout, zoneout and L0 gate noise.

Every random draw made while training (the dropout masks, QRNN zoneout, the
hard-concrete noise of L0 gates, the H-LSTM's hidden-layer dropout) comes
from one `tf.random.Generator`. Its state is two numbers, saved in every
checkpoint and restored on resume, so a resumed run draws exactly what an
uninterrupted one would have (TensorFlow's stateful random ops cannot be
checkpointed: after a resume they would replay their streams from step 0).
"""
import numpy as np

from keras_models.backend import keras, tf

_generator = None


def generator():
    """The shared generator (made on first use, so importing needs no seed)."""
    global _generator
    if _generator is None:
        _generator = tf.random.Generator.from_seed(0)
    return _generator


def reseed(seed):
    """Start the stream again from `seed` (the start of a run)."""
    generator().reset_from_seed(int(seed))


def get_state():
    """The generator's state as a numpy array (what a checkpoint stores)."""
    return generator().state.numpy()


def set_state(state):
    generator().reset(np.asarray(state, dtype=np.int64))


def uniform(shape, minval=0.0, maxval=1.0):
    return generator().uniform(shape, minval, maxval, dtype=tf.float32)


def normal(shape, stddev=1.0):
    return generator().normal(shape, 0.0, stddev, dtype=tf.float32)


def dropout(x, rate):
    """Inverted dropout: each element kept with probability 1 - rate, scaled by 1 / (1 - rate)."""
    keep = tf.cast(uniform(tf.shape(x)) >= rate, x.dtype)
    return x * keep / (1.0 - rate)


@keras.utils.register_keras_serializable("edgelm")
class Dropout(keras.layers.Layer):
    """keras.layers.Dropout drawing from the shared stream (no weights, so
    models saved with Keras' Dropout load unchanged)."""

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError("dropout rate must be in [0, 1)")
        self.rate = float(rate)

    def call(self, x, training=None):
        return dropout(x, self.rate) if training and self.rate else x

    def get_config(self):
        return dict(super().get_config(), rate=self.rate)
