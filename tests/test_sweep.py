"""python -m pruning.sweep on a tiny model: two methods, two points; every
output written and consistent, resume redoes nothing, bad input refused;
the frontier flags against a hand-worked example."""
import json
import os

import pytest

from edge_runtime import points as device_points
from knob import operating_points as ops
from training import rundir
from knob import sweep
from pruning import sweep as sweep_cli
from pruning.trainer import train
from tests.conftest import tiny_config, write_corpus


def test_the_sweep_offers_the_converters_precisions():
    from convert.variants import PRECISIONS
    from edge_runtime.predict import VARIANTS
    assert sweep.QUANTIZE == PRECISIONS == VARIANTS


def test_frontier_flags_hand_worked():
    rows = [dict(latency_ms=dict(median=m), bytes=b, test_perplexity=p) for m, b, p in
            [(1.0, 400, 100.0),   # 0: the best perplexity: on both
             (0.5, 300, 110.0),   # 1: faster and smaller than 0, worse: on both
             (0.6, 100, 105.0),   # 2: slower than 1 but better; the smallest: on both
             (0.7, 350, 120.0),   # 3: beaten on both by 1 and 2
             (0.2, 500, 130.0)]]  # 4: the fastest, the biggest: on latency only
    for r, p90 in zip(rows, (0.3, 0.9, 0.8, 0.2, 0.1)):  # the keyboard's p90 ranks them otherwise
        r["keyboard_ms"] = dict(p90=p90)
    ops.flag(rows)
    assert [r["frontier"]["latency"] for r in rows] == [True, True, True, False, True]
    assert [r["frontier"]["bytes"] for r in rows] == [True, False, True, False, False]
    assert [r["frontier"]["keyboard"] for r in rows] == [True, False, False, True, True]


