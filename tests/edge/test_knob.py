"""The knob on the device: the switching logic under a fake clock, pick over
an operating-points file (recorded latencies only where they hold), and the
file's checks."""
import json
import math
import os
import shutil

import pytest

from edge_runtime import device
from edge_runtime import manifest as mf
from edge_runtime import knob as knob_module
from edge_runtime import predict
from edge_runtime.knob import Switcher, ladder, start_level
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

    def feed(self, token, spelling=None, learn=True):
        self.clock.now += self.ms * self.load[0] / 1e3
        self.fed.append(token)


def make(levels, budget, window=10, context=20, real=None, open_ms=0.0, **options):
    """A Switcher over `levels` [(label, perplexity, recorded p90 ms)] on a fake clock;
    each level's feeds take `real[label]` ms (default: as recorded) x the load, and
    opening a level `open_ms`."""
    clock, load, opened = Clock(), [1.0], []
    real = real or {label: ms for label, _, ms in levels}

    def open_level(label):
        clock.now += open_ms / 1e3
        opened.append(FakeKeyboard(label, real[label], clock, load))
        return opened[-1]
    return (Switcher(levels, budget, open_level, window=window, context=context, clock=clock, **options),
            load, opened)


def feed(knob, n):
    for t in range(n):
        knob.feed(t)


def test_start_level_is_the_best_point_that_fits():
    assert start_level([2.0, 1.0, 0.4], 1.5) == 1
    assert start_level([2.0, 1.0, 0.4], 5.0) == 0
    assert start_level([2.0, 1.0, 0.4], 0.1) == 2  # none fits: the fastest


def test_the_ladder_is_monotone_in_the_statistic_it_switches_on():
    # knob_qrnn.json's recorded p90s along the perplexity order were not monotone
    levels = [("l0-40", 182.8, 0.0815), ("units-random-40", 183.0, 0.0426), ("units-norm-40", 183.5, 0.0428),
              ("lowrank-40", 184.0, 0.0451), ("l0-20", 191.3, 0.0320)]
    assert ladder(levels) == [("l0-40", 0.0815), ("units-random-40", 0.0426), ("l0-20", 0.0320)]
    assert ladder(list(reversed(levels))) == ladder(levels)  # ordered by perplexity, whatever the input order
    # every point 1.1x slower than recorded, budget 0.046: one move down, then it stays where it lands
    knob, load, _ = make(levels, budget=0.046)
    load[0] = 1.1
    feed(knob, 500)
    assert [(e["from"], e["to"]) for e in knob.events] == [("units-random-40", "l0-20")]
    assert knob.label == "l0-20"


def test_a_device_unlike_its_records_backs_off_instead_of_flapping():
    # recorded p90 [1.0, 0.5], real [1.3, 0.35], budget 1.0: the better point always looks as if it
    # fits (0.35 x 1.0 / 0.5 = 0.7 <= 0.8) and never does; each failed try doubles the wait
    levels = [("best", 100.0, 1.0), ("fast", 110.0, 0.5)]
    windows = 256
    knob, _, _ = make(levels, budget=1.0, window=10, real={"best": 1.3, "fast": 0.35})
    feed(knob, windows * 10)
    ups = [e for e in knob.events if e["reason"] == "headroom"]
    assert 1 <= len(ups) <= math.log2(windows) + 1 and len(knob.events) <= 2 * len(ups) + 1
    gaps = [b["after_tokens"] - a["after_tokens"] for a, b in zip(ups, ups[1:])]
    assert all(g2 > g1 for g1, g2 in zip(gaps, gaps[1:]))  # the tries up come ever further apart


