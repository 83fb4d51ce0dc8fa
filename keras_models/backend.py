"""The one place that picks Keras 2 (tf_keras) for TensorFlow and TF-MOT.

TF-MOT 0.8 works only with Keras 2, and TensorFlow reads TF_USE_LEGACY_KERAS
when it is first imported, so this module must be imported before anything
else touches TensorFlow: every package that needs TensorFlow imports `tf`,
`keras` and `tfmot` from here. Its start-up lines (absl, oneDNN, the cuInit
error on a CPU machine) are kept off the terminal unless --verbose
(`edge_runtime/quiet.py`).
"""
import os
import warnings

from edge_runtime import quiet

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ info banners

with quiet.filtered_stderr():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402
    with warnings.catch_warnings():  # TF-MOT 0.8 checks versions with distutils' deprecated class
        warnings.filterwarnings("ignore", "distutils Version classes are deprecated", DeprecationWarning)
        import tensorflow_model_optimization as tfmot  # noqa: E402

    # training/distribute.py: the CPU as N logical devices (for MirroredStrategy on a machine without
    # GPUs), and MultiWorkerMirroredStrategy, whose collectives must exist before the first op
    if os.environ.get("EDGELM_CPU_DEVICES"):
        _cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            _cpu, [tf.config.LogicalDeviceConfiguration()] * int(os.environ["EDGELM_CPU_DEVICES"]))
    STRATEGY = (tf.distribute.MultiWorkerMirroredStrategy()
                if os.environ.get("EDGELM_STRATEGY") == "multiworker" else None)
    tf.constant(0.0)  # the devices are set up now, inside the filter (the cuInit line)
if not quiet.verbose():  # TensorFlow's Python warnings (tf.function retracing and the like)
    tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras", "tfmot", "STRATEGY"]
