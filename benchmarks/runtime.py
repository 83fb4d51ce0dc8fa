"""What edge_runtime adds to LiteRT's own work, per file, in one interleaved pass.

    python benchmarks/runtime.py RUN_OR_TFLITE [...] [--steps 3000] [--json benchmarks/results/runtime.json]

For each converted file (float32, dynamic, int8 where present), 1 thread,
XNNPACK, these are timed in one `bench.round_robin` pass (50 calls of each in
turn until each has --steps):
- `runner`: the plain use of LiteRT's signature runner, float states fed back
  (what `StepModel.step` did before 2026-12-02);
- `step`: `StepModel.step`, Interpreter API;
- `compiled`: `StepModel.step`, CompiledModel API;
- `suggest`: `StepModel.suggest`, the top-3 signature;
- `step+top3`: what a keyboard does without it: `step`, then `metrics.top_words`;
- `invoke`: the bare invoke of the step graph, nothing copied in or out.
Printed: medians (us) and the ratios step / invoke (target: within 1.05),
suggest / step and suggest / (step+top3).
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge_runtime import bench, device, manifest as mf  # noqa: E402
from edge_runtime.metrics import top_words  # noqa: E402
from edge_runtime.runner import StepModel, _dequantize, _quantize  # noqa: E402

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

VARIANTS = ("float32", "dynamic", "int8", "int4")
CALLS = ("runner", "step", "compiled", "suggest", "step+top3", "invoke")
TARGET = 1.05


class SignatureRunner:
    """LiteRT's signature runner used the plain way: one call per token, float
    state quantized in and dequantized out (none in a file with the state inside)."""

    def __init__(self, path, states):
        interpreter = Interpreter(model_path=path, num_threads=1)
        self.runner = interpreter.get_signature_runner("step")
        self.ins, self.outs = self.runner.get_input_details(), self.runner.get_output_details()
        inside = "set_state" in interpreter.get_signature_list()
        self.pairs = [] if inside else [(s["input"], s["output"]) for s in states]
        self.state = {i: np.zeros(self.ins[i]["shape"], np.float32) for i, _ in self.pairs}

    def step(self, token):
        out = self.runner(token=np.array([token], np.int32),
                          **{n: _quantize(v, self.ins[n]) for n, v in self.state.items()})
        self.state = {i: _dequantize(out[o], self.outs[o]) for i, o in self.pairs}
        return _dequantize(out["log_probs"], self.outs["log_probs"]).reshape(-1)


def measure(manifest, name, steps, block=50):
    path = mf.variant_path(manifest, name)
    states = manifest["states"]
    step = StepModel(path, states, num_threads=1)
    compiled = StepModel(path, states, num_threads=1, api="compiled")
    suggest = StepModel(path, states, num_threads=1)
    runner = SignatureRunner(path, states)
    excluded = tuple((manifest.get("suggest") or {}).get("never_suggested", ()))
    tokens = np.random.default_rng(0).integers(0, step.vocab_size, size=steps + 50)
    for t in tokens[:50]:
        for m in (step, compiled, runner):
            m.step(int(t))
        if suggest.top_k:
            suggest.suggest(int(t), excluded)
    tokens = tokens[50:]
    calls = dict(runner=lambda i: runner.step(int(tokens[i])), step=lambda i: step.step(int(tokens[i])),
                 compiled=lambda i: compiled.step(int(tokens[i])), invoke=lambda i: step.invoke())
    if suggest.top_k:
        keyboard = StepModel(path, states, num_threads=1)
        calls["suggest"] = lambda i: suggest.suggest(int(tokens[i]), excluded)
        calls["step+top3"] = lambda i: top_words(keyboard.step(int(tokens[i])), 3, excluded)
    times = bench.round_robin(calls, steps, block)
    r = {label: bench.summary(t) for label, t in times.items()}
    med = {label: x["median"] for label, x in r.items()}
    return dict(variant=name, file=os.path.relpath(path), sha256=mf.sha256_file(path), bytes=os.path.getsize(path),
                vocab_size=step.vocab_size, state=manifest["variants"][name].get("state", "io"), ms=r,
                step_over_invoke=round(med["step"] / med["invoke"], 3),
                compiled_over_invoke=round(med["compiled"] / med["invoke"], 3),
                runner_over_invoke=round(med["runner"] / med["invoke"], 3),
                suggest_over_step=round(med["suggest"] / med["step"], 3) if "suggest" in med else None,
                suggest_over_step_top3=round(med["suggest"] / med["step+top3"], 3) if "suggest" in med else None)


def open_manifest(path):
    if os.path.exists(os.path.join(path, "tflite", mf.FILE)):
        path = os.path.join(path, "tflite")
    return mf.load(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="run directories or tflite/ folders")
    p.add_argument("--steps", type=int, default=3000, help="timed calls of each kind (default %(default)s)")
    p.add_argument("--json", default=os.path.join("benchmarks", "results", "runtime.json"),
                   help="where the results go (default %(default)s)")
    args = p.parse_args(argv)
    rows = []
    for path in args.models:
        manifest = open_manifest(path)
        for name in VARIANTS:
            if manifest["variants"].get(name, {}).get("status") == "ok":
                row = measure(manifest, name, args.steps)
                row.update(model=path, architecture=manifest["architecture"].get("arch"))
                rows.append(row)
    print(f"medians in us, 1 thread, XNNPACK, {args.steps} calls each, one interleaved pass; "
          f"{device.describe()['cpu']}")
    print("| model | variant | state | runner | step | compiled | invoke | step/invoke | suggest | suggest/step | step+top3 | suggest/(step+top3) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        us = {k: f"{v['median'] * 1e3:.1f}" for k, v in r["ms"].items()}
        a, b = r["suggest_over_step"], r["suggest_over_step_top3"]
        print(f"| {r['model']} | {r['variant']} | {r['state']} | {us['runner']} | {us['step']} | {us['compiled']} | "
              f"{us['invoke']} | {r['step_over_invoke']:.2f} | {us.get('suggest', 'n/a')} | "
              f"{'n/a' if a is None else f'{a:.2f}'} | {us.get('step+top3', 'n/a')} | "
              f"{'n/a' if b is None else f'{b:.2f}'} |")
    worst = max(rows, key=lambda r: r["step_over_invoke"])
    print(f"target step/invoke <= {TARGET}: {'met' if worst['step_over_invoke'] <= TARGET else 'missed'} "
          f"(worst {worst['step_over_invoke']:.2f}, {worst['model']} {worst['variant']})")
    out = dict(date=time.strftime("%Y-%m-%d"), machine=platform.machine(), device=device.describe(),
               steps=args.steps, target_step_over_invoke=TARGET, rows=rows)
    from edge_runtime.files import atomic_write_text
    atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