def test_switches_down_under_load_and_back_up_with_headroom():
    levels = [("best", 100.0, 2.0), ("mid", 110.0, 1.0), ("fast", 120.0, 0.4)]
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
    knob, load, _ = make([("best", 100.0, 1.0), ("fast", 110.0, 0.5)], budget=0.1, window=5)
    assert knob.label == "fast"  # nothing fits: the fastest
    for t in range(50):
        knob.feed(t)
    assert knob.label == "fast" and [e["event"] for e in knob.events] == ["over budget"]  # once in 10 windows
    knob, load, _ = make([("best", 100.0, 1.0), ("fast", 110.0, 0.5)], budget=100.0, window=5)
    for t in range(50):
        knob.feed(t)
    assert knob.label == "best" and knob.events == []


def test_a_switch_is_timed_and_counted_as_the_switching_words_wait():
    # mid 1.0 ms a word; the device slows to 2.0 ms over a 1.5 budget: it moves to fast (0.4 x 2 =
    # 0.8 ms a word), opening it costs 10 ms and handing it 5 tokens of context 5 x 0.8 ms
    levels = [("mid", 110.0, 1.0), ("fast", 120.0, 0.4)]
    knob, load, opened = make(levels, budget=1.5, window=10, context=5, open_ms=10.0)
    load[0] = 2.0
    feed(knob, 10)
    (event,) = knob.events
    assert event["switch_ms"] == pytest.approx(10.0 + 5 * 0.8) and event["context_tokens"] == 5
    assert list(knob.word_ms) == pytest.approx([2.0] * 9 + [2.0 + 14.0])  # the switching word waited too
    summary = knob.summary()
    assert summary["words"] == 10 and summary["over_budget"] == 10 and summary["switches"] == 1
    assert summary["switch_ms"] == pytest.approx(14.0) and summary["level"] == "fast"
    feed(knob, 10)  # at fast: 0.8 ms a word, within the budget
    assert knob.summary()["over_budget"] == 10 and knob.summary()["words"] == 20


def test_over_budget_at_the_fastest_point_is_said_at_once_and_at_intervals():
    levels = [("best", 100.0, 1.0), ("fast", 110.0, 0.5)]
    knob, load, _ = make(levels, budget=0.6, window=10, warn_every=5)
    assert knob.label == "fast"
    load[0] = 3.0  # fast takes 1.5 ms: over, with nowhere to go
    feed(knob, 10 * 12)
    warned = [e for e in knob.events if e["event"] == "over budget"]
    assert [e["windows_over"] for e in warned] == [1, 6, 11]
    assert warned[0]["after_tokens"] == 10 and warned[0]["level"] == "fast"
    assert warned[0]["p90_ms"] == pytest.approx(1.5) and warned[0]["budget_ms"] == 0.6
    assert knob.summary()["over_budget"] == 120
    load[0] = 1.0  # back within the budget, then over again: said again at once
    feed(knob, 10)
    load[0] = 3.0
    feed(knob, 10)
    assert [e["windows_over"] for e in knob.events if e["event"] == "over budget"] == [1, 6, 11, 1]


def test_the_back_off_is_kept_per_level():
    # best never fits on this device (recorded 1.0, real 2.0); mid and fast run as recorded.
    # Failed tries at best make best wait longer, but must not delay the way back up to mid
    # after a slow spell pushed the switcher down to fast.
    levels = [("best", 100.0, 1.0), ("mid", 110.0, 0.5), ("fast", 120.0, 0.3)]
    knob, load, _ = make(levels, budget=1.3, window=10, real={"best": 2.0, "mid": 0.5, "fast": 0.3})
    assert knob.label == "best"
    feed(knob, 10 * 40)  # best fails, mid holds, best is retried ever more rarely
    assert knob.wait[0] >= 8 and knob.wait[1] == 1
    while knob.label != "mid":
        knob.feed(0)
    load[0] = 3.0  # mid at 1.5 ms: over; down to fast (0.9 ms)
    feed(knob, 10)
    assert knob.label == "fast"
    load[0] = 1.0
    feed(knob, 10)  # one window at fast, mid expected at 0.5: back up at once
    assert knob.label == "mid" and knob.events[-1]["reason"] == "headroom"


