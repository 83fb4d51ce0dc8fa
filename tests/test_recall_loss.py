"""The R@3 loss term (`--recall-loss`): against a hand-worked example and a numpy loop, its gradient,
the words it never counts, and its wiring into training."""
import math
import os

import numpy as np

from pruning.train import main as train_main
from tests.conftest import write_corpus


def numpy_term(logits, labels, blocked, k=3):
    """softplus(k-th best shown word other than y - y), word by word; 0 where y is never shown."""
    out = np.zeros(labels.shape)
    for idx in np.ndindex(labels.shape):
        z, y = logits[idx].astype(np.float64), labels[idx]
        if blocked[y]:
            continue
        rivals = sorted((z[w] for w in range(len(z)) if w != y and not blocked[w]), reverse=True)
        out[idx] = math.log1p(math.exp(rivals[k - 1] - z[y]))
    return out


def test_a_hand_worked_position():
    from keras_models.backend import tf
    from training.recall_loss import margin_term
    # words 0 and 1 are never shown; y = 2; the shown rivals are 3, 4, 5 at 2.0, 0.5, 1.0: the 3rd is 0.5
    logits = np.array([[9.0, 8.0, 1.5, 2.0, 0.5, 1.0]], np.float32)
    blocked = np.array([1, 1, 0, 0, 0, 0], np.float32)
    got = margin_term(tf.constant(logits), tf.constant([2]), tf.constant(blocked)).numpy()
    assert abs(got[0] - math.log1p(math.exp(0.5 - 1.5))) < 1e-6
    # a blocked true word adds nothing, however it ranks
    got = margin_term(tf.constant(logits), tf.constant([0]), tf.constant(blocked)).numpy()
    assert got[0] == 0.0


def test_the_term_and_the_loss_are_the_numpy_loop():
    from keras_models.backend import tf
    from training.recall_loss import margin_term
    from training.steps import loss_terms
    rng = np.random.default_rng(0)
    v = 11
    logits = rng.normal(size=(3, 5, v)).astype(np.float32) * 2
    labels = rng.integers(0, v, size=(3, 5))
    blocked = np.zeros(v, np.float32)
    blocked[[0, 4]] = 1.0
    labels[0, 0], labels[1, 2] = 0, 4  # two positions whose true word is never shown
    for k in (1, 3):
        got = margin_term(tf.constant(logits), tf.constant(labels), tf.constant(blocked), k).numpy()
        assert np.abs(got - numpy_term(logits, labels, blocked, k)).max() < 1e-5
    for beta in (0.0, 0.7):
        loss, ce = loss_terms(tf.constant(logits), tf.constant(labels), None, (beta, blocked))
        ls = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        want_ce = -np.take_along_axis(ls, labels[..., None], -1).mean()
        assert abs(float(ce) - want_ce) < 1e-5
        assert abs(float(loss) - (want_ce + beta * numpy_term(logits, labels, blocked).mean())) < 1e-5


def test_only_the_true_word_and_the_kth_rival_get_its_gradient():
    from keras_models.backend import tf
    from training.recall_loss import margin_term
    logits = tf.Variable([[0.3, 2.0, -1.0, 1.2, 0.8, 5.0]])
    blocked = tf.constant([0, 0, 0, 0, 0, 1], tf.float32)  # word 5 leads but is never shown
    with tf.GradientTape() as tape:
        term = margin_term(logits, tf.constant([2]), blocked)
    g = tape.gradient(term, logits).numpy()[0]
    s = 1 / (1 + math.exp(-(0.8 - -1.0)))  # the 3rd shown rival is word 4 (2.0, 1.2, 0.8)
    assert np.allclose(g, [0, 0, -s, 0, s, 0], atol=1e-6)


def test_the_mask_is_the_keyboards_hidden_words():
    from edge_runtime.keyboard import Words
    from edge_runtime.vocab import Vocab
    from training.recall_loss import blocked_mask
    vocab = Vocab.build([["a", "b", "N", "b", "c"]], 10)
    hidden = Words(vocab).hidden
    assert {i for i, b in enumerate(blocked_mask(vocab)) if b} == set(hidden)
    assert vocab.index["N"] in hidden and vocab.unk_id in hidden


def test_the_term_changes_what_is_learned_and_a_bad_beta_is_refused(tmp_path, capsys):
    from keras_models.language_model import load_model
    data = write_corpus(tmp_path / "data")
    common = ["--data-dir", data, "--embed", "8", "--hidden", "12", "--epochs", "1", "--batch-size", "4",
              "--bptt", "8", "--schedule", "none", "--arch", "qrnn", "--steps-per-epoch", "20"]
    assert train_main(common + ["--out", str(tmp_path / "plain")]) == 0
    assert train_main(common + ["--out", str(tmp_path / "r"), "--recall-loss", "2"]) == 0
    w = [load_model(os.path.join(tmp_path / r, "model")).get_weights() for r in ("plain", "r")]
    assert max(np.abs(a - b).max() for a, b in zip(*w)) > 1e-3
    capsys.readouterr()
    for bad in ("-1", "nan"):
        assert train_main(common + ["--out", str(tmp_path / "bad"), "--recall-loss", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == f"error: --recall-loss must be a number at least 0, got {float(bad)}"
    assert not os.path.exists(tmp_path / "bad")


def test_beside_the_teachers_term_it_is_added_to_it():
    from keras_models.backend import tf
    from tests.test_distill import numpy_loss
    from training.steps import loss_terms
    rng = np.random.default_rng(2)
    v = 7
    logits = rng.normal(size=(2, 3, v)).astype(np.float32)
    labels = rng.integers(0, v, size=(2, 3))
    teacher = rng.dirichlet(np.ones(v), size=(2, 3))
    ids = np.argsort(-teacher, -1)[..., :3]
    probs = np.take_along_axis(teacher, ids, -1).astype(np.float32)
    blocked = np.zeros(v, np.float32)
    blocked[1] = 1.0
    loss, _ = loss_terms(tf.constant(logits), (tf.constant(labels), tf.constant(ids), tf.constant(probs)),
                         (0.5, 2.0), (0.7, blocked))
    want = numpy_loss(logits, labels, ids, probs, 0.5, 2.0) + 0.7 * numpy_term(logits, labels, blocked).mean()
    assert abs(float(loss) - want) < 1e-4
