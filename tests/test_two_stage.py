"""The two-stage suggest (convert/two_stage.py): a low-rank preview of every word, the
best candidates ranked exactly. Checked against a hand-made matrix, a plain-Python
ranking, and the converted file against the Keras model's own output layer."""
import random
import shutil

import numpy as np
import pytest

from convert import two_stage as ts
from convert.to_tflite import main as convert_main
from edge_runtime import manifest as mf
from edge_runtime.metrics import top_words
from edge_runtime.runner import StepModel
from keras_models.language_model import load_model
from pruning.trainer import train
from tests.conftest import tiny_config
from training import rundir


def test_the_exact_stage_shows_a_word_the_preview_ranks_fourth():
    """Words 1-7 lie along the first axis, word 0 along the second: the rank-1 preview
    is the first axis, where word 0 scores 0 and ranks fourth. Its exact logit is the
    highest, so with 4 candidates it is shown first; with 3 it is lost."""
    w = np.array([[0, 2], [3, 0], [2.9, 0], [2.8, 0], [-1, 0], [-1.1, 0], [-1.2, 0], [-1.3, 0]])
    b, h = np.zeros(8), np.array([[1.0, 2.0]])
    p, q = ts.preview_factors(w, 1)
    preview = (h @ q.T) @ p.T + b
    assert list(np.argsort(-preview[0], kind="stable")[:4]) == [1, 2, 3, 0]  # word 0 below the shown three
    logits = h @ w.T + b
    assert ts.two_stage_shown(logits, preview, 4, (), 3).tolist() == [[0, 1, 2]]
    assert ts.two_stage_shown(logits, preview, 3, (), 3).tolist() == [[1, 2, 3]]
    assert ts.shown(logits, (), 3).tolist() == [[0, 1, 2]]
    assert ts.two_stage_shown(logits, preview, 4, (0,), 3).tolist() == [[1, 2, 3]]  # an excluded word is skipped


def reference_two_stage(logits, preview, n, excluded, k):
    """Plain Python: sort every word by preview, keep n, sort those by exact logit."""
    cand = sorted(range(len(preview)), key=lambda i: (-preview[i], i))[:n]
    return [i for i in sorted(cand, key=lambda i: (-logits[i], i)) if i not in excluded][:k]


def test_shown_words_and_agreement_against_plain_python():
    rng = np.random.default_rng(0)
    v, hidden = 300, 24
    w = rng.standard_normal((v, hidden)) * np.linspace(2, 0.1, hidden)  # a falling spectrum
    b = rng.standard_normal(v) * 0.1
    h = rng.standard_normal((200, hidden))
    excluded = (0, 5)
    logits = h @ w.T + b
    want = [top_words(row, 3, excluded) for row in logits]
    assert ts.shown(logits, excluded, 3).tolist() == want
    grid = ts.agreement_grid(w, b, h, excluded, 3, (4, 12), (8, 64))
    for r in (4, 12):
        p, q = ts.preview_factors(w, r)
        assert np.allclose(p @ q, np.linalg.svd(w)[0][:, :r] * np.linalg.svd(w)[1][:r] @ np.linalg.svd(w)[2][:r])
        preview = (h @ q.T) @ p.T + b
        for n in (8, 64):
            got = ts.two_stage_shown(logits, preview, n, excluded, 3).tolist()
            ref = [reference_two_stage(lo, pr, n, excluded, 3) for lo, pr in zip(logits, preview)]
            assert got == ref
            assert grid[r, n] == pytest.approx(np.mean([g == x for g, x in zip(ref, want)]))
    assert grid[4, 8] < grid[12, 64] <= 1  # a wider preview and more candidates agree more often
    assert grid[12, 64] > 0.9


KINDS = {"tied": dict(embed=16),  # a QRNN whose output layer is its embedding table
         "untied": dict(arch="lstm", embed=16, hidden=16, tie_embeddings=False),  # a Dense output layer
         "low-rank": dict(arch="lstm", embed=16, hidden=16, factorize="lowrank", factorize_scope="all",
                          rank=12)}  # a tied table stored as A B


