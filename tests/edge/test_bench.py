"""The timing harness and the frontier, against hand-worked examples."""
import numpy as np

from edge_runtime import bench
from edge_runtime.pareto import frontier


def test_frontier_hand_worked():
    points = [dict(p=120, t=0.10), dict(p=110, t=0.20), dict(p=130, t=0.05), dict(p=125, t=0.12),
              dict(p=110, t=0.25), dict(p=130, t=0.05), dict(p=100, t=0.40)]
    # 3 is beaten by 0 on both; 4 by 1 (same p, slower); 5 ties 2 exactly (the first is kept)
    assert frontier(points, "t", "p") == [2, 0, 1, 6]
    assert frontier([], "t", "p") == []


class Recorder:
    vocab_size = 5

    def __init__(self, name, log):
        self.name, self.log = name, log

    def step(self, token):
        self.log.append(self.name)


def test_interleaved_takes_the_files_in_turn_block_by_block(monkeypatch, tmp_path):
    log = []
    paths = {}
    for name in ("a", "b", "c"):
        paths[name] = tmp_path / f"{name}.tflite"
        paths[name].write_bytes(name.encode() * 10)
    monkeypatch.setattr(bench, "load", lambda path, states, threads, delegate, api: (
        Recorder(str(path)[-8], log), "xnnpack", None))
    out = bench.interleaved({n: (str(p), []) for n, p in paths.items()}, steps=7, warmup=2, block=3)
    timed = log[6:]  # after 2 warm-up steps each
    assert timed == list("aaabbbccc" "bbbcccaaa" "cab")  # rotating order; the last block is short
    assert {n: r["steps"] for n, r in out.items()} == {"a": 7, "b": 7, "c": 7}
    assert out["a"]["bytes"] == 10 and len(out["a"]["sha256"]) == 64
    assert all(r["median"] <= r["p90"] <= r["p99"] for r in out.values())
    assert np.isfinite([r["median"] for r in out.values()]).all()


def test_overhead_times_step_and_bare_invoke_block_by_block():
    calls = []

    class Model:
        def step(self, t):
            calls.append(("step", t))

        def invoke(self):
            calls.append(("invoke", None))

    r = bench.overhead(Model(), list(range(7)), block=3)
    kinds = [k for k, _ in calls]
    assert kinds == ["step"] * 3 + ["invoke"] * 3 + ["invoke"] * 3 + ["step"] * 3 + ["step", "invoke"]
    assert [t for k, t in calls if k == "step"] == list(range(7))
    assert set(r) == {"step_ms", "invoke_ms", "step_over_invoke"}
