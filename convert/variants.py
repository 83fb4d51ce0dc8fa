"""Converter settings for each precision, and the int8 calibration data.

- float32: no optimization.
- float16: weights stored as float16 (`supported_types=[float16]`).
- dynamic: dynamic-range quantization, int8 weights, float activations.
- int8: full-integer post-training quantization (TFLITE_BUILTINS_INT8),
  calibrated on real training text run through the float step model, so
  the state tensors see the values they take in use. `int8_io="int8"` also
  makes the state inputs/outputs and log-probabilities int8 (the token stays
  int32); "float" keeps float I/O with (de)quantization inside the model.
- int4: the float32 conversion, then int4 weights by ai-edge-quantizer
  (convert/int4.py).
- int4mixed: the same, with the output layer's weights in int8 (asked for by
  name: `all` leaves it out).
Sparse encoding adds `Optimize.EXPERIMENTAL_SPARSITY`.
"""
import numpy as np

PRECISIONS = ("float32", "float16", "dynamic", "int8", "int4", "int4mixed")
ALL = PRECISIONS[:5]  # what `all` makes: int4mixed only by name
QUANTIZER = ("int4", "int4mixed")  # made by ai-edge-quantizer from the float32 file


def available(precision):
    """False for int4 and int4mixed without ai-edge-quantizer (the `quantizer` extra)."""
    import importlib.util
    return precision not in QUANTIZER or importlib.util.find_spec("ai_edge_quantizer") is not None


def parse_precisions(text):
    """'all' (those this install can make) or a comma list -> tuple of
    precisions; ValueError names a bad one."""
    if text.strip() == "all":
        return tuple(p for p in ALL if available(p))
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in PRECISIONS]
    if bad or not names:
        raise ValueError(f"unknown precision {', '.join(bad) or repr(text)}; choose from "
                         f"{', '.join(PRECISIONS)} or all")
    for name in names:
        if not available(name):
            raise ValueError(f"{name} needs ai-edge-quantizer: pip install -e '.[quantizer]'")
    return tuple(dict.fromkeys(names))


def calibration_feeds(step_fn, state_layout, windows):
    """Signature inputs for each token of each window, with the states the
    float model has there (the window starts from zero state)."""
    from keras_models.backend import tf
    feeds = []
    for window in windows:
        states = [np.zeros(s["shape"], np.float32) for s in state_layout]
        for token in window:
            feed = {"token": np.array([token], np.int32)}
            feed.update({s["input"]: v for s, v in zip(state_layout, states)})
            feeds.append(feed)
            out = step_fn(tf.constant([token], tf.int32), *[tf.constant(v) for v in states])
            states = [out[s["output"]].numpy() for s in state_layout]
    return feeds


def make_converter(saved_model_dir, precision, sparse=False, feeds=None, int8_io="float", signatures=("step",),
                   resource_variables=False):
    from keras_models.backend import tf
    signatures = list(signatures)
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=signatures)
    conv.experimental_enable_resource_variables = resource_variables  # the state kept inside the file
    opts = []
    if precision != "float32" and precision not in QUANTIZER:  # those are quantized after, from the float32 file
        opts.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        opts.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    conv.optimizations = opts
    if precision == "float16":
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        # each signature is calibrated on the same feeds: (signature, inputs) pairs
        conv.representative_dataset = lambda: ((sig, feed) for feed in feeds for sig in signatures)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io == "int8":
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    return conv
