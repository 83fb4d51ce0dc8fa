"""The structured schedules end to end on tiny runs: filter ranking on
hand-built examples, L0 and filter runs ending at the sizes they report,
rank-one recovery, conversion of the result, bad input."""
import json

import numpy as np
import pytest

from keras_models.backend import keras, tf
from keras_models.language_model import (build_language_model, load_model,
                                         named_weights, set_named_weights, zero_states)
from keras_models import rank_one
from training import rundir
from pruning import train as train_cli
from methods import unit_ranking
from pruning.trainer import make_train_step, train
from tests.conftest import assert_float32_tflite_matches_keras, tiny_config, write_corpus

QUIET = dict(log=lambda *a: None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("s") / "data", sizes=(("train", 500), ("valid", 50), ("test", 50)))


@pytest.fixture(scope="module")
def dense(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("dense") / "run"
    rundir.prepare(str(out))
    train(tiny_config(corpus, out, schedule="none", epochs=1, dropout=0.0), **QUIET)
    return out


def _run(corpus, tmp_path, name, **kw):
    out = tmp_path / name
    rundir.prepare(str(out))
    return out, train(tiny_config(corpus, out, **kw), **QUIET)


def test_norm_ranking_keeps_the_units_with_the_largest_candidate_rows():
    spec = dict(arch="qrnn", hidden_sizes=[4, 3], tie_embeddings=True, embed=3)
    k0 = np.zeros((2 * 3, 12), np.float32)  # window 2, input 3, columns z|f|o of 4 units
    k0[:, 0:4] = [1, 5, 2, 4]       # z rows: unit 1 then 3 largest
    k0[:, 4:8] = [100, 0, 0, 0]     # f and o rows do not count
    k1 = np.zeros((4, 9), np.float32)
    k1[:, 0:3] = [3, -7, 1]         # |.|: unit 1, then 0
    scores = unit_ranking.norm_scores(spec, {"rnn_0": [k0], "rnn_1": [k1]})
    masks = unit_ranking.keep_masks(spec, scores, 0.5)
    np.testing.assert_array_equal(masks["rnn_0"], [0, 1, 0, 1])
    np.testing.assert_array_equal(masks["embedding"], [1, 1, 0])  # round(1.5) = 2 of the tied last layer


def test_lstm_norm_ranking_reads_the_cell_candidate_over_input_and_recurrence():
    spec = dict(arch="lstm", hidden_sizes=[3], tie_embeddings=False, embed=2)
    kernel = np.zeros((2, 12), np.float32)
    recurrent = np.zeros((3, 12), np.float32)
    kernel[:, 8:11] = [1, 0, 0]       # c block: unit 0 from the input
    recurrent[:, 8:11] = [0, 0, 2]    # unit 2 from the recurrence, larger
    kernel[:, 0:3] = [0, 50, 0]       # the input gate does not count
    masks = unit_ranking.keep_masks(spec, unit_ranking.norm_scores(spec, {"rnn_0": [kernel, recurrent]}), 0.34)
    np.testing.assert_array_equal(masks["rnn_0"], [0, 0, 1])
    np.testing.assert_array_equal(masks["embedding"], [1, 1])  # untied: not pruned


def test_activation_ranking_measures_mean_absolute_output():
    """A layer whose units have constant, known outputs: h = o * c with
    z = tanh(big bias) = 1, f = 0, o = sigmoid(bias) per unit."""
    model = build_language_model("qrnn", 5, 3, 4, 2, tie_embeddings=True, window=1)
    w = named_weights(model)
    o_bias = np.array([-2.0, 3.0, 0.0, 1.0], np.float32)
    w["rnn_0"] = [np.zeros_like(w["rnn_0"][0]),
                  np.concatenate([np.full(4, 20.0), np.full(4, -20.0), o_bias]).astype(np.float32)]
    set_named_weights(model, w)
    batches = [np.random.default_rng(0).integers(0, 5, size=(2, 6)).astype(np.int32)] * 3
    scores = unit_ranking.activation_scores(model, model.spec, batches)
    np.testing.assert_allclose(scores["rnn_0"], 1 / (1 + np.exp(-o_bias)), rtol=1e-4)
    masks = unit_ranking.keep_masks(model.spec, scores, 0.5)
    np.testing.assert_array_equal(masks["rnn_0"], [0, 1, 0, 1])


def test_keep_at_least_one_unit_and_warn():
    spec = dict(arch="qrnn", hidden_sizes=[12, 4], tie_embeddings=True, embed=4)
    said = []
    masks = unit_ranking.keep_masks(spec, unit_ranking.random_scores(spec, 0), 0.01, warn=said.append)
    assert masks["rnn_0"].sum() == 1 and masks["embedding"].sum() == 1 and len(said) == 2


def test_one_shot_filter_from_a_trained_run(corpus, dense, tmp_path):
    out, r = _run(corpus, tmp_path, "f", schedule="filter", init_from=str(dense), epochs=0,
                  target_units=0.5, rank_by="norm")
    assert r["structure"]["before"]["hidden_sizes"] == [12, 8]
    assert r["hidden_sizes"] == [6, 4] and r["embed"] == 4
    # the kept units are the norm ranking's, and the weights are the trained ones, unchanged
    base = load_model(str(dense / "model"))
    spec = base.spec
    masks = unit_ranking.keep_masks(spec, unit_ranking.norm_scores(spec, named_weights(base)), 0.5)
    small = load_model(str(out / "model"))
    keep0 = masks["rnn_0"] > 0
    k = named_weights(base)["rnn_0"][0].reshape(2, 8, 3, 12)[:, masks["embedding"] > 0][..., keep0]
    np.testing.assert_allclose(named_weights(small)["rnn_0"][0], k.reshape(2 * 4, 3 * 6), atol=0)
    assert json.loads((out / "train_report.json").read_text())["steps"] == 0


@pytest.mark.parametrize("target", [0.6, 0.3])
def test_filter_asked_for_by_macs_ends_within_two_points(corpus, tmp_path, target):
    from methods.filter_pruning import kept_spec, units_for_macs
    from keras_models.cost import macs_from_spec
    spec = dict(arch="lstm", vocab_size=100, embed=20, hidden_sizes=[40, 20], tie_embeddings=True, window=1,
                factors=None)
    units, expected = units_for_macs(spec, target)  # against a hand count of the kept shapes
    h0, h1 = (n + n % 2 for n in (round(units * 40), round(units * 20)))  # shrink keeps even widths
    hand = h1 * 4 * h0 + h0 * 4 * h0 + h0 * 4 * h1 + h1 * 4 * h1 + h1 * 100  # tied: the embedding is h1 wide
    assert expected == round(hand / macs_from_spec(spec), 4) == round(macs_from_spec(kept_spec(spec, units))
                                                                       / macs_from_spec(spec), 4)
    out, r = _run(corpus, tmp_path, "f", schedule="filter", epochs=1, embed=16, hidden=32, target_macs=target)
    s = r["structure"]
    assert abs(s["after"]["macs_per_token"] / s["before"]["macs_per_token"] - target) <= 0.02
    # the kept shapes are the ones units_for_macs predicted from the dense spec
    assert r["schedule"]["target_macs"] == target and s["macs_fraction"] == r["schedule"]["expected_macs"]


@pytest.fixture(scope="module")
def dense_wide(corpus, tmp_path_factory):
    """A model wide enough that one unit is a small share of its MACs."""
    out = tmp_path_factory.mktemp("dense_wide") / "run"
    rundir.prepare(str(out))
    train(tiny_config(corpus, out, schedule="none", epochs=1, embed=16, hidden=32), **QUIET)
    return out


@pytest.mark.parametrize("target,frozen", [(0.6, False), (0.3, False), (0.5, True)])
def test_l0_asked_for_by_macs_ends_within_two_points(corpus, dense_wide, tmp_path, target, frozen):
    from keras_models.cost import macs_from_spec
    kw = dict(init_from=str(dense_wide), freeze_weights=True) if frozen else dict(embed=16, hidden=32)
    out, r = _run(corpus, tmp_path, "l0", schedule="l0", epochs=2, target_macs=target, gate_lr=0.1, **kw)
    s = r["structure"]
    # the constraint itself got there: the gates' expected share, before any closing, is near the target
    assert abs(s["expected_macs_fraction"] - target) <= 0.03
    model = load_model(str(out / "model"))
    dense = macs_from_spec(dict(model.spec, hidden_sizes=[32, 16], embed=16))  # the shapes it started from
    assert abs(macs_from_spec(model.spec) / dense - target) <= 0.02
    assert [w % 2 for w in [model.spec["embed"]] + model.spec["hidden_sizes"]] == [0, 0, 0]  # for int4's XNNPACK
    assert s["macs_fraction"] == round(macs_from_spec(model.spec) / dense, 4)
    assert r["schedule"]["l0_penalty"] == "constraint" and s["penalty_coefficient"] > 0  # pushed
    assert s["gated_valid_perplexity"] == pytest.approx(r["valid_perplexity"], rel=1e-4)


def test_l0_with_frozen_weights_and_no_penalty_changes_nothing(corpus, dense, tmp_path):
    out, r = _run(corpus, tmp_path, "l0", schedule="l0", init_from=str(dense), epochs=1,
                  freeze_weights=True, l0_lambda=0.0, l0_init=8.0)
    assert r["hidden_sizes"] == [12, 8]
    base, result = named_weights(load_model(str(dense / "model"))), named_weights(load_model(str(out / "model")))
    for name in base:
        for a, b in zip(base[name], result[name]):
            np.testing.assert_array_equal(a, b)


def test_l0_penalty_removes_units_and_the_report_matches_the_model(corpus, tmp_path):
    out, r = _run(corpus, tmp_path, "l0", schedule="l0", epochs=2, l0_lambda=0.05, gate_lr=0.1)
    model = load_model(str(out / "model"))
    assert r["hidden_sizes"] == model.spec["hidden_sizes"] and r["embed"] == model.spec["embed"]
    assert sum(r["hidden_sizes"]) < 12 + 8
    assert r["structure"]["after"]["macs_per_token"] == r["macs_per_token"] < r["structure"]["before"]["macs_per_token"]
    # removal is exact: the gated model's validation perplexity is the small model's
    assert r["structure"]["gated_valid_perplexity"] == pytest.approx(r["valid_perplexity"], rel=1e-4)


def test_gradual_filter_lstm_with_finetuning_and_recovery_converts(corpus, tmp_path):
    out, r = _run(corpus, tmp_path, "f", arch="lstm", tie_embeddings=False, schedule="filter", epochs=2,
                  target_units=0.5, rank_by="activation", finetune_epochs=1, recover="rank-one")
    assert r["hidden_sizes"] == [6, 6] and r["embed"] == 8
    assert [h["phase"] for h in r["history"]] == ["train", "train", "finetune", "recover"]
    v = r["vocab_size"]  # u + v per matrix: embedding, 2 x (kernel, recurrent), output
    assert r["recovery"]["extra_params"] == (v + 8) + (8 + 24) + 3 * (6 + 24) + (6 + v)
    assert_float32_tflite_matches_keras(out, 40)


def test_rank_one_recovery_trains_only_the_update_and_lowers_the_loss():
    """A toy problem: a model whose weights were damaged by pruning; training
    u and v alone must lower the loss and leave every other weight as it was."""
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model = build_language_model("qrnn", 7, 4, 6, 2, rank_one=True)
    frozen = {name: [a.copy() for a in arrays] for name, arrays in named_weights(model).items()}
    updates = rank_one.update_variables(model)
    before = {id(v): v.numpy().copy() for v in updates}
    opt = keras.optimizers.Adam(0.05)
    step = make_train_step(model, opt, updates)
    x = rng.integers(0, 7, size=(4, 10)).astype(np.int32)
    y = (x + 1) % 7  # a rule the random model does not know
    losses = []
    for _ in range(60):
        loss, _ = step(tf.constant(x), tf.constant(y), [tf.constant(s) for s in zero_states(model, 4)])
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.1
    after = named_weights(model)
    for name, arrays in frozen.items():
        n_base = {"embedding": 1, "output": 1}.get(name, 2)
        for a, b in zip(arrays[:n_base], after[name][:n_base]):
            np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(before[id(v)], v.numpy()) for v in updates if v.name.endswith("_v:0"))


