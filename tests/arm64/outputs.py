"""What a model's files say on this machine, for `make test-arm64` to set the
aarch64 figures beside the x86_64 ones: per variant, the perplexity and, at
every position, the three words a keyboard shows.

    python tests/arm64/outputs.py MODEL TEXT --out FILE.json [--max-tokens N]

Needs only numpy, ai-edge-litert and edge_runtime/ (it runs in the emulated Pi's
userland)."""
import argparse
import json
import math
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from edge_runtime import manifest as mf  # noqa: E402
from edge_runtime.metrics import top_words  # noqa: E402
from edge_runtime.predict import open_manifest  # noqa: E402
from edge_runtime.runner import StepModel  # noqa: E402
from edge_runtime.textfile import detect_format, iter_ids  # noqa: E402
from edge_runtime.vocab import Vocab  # noqa: E402


def outputs(model_dir, text, max_tokens):
    manifest = open_manifest(model_dir)
    vocab = Vocab.load(mf.vocab_path(manifest))
    ids = list(iter_ids(text, vocab, detect_format(text)))[: max_tokens + 1]
    out = {}
    for name, v in manifest["variants"].items():
        if v.get("status") != "ok":
            continue
        model = StepModel(mf.variant_path(manifest, name), manifest["states"], num_threads=1)
        nll, shown = 0.0, []
        for prev, target in zip(ids, ids[1:]):
            logp = model.step(prev)
            nll -= float(logp[target])
            shown.append(top_words(logp, 3, vocab.never_suggested))
        out[name] = dict(perplexity=math.exp(nll / len(shown)), tokens=len(shown), shown=shown)
    return dict(machine=platform.machine(), model=os.path.basename(os.path.abspath(model_dir)), variants=out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a run directory or tflite/ folder")
    p.add_argument("text")
    p.add_argument("--out", required=True)
    p.add_argument("--max-tokens", type=int, default=5000)
    p.add_argument("--cpu", help="the emulated core, recorded with the outputs")
    a = p.parse_args(argv)
    doc = outputs(a.model, a.text, a.max_tokens)
    doc["cpu"] = a.cpu
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    print(f"{doc['machine']}: " + ", ".join(f"{n} {v['perplexity']:.4f}" for n, v in doc["variants"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
