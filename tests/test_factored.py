"""Factored matrices against the dense matrices they stand for; factorization
of trained runs; the factored run as an ordinary run (converted, builtin ops);
bad input."""
import json
import math

import numpy as np
import pytest

from keras_models import factored
from keras_models.backend import keras
from keras_models.cost import layer_report, macs_from_spec, macs_per_token
from keras_models.language_model import build_language_model, load_model, named_weights, zero_states
from methods import factorize
from pruning.train import main
from tests.conftest import assert_float32_tflite_matches_keras, write_corpus


class Holder(keras.layers.Layer):
    def __init__(self, rows, cols, factor):
        super().__init__()
        self.shape_, self.factor = (rows, cols), factor

    def build(self, input_shape):
        self.m = factored.add_matrix(self, "w", *self.shape_, self.factor)


def tt_dense(cores):
    """The dense matrix a list of TT cores stands for, by numpy einsum (the reference)."""
    m = [c.shape[1] for c in cores]
    n = [c.shape[2] for c in cores]
    t = np.ones((1, 1, 1))  # [rows so far, cols so far, rank]
    for c in cores:
        t = np.einsum("abr,rmns->ambns", t, c).reshape(t.shape[0] * c.shape[1], t.shape[1] * c.shape[2],
                                                        c.shape[3])
    return t[:, :, 0].reshape(math.prod(m), math.prod(n))


def holder(rows, cols, factor):
    h = Holder(rows, cols, factor)
    h.build(None)
    return h.m


@pytest.mark.parametrize("rows,cols,cores", [([2, 3], [4, 5], [1, 3, 1]), ([5, 5, 8], [6, 10, 10], [1, 4, 3, 1]),
                                             ([2, 2, 3, 2], [3, 2, 2, 2], [1, 2, 3, 2, 1])])
def test_tt_product_is_the_product_with_the_dense_matrix(rows, cols, cores):
    f = dict(kind="tt", rows=rows, cols=cols, ranks=cores)
    m = holder(math.prod(rows), math.prod(cols), f)
    rng = np.random.default_rng(0)
    for core in m.cores:
        core.assign(rng.normal(size=core.shape).astype(np.float32))
    dense = tt_dense([c.numpy() for c in m.cores])  # numpy einsum over the cores
    # the same by the definition, entry by entry: W[(i..), (j..)] = G1[i1, j1] ... Gd[id, jd]
    i, j = [r - 1 for r in rows], [c - 1 for c in cols]
    chain = np.ones((1, 1))
    for k, core in enumerate(m.cores):
        chain = chain @ core.numpy()[:, i[k], j[k], :]
    assert dense[-1, -1] == pytest.approx(chain[0, 0], rel=1e-5)
    x = rng.normal(size=(3, 2, math.prod(rows))).astype(np.float32)
    np.testing.assert_allclose(m.matmul(x).numpy(), x @ dense, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.dense().numpy(), dense, rtol=1e-4, atol=1e-5)


def test_lowrank_product_and_svd():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(12, 20))
    m = holder(12, 20, dict(kind="lowrank", rank=4))
    (a, b), error = factored.from_dense(w, dict(kind="lowrank", rank=4))
    m.a.assign(a), m.b.assign(b)
    x = rng.normal(size=(5, 12)).astype(np.float32)
    np.testing.assert_allclose(m.matmul(x).numpy(), x @ (a @ b), rtol=1e-5, atol=1e-5)
    s = np.linalg.svd(w, compute_uv=False)  # Eckart-Young: the error is the dropped singular values'
    assert error == pytest.approx(np.sqrt((s[4:] ** 2).sum() / (s ** 2).sum()), rel=1e-5)
    full, exact = factored.from_dense(w, dict(kind="lowrank", rank=12))
    assert exact < 1e-6 and np.allclose(full[0] @ full[1], w, atol=1e-5)


def test_tt_svd_at_full_rank_is_exact_and_ranks_are_capped():
    w = np.random.default_rng(2).normal(size=(12, 20))
    f = factored.tt_spec(12, 20, 1000, cores=2, shape=([3, 4], [4, 5]))
    assert f["ranks"] == [1, 12, 1]  # capped at min(3 x 4, 4 x 5)
    cores, error = factored.from_dense(w, f)
    assert error < 1e-6 and np.allclose(tt_dense(cores), w, atol=1e-5)


