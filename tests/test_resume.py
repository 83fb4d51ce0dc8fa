"""Resume is exact: a run interrupted in any phase (train, finetune, recover),
with dropout and gate noise on, ends where an uninterrupted one does; and
--resume refuses what it cannot honour."""
import json
import os
import subprocess
import sys

import pytest

from training import steps
from pruning.train import main
from tests.conftest import SIGNAL_AT_STEP, write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--embed", "8", "--hidden", "12", "--epochs", "1", "--batch-size", "4", "--bptt", "8",
        "--checkpoint-every", "10", "--dropout", "0.3"]


def interrupt_at(monkeypatch, phase, call):
    """Ctrl-C (KeyboardInterrupt) at the `call`-th step of the `phase`-th train
    step made in the process (0 train, then finetune, then recover)."""
    real, made = steps.make_train_step, [0]

    def make(*a, **k):
        step, index, calls = real(*a, **k), made[0], [0]
        made[0] += 1

        def counted(*args):
            calls[0] += 1
            if index == phase and calls[0] == call:
                raise KeyboardInterrupt
            return step(*args)
        return counted
    monkeypatch.setattr(steps, "make_train_step", make)


def report(out):
    return json.loads((out / "train_report.json").read_text())


def compared(r):
    keep = ("valid_perplexity", "test_perplexity", "valid_r_at_3", "steps", "params_nonzero", "hidden_sizes",
            "grow_prune", "recovery", "structure")
    out = {k: r.get(k) for k in keep}
    out["history"] = [{k: v for k, v in h.items()} for h in r["history"]]
    return out


def interrupted_then_resumed(monkeypatch, capsys, args, out, stops):
    for n, (phase, call) in enumerate(stops):
        with monkeypatch.context() as m:
            interrupt_at(m, phase, call)
            code = main(args + ["--out", str(out)] if n == 0 else ["--resume", "--out", str(out)])
        assert code == 130
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"interrupted: {out} keeps its ") and f"--resume --out {out}" in err[-1]
    assert main(["--resume", "--out", str(out)]) == 0
    return report(out)


@pytest.mark.parametrize("name,options", [
    ("l0", ["--schedule", "l0", "--zoneout", "0.2", "--l0-lambda", "0.01", "--gate-lr", "0.1"]),
    ("filter", ["--schedule", "filter", "--target-units", "0.5", "--rank-by", "activation"]),
    ("l0-macs", ["--schedule", "l0", "--target-macs", "0.5", "--gate-lr", "0.1"]),  # the penalty coefficient resumes too
])
def test_structured_runs_resume_exactly_in_every_phase(tmp_path, monkeypatch, capsys, name, options):
    corpus = write_corpus(tmp_path / "data")
    args = ["--data-dir", corpus, *TINY, *options, "--finetune-epochs", "1", "--recover", "rank-one"]
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0
    whole = report(tmp_path / "whole")
    # once in each phase, each time a few steps after a checkpoint (every 10 steps)
    cut = interrupted_then_resumed(monkeypatch, capsys, args, tmp_path / "cut", [(0, 25), (1, 15), (2, 14)])
    assert [h["phase"] for h in cut["history"]] == ["train", "finetune", "recover"]
    assert compared(cut) == compared(whole)


def test_grow_prune_resumes_exactly_and_keeps_each_event_once(tmp_path, monkeypatch, capsys):
    corpus = write_corpus(tmp_path / "data")
    args = ["--data-dir", corpus, *TINY, "--arch", "hlstm", "--layers", "1", "--gate-hidden", "6",
            "--schedule", "grow-prune", "--seed-density", "0.5", "--target-sparsity", "0.3", "--gp-cycles", "1",
            "--grow-batches", "2"]
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0
    whole = report(tmp_path / "whole")
    events = [e["step"] for e in whole["grow_prune"]]
    assert [e["event"] for e in whole["grow_prune"]] == ["grow", "prune"]
    # interrupted right after each event (an event at step s comes before step s + 1), when the
    # last checkpoint (every 10 steps) is older than the event; a resumed process counts its
    # calls from the checkpoint it starts at
    first, second = events
    stops = [(0, first + 1), (0, second + 1 - first // 10 * 10)]
    cut = interrupted_then_resumed(monkeypatch, capsys, args, tmp_path / "cut", stops)
    assert cut["grow_prune"] == whole["grow_prune"]
    assert compared(cut) == compared(whole)


def test_resume_refuses_changed_options_and_leaves_a_finished_run_alone(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["--data-dir", corpus, *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    before = {p: (out / p).read_bytes() for p in ("train_report.json", "config.json", "model/weights.h5")}
    assert main(["--resume", "--out", str(out), "--epochs", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --epochs 5 conflicts with the saved option 1 of {out}; --resume continues with the "
                   "run's own options (to change --epochs, start a new run)")
    assert main(["--resume", "--out", str(out), "--force"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main(["--resume", "--out", str(out), "--epochs", "1", "--dropout", "0.3"]) == 0  # the same values
    assert capsys.readouterr().out.strip() == f"{out} is complete: nothing to resume; the run is left as it is"
    assert {p: (out / p).read_bytes() for p in before} == before


def test_ctrl_c_prints_one_line_and_exits_130_then_resumes(tmp_path):
    corpus = write_corpus(tmp_path / "data")
    out = tmp_path / "run"
    env = dict(os.environ, SIGNAL_AT="14", SIGNAL="INT")  # what Ctrl-C sends
    cut = subprocess.run([sys.executable, "-c", SIGNAL_AT_STEP, "--data-dir", corpus, *TINY, "--out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert cut.returncode == 130, cut.stderr[-2000:]
    assert cut.stderr.strip() == (f"interrupted: {out} keeps its train checkpoint at epoch 1, step 10; "
                                  f"continue with python -m pruning.train --resume --out {out}")
    resumed = subprocess.run([sys.executable, "-m", "pruning.train", "--resume", "--out", str(out)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and "resuming at epoch 1, batch 10, step 10" in resumed.stdout
    # TensorFlow's start-up lines (absl, oneDNN, cuInit on a CPU machine) are not shown
    assert "cuInit" not in resumed.stderr and "absl" not in resumed.stderr and "I0000" not in resumed.stderr
