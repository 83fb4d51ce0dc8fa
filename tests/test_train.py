"""Training runs on a tiny corpus: schedules reach their targets, the run
directory is complete, resume after SIGKILL, divergence, CLI errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_models.language_model import load_model
from training import rundir
from pruning.train import main
from pruning.trainer import train
from tests.conftest import SIGNAL_AT_STEP, tiny_config, write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pruned_matrices(report):
    return {(r["layer"], r["weight"]): r["sparsity"] for r in report["layers"]}


@pytest.mark.parametrize("schedule,arch,tie", [("constant", "qrnn", True), ("polynomial", "lstm", False),
                                               ("polynomial", "qrnn", False)])
def test_schedule_reaches_target_sparsity(tiny_corpus, tmp_path, schedule, arch, tie):
    out = tmp_path / "run"
    rundir.prepare(str(out))
    # the LSTMs' default SGD rate (20, Zaremba's) does not train a model this tiny: it stays above uniform
    lr = 5.0 if arch == "lstm" else None
    report = train(tiny_config(tiny_corpus, out, schedule=schedule, arch=arch, tie_embeddings=tie,
                               target_sparsity=0.7, lr=lr), log=lambda *a: None)
    assert report["status"] == "completed"
    sparsity = pruned_matrices(report)
    expected = {("rnn_0", "kernel"), ("rnn_1", "kernel")}
    expected |= {("embedding", "embeddings")} if tie else {("output", "kernel")}
    if arch == "lstm":
        expected |= {("rnn_0", "recurrent_kernel"), ("rnn_1", "recurrent_kernel")}
    for key in expected:
        assert sparsity[key] == pytest.approx(0.7, abs=0.02), key
    # the saved model is the stripped one, sparse as reported
    model = load_model(str(out / "model"))
    kernel = [l for l in model.layers if l.name == "rnn_0"][0].get_weights()[0]
    assert np.mean(kernel == 0) == pytest.approx(sparsity[("rnn_0", "kernel")], abs=1e-6)
    for name in ("config.json", "vocab.txt", "train_report.json", "model/spec.json",
                 "model/weights.h5", "checkpoints/last.npz"):
        assert (out / name).exists(), name
    assert os.listdir(out / "logs")
    # it learned: an untrained model scores about uniform (the vocabulary size, 18 here, above the unigram
    # model's 16.2 on these random sentences); a trained one comes within 5% of the unigram model or beats it
    assert report["test_perplexity"] < 1.05 * report["unigram_test_perplexity"] < report["vocab_size"]


def test_recurrent_scope_leaves_the_tied_embedding_dense(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    rundir.prepare(str(out))
    report = train(tiny_config(tiny_corpus, out, schedule="polynomial", arch="qrnn", target_sparsity=0.7,
                               prune_scope="recurrent"), log=lambda *a: None)
    sparsity = pruned_matrices(report)
    assert sparsity[("rnn_0", "kernel")] == pytest.approx(0.7, abs=0.02)
    assert sparsity[("rnn_1", "kernel")] == pytest.approx(0.7, abs=0.02)
    assert sparsity[("embedding", "embeddings")] == 0
    model = load_model(str(out / "model"))
    embedding = [l for l in model.layers if l.name == "embedding"][0].get_weights()[0]
    assert (embedding != 0).all()


def test_m_by_n_gives_two_of_four(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    rundir.prepare(str(out))
    train(tiny_config(tiny_corpus, out, schedule="m-by-n", arch="qrnn", tie_embeddings=False,
                      hidden=16, embed=8), log=lambda *a: None)
    model = load_model(str(out / "model"))
    kernel = [l for l in model.layers if l.name == "rnn_1"][0].get_weights()[0]  # (16, 24)
    groups = (kernel != 0).T.reshape(kernel.shape[1], -1, 4)  # per output unit, 4 inputs a group
    assert (groups.sum(-1) <= 2).all() and np.mean(kernel == 0) >= 0.5


def test_no_schedule_stays_dense(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    rundir.prepare(str(out))
    report = train(tiny_config(tiny_corpus, out, schedule="none", epochs=1), log=lambda *a: None)
    assert report["params_nonzero"] == report["params_total"] and report["pruning_step"] is None


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pruning.train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args,message", [
    (["--schedule", "bogus"], "unknown schedule 'bogus'"),
    (["--arch", "gru"], "unknown architecture 'gru'"),
    (["--target-sparsity", "1.0"], "--target-sparsity must be in [0, 1)"),
    (["--target-sparsity", "-0.1"], "--target-sparsity must be in [0, 1)"),
    (["--vocab-size", "2"], "--vocab-size must be at least 3"),
    (["--prune-scope", "output"], "unknown --prune-scope 'output'"),
])
def test_bad_options_one_line_exit_2(tmp_path, capsys, args, message):
    assert main(args + ["--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_bad_data_and_existing_run_leave_everything(tmp_path, capsys):
    d = write_corpus(tmp_path / "data")
    with open(os.path.join(d, "test.txt"), "wb") as f:
        f.write(b"caf\xe9\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("user's file")
    assert main(["--data-dir", d, "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "test.txt, line 1: not UTF-8" in err and "\n" not in err
    assert (out / "keep.txt").read_text() == "user's file"  # nothing deleted though --force
    write_corpus(tmp_path / "data")
    assert main(["--data-dir", d, "--out", str(out)]) == 2
    assert "already exists; use --resume" in capsys.readouterr().err
    assert main(["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_resume_after_sigkill_ends_like_an_uninterrupted_run(tiny_corpus, tmp_path):
    common = ["--data-dir", tiny_corpus, "--embed", "8", "--hidden", "12", "--epochs", "2",
              "--batch-size", "4", "--bptt", "8", "--checkpoint-every", "10", "--dropout", "0",
              "--schedule", "polynomial", "--target-sparsity", "0.6"]
    whole = run_cli(*common, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    env = dict(os.environ, SIGNAL_AT="17", SIGNAL="KILL")  # mid-epoch, 7 steps after the checkpoint at step 10
    killed = subprocess.run([sys.executable, "-c", SIGNAL_AT_STEP, *common, "--out", str(tmp_path / "cut")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9
    assert not (tmp_path / "cut" / "train_report.json").exists()
    resumed = run_cli("--resume", "--out", str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming at epoch 1, batch 10, step 10" in resumed.stdout
    a = json.loads((tmp_path / "whole" / "train_report.json").read_text())
    b = json.loads((tmp_path / "cut" / "train_report.json").read_text())
    assert b["steps"] == a["steps"] == 2 * a["steps_per_epoch"]
    assert b["pruning_step"] == a["pruning_step"] == a["steps"]
    assert b["params_nonzero"] == a["params_nonzero"]
    assert b["valid_perplexity"] == pytest.approx(a["valid_perplexity"], rel=1e-3)


def test_nan_loss_stops_with_status_diverged(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--data-dir", tiny_corpus, "--out", str(out), "--embed", "8", "--hidden", "12",
                 "--epochs", "2", "--batch-size", "4", "--bptt", "8", "--lr", "1e30",
                 "--clip-norm", "0", "--checkpoint-every", "1000"])
    report = json.loads((out / "train_report.json").read_text())
    assert code == 1 and report["status"] == "diverged"
    assert "diverged" in capsys.readouterr().out
    assert not (out / "model").exists()


def test_optimizer_and_initialisation_default_by_architecture(tmp_path):
    """Unset options take the architecture's defaults (LSTMs: SGD 20, uniform
    +-0.1; the QRNN: Adam 0.004); options given win; --init-from's arch counts."""
    corpus = write_corpus(tmp_path / "data")
    tiny = ["--data-dir", corpus, "--embed", "8", "--hidden", "8", "--epochs", "1", "--batch-size", "4",
            "--bptt", "5", "--schedule", "none"]

    def options(name, *args):
        assert main(tiny + ["--out", str(tmp_path / name)] + list(args)) == 0
        c = json.loads((tmp_path / name / "config.json").read_text())
        return c["optimizer"], c["lr"], c["init_scale"]

    assert options("q") == ("adam", 0.004, 0.0)
    assert options("l", "--arch", "lstm") == ("sgd", 20.0, 0.1)
    assert options("h", "--arch", "hlstm", "--layers", "1", "--gate-hidden", "4") == ("sgd", 20.0, 0.1)
    assert options("la", "--arch", "lstm", "--optimizer", "adam", "--lr", "0.01", "--init-scale", "0") == \
        ("adam", 0.01, 0.0)
    assert options("fine", "--init-from", str(tmp_path / "l"), "--schedule", "polynomial")[:2] == ("sgd", 20.0)
    from pruning.trainer import fill_training_defaults
    config = dict(optimizer=None, lr=0.5, init_scale=None)
    fill_training_defaults(config, "lstm")
    assert config == dict(optimizer="sgd", lr=0.5, init_scale=0.1)


