"""The knob on the device: the switching logic under a fake clock, pick over
an operating-points file (recorded latencies only where they hold), and the
file's checks."""
import json
import os
import shutil

import pytest

from edge_runtime import device
from edge_runtime import manifest as mf
from edge_runtime.knob import Switcher, start_level
from edge_runtime.predict import main


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeKeyboard:
    """A level whose every step takes `ms` x the current load on the fake clock."""

    def __init__(self, name, ms, clock, load):
        self.name, self.ms, self.clock, self.load, self.fed = name, ms, clock, load, []
        self.shown = []

    def feed(self, token):
        self.clock.now += self.ms * self.load[0] / 1e3
        self.fed.append(token)


def make(levels, budget, window=10, context=20):
    clock, load, opened = Clock(), [1.0], []

    def open_level(i):
        opened.append(FakeKeyboard(*levels[i], clock, load))
        return opened[-1]
    return Switcher(levels, budget, open_level, window=window, context=context, clock=clock), load, opened


def test_start_level_is_the_best_point_that_fits():
    assert start_level([2.0, 1.0, 0.4], 1.5) == 1
    assert start_level([2.0, 1.0, 0.4], 5.0) == 0
    assert start_level([2.0, 1.0, 0.4], 0.1) == 2  # none fits: the fastest


def test_switches_down_under_load_and_back_up_with_headroom():
    levels = [("best", 2.0), ("mid", 1.0), ("fast", 0.4)]
    knob, load, opened = make(levels, budget=1.5)
    assert knob.label == "mid"
    for t in range(30):  # 1.0 ms per step: within 1.5, and best (2.0) would not fit 0.8 x 1.5
        knob.feed(t)
    assert knob.events == [] and knob.label == "mid"
    load[0] = 2.0  # the device slows down: mid takes 2.0 ms
    for t in range(30, 40):
        knob.feed(t)
    assert knob.label == "fast" and knob.events[-1]["reason"] == "over budget"
    assert knob.events[-1]["after_tokens"] == 40 and knob.events[-1]["p90_ms"] == pytest.approx(2.0)
    # the context was handed over: the new model was fed the last 20 tokens, in order
    assert opened[-1].fed == list(range(20, 40))
    for t in range(40, 60):  # fast at 0.8 ms: mid would take 2.0 ms, over 0.8 x 1.5: stay
        knob.feed(t)
    assert knob.label == "fast" and len(knob.events) == 1
    load[0] = 1.0  # back to normal: fast takes 0.4, so mid is expected at 1.0 <= 1.2
    for t in range(60, 70):
        knob.feed(t)
    assert knob.label == "mid" and knob.events[-1]["reason"] == "headroom"
    assert [(e["from"], e["to"]) for e in knob.events] == [("mid", "fast"), ("fast", "mid")]
    for t in range(70, 100):  # and it stays: best would need 2.0
        knob.feed(t)
    assert knob.label == "mid" and len(knob.events) == 2


def test_never_moves_past_the_ends():
    knob, load, _ = make([("best", 1.0), ("fast", 0.5)], budget=0.1, window=5)
    assert knob.label == "fast"  # nothing fits: the fastest
    for t in range(50):
        knob.feed(t)
    assert knob.label == "fast" and knob.events == []
    knob, load, _ = make([("best", 1.0), ("fast", 0.5)], budget=100.0, window=5)
    for t in range(50):
        knob.feed(t)
    assert knob.label == "best" and knob.events == []


