"""The step model as a SavedModel with one signature, `step`, for the converter.

Signature inputs: `token` int32 [1] and each state tensor (float32, batch 1,
named as the model's state inputs: `l0_c`, `l0_x_prev`, `l0_h`, ...).
Outputs: `log_probs` float32 [1, V] and, for each state `S`, `S_out`: the new
state to feed back. Named outputs let signature runners on Android, iOS and
Python find everything without knowing the architecture.
"""
from keras_models.backend import tf

SIGNATURE = "step"
OUTPUT_SUFFIX = "_out"


def state_layout(step_model):
    """[{'input', 'output', 'shape', 'dtype'}] of the step model's state tensors."""
    return [dict(input=t.name, output=t.name + OUTPUT_SUFFIX, shape=[int(d) for d in t.shape],
                 dtype="float32") for t in step_model.inputs[1:]]


def step_function(step_model):
    """A tf.function with named inputs and outputs around the Keras step model."""
    names = [t.name for t in step_model.inputs[1:]]
    specs = [tf.TensorSpec([1], tf.int32, name="token")]
    specs += [tf.TensorSpec(t.shape, tf.float32, name=n) for t, n in zip(step_model.inputs[1:], names)]

    @tf.function(input_signature=specs)
    def step(token, *states):
        out = step_model([tf.reshape(token, (1, 1))] + list(states), training=False)
        result = {"log_probs": out[0]}
        result.update({n + OUTPUT_SUFFIX: s for n, s in zip(names, out[1:])})
        return result

    return step


def save_step_model(step_model, directory):
    module = tf.Module()
    module.model = step_model
    module.step = step_function(step_model)
    tf.saved_model.save(module, directory, signatures={SIGNATURE: module.step})
