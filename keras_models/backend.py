"""The one place that picks Keras 2 (tf_keras) for TensorFlow and TF-MOT.

TF-MOT 0.8 works only with Keras 2, and TensorFlow reads TF_USE_LEGACY_KERAS
when it is first imported, so this module must be imported before anything
else touches TensorFlow: every package that needs TensorFlow imports `tf`,
`keras` and `tfmot` from here.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ info banners

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

__all__ = ["tf", "keras", "tfmot"]
