"""The H-LSTM against a numpy implementation of its equations; grow-and-prune
on constructed examples and a tiny run; conversion; bad input."""
import numpy as np
import pytest

from keras_models.backend import keras, tf
from keras_models.hlstm import HLSTM
from keras_models.language_model import (build_language_model, named_weights,
                                         set_named_weights, zero_states)
from methods import grow_prune
from training import rundir
from pruning import train as train_cli
from pruning.trainer import make_train_step, train
from tests.conftest import assert_float32_tflite_matches_keras, tiny_config, write_corpus


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_hlstm(x, h, c, w1, b1, w2, b2):
    """Dai et al.'s cell, one step at a time, one gate MLP at a time."""
    g, units = w2.shape[1], w2.shape[2]
    hs = []
    for t in range(x.shape[1]):
        u = np.concatenate([x[:, t], h], axis=-1)
        gate = []
        for k in range(4):
            a = np.maximum(u @ w1[:, k * g:(k + 1) * g] + b1[k * g:(k + 1) * g], 0)
            gate.append(a @ w2[k] + b2[k * units:(k + 1) * units])
        i, f, cand, o = sigmoid(gate[0]), sigmoid(gate[1]), np.tanh(gate[2]), sigmoid(gate[3])
        c = f * c + i * cand
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), h, c


@pytest.mark.parametrize("steps", [1, 5])
def test_hlstm_matches_numpy(steps):
    rng = np.random.default_rng(steps)
    x = rng.normal(size=(2, steps, 3)).astype(np.float32)
    h0, c0 = (rng.normal(size=(2, 4)).astype(np.float32) for _ in range(2))
    layer = HLSTM(4, gate_hidden=5)
    layer([x, h0, c0])
    layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in layer.get_weights()])
    ours = [t.numpy() for t in layer([x, h0, c0])]
    ref = numpy_hlstm(x, h0, c0, *layer.get_weights())
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_grow_mask_and_prune_mask_by_hand():
    mask = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    grad = np.array([[9, -5, 1], [-3, 7, 0.5]], np.float32)  # dormant: -5, 1, -3, 0.5
    new, grown = grow_prune.grow_mask(mask, grad, 0.5)      # the 2 largest |g| of the 4 dormant
    np.testing.assert_array_equal(new, [[1, 1, 0], [1, 1, 0]])
    assert sorted(grown.tolist()) == [1, 3]
    weight = np.array([[0.1, -2, 0], [0.5, 0.3, 9]], np.float32)
    # sparsity 0.5 of 6 = keep 3 of the active ones (mask 1): |-2|, 0.5, 0.3 (9 is not active)
    np.testing.assert_array_equal(grow_prune.prune_mask(weight, new, 0.5), [[0, 1, 0], [1, 1, 0]])
    seeded = grow_prune.seed_mask((10, 10), 0.3, np.random.default_rng(0))
    assert seeded.sum() == 30


def _masked_model():
    keras.utils.set_random_seed(1)
    return build_language_model("hlstm", 9, 4, 5, 1, gate_hidden=3, masks=True, dropout=0.0)


def test_growth_activates_the_dormant_connections_with_the_largest_gradient():
    """Reference: the gradient of the same loss w.r.t. the weights of an
    unmasked model whose weights are W * mask, accumulated over the batches."""
    rng = np.random.default_rng(0)
    model = _masked_model()
    batches = [(rng.integers(0, 9, size=(2, 6)).astype(np.int32), rng.integers(0, 9, size=(2, 6)).astype(np.int32))
               for _ in range(3)]
    settings = dict(seed_density=0.4, grow_fraction=0.25, grow_batches=3, cycles=1, target_sparsity=0.5,
                    total_steps=30)
    gp = grow_prune.GrowPrune(model, settings, batches, lr=0.1, log=lambda *a: None)
    gp.seed()
    layer = grow_prune.masked_layers(model)[0]
    masks_before = [m.numpy().copy() for _, m in layer.masked_weights()]

    plain = build_language_model("hlstm", 9, 4, 5, 1, gate_hidden=3, dropout=0.0)
    set_named_weights(plain, named_weights(model))
    weights = [plain.get_layer("rnn_0").kernel, plain.get_layer("rnn_0").output_kernel]
    acc = [np.zeros(w.shape) for w in weights]
    states = [tf.constant(s) for s in zero_states(plain, 2)]
    for x, y in batches:
        with tf.GradientTape() as tape:
            out = plain([tf.constant(x)] + states, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out[0], from_logits=True))
        for a, g in zip(acc, tape.gradient(loss, weights)):
            a += g.numpy()
        states = list(out[1:])

    gp.grow()
    for (w, m), before, a in zip(layer.masked_weights(), masks_before, acc):
        dormant = np.flatnonzero(before.reshape(-1) == 0)
        n = int(round(0.25 * dormant.size))
        expected = set(dormant[np.argsort(-np.abs(a.reshape(-1)[dormant]))[:n]].tolist())
        grown = set(np.flatnonzero((m.numpy() - before).reshape(-1) == 1).tolist())
        assert grown == expected
        # grown weights start a step down the mean gradient
        idx = np.array(sorted(grown))
        np.testing.assert_allclose(w.numpy().reshape(-1)[idx], -0.1 * a.reshape(-1)[idx] / 3, rtol=1e-4, atol=1e-8)


