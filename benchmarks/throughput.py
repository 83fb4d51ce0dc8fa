"""Training throughput, QRNN vs. LSTM at equal size, batch and bptt, in one run.

    python benchmarks/throughput.py [--embed 256 --hidden 512 --layers 2 --batch-size 32 --bptt 35]

Tokens per second over --steps training steps after --warmup steps, on the
embedded corpus' first batches; prints a table and writes JSON with --json.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge_runtime.vocab import Vocab  # noqa: E402
from keras_models.backend import keras, tf  # noqa: E402
from keras_models.language_model import build_language_model, zero_states  # noqa: E402
from training import data  # noqa: E402
from pruning.trainer import make_train_step  # noqa: E402


def measure(arch, a, xs, ys, vocab_size):
    keras.utils.set_random_seed(0)
    model = build_language_model(arch, vocab_size, a.embed, a.hidden, a.layers, dropout=0.25)
    opt = keras.optimizers.Adam(1e-3, global_clipnorm=0.25)
    step = make_train_step(model, opt)
    states = zero_states(model, a.batch_size)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss, states = step(xs[i], ys[i], [tf.constant(s) for s in states])
        float(loss)
        states = [s.numpy() for s in states]
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return dict(arch=arch, median_step_ms=round(med * 1e3, 2),
                tokens_per_second=round(a.batch_size * a.bptt / med, 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json")
    a = p.parse_args()
    corpus = data.load_corpus()
    vocab = Vocab.build(corpus["train"], 10000)
    xs, ys = data.batchify(data.to_stream(corpus["train"], vocab), a.batch_size, a.bptt)
    rows = [measure(arch, a, xs, ys, len(vocab)) for arch in ("qrnn", "lstm")]
    print(f"{a.layers} layers, embed {a.embed}, hidden {a.hidden} (tied: last layer {a.embed}), "
          f"batch {a.batch_size}, bptt {a.bptt}, vocab {len(vocab)}; median of {a.steps} steps")
    print("| arch | ms / step | tokens / s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {r['median_step_ms']} | {r['tokens_per_second']:.0f} |")
    print(f"QRNN / LSTM throughput: {rows[0]['tokens_per_second'] / rows[1]['tokens_per_second']:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(args=vars(a), machine=platform.platform(), cpus=os.cpu_count(),
                           tensorflow=tf.__version__, results=rows), f, indent=2)


if __name__ == "__main__":
    main()