def points_file(tflite_dir, tmp_path, latencies, here=True):
    """An operating-points file over two of the test model's files, with the given
    recorded median latencies; the float32 file has the better perplexity."""
    folder = tmp_path / "bundle"
    shutil.copytree(tflite_dir, folder / "m", ignore=shutil.ignore_patterns("bench"))
    manifest = mf.load(str(folder / "m"))
    rows = []
    for (variant, ppl), ms in zip((("float32", 100.0), ("dynamic", 101.0)), latencies):
        v = manifest["variants"][variant]
        rows.append(dict(name=f"p-{variant}", method="dense", variant=variant, model="m",
                         file=os.path.join("m", v["file"]), sha256=v["sha256"], bytes=v["bytes"],
                         test_perplexity=ppl, test_r_at_3=0.1, latency_ms=dict(median=ms, p90=ms),
                         energy_mj_per_token=None, frontier=dict(latency=True, bytes=True)))
    where = device.describe() if here else dict(device.describe(), hostname="another-phone")
    doc = dict(format_version=1, device=where, timing=dict(threads=1, delegate="auto", api="interpreter", steps=10),
               options={}, points=rows)
    (folder / "operating_points.json").write_text(json.dumps(doc))
    return folder / "operating_points.json"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_pick_from_points_uses_the_recorded_latency_measured_here(tflite_dir, tmp_path, capsys):
    f = points_file(tflite_dir, tmp_path, latencies=(5.0, 1.0))
    code, out, err = run(capsys, "pick", "--points", f, "--max-latency-ms", 2.0, "--threads", 1, "--json")
    assert code == 0 and json.loads(out)["picked"] == "p-dynamic:dynamic" and "measuring" not in err
    code, out, _ = run(capsys, "pick", "--points", f, "--max-latency-ms", 10, "--threads", 1, "--json")
    assert json.loads(out)["picked"] == "p-float32:float32"  # both fit: the better perplexity
    code, out, err = run(capsys, "pick", "--points", f, "--max-latency-ms", 0.5, "--threads", 1)
    assert code == 1 and "p-float32:float32: median latency 5.000 ms > 0.5 ms" in err
    assert "p-dynamic:dynamic: median latency 1.000 ms > 0.5 ms" in err


def test_pick_from_points_measured_elsewhere_measures_here(tflite_dir, tmp_path, capsys):
    # figures from another device that would put both within any budget: never trusted
    from edge_runtime.predict import bench_file
    f = points_file(tflite_dir, tmp_path, latencies=(1e-9, 1e-9), here=False)
    manifest = mf.load(str(f.parent / "m"))
    for n in ("float32", "dynamic"):  # stale cache files: another file's figures on this device
        cache = bench_file(manifest, n, 1, "auto", "interpreter")
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache, "w") as fh:
            json.dump(dict(latency_ms=dict(median=1e-9, p90=1e-9), sha256="0" * 64, device=device.describe()), fh)
    code, out, err = run(capsys, "pick", "--points", f, "--max-latency-ms", 1e-6, "--threads", 1,
                         "--steps", 20, "--warmup", 2, "--json")
    assert code == 1 and err.count("measuring") == 2 and json.loads(out)["picked"] is None


def test_points_file_checks(tflite_dir, tmp_path, capsys):
    f = points_file(tflite_dir, tmp_path, latencies=(5.0, 1.0))
    for argv in (["--points", tmp_path / "none.json"], ["--points", f, "--model", tflite_dir]):
        code, _, err = run(capsys, "pick", *argv, "--max-latency-ms", 1)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    doc = json.loads(f.read_text())
    doc["format_version"] = 2
    f.write_text(json.dumps(doc))
    code, _, err = run(capsys, "pick", "--points", f, "--max-latency-ms", 1)
    assert code == 2 and "format version 2" in err and err.count("\n") == 1
    doc["format_version"] = 1
    doc["points"][0]["sha256"] = "0" * 64
    f.write_text(json.dumps(doc))
    code, _, err = run(capsys, "pick", "--points", f, "--max-latency-ms", 1)
    assert code == 2 and "not the ones measured" in err and err.count("\n") == 1


def test_suggest_with_a_budget_moves_to_the_fastest_point(tflite_dir, tmp_path, capsys):
    f = points_file(tflite_dir, tmp_path, latencies=(5.0, 1.0))
    text = "the " * 12
    code, out, err = run(capsys, "suggest", "--points", f, "--budget-ms", 1e-6, "--window", 4, "--threads", 1,
                         "--text", text, "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "no point's p90 fits" in err
    # it starts at the fastest (nothing fits) and stays there: no switch
    assert lines[-1]["variant"] == "p-dynamic:dynamic" and len(lines) == 1
    # the recorded 1.0 ms fits 3.0 and 5.0 does not; the steps here take far less than recorded, so
    # after one window the better point is expected well within the budget and it moves up
    code, out, err = run(capsys, "suggest", "--points", f, "--budget-ms", 3.0, "--window", 4, "--threads", 1,
                         "--text", text, "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and lines[0]["event"] == "switch" and lines[0]["after_tokens"] == 4
    assert (lines[0]["from"], lines[0]["to"], lines[0]["reason"]) == ("p-dynamic:dynamic", "p-float32:float32", "headroom")
    assert lines[-1]["variant"] == "p-float32:float32"
    code, out, err = run(capsys, "suggest", "--points", f, "--text", "the")
    assert code == 2 and "--points and --budget-ms go together" in err
