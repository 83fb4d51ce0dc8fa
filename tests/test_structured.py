"""Neuron gates, physical removal and the rank-one update, against
independent references: a Monte-Carlo estimate, Keras' own LSTM, the gated
model itself, hand-built examples."""
import numpy as np
import pytest

from keras_models.backend import keras, tf
from keras_models.language_model import (build_language_model, named_weights,
                                         set_named_weights, zero_states)
from keras_models.lstm import LSTM
from keras_models.neuron_gates import BETA, GAMMA, ZETA, NeuronGate, expected_l0, gate_layers, gate_values
from keras_models import rank_one
from keras_models.surgery import shrink


def test_expected_l0_matches_monte_carlo():
    rng = np.random.default_rng(0)
    log_alpha = np.array([-3.0, -1.0, 0.0, 0.5, 2.0], np.float32)
    u = rng.uniform(size=(200_000, len(log_alpha)))
    s = 1 / (1 + np.exp(-(np.log(u) - np.log(1 - u) + log_alpha) / BETA))
    z = np.clip(s * (ZETA - GAMMA) + GAMMA, 0, 1)
    mc = (z > 0).mean(axis=0)
    np.testing.assert_allclose(expected_l0(tf.constant(log_alpha)).numpy(), mc, atol=4e-3)


def test_gate_samples_follow_the_noise_and_test_values_are_deterministic():
    gate = NeuronGate(4, init=0.0)
    gate.log_alpha.assign([-10.0, 10.0, 0.0, 0.0])
    np.testing.assert_allclose(gate.test_values(), [0.0, 1.0, 0.5, 0.5], atol=1e-6)
    gate.noise.assign([0.5, 0.5, 1e-6, 1 - 1e-6])  # logit(u) = 0, -13.8, +13.8
    np.testing.assert_allclose(gate.values(training=True).numpy(), [0.0, 1.0, 0.0, 1.0], atol=1e-6)


def test_lstm_layer_equals_keras_lstm():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 6, 5)).astype(np.float32))
    h0, c0 = (tf.constant(rng.normal(size=(2, 4)).astype(np.float32)) for _ in range(2))
    ref = keras.layers.LSTM(4, return_sequences=True, return_state=True)
    ref_out = ref(x, initial_state=[h0, c0])
    ref.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in ref.get_weights()])
    ref_out = [t.numpy() for t in ref(x, initial_state=[h0, c0])]
    ours = LSTM(4)
    ours([x, h0, c0])
    ours.set_weights(ref.get_weights())
    for a, b in zip(ours([x, h0, c0]), ref_out):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-5)
    one = ours([x[:, :1], h0, c0])  # the step path (no loop) agrees too
    np.testing.assert_allclose(one[0].numpy()[:, 0], ref_out[0][:, 0], atol=1e-5)


def _run(model, tokens, rng_states=None):
    states = zero_states(model, tokens.shape[0]) if rng_states is None else rng_states
    return [t.numpy() for t in model([tokens] + states, training=False)]


@pytest.mark.parametrize("arch,tied,layers", [("qrnn", True, 2), ("qrnn", False, 3),
                                              ("lstm", True, 2), ("lstm", False, 3)])
def test_removal_of_closed_gates_keeps_the_outputs(arch, tied, layers):
    rng = np.random.default_rng(2)
    kw = dict(arch=arch, vocab_size=11, embed=6, hidden=7, layers=layers, tie_embeddings=tied, window=2)
    gated = build_language_model(**kw, gates=dict(kind="l0"))
    gated.set_weights([rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in gated.get_weights()])
    for g in gate_layers(gated):  # some closed, the rest open at various values
        g.log_alpha.assign(rng.choice([-6.0, -0.5, 0.3, 1.0, 6.0], size=g.units).astype(np.float32))
    z = gate_values(gated)
    assert any((v == 0).any() for v in z.values()) and any(((v > 0) & (v < 1)).any() for v in z.values())
    spec, weights = shrink(gated.spec, named_weights(gated), z)
    plain = build_language_model(**spec)
    set_named_weights(plain, weights)
    assert plain.count_params() < build_language_model(**kw).count_params()
    # each group keeps its open neurons, one closed one more where that makes the width even (int4's XNNPACK)
    for width, size, group in [(spec["embed"], kw["embed"], "embedding")] + \
            [(h, kw["hidden"], f"rnn_{i}") for i, h in enumerate(spec["hidden_sizes"]) if f"rnn_{i}" in z]:
        n = int((z[group] > 0).sum())
        assert width == (n if n % 2 == 0 or n == size else n + 1), (group, width, n)

    tokens = rng.integers(0, 11, size=(2, 9)).astype(np.int32)
    np.testing.assert_allclose(_run(plain, tokens)[0], _run(gated, tokens)[0], atol=1e-5)
    # carried state: the shrunk model's state is the kept part of the gated model's
    step = build_language_model(**spec, step=True)
    set_named_weights(step, weights)
    gated_step = build_language_model(**kw, step=True, gates=dict(kind="l0"))
    gated_step.set_weights(gated.get_weights())
    s_small, s_big = zero_states(step, 1), zero_states(gated_step, 1)
    for t in tokens[0]:
        out_small = step([np.array([[t]], np.int32)] + s_small)
        out_big = gated_step([np.array([[t]], np.int32)] + s_big)
        np.testing.assert_allclose(out_small[0].numpy(), out_big[0].numpy(), atol=1e-5)
        s_small, s_big = out_small[1:], out_big[1:]