def scripted_validation(monkeypatch, figures):
    """trainer.evaluate, but each epoch's validation perplexity taken from `figures`
    (the report's final evaluation stays real); -> the model's weights at each
    scripted evaluation, to check which epoch's weights the run kept."""
    from pruning import trainer
    real, seen = trainer.evaluate, []

    def fake(model, *args, eval_fn=None, **kw):
        if eval_fn is None:  # the report's valid and test figures
            return real(model, *args, **kw)
        seen.append([w.copy() for w in model.get_weights()])
        r = real(model, *args, eval_fn=eval_fn, **kw)
        return dict(r, perplexity=figures[len(seen) - 1])
    monkeypatch.setattr(trainer, "evaluate", fake)
    return seen


@pytest.mark.parametrize("figures,patience,best,run", [
    ([50.0, 40.0, 45.0, 47.0, 30.0], 1, 2, 3),  # stops after epoch 3: one epoch without a gain
    ([50.0, 40.0, 45.0, 47.0, 30.0], 2, 2, 4),
    ([50.0, 40.0, 45.0, 47.0, 30.0], 3, 5, 5),  # never stops: the last epoch is the best
])
def test_keep_best_stops_and_keeps_the_best_epochs_weights(tiny_corpus, tmp_path, monkeypatch, figures,
                                                           patience, best, run):
    from keras_models.language_model import load_model
    seen = scripted_validation(monkeypatch, figures)
    out = tmp_path / "run"
    rundir.prepare(str(out))
    report = train(tiny_config(tiny_corpus, out, schedule="none", epochs=5, keep_best=patience),
                   log=lambda *a: None)
    assert [h["valid_perplexity"] for h in report["history"]] == figures[:run]
    assert report["kept_best"] == dict(phase="train", epoch=best, valid_perplexity=figures[best - 1], epochs_run=run)
    saved = load_model(str(out / "model")).get_weights()
    for got, want in zip(saved, seen[best - 1]):
        np.testing.assert_array_equal(got, want)
    if best < run:  # the last epoch's weights were other ones
        assert any(not np.array_equal(a, b) for a, b in zip(saved, seen[run - 1]))


