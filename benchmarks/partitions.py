"""Fewer XNNPACK partitions? Three ways for the token into the step, their
ops, their partitions and their time, in one interleaved pass.

    python benchmarks/partitions.py RUN [--precisions dynamic,int8] [--tokens 300] [--steps 2000]
                                        [--json benchmarks/results/partitions.json]

XNNPACK takes neither GATHER nor the four ops that read an id outside [0, V)
as `<unk>` (GREATER_EQUAL, LESS, LOGICAL_AND, SELECT), so they sit between
its partitions. Each arrangement is converted from the run's trained weights
with the `step` signature alone and the state as inputs and outputs, so that
subgraph 0, the one LiteRT's Python API lists, is the step:
- `checked`: today's graph, the check then GATHER;
- `unchecked`: GATHER alone, the check left to the caller;
- `one-hot`: the embedding as the product of a one-hot row and the table
  (ONE_HOT, then FULLY_CONNECTED), no GATHER.
For each: the ops, the DELEGATE nodes (XNNPACK's partitions), the largest
log-probability difference from `checked` over the first --tokens validation
tokens, and the bare invoke of each file, timed in one `bench.round_robin`
pass, 1 thread. Nothing here changes the converter.
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ARRANGEMENTS = ("checked", "unchecked", "one-hot")


def _unchecked_run(step_model, names, unk_id, token, states):
    out = step_model([token[None, :]] + list(states), training=False)
    return out[0], {n + "_out": s for n, s in zip(names, out[1:])}


@contextlib.contextmanager
def _arranged(arrangement):
    """convert.export with its id check taken out, for `unchecked`."""
    import convert.export as export
    saved = export._run
    if arrangement == "unchecked":
        export._run = _unchecked_run
    try:
        yield export
    finally:
        export._run = saved


def convert(run, arrangement, precision, work):
    from convert.export import state_layout
    from convert.variants import calibration_feeds, make_converter
    from edge_runtime.vocab import Vocab
    from keras_models.language_model import build_step_model, load_model
    model = load_model(os.path.join(run, "model"))
    step = build_step_model(model.spec, model.get_weights())
    if arrangement == "one-hot":
        from convert.export import one_hot_embedding
        step = one_hot_embedding(step)
    vocab = Vocab.load(os.path.join(run, "vocab.txt"))
    layout = state_layout(step)
    saved = os.path.join(work, f"{arrangement}-{precision}")
    with _arranged(arrangement) as export:
        export.save_step_model(step, saved, vocab.unk_id, vocab.never_suggested, k=0)
        feeds = None
        if precision == "int8":
            with np.load(os.path.join(run, "data.npz")) as z:
                feeds = calibration_feeds(export.step_function(step, vocab.unk_id), layout, z["calibration"])
    path = os.path.join(work, f"{arrangement}-{precision}.tflite")
    with open(path, "wb") as f:
        f.write(make_converter(saved, precision, feeds=feeds).convert())
    return path, layout


def ops(path):
    """(ops of subgraph 0 with no delegate, DELEGATE nodes with XNNPACK)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    plain = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    listed = Counter(d["op_name"] for d in plain._get_ops_details())
    xnn = Interpreter(model_path=path, num_threads=1)
    try:
        xnn.allocate_tensors()
    except RuntimeError:
        return dict(sorted(listed.items())), None
    partitions = sum(d["op_name"] == "DELEGATE" for d in xnn._get_ops_details())
    return dict(sorted(listed.items())), partitions


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--precisions", default="dynamic,int8")
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--json", default=os.path.join("benchmarks", "results", "partitions.json"))
    a = p.parse_args(argv)
    from edge_runtime import bench, device
    from edge_runtime.files import atomic_write_text
    from edge_runtime.runner import StepModel
    with np.load(os.path.join(a.run, "data.npz")) as z:
        valid = z["valid"][: a.tokens]
    rows, models = [], {}
    with tempfile.TemporaryDirectory() as work:
        for precision in a.precisions.split(","):
            reference = None
            for arrangement in ARRANGEMENTS:
                path, layout = convert(a.run, arrangement, precision, work)
                try:
                    model = StepModel(path, layout, num_threads=1)
                except RuntimeError as e:  # LiteRT's own words are the finding
                    rows.append(dict(precision=precision, arrangement=arrangement, bytes=os.path.getsize(path),
                                     ops=ops(path)[0], error=str(e).strip().splitlines()[0]))
                    print(f"{precision} {arrangement}: does not run: {rows[-1]['error']}")
                    continue
                got = [model.step(int(t)) for t in valid]
                reference = reference or got
                listed, partitions = ops(path)
                row = dict(precision=precision, arrangement=arrangement, bytes=os.path.getsize(path), ops=listed,
                           partitions=partitions,
                           max_abs_diff=max(float(np.abs(x - y).max()) for x, y in zip(got, reference)))
                rows.append(row)
                model.reset()
                models[f"{precision} {arrangement}"] = model
        tokens = np.resize(valid, a.steps)
        for model in models.values():
            model.step(int(tokens[0]))
        times = bench.round_robin({k: (lambda m: lambda i: m.invoke())(m) for k, m in models.items()}, a.steps, 50)
    for row in rows:
        if "error" not in row:
            row["invoke_ms"] = bench.summary(times[f"{row['precision']} {row['arrangement']}"])
    print(f"bare invoke of the step, 1 thread, XNNPACK, one interleaved pass of {a.steps} calls each")
    print("| precision | arrangement | bytes | partitions | ops XNNPACK does not take | invoke us | vs. checked | "
          "max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['precision']} | {row['arrangement']} | {row['bytes']:,} | does not run: "
                  f"{row['error']} | | | | |")
            continue
        base = next(r for r in rows if r["precision"] == row["precision"] and r["arrangement"] == "checked")
        odd = {k: v for k, v in row["ops"].items() if k in ("GREATER_EQUAL", "LESS", "LOGICAL_AND", "SELECT",
                                                            "GATHER", "EMBEDDING_LOOKUP", "ONE_HOT",
                                                            "LOG_SOFTMAX", "CAST")}
        print(f"| {row['precision']} | {row['arrangement']} | {row['bytes']:,} | {row['partitions']} | "
              f"{', '.join(f'{k} {v}' for k, v in odd.items())} | {row['invoke_ms']['median'] * 1e3:.1f} | "
              f"{row['invoke_ms']['median'] / base['invoke_ms']['median']:.3f} | {row['max_abs_diff']:.2e} |")
    atomic_write_text(a.json, json.dumps(dict(run=a.run, date=time.strftime("%Y-%m-%d"), device=device.describe(),
                                              tokens=a.tokens, steps=a.steps, rows=rows), indent=2) + "\n")
    print(f"written to {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
