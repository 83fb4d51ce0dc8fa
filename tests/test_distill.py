"""Distillation: the loss against numpy, alpha = 0 against plain training, the
teacher's targets against the teacher model, and the teacher refused."""
import json
import os

import numpy as np
import pytest

from pruning.train import main as train_main
from tests.conftest import tiny_config, write_corpus


def numpy_loss(logits, labels, ids, probs, alpha, t):
    """The distillation loss written out over the whole vocabulary: the teacher's top-k
    probabilities, the rest spread evenly, both distributions at temperature t; then both
    coarsened to the k words and one outcome for all the others, and the KL between those."""
    b, n, v = logits.shape
    total = 0.0
    for i in range(b):
        for j in range(n):
            z = logits[i, j].astype(np.float64)
            ls = z - np.log(np.exp(z - z.max()).sum()) - z.max()
            ce = -ls[labels[i, j]]
            teacher = np.full(v, (1 - probs[i, j].sum()) / (v - ids.shape[-1]) if v > ids.shape[-1] else 0.0)
            teacher[ids[i, j]] = probs[i, j]
            tt = teacher ** (1 / t)
            tt /= tt.sum()
            zs = z / t
            lst = zs - np.log(np.exp(zs - zs.max()).sum()) - zs.max()
            top = list(ids[i, j])
            other = [w for w in range(v) if w not in top]
            pt = np.append(tt[top], tt[other].sum())
            ps = np.append(np.exp(lst[top]), np.exp(lst[other]).sum())
            kl = sum(p * (np.log(p) - np.log(q)) for p, q in zip(pt, ps) if p > 0)
            total += (1 - alpha) * ce + alpha * t * t * kl
    return total / (b * n)


@pytest.mark.parametrize("k", [3, 7])
def test_the_loss_of_a_hand_made_batch_is_the_numpy_one(k):
    from keras_models.backend import tf
    from training.steps import loss_terms
    rng = np.random.default_rng(0)
    v = 7
    logits = rng.normal(size=(2, 3, v)).astype(np.float32)
    labels = rng.integers(0, v, size=(2, 3))
    teacher = rng.dirichlet(np.ones(v), size=(2, 3))
    ids = np.argsort(-teacher, -1)[..., :k]
    probs = np.take_along_axis(teacher, ids, -1).astype(np.float32)
    for alpha, t in ((0.0, 1.0), (0.5, 2.0), (1.0, 0.7)):
        loss, ce = loss_terms(tf.constant(logits), (tf.constant(labels), tf.constant(ids.astype(np.int16)),
                                                     tf.constant(probs.astype(np.float16))), (alpha, t))
        want = numpy_loss(logits, labels, ids, probs.astype(np.float16).astype(np.float64), alpha, t)
        assert abs(float(loss) - want) < 1e-4 * max(1, abs(want)), (alpha, t, float(loss), want)
        assert abs(float(ce) - numpy_loss(logits, labels, ids, probs, 0.0, 1.0)) < 1e-5


def test_with_k_equal_to_v_it_is_the_full_kl():
    from keras_models.backend import tf
    from training.distill import kl_from_top_k
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(1, 1, 5)), rng.dirichlet(np.ones(5), size=(1, 1))
    ids = np.arange(5)[None, None]
    kl = float(kl_from_top_k(tf.constant(s, tf.float32), tf.constant(ids), tf.constant(t, tf.float32), 1.0)[0, 0])
    ls = s[0, 0] - np.log(np.exp(s[0, 0]).sum())
    assert abs(kl - float((t[0, 0] * (np.log(t[0, 0]) - ls)).sum())) < 1e-5


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from pruning.trainer import train
    from training import rundir
    base = tmp_path_factory.mktemp("distill")
    data = write_corpus(base / "data")
    rundir.prepare(str(base / "teacher"))
    train(tiny_config(data, base / "teacher", hidden=16, epochs=2, dropout=0.3), log=lambda *a: None)
    return base, data


def weights(run):
    from keras_models.language_model import load_model
    return load_model(os.path.join(run, "model")).get_weights()


def test_alpha_zero_is_plain_training(teacher):
    base, data = teacher
    common = ["--data-dir", data, "--embed", "8", "--hidden", "12", "--epochs", "2", "--batch-size", "4",
              "--bptt", "8", "--schedule", "none", "--arch", "qrnn"]
    assert train_main(common + ["--out", str(base / "plain")]) == 0
    assert train_main(common + ["--out", str(base / "a0"), "--teacher", str(base / "teacher"),
                                "--distill-alpha", "0"]) == 0
    for a, b in zip(weights(base / "plain"), weights(base / "a0")):
        assert np.abs(a - b).max() < 1e-6
    report = json.load(open(base / "a0" / "train_report.json"))
    assert report["distillation"]["alpha"] == 0.0
    # and the teacher's targets are its own top words, in inference mode, kept beside it
    assert len(os.listdir(base / "teacher" / "distill")) == 1
    assert train_main(common + ["--out", str(base / "a5"), "--teacher", str(base / "teacher")]) == 0
    moved = max(np.abs(a - b).max() for a, b in zip(weights(base / "plain"), weights(base / "a5")))
    assert moved > 1e-3  # the teacher's term changes what is learned