def test_near_equal_factors_and_costs_hand_worked():
    assert factored.near_equal_factors(200, 3) == [5, 5, 8]
    assert factored.near_equal_factors(10000, 3) == [20, 20, 25]
    assert factored.near_equal_factors(13, 3) is None  # prime: no TT without a wasted core
    f = dict(kind="tt", rows=[5, 5, 8], cols=[6, 10, 10], ranks=[1, 8, 8, 1])
    assert factored.factor_params(200, 600, f) == 5 * 6 * 8 + 8 * 5 * 10 * 8 + 8 * 8 * 10
    # core k: (rows left) x (columns done) x r_{k-1} m_k x n_k r_k
    assert factored.factor_macs(200, 600, f) == 40 * 1 * 5 * 48 + 8 * 6 * 40 * 80 + 1 * 60 * 64 * 10
    assert factored.factor_macs(200, 600, dict(kind="lowrank", rank=10)) == 10 * 800
    assert factored.lowrank_pays(200, 600, 149) and not factored.lowrank_pays(200, 600, 150)


@pytest.mark.parametrize("arch,tie", [("qrnn", True), ("lstm", False), ("lstm", True), ("qrnn", False)])
def test_full_rank_factors_of_a_model_compute_the_dense_model(arch, tie):
    """SVD at full rank is exact: the factored model gives the dense model's outputs."""
    dense = build_language_model(arch, 30, 6, 8, 2, tie_embeddings=tie)
    rng = np.random.default_rng(3)
    dense.set_weights([rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in dense.get_weights()])
    f = {key: dict(kind="lowrank", rank=min(r, c)) for key, r, c in factorize.matrices(dense.spec, "all")}
    spec, weights, errors = factorize.from_trained(dense.spec, named_weights(dense), f)
    assert max(errors.values()) < 1e-5
    model = build_language_model(**spec)
    from keras_models.language_model import set_named_weights
    set_named_weights(model, weights)
    x = rng.integers(0, 30, size=(2, 7)).astype(np.int32)
    a, b = dense([x] + zero_states(dense, 2)), model([x] + zero_states(model, 2))
    for u, v in zip(a, b):
        np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=1e-4, atol=1e-4)
    # and the cost is counted from the factored shapes
    assert macs_per_token(model)[0] == macs_from_spec(spec) == sum(
        factored.factor_macs(r, c, f[k]) for k, r, c in factorize.matrices(spec, "all")
        if k != "embedding/embeddings") + (2 * 6 * 6 + 6 * 30 if tie else 0)


def tiny(corpus):
    return ["--data-dir", corpus, "--embed", "8", "--hidden", "12", "--epochs", "1", "--batch-size", "4",
            "--bptt", "8", "--checkpoint-every", "1000"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("f") / "data")


def test_a_trained_run_factored_and_fine_tuned_converts(corpus, tmp_path):
    dense = tmp_path / "dense"
    assert main(tiny(corpus) + ["--arch", "lstm", "--no-tie", "--schedule", "none", "--out", str(dense)]) == 0
    out = tmp_path / "lr"
    assert main(["--init-from", str(dense), "--data-dir", corpus, "--batch-size", "4", "--bptt", "8",
                 "--factorize", "lowrank", "--rank-fraction", "0.5", "--factorize-scope", "all",
                 "--finetune-epochs", "1", "--out", str(out)]) == 0
    report = json.loads((out / "train_report.json").read_text())
    f = report["factorization"]
    assert set(f["relative_error"]) == {"rnn_0/kernel", "rnn_0/recurrent_kernel", "rnn_1/kernel",
                                        "rnn_1/recurrent_kernel", "output/kernel"}
    assert all(0 < e < 1 for e in f["relative_error"].values())
    assert f["matrices"]["output/kernel"]["rank"] == 6  # 0.5 x min(12, V), an even number
    assert f["valid_perplexity_factored"] > 0 and report["history"][-1]["phase"] == "finetune"
    assert report["epochs_completed"] == 0  # factored at once, then fine-tuned
    model = load_model(str(out / "model"))
    assert report["macs_per_token"] == macs_from_spec(model.spec) == macs_per_token(model)[0]
    assert report["params_total"] < json.loads((dense / "train_report.json").read_text())["params_total"]
    assert {r["weight"] for r in layer_report(model) if r["layer"] == "output"} == {"kernel_a", "kernel_b"}
    assert_float32_tflite_matches_keras(out)


