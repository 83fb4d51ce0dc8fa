"""Can the recurrent state live inside the .tflite file? A probe of keeping it
in resource variables, against today's state inputs and outputs.

    python benchmarks/stateful.py RUN [--precisions float32,dynamic,int8] [--tokens 300] [--steps 2000]
                                      [--json benchmarks/results/stateful.json]

For each precision it converts, from the run's trained weights, a step
model whose state tensors are resource variables: a `step` signature
(token -> log_probs, the state read and written inside) and a `set_state`
signature (zeros: a reset; a state from another file: the switcher's
handover). Where the converter refuses, its error is
recorded verbatim. Where it converts, the file's log-probabilities over the
first --tokens validation tokens are set against today's file of the same
precision (the run's tflite/, state fed back from Python), and both are timed
in one `bench.round_robin` pass, 1 thread, XNNPACK: LiteRT's signature runner
on each (today's with its state inputs and outputs, the stateful one with the
token alone), and, each read and written in place as `StepModel` does, today's
`StepModel.step` and the stateful file's token-and-invoke. Nothing here changes the
converter.
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


def stateful_module(step, layout, unk_id):
    from convert.export import _run
    from keras_models.backend import tf
    names = [s["input"] for s in layout]

    class Stateful(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = step
            self.state = [tf.Variable(tf.zeros(s["shape"]), name=s["input"]) for s in layout]

        @tf.function(input_signature=[tf.TensorSpec([1], tf.int32, name="token")])
        def step(self, token):
            log_probs, new = _run(self.model, names, unk_id, token, [v.read_value() for v in self.state])
            for v, s in zip(self.state, layout):
                v.assign(new[s["output"]])
            return dict(log_probs=log_probs)

        @tf.function(input_signature=[tf.TensorSpec(s["shape"], tf.float32, name=s["input"]) for s in layout])
        def set_state(self, *values):  # zeros: reset; a state from elsewhere: the switcher's handover
            for v, x in zip(self.state, values):
                v.assign(x)
            return dict(done=tf.constant(0))

    return Stateful()


def convert_stateful(run, precision, feeds_tokens, work):
    """(bytes of the .tflite, None) or (None, the converter's error)."""
    from convert.variants import make_converter
    from edge_runtime.vocab import Vocab
    from keras_models.backend import tf
    from keras_models.language_model import build_step_model, load_model
    from convert.export import state_layout
    model = load_model(os.path.join(run, "model"))
    step = build_step_model(model.spec, model.get_weights())
    layout = state_layout(step)
    vocab = Vocab.load(os.path.join(run, "vocab.txt"))
    module = stateful_module(step, layout, vocab.unk_id)
    saved = os.path.join(work, f"saved-{precision}")
    tf.saved_model.save(module, saved, signatures={"step": module.step, "set_state": module.set_state})
    conv = make_converter(saved, precision, signatures=("step", "set_state"))
    conv.experimental_enable_resource_variables = True
    if precision == "int8":  # the state is carried by the variables as the calibration steps through tokens
        zeros = {s["input"]: np.zeros(s["shape"], np.float32) for s in layout}
        conv.representative_dataset = lambda: ((("set_state", zeros) if i == 0 else
                                                ("step", {"token": np.array([t], np.int32)}))
                                               for i, t in enumerate(feeds_tokens))
    try:
        data = conv.convert()
    except Exception as e:  # the converter's own words are the finding
        return None, f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:500]}"
    return data, None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--precisions", default="float32,dynamic,int8")
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--json", default=os.path.join("benchmarks", "results", "stateful.json"))
    a = p.parse_args(argv)
    from ai_edge_litert.interpreter import Interpreter
    from edge_runtime import bench, device, manifest as mf
    from edge_runtime.files import atomic_write_text
    from edge_runtime.runner import StepModel, _InterpreterEngine
    manifest = mf.load(os.path.join(a.run, "tflite"))
    with np.load(os.path.join(a.run, "data.npz")) as z:
        valid = z["valid"][: a.tokens]
        calib = z["calibration"].reshape(-1)[:256] if "calibration" in z.files else valid[:256]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for precision in a.precisions.split(","):
            row = dict(precision=precision)
            rows.append(row)
            if manifest["variants"].get(precision, {}).get("status") != "ok":
                row["error"] = f"the run has no {precision} file to set it against"
                continue
            data, error = convert_stateful(a.run, precision, calib, work)
            if error:
                row["error"] = error
                print(f"{precision}: the converter refused: {error}")
                continue
            path = os.path.join(work, f"stateful-{precision}.tflite")
            with open(path, "wb") as f:
                f.write(data)
            today_path = mf.variant_path(manifest, precision)
            stateful = Interpreter(model_path=path, num_threads=1)
            run_state = stateful.get_signature_runner("step")
            today = StepModel(today_path, manifest["states"], num_threads=1)
            stateful.get_signature_runner("set_state")(**{s["input"]: np.zeros(s["shape"], np.float32)
                                                         for s in manifest["states"]})
            diff = max(float(np.abs(run_state(token=np.array([t], np.int32))["log_probs"].reshape(-1)
                                     - today.step(int(t))).max()) for t in valid)
            plain = Interpreter(model_path=today_path, num_threads=1).get_signature_runner("step")
            ins = plain.get_input_details()
            state = {s["input"]: np.zeros(ins[s["input"]]["shape"], ins[s["input"]]["dtype"])
                     for s in manifest["states"]}

            def plain_step(t):
                out = plain(token=np.array([t], np.int32), **state)
                for s in manifest["states"]:
                    state[s["input"]] = out[s["output"]]
            inside = Interpreter(model_path=path, num_threads=1)
            engine = _InterpreterEngine(inside, ["step"])

            def inside_step(t):
                engine.set_token("step", t)
                engine.invoke("step")
                return engine.output("step", "log_probs")
            tokens = np.resize(valid, a.steps)
            times = bench.round_robin({"signature runner, state in and out": lambda i: plain_step(int(tokens[i])),
                                       "signature runner, state inside": lambda i: run_state(
                                           token=np.array([tokens[i]], np.int32)),
                                       "StepModel.step (today)": lambda i: today.step(int(tokens[i])),
                                       "in place, state inside": lambda i: inside_step(int(tokens[i]))},
                                      a.steps, 50)
            row.update(bytes=len(data), today_bytes=os.path.getsize(today_path), max_abs_diff=diff,
                       ms={k: bench.summary(v) for k, v in times.items()})
            med = {k: v["median"] * 1e3 for k, v in row["ms"].items()}
            print(f"{precision}: {len(data):,} bytes (today {row['today_bytes']:,}); max |log-prob difference| "
                  f"{diff:.2e} over {len(valid)} tokens; us: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    atomic_write_text(a.json, json.dumps(dict(run=a.run, date=time.strftime("%Y-%m-%d"), device=device.describe(),
                                              tokens=a.tokens, steps=a.steps, rows=rows), indent=2) + "\n")
    print(f"written to {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
