"""An ensemble as a teacher: each run's test perplexity and R@3, and the
ensemble's (the mean of the runs' probabilities, what `pruning.train --teacher
A,B` learns from), over the whole test split of the first run's data.

    python benchmarks/ensemble.py RUN RUN [RUN ...] [--json FILE]

Batch 1, each run's state carried across the stream, as `train_report.json`
counts its test figures (keras_models/evaluate.py), so a run's line here is
its report's.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_runtime.files import atomic_write_text  # noqa: E402


def score(runs, chunk_len=128):
    """[{'run', 'perplexity', 'r_at_3', 'tokens'}] for each run, then the ensemble's."""
    from edge_runtime.metrics import suggestion_hits
    from edge_runtime.vocab import Vocab
    from keras_models.backend import tf
    from keras_models.evaluate import make_eval_fn, perplexity
    from keras_models.language_model import load_model, zero_states
    from training.distill import check_vocab
    vocab = Vocab.load(os.path.join(runs[0], "vocab.txt"))
    for run in runs[1:]:
        check_vocab(run, vocab)
    stream = np.load(os.path.join(runs[0], "data.npz"))["test"]
    models = [load_model(os.path.join(r, "model")) for r in runs]
    fns = [make_eval_fn(m) for m in models]
    states = [[tf.constant(s) for s in zero_states(m, 1)] for m in models]
    nll, hits = np.zeros(len(runs) + 1), np.zeros(len(runs) + 1)
    for start in range(0, len(stream) - 1, chunk_len):
        end = min(start + chunk_len, len(stream) - 1)
        x = tf.constant(stream[start:end][None, :], tf.int32)
        y = stream[start + 1:end + 1]
        logps = []
        for i, fn in enumerate(fns):
            _, logp, states[i] = fn(x, tf.constant(y[None, :], tf.int32), list(states[i]))
            logps.append(logp.numpy().astype(np.float64))
        logps.append(np.logaddexp.reduce(np.stack(logps), 0) - math.log(len(runs)))  # log of the mean
        for i, lp in enumerate(logps):
            nll[i] -= lp[np.arange(len(y)), y].sum()
            hits[i] += suggestion_hits(lp, y, vocab.never_suggested).sum()
    n = len(stream) - 1
    return [dict(run=name, perplexity=round(perplexity(nll[i] / n), 2), r_at_3=round(hits[i] / n, 4), tokens=n)
            for i, name in enumerate(list(runs) + ["ensemble"])]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)
    if len(a.runs) < 2:
        p.error("an ensemble needs two runs or more")
    rows = score(a.runs)
    print("| run | test ppl | R@3 |\n|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['perplexity']:.2f} | {r['r_at_3']:.4f} |")
    if a.json:
        atomic_write_text(a.json, json.dumps(dict(rows=rows), indent=1) + "\n")
        print(f"written {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
