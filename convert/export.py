"""The step model as a SavedModel with two signatures, `step` and `suggest`
(state as inputs and outputs), or four (the state inside the file).

Both take `token` int32 [1] and each state tensor (float32, batch 1, named as
the model's state inputs: `l0_c`, `l0_x_prev`, `l0_h`, ...), and return, for
each state `S`, `S_out`: the new state to feed back.
- `step` returns `log_probs` float32 [1, V].
- `suggest` returns `ids` int32 [1, k + 2] and `logits` float32 [1, k + 2]:
  the k + 2 most probable ids, best first, ties to the lower id, so a keyboard
  does not copy V floats out of the model to show three words. It ranks the
  output layer's logits: the top k by logits is the top k by log-probability,
  so the log-softmax over V (not delegated to XNNPACK) is skipped; the values
  are unnormalised scores, for ordering only. The caller drops `<unk>` and
  `<eos>` and keeps the first k: in float, exactly the words
  edge_runtime/metrics.py's `top_words` shows. (Masking them in the graph
  instead cost a gather over V, slower than the whole top-k.)
A token id outside [0, V) is read as `<unk>` inside the graph: a client's bad
id gives `<unk>`'s prediction instead of failing in GATHER. Named outputs let
signature runners on Android, iOS and Python find everything without knowing
the architecture.

With the state inside (`state="inside"`), the state tensors are resource
variables the graph reads and writes itself: `step` and `suggest` take the
`token` alone and return `log_probs`, or `ids` and `logits`; `set_state`
takes the state tensors (zeros: a reset) and `get_state` returns them, under
the same names, for the switcher's handover and for checks. Nothing is
copied in or out per step but the token and what the caller reads.
"""
from edge_runtime.metrics import SUGGEST_SLACK, check_top_k
from keras_models.backend import keras, tf

SIGNATURE = "step"
SUGGEST = "suggest"
OUTPUT_SUFFIX = "_out"
LOG_PROBS = "log_probs"  # the step model's log-softmax layer (keras_models/language_model.py)
TOP_K = 3
SET_STATE, GET_STATE = "set_state", "get_state"


def state_layout(step_model):
    """[{'input', 'output', 'shape', 'dtype'}] of the step model's state tensors."""
    return [dict(input=t.name, output=t.name + OUTPUT_SUFFIX, shape=[int(d) for d in t.shape],
                 dtype="float32") for t in step_model.inputs[1:]]


def _specs(step_model):
    names = [t.name for t in step_model.inputs[1:]]
    specs = [tf.TensorSpec([1], tf.int32, name="token")]
    specs += [tf.TensorSpec(t.shape, tf.float32, name=n) for t, n in zip(step_model.inputs[1:], names)]
    return names, specs


def _run(step_model, names, unk_id, token, states):
    """(the model's first output, {S_out: state}) with out-of-range ids read as <unk>."""
    vocab_size = step_model.spec["vocab_size"]
    safe = tf.where((token >= 0) & (token < vocab_size), token, tf.fill(tf.shape(token), unk_id))
    out = step_model([tf.reshape(safe, (1, 1))] + list(states), training=False)
    return out[0], {n + OUTPUT_SUFFIX: s for n, s in zip(names, out[1:])}


def logits_model(step_model):
    """The step model with the output layer's logits in place of the log-softmax."""
    logits = step_model.get_layer(LOG_PROBS).input
    model = keras.Model(step_model.inputs, [logits] + step_model.outputs[1:], name="step_logits")
    model.spec = step_model.spec
    return model


def ranking(step_model, width, head=None):
    """(the model whose first output is ranked, rank(output) -> (values, ids) [1, width]):
    the logits ranked whole, or with a two-stage `head` (convert/two_stage.py) the output
    layer's input, ranked by it."""
    if head is None:
        return logits_model(step_model), lambda logits: _top(logits, width)
    hidden = step_model.get_layer("output").input
    model = keras.Model(step_model.inputs, [hidden] + step_model.outputs[1:], name="step_hidden")
    model.spec = step_model.spec
    return model, lambda h: head.top(h, width)


