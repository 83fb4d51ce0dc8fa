"""What storing things once saves: a run's dynamic file three ways, its bytes and its outputs.

    python benchmarks/stored_once.py RUN [RUN ...] [--tokens 200] [--steps 2000]
                                     [--json benchmarks/results/stored_once.json]

Until 2026-12-06 the converter stored a tied table twice and each
signature's quantization parameters again (docs/cli.md, "What a file
stores once"). Each run's step model (both signatures, the state inside,
as `convert.to_tflite` makes `dynamic`) is converted:
- `gather`: the lookup as GATHER, the file as the TensorFlow converter
  writes it (what convert.to_tflite made before);
- `gather, parameters once`: that file through convert/flatbuffer.py;
- `one-hot, parameters once`: the lookup as EMBEDDING_LOOKUP, then
  convert/flatbuffer.py (what convert.to_tflite makes now for a tied
  model; an untied one keeps the second way, since a per-row lookup table
  adds its scales and shares nothing).
For each: the file's bytes, the bytes as shipped (with vocab.txt), the
constants of the tied table's shape ([V, d], or [V, r] low-rank) and the
bytes of quantization parameters written, and the largest
log-probability difference from `gather` over the first --tokens
validation tokens (0 for the second: the same model written again), and
the median `step` of each, XNNPACK, 1 thread, the three timed in one
interleaved pass (edge_runtime/bench.py's round_robin) over those tokens. The
bytes depend on the architecture alone, so a run trained for a few steps
measures them as well as a converged one.
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

WAYS = ("gather", "gather, parameters once", "one-hot, parameters once")


def convert(run, work):
    """{way: .tflite bytes} and the step's state layout."""
    from convert.export import TOP_K, one_hot_embedding, save_step_model, state_layout
    from convert.flatbuffer import share_quantization
    from convert.variants import make_converter
    from edge_runtime.vocab import Vocab
    from keras_models.language_model import build_step_model, load_model
    model = load_model(os.path.join(run, "model"))
    vocab = Vocab.load(os.path.join(run, "vocab.txt"))
    out, layout = {}, None
    for lookup in ("gather", "one-hot"):
        step = build_step_model(model.spec, model.get_weights())
        layout = state_layout(step)
        if lookup == "one-hot":
            step = one_hot_embedding(step)
        saved = os.path.join(work, lookup)
        signatures = save_step_model(step, saved, vocab.unk_id, vocab.never_suggested, TOP_K, "inside")
        data = make_converter(saved, "dynamic", signatures=signatures, resource_variables=True).convert()
        if lookup == "gather":
            out[WAYS[0]] = data
        out[f"{lookup}, parameters once"] = share_quantization(data)
    return out, layout, model.spec


def anatomy(data, shape):
    """(constants of `shape`, bytes of quantization parameters written) from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema
    m = schema.Model.GetRootAs(data, 0)
    tables, written = set(), {}
    for g in (m.Subgraphs(i) for i in range(m.SubgraphsLength())):
        for t in (g.Tensors(j) for j in range(g.TensorsLength())):
            if [int(x) for x in t.ShapeAsNumpy()] == list(shape) and m.Buffers(t.Buffer()).DataLength():
                tables.add(t.Buffer())
            q = t.Quantization()
            if q is not None:
                written[q._tab.Pos] = 4 * q.ScaleLength() + 8 * q.ZeroPointLength()
    return len(tables), sum(written.values())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--steps", type=int, default=2000, help="timed steps of each file")
    p.add_argument("--json", default=os.path.join("benchmarks", "results", "stored_once.json"))
    a = p.parse_args(argv)
    for run in a.runs:
        if not os.path.exists(os.path.join(run, "model", "spec.json")):
            print(f"error: {run} is not a trained run (no model/spec.json)", file=sys.stderr)
            return 2
    from edge_runtime import bench
    from edge_runtime.files import atomic_write_text
    from edge_runtime.runner import StepModel
    rows = []
    print("| run | tied | table | way | file bytes | as shipped | tables of that shape | parameter bytes | "
          "max abs diff | step, ms | vs. gather |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in a.runs:
        with tempfile.TemporaryDirectory() as work:
            files, layout, spec = convert(run, work)
            factors = spec.get("factors") or {}
            width = factors["embedding/embeddings"]["rank"] if "embedding/embeddings" in factors else spec["embed"]
            shape = [spec["vocab_size"], width]
            with np.load(os.path.join(run, "data.npz")) as z:
                ids = z["valid"][: a.tokens]
            vocab_bytes = os.path.getsize(os.path.join(run, "vocab.txt"))
            reference, models, mine = None, {}, []
            for n, (way, data) in enumerate(files.items()):
                path = os.path.join(work, f"{n}.tflite")  # a file of its own: LiteRT maps it
                with open(path, "wb") as f:
                    f.write(data)
                model = models[way] = StepModel(path, layout, delegate="xnnpack", num_threads=1)
                outs = np.stack([model.step(int(t)) for t in ids])
                reference = outs if reference is None else reference
                tables, params = anatomy(data, shape)
                mine.append(dict(run=run, tied=bool(spec["tie_embeddings"]), table_shape=shape, way=way,
                                 bytes=len(data), shipped_bytes=len(data) + vocab_bytes, tables=tables,
                                 parameter_bytes=params, max_abs_diff=float(np.abs(outs - reference).max())))
            times = bench.round_robin({w: (lambda m: lambda i: m.step(int(ids[i % len(ids)])))(m)
                                       for w, m in models.items()}, a.steps)
            for row in mine:
                row["step_ms"] = bench.summary(times[row["way"]])
                row["step_vs_gather"] = round(row["step_ms"]["median"] / mine[0]["step_ms"]["median"], 3)
                rows.append(row)
                print(f"| {os.path.basename(os.path.normpath(run))} | {'yes' if row['tied'] else 'no'} | "
                      f"{shape[0]} x {shape[1]} | {row['way']} | {row['bytes']:,} | {row['shipped_bytes']:,} | "
                      f"{row['tables']} | {row['parameter_bytes']:,} | {row['max_abs_diff']:.3g} | "
                      f"{row['step_ms']['median']:.4f} | {row['step_vs_gather']:.3f} |")
    atomic_write_text(a.json, json.dumps(dict(date=time.strftime("%Y-%m-%d"), tokens=a.tokens, steps=a.steps,
                                              rows=rows),
                                         indent=2) + "\n")
    print(f"written to {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
