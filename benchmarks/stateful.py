"""The state inside the .tflite file against the state as inputs and outputs,
per precision: the same outputs? the same perplexity? faster?

    python benchmarks/stateful.py RUN [--precisions float32,dynamic,int8] [--tokens 2000] [--steps 2000]
                                      [--json benchmarks/results/stateful.json]

For each precision both files are made here from the run's trained weights
with the converter's own pieces (convert/export.py's `StateInside` and the
state-I/O signatures, convert/variants.py's settings; int8 calibrated on the
run's calibration windows, the float model's states set before each
calibration step, so that the state variables are calibrated on the values
they take in use). Where the converter refuses, its error is recorded. For
each pair: the largest log-probability difference and both perplexities over
the first --tokens validation tokens, and `StepModel.step` and the bare
invoke of each, timed in one `bench.round_robin` pass, 1 thread, XNNPACK.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def inside_feeds(io_feeds, layout):
    """int8 calibration of the state-inside file: before each step (and each
    suggest) the float model's state is set, so every signature and every
    state variable sees what it sees in use."""
    for feed in io_feeds:
        state = {s["input"]: feed[s["input"]] for s in layout}
        for sig in ("suggest", "step"):
            yield "set_state", state
            yield sig, {"token": feed["token"]}
        yield "get_state", {}


def convert_pair(run, precision, work):
    """{kind: path or the converter's error}, kind io and inside, and the state layout."""
    from convert.export import save_step_model, state_layout, step_function
    from convert.variants import calibration_feeds, make_converter
    from edge_runtime.vocab import Vocab
    from keras_models.language_model import build_step_model, load_model
    model = load_model(os.path.join(run, "model"))
    step = build_step_model(model.spec, model.get_weights())
    vocab = Vocab.load(os.path.join(run, "vocab.txt"))
    layout = state_layout(step)
    feeds = None
    if precision == "int8":
        with np.load(os.path.join(run, "data.npz")) as z:
            feeds = calibration_feeds(step_function(step, vocab.unk_id), layout, z["calibration"])
    out = {}
    for kind in ("io", "inside"):
        saved = os.path.join(work, f"saved-{kind}")
        signatures = save_step_model(step, saved, vocab.unk_id, vocab.never_suggested, state=kind)
        conv = make_converter(saved, precision, feeds=feeds, signatures=signatures,
                              resource_variables=kind == "inside")
        if precision == "int8" and kind == "inside":
            conv.representative_dataset = lambda: inside_feeds(feeds, layout)
        try:
            data = conv.convert()
        except Exception as e:  # the converter's own words are the finding
            out[kind] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:500]}"
            continue
        out[kind] = os.path.join(work, f"{kind}-{precision}.tflite")
        with open(out[kind], "wb") as f:
            f.write(data)
    return out, layout


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--precisions", default="float32,dynamic,int8")
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--json", default=os.path.join("benchmarks", "results", "stateful.json"))
    a = p.parse_args(argv)
    from edge_runtime import bench, device
    from edge_runtime.files import atomic_write_text
    from edge_runtime.runner import StepModel
    with np.load(os.path.join(a.run, "data.npz")) as z:
        ids = z["valid"][: a.tokens + 1]
    rows = []
    for precision in a.precisions.split(","):
        row = dict(precision=precision)
        rows.append(row)
        with tempfile.TemporaryDirectory() as work:
            paths, layout = convert_pair(a.run, precision, work)
            errors = {k: v for k, v in paths.items() if not v.endswith(".tflite")}
            if errors:
                row["error"] = errors
                print(f"{precision}: the converter refused: {errors}")
                continue
            models = {k: StepModel(v, layout, num_threads=1) for k, v in paths.items()}
            logps = {k: [m.step(int(t)) for t in ids[:-1]] for k, m in models.items()}
            row.update(bytes={k: os.path.getsize(v) for k, v in paths.items()},
                       perplexity={k: round(float(np.exp(-np.mean([lp[int(t)] for lp, t in zip(v, ids[1:])]))), 3)
                                   for k, v in logps.items()},
                       max_abs_diff=float(max(np.abs(x - y).max() for x, y in zip(logps["io"], logps["inside"]))))
            tokens = np.resize(ids, a.steps)
            calls = {}
            for k, m in models.items():
                m.reset()
                calls[f"step, state {k}"] = (lambda m: lambda i: m.step(int(tokens[i])))(m)
                calls[f"invoke, state {k}"] = (lambda m: lambda i: m.invoke())(m)
            times = bench.round_robin(calls, a.steps, 50)
            row["ms"] = {k: bench.summary(v) for k, v in times.items()}
        med = {k: v["median"] * 1e3 for k, v in row["ms"].items()}
        print(f"{precision}: bytes {row['bytes']}; perplexity on {a.tokens} tokens {row['perplexity']}; max |log-prob "
              f"difference| {row['max_abs_diff']:.3g}; us: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items())
              + f"; step inside / step io {med['step, state inside'] / med['step, state io']:.3f}")
    atomic_write_text(a.json, json.dumps(dict(run=a.run, date=time.strftime("%Y-%m-%d"), device=device.describe(),
                                              tokens=a.tokens, steps=a.steps, rows=rows), indent=2) + "\n")
    print(f"written to {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
