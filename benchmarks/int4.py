"""int4 weights by ai-edge-quantizer, a first look: what its dynamic int4
recipe makes of a run's float32 file.

    python benchmarks/int4.py RUN [--json benchmarks/results/int4.json]     # the `quantizer` extra

Applies `recipe.dynamic_wi4c_afp32()` (int4 per-channel weights, float
activations quantized on the fly) to RUN/tflite/float32.tflite and prints the
file's bytes beside the run's int8 and float32 files, its operators, which
weight tensors stayed float, whether XNNPACK takes it, and its largest
log-probability difference from the float32 file over the first 64
validation tokens. Nothing is added to the converter.
"""
import argparse
import collections
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--json", default=os.path.join("benchmarks", "results", "int4.json"))
    a = p.parse_args(argv)
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        sys.exit("error: benchmarks/int4.py needs ai-edge-quantizer: pip install -e '.[quantizer]'")
    from ai_edge_litert.interpreter import Interpreter
    from edge_runtime import manifest as mf
    from edge_runtime.files import atomic_write_text
    from edge_runtime.runner import StepModel
    manifest = mf.load(os.path.join(a.run, "tflite"))
    if manifest["variants"].get("float32", {}).get("status") != "ok":
        sys.exit(f"error: {a.run}/tflite has no float32 file to quantize")
    src = mf.variant_path(manifest, "float32")
    result = quantizer.Quantizer(src, recipe.dynamic_wi4c_afp32()).quantize(enable_progress_report=False)
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "int4.tflite")
        with open(path, "wb") as f:
            f.write(result.quantized_model)
        interpreter = Interpreter(model_path=path)
        interpreter.allocate_tensors()
        ops = collections.Counter(d["op_name"] for d in interpreter._get_ops_details())
        float_weights = sorted(
            (d["name"], int(np.prod(d["shape"]))) for d in interpreter.get_tensor_details()
            if d["dtype"] == np.float32 and np.prod(d["shape"]) >= 100_000)  # large float constants left
        with np.load(os.path.join(a.run, "data.npz")) as z:
            tokens = [int(t) for t in z["valid"][:64]]
        ref, q = StepModel(src, manifest["states"]), StepModel(path, manifest["states"])  # XNNPACK, or it fails
        diff = max(float(np.abs(ref.step(t) - q.step(t)).max()) for t in tokens)
        doc = dict(run=a.run, recipe="dynamic_wi4c_afp32", bytes=len(result.quantized_model),
                   float32_bytes=manifest["variants"]["float32"]["bytes"],
                   int8_bytes=manifest["variants"].get("int8", {}).get("bytes"), ops=dict(ops),
                   large_float_tensors=float_weights, xnnpack=True, max_abs_diff_64_tokens=diff)
    print(f"int4 (dynamic_wi4c_afp32): {doc['bytes']:,} bytes; float32 {doc['float32_bytes']:,}, "
          f"int8 {doc['int8_bytes'] or 0:,}; XNNPACK takes it; max |log-prob difference| {diff:.3f} over 64 tokens")
    print("operators: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    print("large tensors left in float32: " + ", ".join(f"{n} ({c:,})" for n, c in float_weights))
    atomic_write_text(a.json, json.dumps(doc, indent=2) + "\n")
    print(f"written to {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