def on_frontier(rows, x_of):
    """By the definition, pair by pair: a row is off when another is at least as
    good on both axes and better on one (exact ties: the first is kept)."""
    def beats(a, b):
        return x_of(a) <= x_of(b) and a["test_perplexity"] <= b["test_perplexity"] and \
            (x_of(a) < x_of(b) or a["test_perplexity"] < b["test_perplexity"])
    return [not any(beats(o, r) or (j < i and x_of(o) == x_of(r) and o["test_perplexity"] == r["test_perplexity"])
                    for j, o in enumerate(rows) if j != i) for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    corpus = write_corpus(root / "data", sizes=(("train", 300), ("valid", 40), ("test", 40)))
    out = root / "base"
    rundir.prepare(str(out))
    train(tiny_config(corpus, out, schedule="none", epochs=1, embed=16, hidden=32), log=lambda *a: None)
    return out


def args_for(base, out, *extra):
    return [str(base), "--out", str(out), "--methods", "units-norm,lowrank", "--points", "100,50",
            "--quantize", "dynamic", "--steps", "20", *extra]


def test_every_method_updates_weights_as_many_epochs_as_dense(base, tmp_path, capsys):
    """Fairness: each point's run, as pruning.train recorded it, counts the same
    epochs of weight updates after the base run, at 1 epoch a point for every
    method, and at 2 with recovery for L0 (its joint epoch, N - 1 of fine-tuning);
    MACs are those the runtime executes."""
    for n, recover, methods, quantize in ((1, "none", sweep.METHODS, "dynamic"),
                                          (2, "rank-one", ("l0",), "dynamic,int4")):
        out = tmp_path / f"sw{n}"
        assert sweep_cli.main(args_for(base, out, "--methods", ",".join(methods), "--finetune-epochs", str(n),
                                   "--recover", recover, "--steps-per-epoch", "2", "--steps", "5",
                                   "--quantize", quantize)) == 0
        doc = json.loads((out / "operating_points.json").read_text())
        assert {r["method"] for r in doc["points"]} == {"dense", *methods}
        # every point's every file is a row: int4 files join the frontiers as the others do
        names = {r["name"] for r in doc["points"]}
        assert sorted((r["name"], r["variant"]) for r in doc["points"]) == sorted(
            (name, v) for name in names for v in quantize.split(","))
        want = n + (1 if recover != "none" else 0)
        for r in doc["points"]:
            config = json.loads((out / "points" / r["name"] / "config.json").read_text())
            e = r["weight_epochs"]
            report = json.loads((out / "points" / r["name"] / "train_report.json").read_text())
            # what the run's own history says it trained, phase by phase (not the count recomputed)
            ran = {phase: sum(1 for h in report["history"] if h["phase"] == phase)
                   for phase in ("train", "finetune", "recover")}
            assert e["total"] == want and (e["joint"], e["finetune"], e["recovery"]) == (
                ran["train"], ran["finetune"], ran["recover"]), (r["name"], e, ran)
            assert config["epochs"] == ran["train"] or r["method"] in ("units-norm", "lowrank")
            assert report["steps_per_epoch"] == 2  # the cap reached every run
        l0 = next(r for r in doc["points"] if r["method"] == "l0")
        # the gates were driven to the target: the closed model's MACs are the asked half (the units the
        # gates left above it closed by the count reported), and the gates' expectation was near it
        # within 0.1: widths end even, two units of this 16-wide tied table are 12.5% of its MACs (the
        # nearest even widths can be 6% away), and rank-one recovery adds its u v^T
        assert abs(l0["macs_fraction"] - l0["share"] / 100) <= 0.1, l0["macs_fraction"]
        assert isinstance(l0["closed_to_target"], int) and l0["closed_to_target"] >= 0
        assert 0 < l0["expected_macs_fraction"] <= 1
        if l0["expected_macs_fraction"] > l0["share"] / 100 + 0.05:  # gates left open above it were closed
            assert l0["closed_to_target"] > 0
        if n == 1:  # a sparse point keeps every weight in its matrices: the runtime executes the dense MACs
            by = {r["name"]: r for r in doc["points"]}
            dense, sparse = by["dense-100"], by["magnitude-50"]
            assert sparse["macs"] == dense["macs"] and sparse["macs_fraction"] == 1.0
            assert sparse["macs_nonzero"] < 0.6 * dense["macs_nonzero"]  # the nonzero count, a column of its own
    printed = capsys.readouterr().out
    assert "plan: 7 points" in printed and "min of training at the base run's" in printed
    assert "[7/7]" in printed and "min so far" in printed


def test_sweep_writes_every_output_and_resumes_without_redoing_points(base, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sw"
    assert sweep_cli.main(args_for(base, out)) == 0
    doc = json.loads((out / "operating_points.json").read_text())
    assert [r["name"] for r in doc["points"]] == ["dense-100", "units-norm-50", "lowrank-50"]
    for r in doc["points"]:
        assert r["variant"] == "dynamic" and r["latency_ms"]["median"] > 0 and r["test_perplexity"] > 1
        assert (out / r["file"]).exists() and r["sha256"] == mf_sha(out / r["file"])
    by = {r["name"]: r for r in doc["points"]}
    assert by["dense-100"]["macs_fraction"] == 1.0
    dense = json.loads((out / "points" / "dense-100" / "train_report.json").read_text())
    assert dense["init_from"] == str(base) and dense["epochs_completed"] == 1  # trained as long as the others
    for name in ("units-norm-50", "lowrank-50"):  # each asked for half the dense MACs
        assert abs(by[name]["macs_fraction"] - 0.5) <= 0.05
    assert by["lowrank-50"]["ranks"]  # the factored matrices' ranks are recorded
    # the flags are the frontiers of the rows as written, by the definition
    for axis, x_of in (("latency", lambda r: r["latency_ms"]["median"]), ("keyboard", lambda r: r["keyboard_ms"]["p90"]),
                       ("bytes", lambda r: r["bytes"])):
        assert [r["frontier"][axis] for r in doc["points"]] == on_frontier(doc["points"], x_of), axis
    for r in doc["points"]:  # the keyboard's path was timed too
        assert r["keyboard_ms"]["median"] > 0 and r["keyboard_ms"]["p90"] > 0
    for r in doc["points"]:  # and a key press; the keyboard metrics are recorded for every file
        assert r["key_ms"]["median"] > 0 and 0 <= r["test_ksr"] < 1 and 0 <= r["test_completion_recall_1"] <= 1
        assert r["test_r_at_1"] <= r["test_r_at_3"]
    assert (out / "ksr_latency.png").stat().st_size > 1000 and (out / "ksr_bytes.png").exists()
    # the test perplexity is the device runtime's over the test split, near the Keras model's
    point = json.loads((out / "points" / "dense-100" / "point.json").read_text())
    assert point["files"]["dynamic"]["test_perplexity"] == pytest.approx(point["keras_test_perplexity"], rel=0.02)
    report = (out / "report.md").read_text()
    assert all(f"| {r['name']} |" in report or f"| **{r['name']}** |" in report for r in doc["points"])
    assert (out / "frontier_latency.png").stat().st_size > 1000 and (out / "frontier_bytes.png").exists()
    # the bundle: the frontier's files only, loadable on the device with every sha256 checked
    bundle = device_points.load(str(out / "bundle"))
    kept = {(r["name"], r["variant"]) for r in doc["points"] if any(r["frontier"].values())}
    assert {(p["name"], p["variant"]) for p in bundle["points"]} == kept
    assert not any(os.path.isabs(p["file"]) for p in bundle["points"])
    assert sorted(os.listdir(out / "bundle")) == sorted({n for n, _ in kept} | {"operating_points.json"})

    # resume of a finished sweep: it says so and leaves everything as it is, the timings included
    finished = {n: os.path.getmtime(out / "points" / n / "point.json") for n in by}
    written = (out / "operating_points.json").read_bytes(), (out / "bundle" / "operating_points.json").read_bytes()
    calls = []
    monkeypatch.setattr(sweep, "run_logged", lambda cmd, path: calls.append(cmd) or 0)
    capsys.readouterr()
    assert sweep_cli.main(args_for(base, out, "--resume")) == 0
    assert "is complete: nothing to resume" in capsys.readouterr().out
    assert calls == [] and {n: os.path.getmtime(out / "points" / n / "point.json") for n in by} == finished
    assert ((out / "operating_points.json").read_bytes(),
            (out / "bundle" / "operating_points.json").read_bytes()) == written
    # with a point missing, resume trains only that one, then times every file again
    import shutil
    shutil.rmtree(out / "points" / "lowrank-50")
    monkeypatch.undo()
    assert sweep_cli.main(args_for(base, out, "--resume")) == 0
    assert {n: os.path.getmtime(out / "points" / n / "point.json") for n in by if n != "lowrank-50"} == \
        {n: t for n, t in finished.items() if n != "lowrank-50"}
    assert json.loads((out / "operating_points.json").read_text())["created"] >= doc["created"]


def mf_sha(path):
    from edge_runtime.manifest import sha256_file
    return sha256_file(path)


def test_an_interrupted_point_is_resumed_from_its_run(base, tmp_path, monkeypatch):
    out = tmp_path / "sw"
    real, seen = sweep.run_logged, []

    def failing(cmd, path):
        seen.append(cmd)
        run = cmd[cmd.index("--out") + 1] if "pruning.train" in cmd else ""
        if run.endswith("units-norm-50"):
            os.makedirs(run, exist_ok=True)  # a run that started, then stopped
            open(os.path.join(run, "config.json"), "w").write("{}")
            return 1
        return real(cmd, path)
    monkeypatch.setattr(sweep, "run_logged", failing)
    assert sweep_cli.main(args_for(base, out, "--methods", "units-norm")) == 1  # the point failed, named
    assert not (out / "points" / "units-norm-50" / "point.json").exists()
    assert (out / "points" / "dense-100" / "point.json").exists()
    seen.clear()
    monkeypatch.setattr(sweep, "run_logged", lambda cmd, path: seen.append(cmd) or 1)
    sweep_cli.main(args_for(base, out, "--methods", "units-norm", "--resume"))
    train_cmds = [c for c in seen if "pruning.train" in c]
    assert train_cmds and "--resume" in train_cmds[0]  # it goes on from the run's checkpoint


@pytest.mark.parametrize("extra,message", [
    (["--methods", "units-norm,pca"], "unknown --methods pca"),
    (["--points", "100,0"], "every point must be in (0, 100]"),
    (["--points", "120"], "every point must be in (0, 100]"),
    (["--points", "a,b"], "--points takes numbers"),
    (["--quantize", "int3"], "unknown --quantize int3"),
    (["--methods", "magnitude", "--finetune-epochs", "0"], "--methods magnitude prunes while it trains"),
    (["--steps-per-epoch", "0"], "--steps-per-epoch must be at least 1"),
    (["--recover", "rank-one"], "--recover rank-one does not combine with --methods lowrank"),
    (["--block", "/nonexistent/block.txt"], "--block /nonexistent/block.txt: no such file"),
    (["--teacher", "/nonexistent/run"], "--teacher /nonexistent/run: not a trained run directory"),
    (["--distill-alpha", "0.7"], "need --teacher RUN"),
    (["--ngram", "/nonexistent/ngram.json"], "--ngram /nonexistent/ngram.json: not a results file"),
    # PTB's or the embedded corpus's 10,000 words, not the tiny base run's
    (["--ngram", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "results",
                              "ngram_embedded.json")], "must cover the whole test split with the base run's"),
])
def test_bad_options_are_one_line_errors_with_nothing_written(base, tmp_path, capsys, extra, message):
    out = tmp_path / "sw"
    assert sweep_cli.main(args_for(base, out) + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_bad_base_and_existing_dir(base, tmp_path, capsys):
    out = tmp_path / "sw"
    assert sweep_cli.main(args_for(tmp_path / "nothing", out)) == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert sweep_cli.main(args_for(half, out)) == 2
    assert "is not a trained run" in capsys.readouterr().err and not out.exists()
    out.mkdir()
    (out / sweep.SWEEP_FILE).write_text(json.dumps({"base": "x"}))
    (out / "keep.txt").write_text("mine")
    assert sweep_cli.main(args_for(base, out)) == 2
    assert "already holds a sweep; use --resume" in capsys.readouterr().err
    assert sweep_cli.main(args_for(base, out, "--resume")) == 2
    assert "differs from the sweep's" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert sweep_cli.main(args_for(base, other, "--force")) == 2
    assert "is not a sweep directory" in capsys.readouterr().err and (other / "keep.txt").exists()
    assert (out / "keep.txt").exists()


def test_a_ray_sweep_gives_the_local_sweeps_rows(base, tmp_path):
    ray = pytest.importorskip("ray")
    local, remote = tmp_path / "local", tmp_path / "ray"
    one = ["--methods", "units-norm"]
    assert sweep_cli.main(args_for(base, local, *one)) == 0
    ray.init(num_cpus=2, logging_level="ERROR")
    try:
        assert sweep_cli.main(args_for(base, remote, *one, "--executor", "ray")) == 0
    finally:
        ray.shutdown()

    def rows(out):  # timings (and the frontier, which follows them) aside
        doc = json.loads((out / "operating_points.json").read_text())
        return [{k: v for k, v in r.items() if k not in ("latency_ms", "keyboard_ms", "key_ms", "frontier", "delegate")}
                for r in doc["points"]]
    assert rows(remote) == rows(local) and len(rows(local)) == 2


@pytest.mark.parametrize("extra,message", [
    (["--executor", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--address", "127.0.0.1:1"], "--address is the Ray cluster's: give it with --executor ray"),
])
def test_bad_cluster_options(base, tmp_path, capsys, extra, message):
    pytest.importorskip("ray")
    out = tmp_path / "sw"
    assert sweep_cli.main(args_for(base, out) + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_ctrl_c_stops_the_sweep_at_once_and_keeps_what_is_finished(base, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "sw"
    # four points, one at a time: Ctrl-C (SIGINT to the process group, as a terminal sends it) while the
    # first trained point runs must not train the others
    cmd = [sys.executable, "-m", "pruning.sweep"] + args_for(base, out, "--methods", "units-norm,lowrank",
                                                              "--points", "100,50,30")
    # SIGINT's default action restored first: a test run started in the background has it ignored, and
    # a Python started so ignores Ctrl-C too
    proc = subprocess.Popen(cmd, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not (out / "logs" / "units-norm-50.train.log").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.time()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and time.time() - t0 < 30
    assert "--resume" in err.strip().splitlines()[-1]
    started = sorted(p.name for p in (out / "logs").iterdir() if p.name.endswith(".train.log"))
    assert started == ["dense-100.train.log", "units-norm-50.train.log"]  # no later point was started
    assert (out / "points" / "dense-100" / "point.json").exists()  # what finished is kept
    assert not (out / "operating_points.json").exists()  # and nothing was timed


def test_a_teacher_reaches_every_point_and_must_share_the_vocabulary(base, tmp_path, capsys):
    options = dict(finetune_epochs=1, lr=1.0, recover="none", teacher="/t", distill_alpha=0.3,
                   distill_temperature=2.0, distill_top_k=16)
    for method, share in (("dense", 100), ("l0", 50), ("units-norm", 50), ("lowrank", 50), ("magnitude", 50)):
        args = sweep.train_args(method, share, str(base), {}, options)
        at = args.index("--teacher")
        assert args[at:at + 8] == ["--teacher", "/t", "--distill-alpha", "0.3", "--distill-temperature", "2",
                                   "--distill-top-k", "16"], method
    other = tmp_path / "teacher"
    (other / "model").mkdir(parents=True)
    (other / "model" / "spec.json").write_text("{}")
    (other / "vocab.txt").write_text("<eos>\n<unk>\nsomething\n")
    out = tmp_path / "sw"
    assert sweep_cli.main(args_for(base, out, "--teacher", str(other))) == 2
    err = capsys.readouterr().err
    assert "not the student's" in err and err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("option", ["--keep-best", "--int4-aware"])
def test_keep_best_reaches_the_points_that_only_update_weights(base, option):
    """--keep-best and --int4-aware go to dense, l0 past its joint epoch, units and lowrank, and
    each point's own pruning.train accepts what it gets; never to magnitude pruning."""
    from pruning.train import complete, parser, validate
    for n, expected in ((3, {"dense", "l0", "units-norm", "lowrank"}), (1, {"dense", "units-norm", "lowrank"})):
        options = dict(finetune_epochs=n, lr=1.0, recover="none", keep_best=2, int4_aware=True)
        got = set()
        for method in ("dense", "l0", "units-norm", "lowrank", "magnitude"):
            args = sweep.train_args(method, 100 if method == "dense" else 50, str(base), {}, options)
            if option in args:
                if option == "--keep-best":
                    assert args[args.index("--keep-best") + 1] == "2"
                got.add(method)
                argv = args + ["--out", "x"]
                assert validate(complete(vars(parser().parse_args(argv)), argv)) is None, method
        assert got == expected, n
    assert "--keep-best" not in sweep.train_args("dense", 100, str(base), {}, dict(
        finetune_epochs=3, lr=1.0, recover="none"))


def test_resume_ignores_distillation_options_only_where_no_teacher_is_involved(tmp_path):
    # a sweep saved when the default top k was 32 resumes under another default; with a teacher it may not
    out = tmp_path / "sw"
    out.mkdir()
    saved = dict(base="b", quantize="dynamic", finetune_epochs=1, keep_best=0, recover="none", lr=None,
                 steps_per_epoch=None, blocked_words=[], teacher=None, distill_alpha=0.5,
                 distill_temperature=1.0, distill_top_k=32)
    (out / sweep.SWEEP_FILE).write_text(json.dumps(saved))
    sweep.check_out(str(out), True, False, dict(saved, distill_top_k=256))
    with pytest.raises(sweep.SweepError, match="int4_aware True differs from the sweep's None"):
        sweep.check_out(str(out), True, False, dict(saved, int4_aware=True))  # an older sweep: without it
    (out / sweep.SWEEP_FILE).write_text(json.dumps(dict(saved, teacher="t")))
    with pytest.raises(sweep.SweepError, match="distill_top_k 256 differs from the sweep's 32"):
        sweep.check_out(str(out), True, False, dict(saved, teacher="t", distill_top_k=256))