def test_tt_from_scratch_converts_in_every_precision_with_builtin_ops(corpus, tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    from convert.to_tflite import main as convert_main
    from edge_runtime import manifest as mf
    out = tmp_path / "tt"
    assert main(tiny(corpus) + ["--arch", "qrnn", "--factorize", "tt", "--tt-rank", "1",
                                "--factorize-scope", "recurrent", "--out", str(out)]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert set(report["factorization"]["matrices"]) == {"rnn_0/kernel", "rnn_1/kernel"}
    assert_float32_tflite_matches_keras(out)
    assert convert_main([str(out), "--force"]) == 0
    manifest = mf.load(str(out / "tflite"))
    for name, v in manifest["variants"].items():
        assert v["status"] == "ok" and v["xnnpack"]["ok"], (name, v)
        ops = {d["op_name"] for d in Interpreter(model_path=mf.variant_path(manifest, name))._get_ops_details()}
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), (name, ops)


@pytest.mark.parametrize("target", [0.6, 0.35])
def test_lowrank_asked_for_by_macs_ends_within_two_points(corpus, tmp_path, target):
    out = tmp_path / "lr"
    assert main(tiny(corpus) + ["--embed", "32", "--hidden", "64", "--factorize", "lowrank", "--target-macs",
                                str(target), "--out", str(out)]) == 0
    report = json.loads((out / "train_report.json").read_text())
    spec = load_model(str(out / "model")).spec
    dense = macs_from_spec(dict(spec, factors=None))
    assert abs(macs_from_spec(spec) / dense - target) <= 0.02
    s = report["schedule"]
    assert s["target_macs"] == target and s["expected_macs"] == round(macs_from_spec(spec) / dense, 4)
    # every factored matrix has the rank the recorded fraction gives
    for key, rows, cols in factorize.matrices(spec, "all"):
        assert spec["factors"][key]["rank"] == max(2, 2 * round(s["rank_fraction"] * min(rows, cols) / 2))


def test_factoring_after_unit_pruning(corpus, tmp_path):
    pruned = tmp_path / "filter"
    dense = tmp_path / "dense"
    assert main(tiny(corpus) + ["--schedule", "none", "--out", str(dense)]) == 0
    assert main(["--init-from", str(dense), "--data-dir", corpus, "--schedule", "filter", "--target-units", "0.5",
                 "--batch-size", "4", "--bptt", "8", "--out", str(pruned)]) == 0
    out = tmp_path / "both"
    assert main(["--init-from", str(pruned), "--data-dir", corpus, "--batch-size", "4", "--bptt", "8",
                 "--factorize", "lowrank", "--rank", "2", "--factorize-scope", "recurrent", "--out", str(out)]) == 0
    spec = load_model(str(out / "model")).spec
    assert spec["hidden_sizes"] == load_model(str(pruned / "model")).spec["hidden_sizes"]
    assert set(spec["factors"]) == {"rnn_0/kernel", "rnn_1/kernel"}


@pytest.mark.parametrize("args,message", [
    (["--factorize", "lowrank", "--rank", "0"], "--rank must be at least 1"),
    (["--factorize", "lowrank", "--rank", "40"], "rank 40 does not reduce rnn_0/kernel (16 x 36)"),
    (["--factorize", "lowrank", "--rank", "2", "--rank-fraction", "0.5"], "takes one of --rank, --rank-fraction and --target-macs"),
    (["--factorize", "lowrank", "--rank", "2", "--target-macs", "0.5"], "takes one of --rank, --rank-fraction"),
    (["--factorize", "tt", "--tt-rank", "2", "--target-macs", "0.5"], "not --schedule none with --factorize tt"),
    (["--factorize", "tt", "--tt-rank", "2", "--tt-shape", "2,4:6,7", "--factorize-scope", "recurrent"],
     "--tt-shape 2x4:6x7 multiplies out to 8 x 42, not the matrix's 16 x 36"),
    (["--factorize", "tt", "--tt-rank", "0"], "--tt-rank of at least 1, got 0"),
    # 3 cores [2,2,4]x[3,3,4] at rank 2 store 68 numbers but cost 672 MACs against 576 dense
    (["--factorize", "tt", "--tt-rank", "2", "--factorize-scope", "recurrent"],
     "do not reduce rnn_0/kernel (16 x 36): 68 numbers and 672 MACs a token against 576 and 576 dense"),
    (["--factorize", "tt", "--tt-rank", "2", "--factorize-scope", "output"], "does not factor a tied embedding yet"),
    (["--factorize", "lowrank", "--rank", "2", "--factorize-scope", "inputs"], "unknown --factorize-scope 'inputs'"),
    (["--factorize", "svd"], "unknown --factorize 'svd'"),
    (["--factorize", "lowrank", "--rank", "2", "--arch", "hlstm", "--layers", "1"], "not hlstm"),
    (["--factorize", "lowrank", "--rank", "2", "--schedule", "l0"], "supports --schedule none, not l0"),
])
def test_bad_factorizations_are_one_line_errors_with_nothing_written(corpus, tmp_path, capsys, args, message):
    out = tmp_path / "r"
    assert main(tiny(corpus) + args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not out.exists()
