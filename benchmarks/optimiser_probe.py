"""Which optimiser trains which architecture: short probes on the embedded corpus.

    python benchmarks/optimiser_probe.py                  # the table in the README
    python benchmarks/optimiser_probe.py arch=lstm lr=0.001 steps=300   # one probe

Each probe trains the default-size model (2 layers, 512 + 256 units, tied
256-d embedding, dropout 0.1, batch 32 x 35 steps, clip 0.25, seed 0) for
`steps` steps and prints the training perplexity over the last 100 steps.
It is the evidence behind the per-architecture defaults of `pruning.train`
(`ARCH_TRAINING` in pruning/trainer.py). About 1.5 minutes a probe here.
"""
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from edge_runtime.vocab import Vocab  # noqa: E402
from keras_models.backend import keras, tf  # noqa: E402
from keras_models.language_model import build_language_model, zero_states  # noqa: E402
from training import data  # noqa: E402
from pruning.trainer import make_train_step  # noqa: E402

BASE = dict(arch="lstm", embed=256, hidden=512, layers=2, tie=1, opt="adam", lr=0.004, clip=0.25,
            init=0.0, steps=300, drop=0.1, batch=32, bptt=35, gh=256)
TABLE = ["arch=qrnn", "arch=qrnn opt=sgd lr=20 init=0.1",
         "arch=lstm", "arch=lstm lr=0.001", "arch=lstm tie=0", "arch=lstm init=0.1",
         "arch=lstm opt=sgd lr=20", "arch=lstm opt=sgd lr=20 init=0.1",
         "arch=hlstm layers=1 gh=768 opt=sgd lr=20 init=0.1"]


def probe(corpus, vocab, **options):
    a = dict(BASE, **options)
    xs, ys = data.batchify(data.to_stream(corpus["train"], vocab), a["batch"], a["bptt"])
    keras.utils.set_random_seed(0)
    model = build_language_model(a["arch"], len(vocab), a["embed"], a["hidden"], a["layers"], a["drop"],
                                 bool(a["tie"]), gate_hidden=a["gh"] if a["arch"] == "hlstm" else None)
    if a["init"]:
        for v in model.trainable_variables:
            v.assign(tf.random.uniform(v.shape, -a["init"], a["init"]))
    cls = keras.optimizers.SGD if a["opt"] == "sgd" else keras.optimizers.Adam
    step = make_train_step(model, cls(a["lr"], global_clipnorm=a["clip"] or None))
    states, losses, t = zero_states(model, a["batch"]), [], time.time()
    for b in range(a["steps"]):
        loss, states = step(xs[b], ys[b], list(states))
        losses.append(float(loss))
    return math.exp(np.mean(losses[-100:])), time.time() - t


def parse(words):
    return {k: type(BASE[k])(v) for k, v in (w.split("=") for w in words)}


def main(argv):
    corpus = data.load_corpus(None)
    vocab = Vocab.build(corpus["train"], 10000)
    rows = [argv] if argv else [row.split() for row in TABLE]
    print("| probe (changes from Adam 0.004, Keras' initialisers) | train ppl, last 100 steps (of 300) |")
    print("|---|---|")
    for words in rows:
        ppl, secs = probe(corpus, vocab, **parse(words))
        print(f"| {' '.join(words)} | {ppl:.1f} |", flush=True)
        print(json.dumps(dict(parse(words), ppl=round(ppl, 1), seconds=round(secs, 1))), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
