"""How exact is the int8 LOG_SOFTMAX? Perplexity on a text, overall and over
the rare words, through a run's float32 and int8 files.

    python benchmarks/log_softmax.py RUN TEXT [--max-tokens N] [--json benchmarks/results/log_softmax.json]

LiteRT's int8 LOG_SOFTMAX has a fixed output scale, 16/256, and zero point
127: it gives log-probabilities in 1/16-nat steps from 0 down to -15.94 and
clips there. Three figures per position, the target's log-probability:
- `float32`: the float32 file;
- `float32, int8 output`: the same float log-probabilities rounded and
  clipped as that int8 output would be (numpy), the log-softmax's own error
  with nothing else quantized;
- `int8`: the int8 file, all of its quantization together.
The rare words are those whose float32 log-probability is below -12 (rarer
than e^-12 where they occur). Device runtime only: LiteRT and numpy.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge_runtime import device, manifest as mf  # noqa: E402
from edge_runtime.files import atomic_write_text  # noqa: E402
from edge_runtime.predict import open_manifest  # noqa: E402
from edge_runtime.runner import StepModel  # noqa: E402
from edge_runtime.textfile import detect_format, iter_ids  # noqa: E402
from edge_runtime.vocab import Vocab  # noqa: E402

SCALE, ZERO_POINT = 16 / 256, 127  # the int8 LOG_SOFTMAX's output quantization, fixed by LiteRT
FLOOR = (-128 - ZERO_POINT) * SCALE  # -15.94 nats: the lowest log-probability int8 can say
RARE = -12.0


def as_int8_output(logp):
    """Float log-probabilities rounded and clipped as the int8 LOG_SOFTMAX outputs them."""
    q = np.clip(np.round(np.asarray(logp) / SCALE) + ZERO_POINT, -128, 127)
    return (q - ZERO_POINT) * SCALE


def target_logps(path, states, ids):
    model = StepModel(path, states, num_threads=1)
    return np.array([model.step(prev)[target] for prev, target in zip(ids, ids[1:])], dtype=np.float64)


def summary(logp, mask):
    n = int(mask.sum())
    return dict(tokens=n, perplexity=math.exp(-logp[mask].mean()) if n else None,
                mean_nll=float(-logp[mask].mean()) if n else None)


def measure(run, text, max_tokens=None):
    manifest = open_manifest(run)
    tfl = manifest["_dir"]
    for name in ("float32", "int8"):
        if manifest["variants"].get(name, {}).get("status") != "ok":
            raise SystemExit(f"error: {tfl} has no {name} file (convert with --quantize float32,int8)")
    vocab = Vocab.load(mf.vocab_path(manifest))
    ids = list(iter_ids(text, vocab, detect_format(text)))
    ids = ids[: max_tokens + 1] if max_tokens else ids
    ref = target_logps(mf.variant_path(manifest, "float32"), manifest["states"], ids)
    int8 = target_logps(mf.variant_path(manifest, "int8"), manifest["states"], ids)
    sim = as_int8_output(ref)
    everything, rare = np.ones(len(ref), bool), ref < RARE
    rows = []
    for label, logp in (("float32", ref), ("float32, int8 output", sim), ("int8", int8)):
        rows.append(dict(file=label, all=summary(logp, everything), rare=summary(logp, rare),
                         at_floor=float(np.mean(logp <= FLOOR + SCALE / 2))))
    return dict(run=run, text=text, tokens=len(ref), rare_threshold=RARE, rare_share=float(rare.mean()),
                rows=rows, date=time.strftime("%Y-%m-%d"), device=device.describe())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run directory or tflite/ folder with float32 and int8 files")
    p.add_argument("text")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--json", default=os.path.join("benchmarks", "results", "log_softmax.json"))
    a = p.parse_args(argv)
    doc = measure(a.run, a.text, a.max_tokens)
    base = doc["rows"][0]
    print(f"{doc['tokens']:,} tokens; rare (float32 log-probability below {RARE:g}): {doc['rare_share']:.2%}")
    print("| file | perplexity | vs float32 | rare words: perplexity | vs float32 | at the int8 floor |")
    print("|---|---|---|---|---|---|")
    for r in doc["rows"]:
        a_, r_ = r["all"], r["rare"]
        rel = a_["perplexity"] / base["all"]["perplexity"] - 1
        rare = "n/a" if r_["perplexity"] is None else f"{r_['perplexity']:,.0f}"
        rare_rel = "n/a" if r_["perplexity"] is None else f"{r_['perplexity'] / base['rare']['perplexity'] - 1:+.2%}"
        print(f"| {r['file']} | {a_['perplexity']:.3f} | {rel:+.3%} | {rare} | {rare_rel} | {r['at_floor']:.3%} |")
    atomic_write_text(a.json, json.dumps(doc, indent=2) + "\n")
    print(f"written to {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