def one_hot_embedding(step_model):
    """The step model with its embedding lookup computed as one_hot(id) @ table,
    which the converter writes as EMBEDDING_LOOKUP, not GATHER. Two things need
    that form: the int4 quantizer, which has a recipe for EMBEDDING_LOOKUP and
    none for GATHER, and a tied table stored once. The converter quantizes an
    EMBEDDING_LOOKUP's table per row, as the output layer's FULLY_CONNECTED
    quantizes the same [V, d] matrix, so both read one int8 constant; a
    GATHER's table gets one scale and a copy of its own (V x d bytes more).
    A plain Embedding's `call`, or a low-rank one's (A[id] B), is replaced in
    place: give it a step model of its own. A model with neither is returned
    as it is."""
    from keras_models.factored import LowRankEmbedding

    def rows(ids, vocab_size):
        return tf.one_hot(tf.reshape(ids, (-1,)), vocab_size)

    def product(table):
        def call(ids):
            return tf.reshape(tf.matmul(rows(ids, table.input_dim), table.embeddings), (1, 1, table.output_dim))
        return call

    def low_rank(table):
        def call(ids):
            looked_up = tf.matmul(rows(ids, table.input_dim), table.matrix.a)
            return tf.reshape(tf.matmul(looked_up, table.matrix.b), (1, 1, table.output_dim))
        return call
    for layer in step_model.layers:
        if type(layer) is keras.layers.Embedding:
            layer.call = product(layer)
        elif type(layer) is LowRankEmbedding:
            layer.call = low_rank(layer)
    return step_model


def step_function(step_model, unk_id):
    """A tf.function with named inputs and outputs around the Keras step model."""
    names, specs = _specs(step_model)

    @tf.function(input_signature=specs)
    def step(token, *states):
        log_probs, new_states = _run(step_model, names, unk_id, token, states)
        return dict(log_probs=log_probs, **new_states)

    return step


def _top(logits, width):
    return tf.math.top_k(tf.reshape(logits, (1, -1)), k=width)  # ties: the lower index first


def _check_width(step_model, excluded, k):
    check_top_k(k, step_model.outputs[0].shape[-1], excluded)
    if len(set(excluded)) != SUGGEST_SLACK:  # the runtime reads k as the width less this
        raise ValueError(f"a suggest signature drops {SUGGEST_SLACK} ids, not {len(set(excluded))}")
    return k + SUGGEST_SLACK


def suggest_function(step_model, unk_id, excluded, k=TOP_K, head=None):
    """`step`, but returning the top k + len(excluded) ids and their logits."""
    names, specs = _specs(step_model)
    ranked, rank = ranking(step_model, _check_width(step_model, excluded, k), head)

    @tf.function(input_signature=specs)
    def suggest(token, *states):
        out, new_states = _run(ranked, names, unk_id, token, states)
        values, ids = rank(out)
        return dict(ids=ids, logits=values, **new_states)

    return suggest


class StateInside(tf.Module):
    """`step`, `suggest`, `set_state` and `get_state` over one set of resource variables."""

    def __init__(self, step_model, unk_id, excluded, k=TOP_K, head=None):
        super().__init__()
        names, specs = _specs(step_model)
        self.model = step_model  # tracked, so that its weights are saved
        self.state = [tf.Variable(tf.zeros(s.shape), name=n) for n, s in zip(names, specs[1:])]
        token_spec = specs[:1]

        def advance(model, token):
            out, new = _run(model, names, unk_id, token, [v.read_value() for v in self.state])
            for v, n in zip(self.state, names):
                v.assign(new[n + OUTPUT_SUFFIX])
            return out

        self.step = tf.function(lambda token: dict(log_probs=advance(step_model, token)), input_signature=token_spec)
        self.exported = {SIGNATURE: self.step}
        if k:
            ranked, rank = ranking(step_model, _check_width(step_model, excluded, k), head)

            def suggest(token):
                values, ids = rank(advance(ranked, token))
                return dict(ids=ids, logits=values)
            self.suggest = self.exported[SUGGEST] = tf.function(suggest, input_signature=token_spec)

        def set_state(*values):
            for v, x in zip(self.state, values):
                v.assign(x)
            # a signature needs an output; a constant one makes CompiledModel log a line per call
            return dict(done=tf.reshape(values[0], (-1,))[:1])
        self.set_state = self.exported[SET_STATE] = tf.function(set_state, input_signature=specs[1:])
        self.get_state = self.exported[GET_STATE] = tf.function(
            lambda: {n: v.read_value() for n, v in zip(names, self.state)}, input_signature=[])


def save_step_model(step_model, directory, unk_id, excluded, k=TOP_K, state="io", head=None):
    """The SavedModel with `step` and, unless k is 0, `suggest` (ranked by the two-stage
    `head` where one is given); with the state inside, `set_state` and `get_state` too.
    Returns the signature names."""
    if state == "inside":
        module = StateInside(step_model, unk_id, excluded, k, head)
        signatures = module.exported
    else:
        module = tf.Module()
        module.model = step_model
        module.step = step_function(step_model, unk_id)
        signatures = {SIGNATURE: module.step}
        if k:
            module.suggest = signatures[SUGGEST] = suggest_function(step_model, unk_id, excluded, k, head)
    tf.saved_model.save(module, directory, signatures=signatures)
    return tuple(signatures)