def test_the_teachers_targets_are_its_top_words_in_inference_mode(teacher):
    from keras_models.backend import tf
    from keras_models.language_model import load_model, zero_states
    from training import data as tdata
    from training.distill import teacher_targets
    from edge_runtime.vocab import Vocab
    base, data = teacher
    vocab = Vocab.load(str(base / "teacher" / "vocab.txt"))
    stream = tdata.to_stream(tdata.load_corpus(data)["train"], vocab)
    xs, _ = tdata.batchify(stream, 4, 8)
    ids, probs = teacher_targets(str(base / "teacher"), xs, 5, log=lambda *a: None)
    model = load_model(str(base / "teacher" / "model"))
    states = zero_states(model, 4)
    for b in range(3):  # the state carried from batch to batch, no dropout
        out = model([tf.constant(xs[b])] + [tf.constant(s) for s in states], training=False)
        p = tf.nn.softmax(out[0]).numpy()
        states = [s.numpy() for s in out[1:]]
        want = np.sort(p, -1)[..., ::-1][..., :5]
        assert np.allclose(np.take_along_axis(p, ids[b].astype(np.int64), -1), want, atol=1e-6)
        assert np.allclose(probs[b], want, atol=2e-3)  # kept as float16


def test_an_ensembles_targets_are_the_top_words_of_its_runs_mean(teacher):
    from keras_models.backend import tf
    from keras_models.language_model import load_model, zero_states
    from pruning.trainer import train
    from training import data as tdata, rundir
    from training.distill import teacher_targets
    from edge_runtime.vocab import Vocab
    base, data = teacher
    rundir.prepare(str(base / "second"))  # another arch and width, another seed: a second opinion
    train(tiny_config(data, base / "second", hidden=10, epochs=1, arch="qrnn", seed=7), log=lambda *a: None)
    runs = [str(base / "teacher"), str(base / "second")]
    vocab = Vocab.load(str(base / "teacher" / "vocab.txt"))
    xs, _ = tdata.batchify(tdata.to_stream(tdata.load_corpus(data)["train"], vocab), 4, 8)
    ids, probs = teacher_targets(",".join(runs), xs, 5, log=lambda *a: None)
    alone, _ = teacher_targets(runs[0], xs, 5, log=lambda *a: None)
    assert len(os.listdir(base / "teacher" / "distill")) >= 2 and not np.array_equal(ids, alone)  # its own file
    models = [load_model(os.path.join(r, "model")) for r in runs]
    states = [zero_states(m, 4) for m in models]
    for b in range(3):  # each run's state carried from batch to batch, no dropout
        p = 0.0
        for j, m in enumerate(models):
            out = m([tf.constant(xs[b])] + [tf.constant(s) for s in states[j]], training=False)
            p = p + tf.nn.softmax(out[0]).numpy() / 2
            states[j] = [s.numpy() for s in out[1:]]
        want = np.sort(p, -1)[..., ::-1][..., :5]
        assert np.allclose(np.take_along_axis(p, ids[b].astype(np.int64), -1), want, atol=1e-6)
        assert np.allclose(probs[b], want, atol=2e-3)
    again, _ = teacher_targets(",".join(runs), xs, 5, log=None)  # read back from its file, not recomputed
    assert np.array_equal(again, ids)


def test_a_teacher_with_another_vocabulary_is_refused(teacher, capsys):
    base, data = teacher
    code = train_main(["--data-dir", data, "--embed", "8", "--hidden", "12", "--epochs", "1", "--batch-size", "4",
                       "--bptt", "8", "--vocab-size", "10", "--out", str(base / "other"),
                       "--teacher", str(base / "teacher")])
    err = capsys.readouterr().err
    assert code == 2 and "vocabulary" in err and err.count("\n") == 1
    assert not os.path.exists(base / "other")
    code = train_main(["--data-dir", data, "--out", str(base / "x"), "--teacher", str(base / "nothing")])
    assert code == 2 and "not a trained run" in capsys.readouterr().err
    code = train_main(["--data-dir", data, "--out", str(base / "x"),
                       "--teacher", f"{base / 'teacher'},{base / 'nothing'}"])  # every run of an ensemble checked
    assert code == 2 and "nothing: not a trained run" in capsys.readouterr().err
    code = train_main(["--data-dir", data, "--out", str(base / "x"), "--teacher", f"{base / 'teacher'},{base / 'teacher'}"])
    assert code == 2 and "named twice" in capsys.readouterr().err
    code = train_main(["--data-dir", data, "--out", str(base / "x"), "--distill-alpha", "0.3"])
    assert code == 2 and "--teacher" in capsys.readouterr().err


def test_every_run_of_an_ensemble_is_made_absolute(tmp_path, monkeypatch):
    from training.distill import absolute
    monkeypatch.chdir(tmp_path)
    assert absolute("runs/a,runs/b") == f"{tmp_path / 'runs' / 'a'},{tmp_path / 'runs' / 'b'}"
    assert absolute("/x/t") == "/x/t"


def test_the_lump_is_the_teachers_mean_mass_outside_its_top_k():
    from training.distill import lump
    # two batches of one sequence of two tokens, top 2: outside 0.2, 0.7, 0.0 and 0.5 -> 0.35
    probs = np.array([[[[0.5, 0.3], [0.2, 0.1]]], [[[0.6, 0.4], [0.25, 0.25]]]], np.float16)
    assert lump(probs) == pytest.approx(0.35, abs=1e-3)