@pytest.mark.parametrize("args,message", [
    (["--schedule", "l0", "--l0-lambda", "-1"], "--l0-lambda must not be negative"),
    (["--schedule", "filter", "--target-units", "0"], "--target-units must be in (0, 1]"),
    (["--schedule", "filter", "--target-units", "1.5"], "--target-units must be in (0, 1]"),
    (["--schedule", "filter", "--target-macs", "0"], "--target-macs must be in (0, 1]"),
    (["--schedule", "polynomial", "--target-macs", "0.5"], "--target-macs asks l0 or filter pruning, or --factorize lowrank, for a cost"),
    (["--schedule", "filter", "--rank-by", "size"], "unknown --rank-by"),
    (["--schedule", "l0", "--freeze-weights"], "--freeze-weights learns L0 gates on a trained model"),
    (["--init-from", "/nonexistent"], "not a trained run directory"),
    (["--schedule", "polynomial", "--finetune-epochs", "1"], "--finetune-epochs fine-tunes"),
    (["--recover", "svd"], "unknown --recover"),
])
def test_bad_structured_options_are_one_line_errors(args, message, tmp_path, capsys, corpus):
    out = tmp_path / "never"
    assert train_cli.main(["--data-dir", corpus, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_recover_rejects_an_architecture_without_the_update(tmp_path, capsys, corpus, monkeypatch):
    monkeypatch.setattr(train_cli, "RECOVERY_ARCHS", ("lstm",))
    assert train_cli.main(["--data-dir", corpus, "--out", str(tmp_path / "x"), "--recover", "rank-one"]) == 2
    assert "--recover rank-one supports lstm, not qrnn" in capsys.readouterr().err


def test_magnitude_pruning_from_a_trained_run_starts_from_its_weights(corpus, dense, tmp_path):
    """--init-from through TF-MOT's wrappers: with the sparsity reached at once and
    no training after, the kept weights are the trained ones."""
    out, r = _run(corpus, tmp_path, "m", schedule="constant", target_sparsity=0.5, init_from=str(dense),
                  epochs=1, begin_step=0, lr=1e-12)
    base = named_weights(load_model(str(dense / "model")))["rnn_0"][0]
    pruned = named_weights(load_model(str(out / "model")))["rnn_0"][0]
    kept = pruned != 0
    assert 0.45 < 1 - kept.mean() < 0.55
    np.testing.assert_allclose(pruned[kept], base[kept], rtol=1e-4)


def test_init_scale_leaves_the_l0_gates_at_l0_init(corpus, tmp_path, monkeypatch):
    """--init-scale (an LSTM's default) sets the weights, not the gates' log alpha."""
    from keras_models.neuron_gates import gate_layers
    from pruning import trainer
    seen = {}

    class Stop(Exception):
        pass

    def first_phase(phase, model, *args, **kwargs):  # the model as training would start it
        seen["log_alpha"] = [g.log_alpha.numpy() for g in gate_layers(model)]
        seen["kernels"] = [model.get_layer(f"rnn_{i}").kernel.numpy() for i in range(2)]
        raise Stop
    monkeypatch.setattr(trainer, "_fit", first_phase)
    with pytest.raises(Stop):
        train(tiny_config(corpus, tmp_path / "r", arch="lstm", schedule="l0", init_scale=0.1, l0_init=2.5), **QUIET)
    assert len(seen["log_alpha"]) == 2  # the embedding (tied: the last layer's units too) and rnn_0
    for log_alpha in seen["log_alpha"]:
        np.testing.assert_array_equal(log_alpha, 2.5)
    for kernel in seen["kernels"]:
        assert np.abs(kernel).max() <= 0.1 and kernel.std() > 0.03  # uniform in [-0.1, 0.1]