@pytest.mark.parametrize("bad,message", [
    (dict(budget_ms=float("nan")), "--budget-ms must be a positive number, not nan"),
    (dict(budget_ms=0.0), "--budget-ms must be a positive number"),
    (dict(window=0), "--window must be at least 1"),
    (dict(context=-1), "--context must not be negative"),
])
def test_bad_switcher_options_name_the_option(bad, message):
    options = dict(budget_ms=1.0, window=10, context=20, **{})
    options.update(bad)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Switcher([("a", 100.0, 1.0)], options.pop("budget_ms"), lambda label: None, **options)


def points_file(tflite_dir, tmp_path, latencies, here=True):
    """An operating-points file over two of the test model's files, with the given
    recorded keyboard p90s (the step's recorded 5x faster, so that budgeting the
    wrong figure shows); the float32 file has the better perplexity."""
    folder = tmp_path / "bundle"
    shutil.copytree(tflite_dir, folder / "m", ignore=shutil.ignore_patterns("bench"))
    manifest = mf.load(str(folder / "m"))
    rows = []
    for (variant, ppl), ms in zip((("float32", 100.0), ("dynamic", 101.0)), latencies):
        v = manifest["variants"][variant]
        rows.append(dict(name=f"p-{variant}", method="dense", variant=variant, model="m",
                         file=os.path.join("m", v["file"]), sha256=v["sha256"], bytes=v["bytes"],
                         test_perplexity=ppl, test_r_at_3=0.1, latency_ms=dict(median=ms / 5, p90=ms / 5),
                         keyboard_ms=dict(median=ms, p90=ms),
                         energy_mj_per_token=None, frontier=dict(latency=True, keyboard=True, bytes=True)))
    where = device.describe() if here else dict(device.describe(), hostname="another-phone")
    doc = dict(format_version=2, device=where, timing=dict(threads=1, delegate="auto", api="interpreter", steps=10),
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
    assert code == 1 and "p-float32:float32: keyboard p90 5.000 ms > 0.5 ms" in err
    assert "p-dynamic:dynamic: keyboard p90 1.000 ms > 0.5 ms" in err


def test_pick_from_points_measured_elsewhere_measures_here(tflite_dir, tmp_path, capsys):
    # figures from another device that would put both within any budget: never trusted
    from edge_runtime.bench_cache import bench_file
    f = points_file(tflite_dir, tmp_path, latencies=(1e-9, 1e-9), here=False)
    manifest = mf.load(str(f.parent / "m"))
    for n in ("float32", "dynamic"):  # stale cache files: another file's figures on this device
        cache = bench_file(manifest, n, 1, "auto", "interpreter")
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache, "w") as fh:
            json.dump(dict(latency_ms=dict(median=1e-9, p90=1e-9), keyboard_ms=dict(median=1e-9, p90=1e-9),
                           sha256="0" * 64, device=device.describe()), fh)
    code, out, err = run(capsys, "pick", "--points", f, "--max-latency-ms", 1e-6, "--threads", 1,
                         "--steps", 20, "--warmup", 2, "--json")
    assert code == 1 and err.count("measuring") == 2 and json.loads(out)["picked"] is None


def test_points_file_checks(tflite_dir, tmp_path, capsys):
    f = points_file(tflite_dir, tmp_path, latencies=(5.0, 1.0))
    for argv in (["--points", tmp_path / "none.json"], ["--points", f, "--model", tflite_dir]):
        code, _, err = run(capsys, "pick", *argv, "--max-latency-ms", 1)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    doc = json.loads(f.read_text())
    for version, message in ((3, "format version 3"), (1, "records no keyboard latency")):
        doc["format_version"] = version
        f.write_text(json.dumps(doc))
        code, _, err = run(capsys, "pick", "--points", f, "--max-latency-ms", 1)
        assert code == 2 and message in err and err.count("\n") == 1
    doc["format_version"] = 2
    doc["points"][0]["sha256"] = "0" * 64
    f.write_text(json.dumps(doc))
    code, _, err = run(capsys, "pick", "--points", f, "--max-latency-ms", 1)
    assert code == 2 and "not the ones measured" in err and err.count("\n") == 1


