"""What int4 weights cost, matrix group by matrix group: ai-edge-quantizer's
dynamic recipes on a run's float32 step, its embedding as EMBEDDING_LOOKUP.

    python benchmarks/int4.py RUN [--tokens 2000] [--steps 1000] [--json benchmarks/results/int4.json]
                                                                       # the `quantizer` extra
    python benchmarks/int4.py RUN --clipping [--tokens N] --json FILE  # int4 scaled by OCTAV or min-max

The float32 step is made from the run's trained weights as the converter
makes the int4 file's (convert/int4.py: the one-hot embedding, the state as
inputs and outputs, the `step` signature alone). Then each mix: int8
everywhere (`dynamic_wi8_afp32`), int4 everywhere (the converter's int4,
`dynamic_wi4c_afp32`), and int4 in one group of matrices with int8 in the
others: the embedding, the output layer, the recurrent layers, or two of them;
and the quantizer's static recipe, int8 activations calibrated on the run's
calibration windows (the float model's states fed, as the converter's int8
is calibrated) with int8 or with int4 weights, the combination XNNPACK's
FULLY_CONNECTED also runs. For each: bytes, perplexity on the first --tokens validation tokens against
the float32 step's, and the bare invoke (1 thread, XNNPACK), all files timed
in one `bench.round_robin` pass.

With --clipping the files are the float32 step and the converter's int4
(int4 everywhere) with each channel's scale chosen by each of the
quantizer's algorithms in convert/int4.py's CLIPPING: OCTAV's clip, where
the channel's 4-bit mean squared error is least (the converter's), and the
channel's largest weight (min-max, the converter's before 2026-12-07).
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

from convert import int4  # noqa: E402
from convert.int4 import CLIPPING, GROUPS, mix_recipe  # noqa: E402

MIXES = {"int8 everywhere": (), "int4 embedding": ("embedding",), "int4 recurrent": ("recurrent",),
         "int4 output": ("output",), "int4 embedding+recurrent": ("embedding", "recurrent"),
         "int4 embedding+output": ("embedding", "output"), "int4 everywhere": ("embedding", "output", "recurrent")}


STATIC = {"static int8 activations, int8 weights": 8, "static int8 activations, int4 weights": 4}


def float_step(run, work):
    """(path of the float32 step with the one-hot embedding, its state layout, the
    converter's int8 calibration feeds)."""
    from convert.export import one_hot_embedding, save_step_model, state_layout, step_function
    from convert.variants import calibration_feeds, make_converter
    from edge_runtime.vocab import Vocab
    from keras_models.language_model import build_step_model, load_model
    model = load_model(os.path.join(run, "model"))
    step = one_hot_embedding(build_step_model(model.spec, model.get_weights()))
    vocab = Vocab.load(os.path.join(run, "vocab.txt"))
    saved = os.path.join(work, "saved")
    save_step_model(step, saved, vocab.unk_id, vocab.never_suggested, k=0)
    path = os.path.join(work, "float32.tflite")
    with open(path, "wb") as f:
        f.write(make_converter(saved, "float32").convert())
    plain = build_step_model(model.spec, model.get_weights())
    with np.load(os.path.join(run, "data.npz")) as z:
        feeds = calibration_feeds(step_function(plain, vocab.unk_id), state_layout(step), z["calibration"])
    return path, state_layout(step), feeds


def static_recipe(weight_bits):
    from ai_edge_quantizer import recipe
    rules = recipe.static_wi8_ai8()
    for rule in rules:
        rule["op_config"]["weight_tensor_config"]["num_bits"] = weight_bits
    return rules


def perplexity(model, ids):
    model.reset()
    nll = -sum(float(model.step(int(a))[int(b)]) for a, b in zip(ids[:-1], ids[1:]))
    return float(np.exp(nll / (len(ids) - 1)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--json", default=os.path.join("benchmarks", "results", "int4.json"))
    p.add_argument("--clipping", action="store_true",
                   help="int4 everywhere, each channel scaled by each algorithm of convert/int4.py's CLIPPING")
    a = p.parse_args(argv)
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        sys.exit("error: benchmarks/int4.py needs ai-edge-quantizer: pip install -e '.[quantizer]'")
    from edge_runtime import bench, device
    from edge_runtime.files import atomic_write_text
    from edge_runtime.quiet import captured_stderr
    from edge_runtime.runner import StepModel
    with np.load(os.path.join(a.run, "data.npz")) as z:
        ids = z["valid"][: a.tokens + 1]
    rows, models = [], {}
    with tempfile.TemporaryDirectory() as work:
        src, layout, feeds = float_step(a.run, work)
        models["float32"] = StepModel(src, layout, num_threads=1)
        rows.append(dict(mix="float32", int4=[], bytes=os.path.getsize(src)))
        mixes = {f"int4, {c}": (tuple(GROUPS), c) for c in CLIPPING} if a.clipping else \
            {mix: (groups, CLIPPING[0]) for mix, groups in MIXES.items()}
        for mix, (groups, clipping) in mixes.items():
            with captured_stderr([]):  # the quantizer's progress lines
                if a.clipping:  # the converter's own int4 (an odd-width table kept in int8, as it keeps it)
                    data = int4.quantize(open(src, "rb").read(), "int4", log=print, clipping=clipping)
                else:
                    data = quantizer.Quantizer(src, mix_recipe(groups, clipping=clipping)).quantize(
                        enable_progress_report=False, enable_progress_bar=False).quantized_model
            path = os.path.join(work, f"{len(rows)}.tflite")
            with open(path, "wb") as f:
                f.write(data)
            models[mix] = StepModel(path, layout, num_threads=1)
            rows.append(dict(mix=mix, int4=list(groups), clipping=clipping, bytes=len(data)))
        for mix, bits in ({} if a.clipping else STATIC).items():
            with captured_stderr([]):
                q = quantizer.Quantizer(src, static_recipe(bits))
                data = q.quantize(q.calibrate({"step": feeds}, num_threads=1), enable_progress_report=False,
                                  enable_progress_bar=False).quantized_model
            path = os.path.join(work, f"{len(rows)}.tflite")
            with open(path, "wb") as f:
                f.write(data)
            models[mix] = StepModel(path, layout, num_threads=1)
            rows.append(dict(mix=mix, int4=list(GROUPS) if bits == 4 else [], static=True, bytes=len(data)))
        for row in rows:
            row["perplexity"] = round(perplexity(models[row["mix"]], ids), 3)
        for m in models.values():
            m.reset()
        times = bench.round_robin({k: (lambda m: lambda i: m.invoke())(m) for k, m in models.items()}, a.steps, 50)
    ref = rows[0]["perplexity"]
    print(f"{a.run}: perplexity on {a.tokens} validation tokens; bare invoke, 1 thread, XNNPACK, one pass")
    print("| weights | bytes | perplexity | vs. float32 | invoke us |")
    print("|---|---|---|---|---|")
    for row in rows:
        row["change_vs_float32"] = round(row["perplexity"] / ref - 1, 5)
        row["invoke_ms"] = bench.summary(times[row["mix"]])
        print(f"| {row['mix']} | {row['bytes']:,} | {row['perplexity']:.2f} | {100 * row['change_vs_float32']:+.2f}% | "
              f"{row['invoke_ms']['median'] * 1e3:.1f} |")
    atomic_write_text(a.json, json.dumps(dict(run=a.run, date=time.strftime("%Y-%m-%d"), device=device.describe(),
                                              tokens=len(ids) - 1, steps=a.steps, recipe_int4="dynamic_wi4c_afp32",
                                              recipe_int8="dynamic_wi8_afp32", rows=rows), indent=2) + "\n")
    print(f"written to {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
