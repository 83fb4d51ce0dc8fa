"""What a model IS: Keras (tf_keras) layers and model builders, nothing else.

Modules that need TensorFlow import it from `keras_models.backend`, which
selects Keras 2 first; this package itself stays importable without
TensorFlow so the CLIs can check their options before loading it.
"""
ARCHS = ("qrnn", "lstm", "hlstm")
L0_PENALTIES = ("count", "macs")  # see neuron_gates.l0_penalty
