"""Data-parallel training with tf.distribute on the CPU: MirroredStrategy over
two logical CPU devices gives one device's losses for the same global batch;
a two-process MultiWorker run on localhost ends with the same weights on
both workers; bad strategies are one-line errors. Each run is a process of
its own, since the devices and the collectives are fixed when TensorFlow
starts."""
import json
import os
import socket
import subprocess
import sys

import pytest

from pruning.train import main
from tests.conftest import write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--embed", "8", "--hidden", "12", "--epochs", "1", "--bptt", "8", "--dropout", "0",
        "--checkpoint-every", "1000", "--schedule", "none"]


def train(args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "pruning.train", *args], cwd=ROOT, env=dict(os.environ, **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finished(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def report(out):
    return json.loads((out / "train_report.json").read_text())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("d") / "data", sizes=(("train", 400), ("valid", 40), ("test", 40)))


@pytest.mark.parametrize("name,options,rel", [
    ("dense", [], 1e-4),
    ("tf-mot", ["--schedule", "polynomial", "--target-sparsity", "0.5"], 1e-4),
    ("filter, fine-tuned, recovered", ["--schedule", "filter", "--target-units", "0.5", "--finetune-epochs", "1",
                                       "--recover", "rank-one"], 1e-4),
    ("grow-prune", ["--schedule", "grow-prune", "--arch", "hlstm", "--layers", "1", "--gate-hidden", "8"], 1e-4),
    # each replica draws its own gate noise from the one stream, so the draws are not one device's
    ("l0", ["--schedule", "l0", "--l0-lambda", "0.01", "--gate-lr", "0.1"], 1e-2),
])
def test_mirrored_over_two_cpu_devices_matches_one_device(corpus, tmp_path, name, options, rel):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--data-dir", corpus, *TINY, *options]
    finished(train(args + ["--batch-size", "8", "--out", str(one)]))
    out = finished(train(args + ["--batch-size", "4", "--strategy", "mirrored", "--out", str(two)],
                         env={"EDGELM_CPU_DEVICES": "2"}))
    r1, r2 = report(one), report(two)
    assert (r2["replicas"], r2["global_batch"], r2["strategy"]) == (2, 8, "mirrored") and "global batch 8" in out
    assert_same_run(r1, r2, rel)


def assert_same_run(r1, r2, rel):
    """Two runs' reports: the same steps, structure and losses, to `rel`."""
    assert r1["steps"] == r2["steps"] > 0 and r1["hidden_sizes"] == r2["hidden_sizes"]
    assert [h["phase"] for h in r1["history"]] == [h["phase"] for h in r2["history"]]
    for h1, h2 in zip(r1["history"], r2["history"]):  # the same losses, to float rounding
        assert h2["train_perplexity"] == pytest.approx(h1["train_perplexity"], rel=rel)
        assert h2["valid_perplexity"] == pytest.approx(h1["valid_perplexity"], rel=rel)
    assert r2["test_perplexity"] == pytest.approx(r1["test_perplexity"], rel=rel)
    assert r2["params_nonzero"] == r1["params_nonzero"]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_multiworker_processes_end_with_the_same_weights(corpus, tmp_path):
    out = tmp_path / "mw"
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    procs = [train(["--data-dir", corpus, *TINY, "--epochs", "1", "--batch-size", "4", "--strategy", "multiworker",
                    "--out", str(out)],
                   env={"TF_CONFIG": json.dumps(dict(cluster=cluster, task=dict(type="worker", index=i)))})
             for i in range(2)]
    outs = [finished(p) for p in procs]
    digests = [next(line.rsplit(" ", 1)[1] for line in o.splitlines() if "weights sha256" in line) for o in outs]
    r = report(out)  # written by the chief (worker 0) alone
    assert digests[0] == digests[1] == r["weights_sha256"]
    assert (r["replicas"], r["global_batch"]) == (2, 8) and r["status"] == "completed"
    # and both are one device's run of the same global batch
    one = tmp_path / "one"
    finished(train(["--data-dir", corpus, *TINY, "--epochs", "1", "--batch-size", "8", "--out", str(one)]))
    assert_same_run(report(one), r, 1e-4)


@pytest.mark.parametrize("args,env,message", [
    (["--strategy", "multiworker", "--schedule", "none"], {"TF_CONFIG": ""}, "--strategy multiworker needs TF_CONFIG"),
    (["--strategy", "multiworker", "--schedule", "none"], {"TF_CONFIG": "{not json"}, "TF_CONFIG is malformed"),
    (["--strategy", "multiworker", "--schedule", "none"], {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]},
                                                              "task": {"type": "worker", "index": 3}})},
     "task worker:3 is not in the cluster"),
    (["--strategy", "ring"], {}, "unknown --strategy 'ring'"),
])
def test_bad_strategies_are_one_line_errors(corpus, tmp_path, capsys, monkeypatch, args, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "never"
    assert main(["--data-dir", corpus, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_mirrored_run_cut_off_resumes_exactly(corpus, tmp_path):
    from tests.conftest import SIGNAL_AT_STEP
    args = ["--data-dir", corpus, *TINY, "--epochs", "1", "--batch-size", "4", "--strategy", "mirrored",
            "--checkpoint-every", "10"]
    env = {"EDGELM_CPU_DEVICES": "2"}
    finished(train(args + ["--out", str(tmp_path / "whole")], env=env))
    cut = subprocess.run([sys.executable, "-c", SIGNAL_AT_STEP, *args, "--out", str(tmp_path / "cut")], cwd=ROOT,
                         env=dict(os.environ, SIGNAL_AT="25", SIGNAL="INT", **env), capture_output=True, text=True,
                         timeout=600)
    assert cut.returncode == 130, cut.stderr[-2000:]
    out = finished(train(["--resume", "--out", str(tmp_path / "cut")], env=env))
    assert "resuming at epoch 1, batch 20, step 20" in out
    whole, resumed = report(tmp_path / "whole"), report(tmp_path / "cut")
    for key in ("history", "test_perplexity", "valid_perplexity", "weights_sha256", "global_batch"):
        assert resumed[key] == whole[key], key
