"""What a model IS: Keras (tf_keras) layers and model builders, nothing else."""
from keras_models.backend import keras, tf, tfmot  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