def test_keep_best_in_the_fine_tuning_and_the_points_epochs(tiny_corpus, tmp_path, monkeypatch):
    """After filter pruning, --keep-best acts on the fine-tuning; the operating
    point counts the epochs of the weights it kept, and those it trained."""
    from knob.operating_points import weight_epochs
    from training.rundir import read_json
    base = tmp_path / "base"
    rundir.prepare(str(base))
    train(tiny_config(tiny_corpus, base, schedule="none", epochs=1), log=lambda *a: None)
    seen = scripted_validation(monkeypatch, [9.0, 7.0, 8.0, 9.0])  # the filter epoch, then the fine-tuning's
    out = tmp_path / "run"
    rundir.prepare(str(out))
    config = tiny_config(tiny_corpus, out, init_from=str(base), schedule="filter", target_units=0.5, epochs=1,
                         finetune_epochs=3, keep_best=1)
    report = train(config, log=lambda *a: None)
    assert report["kept_best"] == dict(phase="finetune", epoch=1, valid_perplexity=7.0, epochs_run=2)
    assert len(seen) == 3
    assert weight_epochs(read_json(str(out / "config.json")), report) == dict(
        joint=1, finetune=1, recovery=0, total=2, trained=3)


@pytest.mark.parametrize("args,message", [
    (["--keep-best", "-1"], "--keep-best must not be negative"),
    (["--keep-best", "1", "--schedule", "polynomial"], "--keep-best stops a phase that only updates the weights"),
])
def test_keep_best_bad_options(tmp_path, capsys, args, message):
    assert main(args + ["--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