def test_a_layer_with_every_gate_closed_keeps_one_unit_and_warns():
    model = build_language_model("qrnn", 9, 4, 5, 2, gates=dict(kind="mask"))
    model.get_layer("gate_rnn_0").mask.assign(np.zeros(5, np.float32))
    messages = []
    spec, _ = shrink(model.spec, named_weights(model), gate_values(model), warn=messages.append)
    assert spec["hidden_sizes"] == [2, 4] and "keeping one" in messages[0]  # and a dead one, for an even width


@pytest.mark.parametrize("arch", ["qrnn", "lstm"])
def test_rank_one_update_is_computed_as_a_rank_one_matrix(arch):
    """Folding v u^T into each matrix of a plain model gives the same outputs."""
    rng = np.random.default_rng(3)
    kw = dict(arch=arch, vocab_size=13, embed=5, hidden=6, layers=2, tie_embeddings=(arch == "qrnn"))
    r1 = build_language_model(**kw, rank_one=True)
    r1.set_weights([rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in r1.get_weights()])
    folded = {}
    for name, arrays in named_weights(r1).items():
        layer = r1.get_layer(name)
        if name == "embedding":
            folded[name] = [arrays[0] + np.outer(layer.u.numpy(), layer.v.numpy())]
        elif name == "output" and kw["tie_embeddings"]:  # only the bias
            folded[name] = arrays
        elif name == "output":
            folded[name] = [arrays[0] + np.outer(arrays[3], arrays[2]), arrays[1]]
        elif arch == "qrnn":
            folded[name] = [arrays[0] + np.outer(arrays[3], arrays[2]), arrays[1]]
        else:
            folded[name] = [arrays[0] + np.outer(arrays[4], arrays[3]),
                            arrays[1] + np.outer(arrays[6], arrays[5]), arrays[2]]
    plain = build_language_model(**kw)
    set_named_weights(plain, folded)
    tokens = rng.integers(0, 13, size=(2, 7)).astype(np.int32)
    np.testing.assert_allclose(_run(r1, tokens)[0], _run(plain, tokens)[0], atol=1e-4)
    assert len(rank_one.update_variables(r1)) == (6 if arch == "qrnn" else 12)  # u, v per matrix


def test_macs_penalty_is_the_expected_macs_fraction():
    """Against sampling: draw which gates are open (P = expected L0 of each),
    count the MACs of the model left, average."""
    from keras_models.cost import macs_from_spec, macs_per_token
    from keras_models.neuron_gates import l0_penalty
    rng = np.random.default_rng(4)
    model = build_language_model("qrnn", 50, 6, 8, 2, window=2, gates=dict(kind="l0"))
    plain = build_language_model("qrnn", 50, 6, 8, 2, window=2)
    assert macs_from_spec(model.spec) == macs_per_token(plain)[0]
    probs = {}
    for g in gate_layers(model):
        g.log_alpha.assign(rng.normal(0, 2, g.units).astype(np.float32))
        probs[g.name[5:]] = expected_l0(g.log_alpha).numpy()
    draws = []
    for _ in range(20000):
        n = {k: (rng.random(p.shape) < p).sum() for k, p in probs.items()}
        draws.append(macs_from_spec(dict(model.spec, embed=n["embedding"], hidden_sizes=[n["rnn_0"], n["embedding"]])))
    expected = np.mean(draws) / macs_from_spec(model.spec)
    assert float(l0_penalty(model, "macs")) == pytest.approx(expected, rel=0.01)
    assert float(l0_penalty(model, "count")) == pytest.approx(sum(p.sum() for p in probs.values()), rel=1e-5)
