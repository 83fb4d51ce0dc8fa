"""The models against independent references: a numpy QRNN, hand-counted
costs, and the step model fed token by token against the sequence model."""
import numpy as np
import pytest

from keras_models.backend import tf
from keras_models.cost import count_params, layer_report, macs_per_token
from keras_models.language_model import (build_language_model, build_step_model, load_model,
                                         save_model, zero_states)
from keras_models.qrnn import QRNN


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_qrnn(x, kernel, bias, window, c0, x_prev, zoneout=0.0):
    """Bradbury et al.'s equations, written out one step at a time; with
    zoneout, the test-time forget gate is its expectation f + p (1 - f)."""
    batch, steps, dim = x.shape
    units = bias.shape[0] // 3
    hist = np.concatenate([x_prev, x], axis=1) if window > 1 else x
    c, hs = c0.copy(), []
    for t in range(steps):
        window_in = np.concatenate([hist[:, t + j] for j in range(window)], axis=-1)
        g = window_in @ kernel + bias
        z, f, o = np.tanh(g[:, :units]), sigmoid(g[:, units:2 * units]), sigmoid(g[:, 2 * units:])
        f = f + zoneout * (1 - f)
        c = f * c + (1 - f) * z
        hs.append(o * c)
    return np.stack(hs, 1), c


@pytest.mark.parametrize("window", [1, 2, 3])
def test_qrnn_layer_matches_numpy(window):
    rng = np.random.default_rng(window)
    batch, steps, dim, units = 3, 7, 5, 4
    layer = QRNN(units, window=window)
    x = rng.normal(size=(batch, steps, dim)).astype(np.float32)
    c0 = rng.normal(size=(batch, units)).astype(np.float32)
    prev = rng.normal(size=(batch, window - 1, dim)).astype(np.float32)
    inputs = [x, c0] + ([prev] if window > 1 else [])
    out = layer(inputs)
    layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    out = [o.numpy() for o in layer(inputs)]
    kernel, bias = layer.get_weights()
    h_ref, c_ref = numpy_qrnn(x, kernel, bias, window, c0, prev)
    np.testing.assert_allclose(out[0], h_ref, atol=1e-5)
    np.testing.assert_allclose(out[1], c_ref, atol=1e-5)
    if window > 1:
        np.testing.assert_array_equal(out[2], np.concatenate([prev, x], 1)[:, -(window - 1):])


def test_qrnn_zoneout_at_test_time_uses_the_expected_forget_gate():
    rng = np.random.default_rng(7)
    layer = QRNN(4, window=2, zoneout=0.4)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    c0 = rng.normal(size=(2, 4)).astype(np.float32)
    prev = rng.normal(size=(2, 1, 3)).astype(np.float32)
    layer([x, c0, prev])
    layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    h, c = [o.numpy() for o in layer([x, c0, prev], training=False)[:2]]
    h_ref, c_ref = numpy_qrnn(x, *layer.get_weights(), 2, c0, prev, zoneout=0.4)
    np.testing.assert_allclose(h, h_ref, atol=1e-5)
    np.testing.assert_allclose(c, c_ref, atol=1e-5)


def test_qrnn_zoneout_only_in_training():
    layer = QRNN(6, window=1, zoneout=0.5)
    x = np.random.default_rng(0).normal(size=(2, 9, 3)).astype(np.float32)
    c0 = np.zeros((2, 6), np.float32)
    a, b = layer([x, c0])[0].numpy(), layer([x, c0])[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(layer([x, c0], training=True)[0].numpy(), a)


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in model.get_weights()])


@pytest.mark.parametrize("arch,tie,layers", [("qrnn", True, 2), ("qrnn", False, 3), ("lstm", True, 2),
                                             ("lstm", False, 1)])
def test_step_model_token_by_token_equals_sequence(arch, tie, layers):
    model = build_language_model(arch, 30, 6, 10, layers, dropout=0.3, tie_embeddings=tie)
    randomize(model)
    ids = np.random.default_rng(1).integers(0, 30, size=12).astype(np.int32)
    seq_out = model([ids[None, :]] + zero_states(model, 1), training=False)
    expected = tf.nn.log_softmax(seq_out[0][0]).numpy()
    step = build_step_model(model.spec, model.get_weights())
    states = zero_states(step, 1)
    got = []
    for t in ids:
        out = step([np.array([[t]], np.int32)] + states)
        got.append(out[0].numpy()[0])
        states = [s.numpy() for s in out[1:]]
    np.testing.assert_allclose(np.stack(got), expected, atol=1e-5)
    for s_step, s_seq in zip(states, seq_out[1:]):  # the final states agree too
        np.testing.assert_allclose(s_step, s_seq.numpy(), atol=1e-5)


def test_state_carried_across_chunks_equals_one_pass():
    model = build_language_model("qrnn", 20, 4, 6, 2, tie_embeddings=True)
    randomize(model, 3)
    ids = np.random.default_rng(2).integers(0, 20, size=(2, 10)).astype(np.int32)
    whole = model([ids] + zero_states(model, 2))[0].numpy()
    first = model([ids[:, :4]] + zero_states(model, 2))
    second = model([ids[:, 4:]] + [s.numpy() for s in first[1:]])
    np.testing.assert_allclose(np.concatenate([first[0], second[0]], 1), whole, atol=1e-5)


def test_costs_hand_counted():
    m = build_language_model("lstm", 50, 4, 6, 2, tie_embeddings=False)
    # lstm 0: kernel 4x24, recurrent 6x24; lstm 1: 6x24 and 6x24; output 6x50; embedding is a lookup
    assert macs_per_token(m)[0] == 4 * 24 + 6 * 24 + 6 * 24 + 6 * 24 + 6 * 50
    q = build_language_model("qrnn", 50, 4, 6, 2, window=2, tie_embeddings=True)
    # qrnn 0: (2*4)x18; qrnn 1 (tied, 4 units): 6x12; output uses the 50x4 embedding
    assert macs_per_token(q)[0] == 8 * 18 + 6 * 12 + 50 * 4
    total, nonzero = count_params(q)
    assert total == 50 * 4 + (8 * 18 + 18) + (6 * 12 + 12) + 50  # the tied matrix counted once
    w = q.get_weights()
    w[1][:] = 0  # qrnn 0 kernel
    q.set_weights(w)
    rows = {(r["layer"], r["weight"]): r for r in layer_report(q)}
    assert rows[("rnn_0", "kernel")]["sparsity"] == 1.0
    assert macs_per_token(q)[1] == macs_per_token(q)[0] - 8 * 18 - np.count_nonzero(w[0] == 0)


def test_save_and_load_round_trip(tmp_path):
    m = build_language_model("qrnn", 25, 4, 6, 2, tie_embeddings=True)
    randomize(m)
    save_model(m, str(tmp_path / "model"))
    back = load_model(str(tmp_path / "model"))
    assert back.spec == m.spec
    for a, b in zip(m.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