def test_pruned_weights_stay_zero_while_the_mask_is_held():
    rng = np.random.default_rng(2)
    model = _masked_model()
    layer = grow_prune.masked_layers(model)[0]
    settings = dict(seed_density=1.0, grow_fraction=0.5, grow_batches=1, cycles=1, target_sparsity=0.6,
                    total_steps=30)
    gp = grow_prune.GrowPrune(model, settings, [], lr=0.1, log=lambda *a: None)
    gp.prune()
    masks = [m.numpy().copy() for _, m in layer.masked_weights()]
    assert all(abs((m == 0).mean() - 0.6) < 0.02 for m in masks)
    before = [w.numpy().copy() for w, _ in layer.masked_weights()]
    opt = keras.optimizers.Adam(0.05)
    step = make_train_step(model, opt, after=[layer.apply_masks])
    for _ in range(5):
        x = rng.integers(0, 9, size=(2, 6)).astype(np.int32)
        step(tf.constant(x), tf.constant(np.roll(x, 1, 1)), [tf.constant(s) for s in zero_states(model, 2)])
    for (w, _), m, b in zip(layer.masked_weights(), masks, before):
        assert (w.numpy()[m == 0] == 0).all()
        assert not np.allclose(w.numpy()[m == 1], b[m == 1])


def test_grow_prune_run_ends_at_the_target_sparsity_and_converts(tmp_path):
    corpus = write_corpus(tmp_path / "data")
    out = tmp_path / "run"
    rundir.prepare(str(out))
    r = train(tiny_config(corpus, out, arch="hlstm", layers=1, gate_hidden=6, schedule="grow-prune",
                          target_sparsity=0.7, seed_density=0.2, grow_fraction=0.5, gp_cycles=2, epochs=2),
              log=lambda *a: None)
    assert [e["event"] for e in r["grow_prune"]] == ["grow", "prune", "grow", "prune"]
    assert all(e["valid_perplexity_before"] > 0 for e in r["grow_prune"])
    for row in r["layers"]:
        if row["weight"] in ("kernel", "output_kernel"):
            assert row["sparsity"] == pytest.approx(0.7, abs=0.005)
    assert_float32_tflite_matches_keras(out, 30)


@pytest.mark.parametrize("args,message", [
    (["--arch", "hlstm", "--gate-hidden", "0"], "--gate-hidden must be at least 1"),
    (["--arch", "hlstm", "--schedule", "grow-prune", "--seed-density", "0"], "--seed-density must be in (0, 1]"),
    (["--arch", "hlstm", "--schedule", "grow-prune", "--grow-fraction", "1.5"], "--grow-fraction must be in (0, 1]"),
    (["--arch", "qrnn", "--schedule", "grow-prune"], "--schedule grow-prune needs the masks of --arch hlstm"),
    (["--arch", "hlstm", "--recover", "rank-one"], "--recover rank-one supports qrnn, lstm, not hlstm"),
])
def test_bad_hlstm_options_are_one_line_errors(args, message, tmp_path, capsys):
    out = tmp_path / "never"
    assert train_cli.main(["--data-dir", str(tmp_path), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
