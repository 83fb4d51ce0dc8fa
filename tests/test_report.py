"""python -m pruning.report: one table of several runs, figures from each run's own files."""
import json

from edge_runtime import device
from edge_runtime.bench_cache import bench_file
from pruning import report as rp
from training import rundir
from pruning.trainer import train
from tests.conftest import tiny_config


def trained(tiny_corpus, out, **options):
    rundir.prepare(str(out))
    return train(tiny_config(tiny_corpus, out, epochs=1, **options), log=lambda *a: None)


def fake_tflite(run_dir, sha):
    (run_dir / "tflite").mkdir()
    (run_dir / "tflite" / "manifest.json").write_text(json.dumps({"format_version": 1, "variants": {
        "int8": {"status": "ok", "file": "int8.tflite", "sha256": sha, "bytes": 1234, "perplexity": 99.0}}}))


def test_report_rows_come_from_each_runs_files(tiny_corpus, tmp_path, capsys):
    dense = trained(tiny_corpus, tmp_path / "dense", schedule="none")
    sparse = trained(tiny_corpus, tmp_path / "sparse", schedule="polynomial", target_sparsity=0.6)
    low = trained(tiny_corpus, tmp_path / "low", schedule="none", arch="lstm", factorize="lowrank", rank=3,
                  factorize_scope="recurrent")
    fake_tflite(tmp_path / "dense", "a" * 64)
    manifest = {"_dir": str(tmp_path / "dense" / "tflite"), "variants": {"int8": {"sha256": "a" * 64}}}
    path = bench_file(manifest, "int8", 1, "auto")
    (tmp_path / "dense" / "bench").mkdir()
    with open(path, "w") as f:  # this file, this device: shown
        json.dump({"sha256": "a" * 64, "device": device.describe(),
                   "latency_ms": {"median": 0.25, "p90": 0.3}, "energy_mj_per_token": None}, f)
    fake_tflite(tmp_path / "sparse", "b" * 64)  # converted, never benched here: blank latency
    runs = [str(tmp_path / n) for n in ("dense", "sparse", "low")]
    capsys.readouterr()  # training's own output
    assert rp.main([*runs, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for r, rep in zip(rows, (dense, sparse, low)):
        assert (r["params"], r["macs"], r["test_perplexity"]) == \
            (rep["params_nonzero"], rep["macs_per_token_nonzero"], rep["test_perplexity"])
    assert [r["method"] for r in rows] == ["dense", "magnitude polynomial", "lowrank recurrent"]
    assert rows[1]["strength"] == "sparsity 0.6" and rows[2]["strength"] == "rank 3"
    assert (rows[0]["bytes"], rows[0]["latency_ms"], rows[0]["p90_ms"]) == (1234, 0.25, 0.3)
    assert (rows[1]["bytes"], rows[1]["latency_ms"]) == (1234, None)
    assert rows[2]["bytes"] is None and set(rows[2]["ranks"].values()) == {3}
    assert rp.main(runs) == 0
    out, err = capsys.readouterr()
    assert out.count("\n| ") == 3 and "| 0.2500 | 0.3000 |" in out and "sparse" in err


def test_a_run_that_is_not_trained_is_one_line_error(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    assert rp.main([str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'half'} is not a trained run (it lacks train_report.json)"