@pytest.fixture(scope="module", params=sorted(KINDS))
def two_stage_run(request, tmp_path_factory):
    """A run over 200 words (a table wide enough to quantize) with each kind of output
    layer, converted with the two-stage suggest forced on."""
    base = tmp_path_factory.mktemp("two")
    rng = random.Random(2)
    for split, n in (("train", 300), ("valid", 60), ("test", 30)):
        with open(base / f"{split}.txt", "w") as f:
            f.writelines(" ".join(f"w{min(rng.randrange(200), rng.randrange(200))}" for _ in range(8)) + "\n"
                         for _ in range(n))
    out = base / "run"
    rundir.prepare(str(out))
    train(tiny_config(base, out, schedule="none", epochs=1, **KINDS[request.param]), log=lambda *a: None)
    assert convert_main([str(out), "--quantize", "float32,dynamic", "--sparse-encoding", "off",
                         "--two-stage", "on"]) == 0
    return out


def test_the_file_ranks_as_the_numpy_head_does(two_stage_run):
    """The float32 file's suggest shows, position by position over the validation text,
    the words the numpy two-stage head shows from the Keras model's own output layer
    and hidden states (the preview made again from its matrix), and those agree with
    the full layer's as often as the manifest says."""
    manifest = mf.load(str(two_stage_run / "tflite"))
    choice = manifest["suggest"]["two_stage"]
    assert choice["chosen"] and choice["mode"] == "on" and choice["agreement"] >= ts.AGREEMENT, choice
    model = load_model(str(two_stage_run / "model"))
    layer = ts.output_layer(model)
    hidden = int(layer.input.shape[-1])
    w, b = ts.dense_output(layer, hidden)
    ids = np.load(two_stage_run / "data.npz")["valid"]
    h = ts.hidden_states(model, ids[:-1])
    p, q = ts.preview_factors(w, choice["rank"])
    excluded = tuple(manifest["suggest"]["never_suggested"])
    logits, preview = h @ w.T + b, (h @ q.T) @ p.T + b
    want = ts.two_stage_shown(logits, preview, choice["candidates"], excluded, 3).tolist()
    lite = StepModel(mf.variant_path(manifest, "float32"), manifest["states"])
    got = [lite.suggest(int(t), excluded)[0].tolist() for t in ids[:-1]]
    assert np.mean([g == x for g, x in zip(got, want)]) >= 0.99, choice
    full = ts.shown(logits, excluded, 3).tolist()
    assert np.mean([g == x for g, x in zip(got, full)]) >= choice["agreement"] - 0.01
    # the converter checked each file's suggest against its own step, and recorded it
    for name in ("float32", "dynamic"):
        assert manifest["variants"][name]["suggest_agreement"] >= 0.95, manifest["variants"][name]
    # the candidates' rows are read from the output layer's own int8 constant: no copy of it
    from tests.test_convert import tables
    spec = manifest["architecture"]
    width = spec["factors"]["embedding/embeddings"]["rank"] if spec.get("factors") else hidden
    found = tables(mf.variant_path(manifest, "dynamic"), [spec["vocab_size"], width])
    output = [ops for ops in found.values() if ("FULLY_CONNECTED", "INT8") in ops]
    assert len(output) == 1 and ("EMBEDDING_LOOKUP", "INT8") in output[0], found


def test_modes_and_bad_input(two_stage_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(two_stage_run, run, ignore=shutil.ignore_patterns("tflite"))
    assert convert_main([str(run), "--quantize", "float32", "--two-stage", "sometimes"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --two-stage must be one of auto, on, off"]
    assert not (run / "tflite").exists()
    # auto: 200 words cost little to rank whole; no head is estimated to save a tenth
    assert convert_main([str(run), "--quantize", "float32", "--two-stage", "auto"]) == 0
    choice = mf.load(str(run / "tflite"))["suggest"]["two_stage"]
    assert choice["chosen"] is False and "estimated" in choice["reason"], choice
    assert convert_main([str(run), "--quantize", "float32", "--force"]) == 0  # off, the default
    assert mf.load(str(run / "tflite"))["suggest"]["two_stage"] == dict(chosen=False, reason="--two-stage off")