def timed_cli(monkeypatch, real, load=1.0):
    """`predict.py suggest --points --budget-ms` on a fake clock: each word's
    suggestions on file F take real[F] ms x `load`, whatever the machine does."""
    clock = Clock()

    class TimedKeyboard(predict.Keyboard):
        def feed(self, token_id, *args, **kwargs):
            super().feed(token_id, *args, **kwargs)
            clock.now += real[os.path.basename(self.model.path)] * load / 1e3
    monkeypatch.setattr(knob_module, "CLOCK", clock)
    monkeypatch.setattr(predict, "Keyboard", TimedKeyboard)


def switches(capsys, f, budget, words=40):
    code, out, err = run(capsys, "suggest", "--points", f, "--budget-ms", budget, "--window", 4, "--threads", 1,
                         "--text", "the " * words, "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    return [e for e in lines if e.get("event") == "switch"], lines[-1]["variant"], err


def test_suggest_with_a_budget_on_a_real_bundle(tflite_dir, tmp_path, capsys, monkeypatch):
    # recorded: float32 5.0 ms (the better perplexity), dynamic 1.0 ms
    f = points_file(tflite_dir, tmp_path, latencies=(5.0, 1.0))
    timed_cli(monkeypatch, {"float32.tflite": 5.0, "dynamic.tflite": 1.0})
    events, last, _ = switches(capsys, f, budget=6.0)  # above every point: never switches
    assert events == [] and last == "p-float32:float32"
    events, last, _ = switches(capsys, f, budget=3.0)  # between them: the one that meets it
    assert events == [] and last == "p-dynamic:dynamic"
    events, last, err = switches(capsys, f, budget=1e-6)  # below both: the fastest, and says so
    assert events == [] and last == "p-dynamic:dynamic" and "no point's p90 fits" in err
    # the device runs 1.5x slower than recorded: float32 (7.5 ms) is over 6.0, so it moves down and stays
    timed_cli(monkeypatch, {"float32.tflite": 5.0, "dynamic.tflite": 1.0}, load=1.5)
    events, last, _ = switches(capsys, f, budget=6.0)
    assert [(e["from"], e["to"], e["reason"], e["after_tokens"]) for e in events] == [
        ("p-float32:float32", "p-dynamic:dynamic", "over budget", 4)]
    assert last == "p-dynamic:dynamic"
    # faster than recorded: from the fastest, the better point is expected within 0.8 x budget: up
    timed_cli(monkeypatch, {"float32.tflite": 2.0, "dynamic.tflite": 0.4})
    events, last, _ = switches(capsys, f, budget=3.0)
    assert [(e["from"], e["to"], e["reason"]) for e in events] == [("p-dynamic:dynamic", "p-float32:float32", "headroom")]
    assert last == "p-float32:float32"


def test_suggest_budget_needs_points(tflite_dir, tmp_path, capsys):
    f = points_file(tflite_dir, tmp_path, latencies=(5.0, 1.0))
    code, out, err = run(capsys, "suggest", "--points", f, "--text", "the")
    assert code == 2 and "--points and --budget-ms go together" in err


def test_the_bundles_block_list_is_never_shown(tflite_dir, tmp_path, capsys):
    f = points_file(tflite_dir, tmp_path, latencies=(5.0, 1.0))
    argv = ["suggest", "--points", f, "--budget-ms", 10, "--threads", 1, "--text", "the ", "--json"]
    code, out, _ = run(capsys, *argv)
    shown = [s["word"] for s in json.loads(out.splitlines()[-1])["suggestions"]]
    doc = json.loads(f.read_text())
    doc["options"]["blocked_words"] = [shown[0].lower()]  # as the sweep's --block records it
    f.write_text(json.dumps(doc))
    code2, out, _ = run(capsys, *argv)
    after = [s["word"] for s in json.loads(out.splitlines()[-1])["suggestions"]]
    assert code == code2 == 0 and shown[0] not in after and after[:2] == shown[1:3]


@pytest.mark.parametrize("argv,message", [
    (["suggest", "--points", "{points}", "--budget-ms", "nan", "--text", "the"],
     "--budget-ms must be a positive number, not nan"),
    (["suggest", "--points", "{points}", "--budget-ms", "-1", "--text", "the"], "--budget-ms must be a positive"),
    (["suggest", "--points", "{points}", "--budget-ms", "1", "--window", "0", "--text", "the"],
     "--window must be at least 1"),
    (["pick", "--points", "{points}", "--max-latency-ms", "nan"], "--max-latency-ms must be a positive number, not nan"),
    (["pick", "--points", "{points}", "--max-energy-mj", "nan"], "--max-energy-mj must be a positive number"),
    (["pick", "--points", "{points}", "--max-bytes", "0"], "--max-bytes must be a positive number"),
    (["suggest", "--model", "{model}", "--threads", "0", "--text", "the"], "--threads must be at least 1, not 0"),
    (["bench", "--model", "{model}", "--threads", "0"], "--threads must be at least 1"),
    (["pick", "--points", "{model}/manifest.json", "--max-bytes", "1"],
     "is a model's manifest (a converted run's tflite/), not an operating-points file"),
    (["suggest", "--model", "{points}", "--text", "the"], "is a sweep's operating-points file, not a model: give it "
                                                          "to --points"),
    (["suggest", "--model", "{bundle}", "--text", "the"], "is a sweep's bundle folder: give --points"),
    (["suggest", "--model", "{sweep}", "--text", "the"], "is a sweep folder: give --points"),
    (["eval", "x.txt", "--model", "{run}"], "is a trained run that is not converted: run python -m convert.to_tflite"),
])
def test_wrong_input_is_one_line_naming_what_is_wrong(tflite_dir, tmp_path, capsys, argv, message):
    f = points_file(tflite_dir, tmp_path, latencies=(5.0, 1.0))
    sweep = tmp_path / "sweep"
    (sweep / "points" / "dense-100").mkdir(parents=True)
    shutil.copytree(f.parent, sweep / "bundle")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (tmp_path / "x.txt").write_text("the cat\n")
    names = dict(points=f, model=tflite_dir, bundle=f.parent, sweep=sweep, run=run_dir)
    argv = [a.format(**names) if a != "x.txt" else str(tmp_path / a) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_suggest_with_a_budget_reports_what_the_user_waited(tflite_dir, tmp_path, capsys, monkeypatch):
    f = points_file(tflite_dir, tmp_path, latencies=(5.0, 1.0))
    timed_cli(monkeypatch, {"float32.tflite": 5.0, "dynamic.tflite": 1.0}, load=1.5)
    code, out, err = run(capsys, "suggest", "--points", f, "--budget-ms", 6.0, "--window", 4, "--threads", 1,
                         "--text", "the " * 12, "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    (switch,) = [e for e in lines if e.get("event") == "switch"]
    # the new keyboard's first step (from the sentence start) and the context handed over, the 4 words
    # so far: 5 steps at dynamic's 1.5 ms (on the fake clock)
    assert switch["switch_ms"] == pytest.approx(5 * 1.5) and switch["context_tokens"] == 4
    knob = lines[-1]["knob"]
    assert knob["words"] == 12 and knob["switches"] == 1 and knob["switch_ms"] == pytest.approx(7.5)
    assert knob["over_budget"] == 4  # float32's four words at 7.5 ms, the fourth 7.5 + 7.5
    code, out, err = run(capsys, "suggest", "--points", f, "--budget-ms", 0.5, "--window", 4, "--threads", 1,
                         "--text", "the " * 12)
    assert code == 0 and "warning: over budget at the fastest point, p-dynamic:dynamic" in err
    assert "knob: 12 words, 12 over 0.5 ms" in err
