"""Nothing is lost: --force replaces only a run, and only after every check
has passed; a model on disk stays whole while a new one is saved."""
import os

import numpy as np
import pytest

from keras_models.language_model import build_language_model, load_model, save_model
from training import rundir
from pruning.train import main
from tests.conftest import write_corpus

TINY = ["--embed", "8", "--hidden", "8", "--epochs", "1", "--batch-size", "4", "--bptt", "5", "--schedule", "none"]


def snapshot(out):
    return {name: (out / name).read_bytes() for name in ("train_report.json", "config.json", "vocab.txt",
                                                         "data.npz", "model/weights.h5")}


def test_force_keeps_the_old_run_until_every_check_has_passed(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["--data-dir", corpus, *TINY, "--out", str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    # found only once the text is cut into batches, after TensorFlow has loaded
    assert main(["--data-dir", corpus, *TINY, "--batch-size", "5000", "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "too short for batch size 5000" in err and "\n" not in err
    assert snapshot(out) == before


def test_force_replaces_only_a_run_directory(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "data")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("someone's work")
    assert main(["--data-dir", corpus, *TINY, "--out", str(mine), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {mine} is not a run directory (it has no config.json): --force replaces only a run; "
                   "choose a new or empty --out")
    assert os.listdir(mine) == ["notes.txt"] and (mine / "notes.txt").read_text() == "someone's work"
    with pytest.raises(rundir.RunDirError):
        rundir.prepare(str(mine), force=True)
    assert os.listdir(mine) == ["notes.txt"]


def test_save_model_keeps_the_old_model_whole_when_the_swap_fails(tmp_path, monkeypatch):
    target = str(tmp_path / "model")
    old = build_language_model("qrnn", 11, 4, 6, 1)
    save_model(old, target)
    new = build_language_model("qrnn", 11, 4, 6, 1)
    new.set_weights([w + 1.0 for w in old.get_weights()])
    real, arrivals = os.replace, []

    def replace(src, dst):  # the first rename onto the model folder fails, as a full disk or a kill would
        if os.path.abspath(dst) == target:
            arrivals.append(src)
            if len(arrivals) == 1:
                raise OSError(28, "No space left on device")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        save_model(new, target)
    monkeypatch.setattr(os, "replace", real)
    kept = load_model(target)
    for a, b in zip(kept.get_weights(), old.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary folder left behind
    save_model(new, target)  # and a save that works replaces it
    np.testing.assert_array_equal(load_model(target).get_weights()[0], new.get_weights()[0])
