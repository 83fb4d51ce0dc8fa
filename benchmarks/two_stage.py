"""What a two-stage suggest (convert/two_stage.py) costs and saves, in LiteRT on this CPU.

    python benchmarks/two_stage.py costs [--json benchmarks/results/two_stage_costs.json]
    python benchmarks/two_stage.py runs RUN [RUN ...] [--tokens 5000] [--steps 2000]
                                   [--json benchmarks/results/two_stage.json]

`costs`: the head alone (h in, the shown ids out), converted as the
converter converts a dynamic file, for a 10,000-word table of row width 48
and 256, preview ranks 16, 64 and 128 and 8, 32 and 128 candidates, beside
the full layer (one FULLY_CONNECTED and a top 5), all timed in one
interleaved pass (XNNPACK, 1 thread). A least-squares fit of the median
times over both gives the cost of a multiply-add, and what the two-stage
head adds: its ops' fixed cost, a candidate, and an element of a
candidate's row, in microseconds and in multiply-adds: the constants of the
converter's cost model (two_stage.HEAD_MACS, CANDIDATE_MACS,
ROW_ELEMENT_MACS).

`runs`: each run's dynamic file converted twice, `--two-stage off` and
`on` (a copy of the run, so its own tflite/ is untouched), and for each: the
bytes, its (r, N), the share of the first --tokens test positions at which
`suggest` shows the words `step` shows, R@3 of `suggest`'s words and of
`step`'s, and `step` and `suggest` of both files timed in one interleaved
pass (XNNPACK, 1 thread) over those tokens.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VOCAB = 10000
WIDTHS = (48, 256)
RANKS = (16, 64, 128)
CANDIDATES = (8, 32, 128)
RUN_FILES = ("config.json", "data.npz", "model", "train_report.json", "vocab.txt")


def head_file(width, rank, n, work, rng):
    """A dynamic-range .tflite of the head alone (rank None: the full layer), and its MACs."""
    from convert.variants import make_converter
    from keras_models.backend import tf
    table = tf.Variable(rng.standard_normal((VOCAB, width)).astype(np.float32))
    bias = tf.Variable(rng.standard_normal(VOCAB).astype(np.float32))
    p = tf.constant(rng.standard_normal((VOCAB, rank or 1)).astype(np.float32))
    q = tf.constant(rng.standard_normal((rank or 1, width)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, width], tf.float32)])
    def head(h):
        if rank is None:
            logits = tf.matmul(h, table, transpose_b=True) + bias
            return dict(ids=tf.math.top_k(logits, k=5).indices)
        cand = tf.math.top_k(tf.matmul(tf.matmul(h, q, transpose_b=True), p, transpose_b=True) + bias, k=n).indices[0]
        rows = tf.matmul(tf.one_hot(cand, VOCAB), table)
        exact = tf.reshape(tf.matmul(rows, h, transpose_b=True), (-1,)) + tf.gather(bias, cand)
        return dict(ids=tf.gather(cand, tf.math.top_k(tf.reshape(exact, (1, -1)), k=5).indices[0]))
    module = tf.Module()
    module.table, module.bias, module.head = table, bias, head
    saved = os.path.join(work, f"h-{width}-{rank}-{n}")
    tf.saved_model.save(module, saved, signatures={"head": head})
    path = saved + ".tflite"
    with open(path, "wb") as f:
        f.write(make_converter(saved, "dynamic", signatures=("head",)).convert())
    return path, (VOCAB * width if rank is None else rank * (VOCAB + width))


def costs(a):
    from ai_edge_litert.interpreter import Interpreter
    from edge_runtime import bench
    from edge_runtime.files import atomic_write_text
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        configs = [(w, None, 0) for w in WIDTHS] + [(w, r, n) for w in WIDTHS for r in RANKS for n in CANDIDATES]
        runners, macs = {}, {}
        for config in configs:
            path, macs[config] = head_file(*config, work, rng)
            runners[config] = Interpreter(model_path=path, num_threads=1).get_signature_runner("head")
        hs = {w: rng.standard_normal((64, 1, w)).astype(np.float32) for w in WIDTHS}
        times = bench.round_robin({c: (lambda run, h: lambda i: run(h=h[i % len(h)]))(runners[c], hs[c[0]])
                                   for c in configs}, a.steps)
    median = {c: float(np.median(t)) * 1e6 for c, t in times.items()}
    # time = fixed + a multiply-add x MACs + [two-stage] x (the head's extra ops + a candidate x N
    # + a row element x N x width): the full layers and the heads in one fit
    x = np.array([[1.0, macs[c], bool(c[1]), c[2], c[2] * c[0]] for c in configs])
    y = np.array([median[c] for c in configs])
    fixed, per_mac, head, per_candidate, per_element = np.linalg.lstsq(x, y, rcond=None)[0]
    rows = [dict(width=w, rank=r, candidates=n, macs=macs[w, r, n], median_us=round(median[w, r, n], 2),
                 fit_us=round(float(x[i] @ [fixed, per_mac, head, per_candidate, per_element]), 2))
            for i, (w, r, n) in enumerate(configs)]
    print("| row width | preview rank | candidates | multiply-adds | median, us | fit, us |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['width']} | {row['rank'] or 'full layer'} | {row['candidates'] or ''} | {row['macs']:,} | "
              f"{row['median_us']:.1f} | {row['fit_us']} |")
    fit = dict(fixed_us=float(fixed), per_mac_us=float(per_mac), head_us=float(head),
               per_candidate_us=float(per_candidate), per_row_element_us=float(per_element),
               head_macs=float(head / per_mac), candidate_macs=float(per_candidate / per_mac),
               row_element_macs=float(per_element / per_mac))
    print(f"fit: {fixed:.2f} us fixed, {per_mac * 1e6:.2f} us a million multiply-adds; the two-stage head's "
          f"ops {head:.2f} us more, {per_candidate:.3f} us a candidate, {per_element * 1e3:.2f} ns a row element")
    print(f"in multiply-adds: the head's ops {fit['head_macs']:,.0f}, a candidate {fit['candidate_macs']:,.0f}, "
          f"a row element {fit['row_element_macs']:,.0f}")
    atomic_write_text(a.json, json.dumps(dict(date=time.strftime("%Y-%m-%d"), steps=a.steps, vocab=VOCAB, rows=rows,
                                              fit=fit), indent=2) + "\n")
    print(f"written to {a.json}")
    return 0


def shown_pass(model, ids, excluded, path):
    """(the words shown at each position by `path` ("step" or "suggest"), R@3 of them)."""
    from edge_runtime.metrics import top_words
    model.reset()
    words, hits = [], 0
    for t, target in zip(ids[:-1], ids[1:]):
        w = top_words(model.step(int(t)), 3, excluded) if path == "step" else model.suggest(int(t), excluded)[0].tolist()
        words.append(w)
        hits += int(target) in w
    model.reset()
    return words, hits / (len(ids) - 1)


def runs(a):
    from convert.to_tflite import convert_run
    from edge_runtime import bench
    from edge_runtime import manifest as mf
    from edge_runtime.files import atomic_write_text
    from edge_runtime.runner import StepModel
    out = []
    print("| run | two-stage | rank | candidates | bytes | shown as step's | R@3 suggest | R@3 step | "
          "step, ms | suggest, ms | suggest / step | suggest / full suggest |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in a.runs:
        with tempfile.TemporaryDirectory() as work:
            models, rows = {}, []
            for mode in ("off", "on"):
                copy = os.path.join(work, mode)
                os.makedirs(copy)
                for name in RUN_FILES:
                    src = os.path.join(run, name)
                    (shutil.copytree if os.path.isdir(src) else shutil.copyfile)(src, os.path.join(copy, name))
                manifest = convert_run(copy, ["dynamic"], eval_tokens=a.eval_tokens, log=lambda *x: None,
                                       two_stage=mode)
                m = mf.load(os.path.join(copy, "tflite"))
                model = models[mode] = StepModel(mf.variant_path(m, "dynamic"), m["states"], num_threads=1)
                excluded = tuple(m["suggest"]["never_suggested"])
                with np.load(os.path.join(run, "data.npz")) as z:
                    ids = z["test"][: a.tokens + 1]
                step_words, step_r3 = shown_pass(model, ids, excluded, "step")
                words, r3 = shown_pass(model, ids, excluded, "suggest")
                choice = manifest["suggest"]["two_stage"]
                rows.append(dict(run=run, two_stage=mode, rank=choice.get("rank"), candidates=choice.get("candidates"),
                                 choice=choice, bytes=manifest["variants"]["dynamic"]["bytes"], tokens=len(ids) - 1,
                                 shown_as_step=round(float(np.mean([x == y for x, y in zip(words, step_words)])), 5),
                                 r_at_3_suggest=round(r3, 5), r_at_3_step=round(step_r3, 5)))
            calls = {}
            for mode, model in models.items():
                calls[mode, "step"] = (lambda m: lambda i: m.step(int(ids[i % len(ids)])))(model)
                calls[mode, "suggest"] = (lambda m: lambda i: m.suggest(int(ids[i % len(ids)]), excluded))(model)
            times = bench.round_robin(calls, a.steps)
            full_suggest = float(np.median(times["off", "suggest"]))
            for row in rows:
                step, suggest = (bench.summary(times[row["two_stage"], s]) for s in ("step", "suggest"))
                row.update(step_ms=step, suggest_ms=suggest,
                           suggest_over_step=round(suggest["median"] / step["median"], 3),
                           suggest_over_full_suggest=round(float(np.median(times[row["two_stage"], "suggest"]))
                                                           / full_suggest, 3))
                print(f"| {os.path.basename(os.path.normpath(run))} | {row['two_stage']} | {row['rank'] or ''} | "
                      f"{row['candidates'] or ''} | {row['bytes']:,} | {row['shown_as_step']:.4f} | "
                      f"{row['r_at_3_suggest']:.4f} | {row['r_at_3_step']:.4f} | {step['median']:.4f} | "
                      f"{suggest['median']:.4f} | {row['suggest_over_step']:.3f} | {row['suggest_over_full_suggest']:.3f} |")
                out.append(row)
    atomic_write_text(a.json, json.dumps(dict(date=time.strftime("%Y-%m-%d"), tokens=a.tokens, steps=a.steps,
                                              rows=out), indent=2) + "\n")
    print(f"written to {a.json}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("costs")
    c.add_argument("--steps", type=int, default=2000)
    c.add_argument("--json", default=os.path.join("benchmarks", "results", "two_stage_costs.json"))
    r = sub.add_parser("runs")
    r.add_argument("runs", nargs="+", metavar="RUN")
    r.add_argument("--tokens", type=int, default=5000, help="test positions the words are compared on")
    r.add_argument("--eval-tokens", type=int, default=2000, help="validation tokens the converter checks each file on")
    r.add_argument("--steps", type=int, default=2000, help="timed calls of each signature")
    r.add_argument("--json", default=os.path.join("benchmarks", "results", "two_stage.json"))
    a = p.parse_args(argv)
    if a.what == "runs":
        for run in a.runs:
            if not os.path.exists(os.path.join(run, "model", "spec.json")):
                print(f"error: {run} is not a trained run (no model/spec.json)", file=sys.stderr)
                return 2
    from edge_runtime import quiet
    quiet.configure(False)
    return costs(a) if a.what == "costs" else runs(a)


if __name__ == "__main__":
    sys.exit(main())
