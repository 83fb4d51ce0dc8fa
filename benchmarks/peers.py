"""edgelm's step against the runtimes a user could pick instead, in one process.

    python benchmarks/peers.py export RUN [--out runs/peers/NAME]      # the train venv (TensorFlow)
    python benchmarks/peers.py run runs/peers/NAME [...] [--steps 3000] # the peers venv: pip install -e '.[edge,peers]'
    python benchmarks/peers.py run runs/peers/NAME --sweep SWEEP_DIR   # and a sweep of that run, in the same pass

`export` writes the run's trained weights (`weights.npz`, plain arrays) and
two floors as LiteRT int8 files, built the way edgelm builds its own:
- `matvec.tflite`: one int8 FULLY_CONNECTED holding as many weights as the
  step's matrices (in = the output layer's input size): the time to stream
  the step's weights once, the floor for any step that reads them all;
- `gemm.tflite`: a 64 x 1024 x 1024 int8 matrix product, for the peak int8
  MAC rate of this CPU under LiteRT;
and, to see where the int8 step's time goes, the output layer alone:
`output.tflite` (its int8 matrix product) and `output_lsm.tflite` (that and
the log-softmax over V, float out, as in the step).
`run` builds the same step from the same weights in PyTorch eager (float32,
and `quantize_dynamic` int8 of its Linear/LSTM modules) and in ONNX Runtime
(a graph with the state as inputs and outputs: float32, `quantize_dynamic`
int8, and `quantize_static` int8 in QDQ format, per-channel weights,
calibrated on the same training windows the converter calibrates on, with
the state carried). Each is checked against the float32 .tflite on the first
`CHECK_TOKENS` of the run's test split: a float32 peer must give its
log-probabilities to `FLOAT_TOLERANCE`, a quantized one its perplexity to
`QUANT_TOLERANCE`; a peer outside is named in an error and not timed (exit
1). Then every system and the floors are timed in one `bench.round_robin`
pass, 1 thread each, and benchmarks/results/peers.json is written.
With `--sweep DIR` (a sweep of the same base run), the sweep's files on its
latency frontier and its dense files join that same pass, and the fastest
point within 5% of the dense perplexity is reported against ORT's dynamic
and static int8 of the dense model: ratios of one pass, never chained.
Each system also does a keyboard's word in the same pass (`: word`): its
step, then the 3 words shown, ranked in numpy by the keyboard's own code
(`Words.best`); an edgelm file with a `suggest` signature also does it in
the graph (`: word via suggest`). The fastest sweep point's word is then
set against ORT's dynamic int8 word of the dense model.
The QRNN, which PyTorch has no layer for, is written in plain PyTorch / ONNX
ops, as in keras_models/qrnn.py.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

GEMM = (64, 1024, 1024)  # rows, in, out
CHECK_TOKENS = 300      # test-split tokens each peer is checked on
FLOAT_TOLERANCE = 1e-3  # max |log-prob difference| of a float32 peer against the float32 .tflite
QUANT_TOLERANCE = 0.05  # relative perplexity difference of a quantized peer, on the check tokens
CALIBRATION_STEPS = 400  # steps of the training windows that calibrate ORT's static int8
WITHIN = 1.05            # "within 5% of the dense perplexity"
WORD, SUGGESTED = ": word", ": word via suggest"  # a keyboard's word: step then top 3 in numpy; in the graph


# ---- export (TensorFlow) ------------------------------------------------------------------

def reference_manifest(run_dir):
    """The run's converted files, which must include the float32 one every peer is checked against."""
    from edge_runtime import manifest as mf
    try:
        manifest = mf.load(os.path.join(run_dir, "tflite"))
    except mf.ManifestError as e:  # an unconverted run (knob.py does not convert its base)
        raise SystemExit(f"error: {e}; convert the run first: python -m convert.to_tflite {run_dir}") from None
    if manifest["variants"].get("float32", {}).get("status") != "ok":
        raise SystemExit(f"error: {run_dir}/tflite has no float32 file, which every peer is checked against: "
                         f"python -m convert.to_tflite {run_dir} --quantize float32,dynamic,int8 --force")
    return manifest


def export(run_dir, out):
    from keras_models.backend import keras, tf
    from keras_models.language_model import load_model, named_weights
    from edge_runtime.files import atomic_write_text
    reference_manifest(run_dir)
    model = load_model(os.path.join(run_dir, "model"))
    spec = dict(model.spec)
    if spec["arch"] not in ("lstm", "qrnn") or spec.get("factors") or spec.get("rank_one"):
        raise SystemExit("error: peers compares dense LSTM and QRNN models only")
    named = named_weights(model)
    arrays = {"embedding": named["embedding"][0]}
    for i in range(len(spec["hidden_sizes"])):
        for j, a in enumerate(named[f"rnn_{i}"]):
            arrays[f"rnn_{i}_{j}"] = a
    out_w = named["output"]
    arrays["output_bias"] = out_w[-1]
    arrays["output_kernel"] = out_w[0] if len(out_w) == 2 else arrays["embedding"].T
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, "weights.npz"), **arrays)
    matrices = sum(a.size for k, a in arrays.items() if k.startswith("rnn_") and a.ndim == 2)
    matrices += arrays["output_kernel"].size
    d_in = arrays["output_kernel"].shape[0]
    vocab = arrays["output_bias"].size
    floors = dict(matvec=(1, d_in, -(-matrices // d_in)), gemm=GEMM, output=(1, d_in, vocab),
                  output_lsm=(1, d_in, vocab))
    for name, (rows, d, n) in floors.items():
        keras.utils.set_random_seed(0)
        x = keras.Input((d,), batch_size=rows)
        y = keras.layers.Dense(n)(x)
        m = keras.Model(x, tf.nn.log_softmax(y) if name == "output_lsm" else y)
        conv = tf.lite.TFLiteConverter.from_keras_model(m)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([np.random.default_rng(i).normal(size=(rows, d)).astype(np.float32)]
                                               for i in range(20))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if name != "output_lsm":  # the step's log-probabilities come out as float
            conv.inference_input_type = conv.inference_output_type = tf.int8
        with open(os.path.join(out, f"{name}.tflite"), "wb") as f:
            f.write(conv.convert())
    meta = dict(run=os.path.abspath(run_dir), spec={k: (list(v) if k == "hidden_sizes" else v) for k, v in spec.items()},
                matrix_weights=int(matrices), floors={k: list(v) for k, v in floors.items()})
    atomic_write_text(os.path.join(out, "peers.json"), json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out}: {matrices:,} matrix weights; floors {floors}")


# ---- the step in PyTorch -------------------------------------------------------------------

def torch_step(spec, w):
    """A torch.nn.Module: (token [1], *states) -> (log_probs [1, V], *states)."""
    import torch
    from torch import nn

    class QRNNLayer(nn.Module):
        def __init__(self, kernel, bias, window):
            super().__init__()
            self.window = window
            self.gates = nn.Linear(kernel.shape[0], kernel.shape[1])
            self.gates.weight.data = torch.from_numpy(kernel.T.copy())
            self.gates.bias.data = torch.from_numpy(bias.copy())

        def forward(self, x, c, x_prev=None):
            xin = torch.cat([x_prev, x], dim=-1) if self.window > 1 else x
            z, f, o = self.gates(xin).chunk(3, dim=-1)
            f = torch.sigmoid(f)
            c = f * c + (1 - f) * torch.tanh(z)
            return torch.sigmoid(o) * c, c, x

    class LSTMLayer(nn.Module):
        def __init__(self, kernel, recurrent, bias):
            super().__init__()
            d, h4 = kernel.shape
            self.cell = nn.LSTM(d, h4 // 4, batch_first=True)
            self.cell.weight_ih_l0.data = torch.from_numpy(kernel.T.copy())  # gate order i, f, c, o in both
            self.cell.weight_hh_l0.data = torch.from_numpy(recurrent.T.copy())
            self.cell.bias_ih_l0.data = torch.from_numpy(bias.copy())
            self.cell.bias_hh_l0.data.zero_()

        def forward(self, x, h, c):
            y, (h, c) = self.cell(x[:, None], (h[None], c[None]))
            return y[:, 0], h[0], c[0]

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding.from_pretrained(torch.from_numpy(w["embedding"]))
            layers = []
            for i, _ in enumerate(spec["hidden_sizes"]):
                if spec["arch"] == "qrnn":
                    layers.append(QRNNLayer(w[f"rnn_{i}_0"], w[f"rnn_{i}_1"], spec["window"] if i == 0 else 1))
                else:
                    layers.append(LSTMLayer(w[f"rnn_{i}_0"], w[f"rnn_{i}_1"], w[f"rnn_{i}_2"]))
            self.layers = nn.ModuleList(layers)
            self.output = nn.Linear(*w["output_kernel"].shape)
            self.output.weight.data = torch.from_numpy(w["output_kernel"].T.copy())
            self.output.bias.data = torch.from_numpy(w["output_bias"].copy())

        def forward(self, token, states):
            x = self.embedding(token)
            new = []
            for i, layer in enumerate(self.layers):
                if spec["arch"] == "qrnn":
                    prev = states[i][1] if i == 0 and spec["window"] > 1 else None
                    x, c, xp = layer(x, states[i][0], prev)
                    new.append((c, xp) if prev is not None else (c,))
                else:
                    x, h, c = layer(x, *states[i])
                    new.append((h, c))
            return torch.log_softmax(self.output(x), dim=-1), new

    return Step().eval()


def zero_state(spec, lib=np):
    """Per layer: QRNN (c[, x_prev]) or LSTM (h, c), batch 1, float32 numpy arrays."""
    out = []
    d = spec["embed"]
    for i, h in enumerate(spec["hidden_sizes"]):
        if spec["arch"] == "qrnn":
            out.append((np.zeros((1, h), np.float32),) + ((np.zeros((1, d), np.float32),)
                                                          if i == 0 and spec["window"] > 1 else ()))
        else:
            out.append((np.zeros((1, h), np.float32), np.zeros((1, h), np.float32)))
    return out


class TorchRunner:
    def __init__(self, spec, w, int8):
        import torch
        self.torch = torch
        model = torch_step(spec, w)
        if int8:  # torch.ao's eager quantize_dynamic: deprecated, still what users of eager mode have
            import warnings
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)
        self.model, self.spec = model, spec
        self.reset()

    def reset(self):
        self.state = [tuple(self.torch.from_numpy(a) for a in s) for s in zero_state(self.spec)]

    def step(self, token):
        with self.torch.inference_mode():
            logp, self.state = self.model(self.torch.tensor([token]), self.state)
        return logp.numpy().reshape(-1)


# ---- the step in ONNX Runtime ---------------------------------------------------------------

def onnx_step(spec, w, path):
    """An ONNX graph: token int64 [1] and the states in, log_probs and the states out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits, inputs, outputs = [], [], [], []
    names = iter(range(10 ** 6))

    def const(a, name):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a), name))
        return name

    def op(kind, args, n_out=1, **attrs):
        outs = [f"t{next(names)}" for _ in range(n_out)]
        nodes.append(helper.make_node(kind, args, outs, **attrs))
        return outs if n_out > 1 else outs[0]

    def state(name, size):
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, size]))
        return name

    def emit(name, value, size):
        nodes.append(helper.make_node("Identity", [value], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, size]))

    inputs.append(helper.make_tensor_value_info("token", TensorProto.INT64, [1]))
    x = op("Gather", [const(w["embedding"], "embedding"), "token"], axis=0)  # [1, E]
    d = spec["embed"]
    for i, h in enumerate(spec["hidden_sizes"]):
        kernel = const(w[f"rnn_{i}_0"], f"rnn_{i}_kernel")
        if spec["arch"] == "qrnn":
            c = state(f"l{i}_c", h)
            if i == 0 and spec["window"] > 1:
                prev = state(f"l{i}_x_prev", d)
                emit(f"l{i}_x_prev_out", x, d)
                x = op("Concat", [prev, x], axis=1)
            g = op("Add", [op("MatMul", [x, kernel]), const(w[f"rnn_{i}_1"], f"rnn_{i}_bias")])
            z, f, o = op("Split", [g, const(np.array([h, h, h], np.int64), f"split_{i}")], n_out=3, axis=1)
            f = op("Sigmoid", [f])
            one_minus = op("Sub", [const(np.ones(1, np.float32), f"one_{i}"), f])
            c = op("Add", [op("Mul", [f, c]), op("Mul", [one_minus, op("Tanh", [z])])])
            x = op("Mul", [op("Sigmoid", [o]), c])
            emit(f"l{i}_c_out", c, h)
        else:
            hs, c = state(f"l{i}_h", h), state(f"l{i}_c", h)
            g = op("Add", [op("Add", [op("MatMul", [x, kernel]),
                                      op("MatMul", [hs, const(w[f"rnn_{i}_1"], f"rnn_{i}_recurrent")])]),
                           const(w[f"rnn_{i}_2"], f"rnn_{i}_bias")])
            gi, gf, gc, go = op("Split", [g, const(np.array([h] * 4, np.int64), f"split_{i}")], n_out=4, axis=1)
            c = op("Add", [op("Mul", [op("Sigmoid", [gf]), c]), op("Mul", [op("Sigmoid", [gi]), op("Tanh", [gc])])])
            x = op("Mul", [op("Sigmoid", [go]), op("Tanh", [c])])
            emit(f"l{i}_h_out", x, h)
            emit(f"l{i}_c_out", c, h)
        d = h
    logits = op("Add", [op("MatMul", [x, const(w["output_kernel"], "output_kernel")]),
                        const(w["output_bias"], "output_bias")])
    nodes.append(helper.make_node("LogSoftmax", [logits], ["log_probs"], axis=1))
    outputs.insert(0, helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, [1, w["output_bias"].size]))
    graph = helper.make_graph(nodes, "step", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


class OrtRunner:
    def __init__(self, path):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs() if i.name != "token"]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.reset()

    def reset(self):
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.state = {n: np.zeros(shapes[n], np.float32) for n in self.inputs}

    def step(self, token):
        out = dict(zip(self.outputs, self.session.run(None, dict(token=np.array([token], np.int64), **self.state))))
        self.state = {n: out[n + "_out"] for n in self.inputs}
        return out["log_probs"].reshape(-1)


def ort_static(onnx_f32, path, calibration):
    """ORT's static int8 (QDQ, per-channel weights) of the float32 graph, calibrated
    on `calibration` token ids fed one step at a time with the state carried."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    runner = OrtRunner(onnx_f32)
    feeds = []
    for t in calibration:
        feeds.append(dict(token=np.array([int(t)], np.int64), **{k: v.copy() for k, v in runner.state.items()}))
        runner.step(int(t))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)
    quantize_static(onnx_f32, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


# ---- run (the peers venv) ---------------------------------------------------------------------

class Bare:
    """A floor file: the bare invoke of its one signature on fixed inputs."""

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter
        self.interpreter = Interpreter(model_path=path, num_threads=1)
        self.interpreter.allocate_tensors()
        self.interpreter.invoke()

    def step(self, _token=None):
        self.interpreter.invoke()


def run_data(meta):
    """(test ids, calibration ids) of the exported run, from its data.npz."""
    with np.load(os.path.join(meta["run"], "data.npz")) as z:
        return z["test"], z["calibration"].reshape(-1)


def systems(folder, meta):
    import torch
    from edge_runtime import manifest as mf
    from edge_runtime.runner import StepModel
    from onnxruntime.quantization import QuantType, quantize_dynamic
    torch.set_num_threads(1)
    spec = meta["spec"]
    with np.load(os.path.join(folder, "weights.npz")) as z:
        w = {k: z[k] for k in z.files}
    onnx_f32, onnx_int8 = os.path.join(folder, "step.onnx"), os.path.join(folder, "step.int8.onnx")
    onnx_static = os.path.join(folder, "step.static-int8.onnx")
    onnx_step(spec, w, onnx_f32)
    quantize_dynamic(onnx_f32, onnx_int8, weight_type=QuantType.QInt8)
    ort_static(onnx_f32, onnx_static, run_data(meta)[1][:CALIBRATION_STEPS])
    manifest = reference_manifest(meta["run"])
    out = {"PyTorch eager float32": TorchRunner(spec, w, False),
           "PyTorch eager dynamic int8": TorchRunner(spec, w, True),
           "ONNX Runtime float32": OrtRunner(onnx_f32), "ONNX Runtime dynamic int8": OrtRunner(onnx_int8),
           "ONNX Runtime static int8": OrtRunner(onnx_static)}
    for name in ("float32", "dynamic", "int8", "int4"):
        if manifest["variants"].get(name, {}).get("status") == "ok":
            out[f"edgelm {name} .tflite"] = StepModel(mf.variant_path(manifest, name), manifest["states"],
                                                      num_threads=1)
    out["floor: int8 matvec of the step's weights"] = Bare(os.path.join(folder, "matvec.tflite"))
    out["part: the output layer's int8 matvec"] = Bare(os.path.join(folder, "output.tflite"))
    out["part: the output layer + log-softmax over V"] = Bare(os.path.join(folder, "output_lsm.tflite"))
    return out, mf.variant_path(manifest, "float32"), manifest


def check(runners, reference, tokens):
    """{name: (figure, tolerance, ok)} of each system against the float32 .tflite on
    `tokens` (real text): max |log-prob difference| for float32 systems, the
    relative perplexity difference for quantized ones (their log-probabilities
    differ by their quantization, most in the tail)."""
    def replay(r):
        r.reset()
        out = [r.step(int(t)) for t in tokens[:-1]]
        r.reset()
        return out

    def ppl(logps):
        return float(np.exp(-np.mean([lp[int(t)] for lp, t in zip(logps, tokens[1:])])))
    ref = replay(reference)
    out = {}
    for name, r in runners.items():
        if isinstance(r, Bare):
            continue
        got = replay(r)
        if "float32" in name:
            diff = float(max(np.abs(g - e).max() for g, e in zip(got, ref)))
            out[name] = (diff, FLOAT_TOLERANCE, diff <= FLOAT_TOLERANCE)
        else:
            rel = abs(ppl(got) / ppl(ref) - 1)
            out[name] = (rel, QUANT_TOLERANCE, rel <= QUANT_TOLERANCE)
    return out


def sweep_files(sweep, meta):
    """{label: StepModel} of a sweep's latency-frontier and dense files, and their
    rows; the sweep must be of the exported run."""
    from edge_runtime import manifest as mf
    from edge_runtime import points as device_points
    from edge_runtime.runner import StepModel
    doc = device_points.load(sweep)
    if os.path.abspath(doc["options"]["base"]) != os.path.abspath(meta["run"]):
        raise SystemExit(f"error: {sweep} sweeps {doc['options']['base']}, not the exported {meta['run']}: "
                         "compare a sweep with the peers of its own base")
    rows = [p for p in doc["points"] if p["frontier"]["latency"] or p["method"] == "dense"]
    models = {f"edgelm {device_points.label(p)}": StepModel(mf.variant_path(p["_manifest"], p["variant"]),
                                                            p["_manifest"]["states"], num_threads=1) for p in rows}
    return models, {f"edgelm {device_points.label(p)}": p for p in rows}


def word_calls(runners, tokens, words, k=3):
    """{name + WORD: call, name + SUGGESTED: call}: each system's step then the k words
    shown, ranked by the keyboard's own code (`words`: edge_runtime.keyboard.Words);
    and the in-graph `suggest` of every edgelm file that has one."""
    from edge_runtime.runner import StepModel
    never = words.vocab.never_suggested
    calls = {}
    for name, r in runners.items():
        if isinstance(r, Bare):
            continue
        calls[name + WORD] = (lambda r: lambda i: words.best(r.step(int(tokens[i])), "", k))(r)
        if isinstance(r, StepModel) and r.top_k is not None:
            calls[name + SUGGESTED] = (lambda r: lambda i: r.suggest(int(tokens[i]), never))(r)
    return calls


def word_ms(times, name):
    """The fastest way a system does a keyboard's word: (median ms, how)."""
    ways = [(times[name + w]["median"], w) for w in (WORD, SUGGESTED) if name + w in times]
    return min(ways) if ways else (None, None)


def against_peers(times, rows):
    """The fastest sweep file within 5% of the best dense perplexity against ORT's
    dynamic and static int8 of the dense model: medians of the same pass. The
    step alone, and the keyboard's word (the step and the 3 words shown)."""
    dense = min(p["test_perplexity"] for p in rows.values() if p["method"] == "dense")
    within = {k: p for k, p in rows.items() if p["test_perplexity"] <= WITHIN * dense}
    best = min(within, key=lambda k: times[k]["median"])
    out = dict(point=best[len("edgelm "):], perplexity=within[best]["test_perplexity"], dense_perplexity=dense,
               point_ms=times[best]["median"])
    for peer, key in (("ONNX Runtime dynamic int8", "over_ort_dynamic_int8"),
                      ("ONNX Runtime static int8", "over_ort_static_int8")):
        if peer in times:
            out[key] = round(times[peer]["median"] / times[best]["median"], 3)
    fastest = min((w for w in (word_ms(times, k) + (k,) for k in within) if w[0] is not None), default=None)
    peer = word_ms(times, "ONNX Runtime dynamic int8")[0]
    if fastest and peer:
        out["word"] = dict(point=fastest[2][len("edgelm "):], how=fastest[1].strip(": "), point_ms=fastest[0],
                           ort_dynamic_int8_ms=peer, over_ort_dynamic_int8=round(peer / fastest[0], 3))
    return out


def run(folders, steps, out_json, sweep=None):
    from edge_runtime import bench, device
    from edge_runtime.files import atomic_write_text
    from edge_runtime.keyboard import Words
    from edge_runtime.runner import StepModel
    from edge_runtime.vocab import Vocab
    if sweep and len(folders) != 1:
        raise SystemExit("error: --sweep goes with one exported folder, the sweep's base run")
    results, refused = [], []
    for folder in folders:
        with open(os.path.join(folder, "peers.json")) as f:
            meta = json.load(f)
        runners, ref_path, manifest = systems(folder, meta)
        checks = check(runners, StepModel(ref_path, manifest["states"], num_threads=1),
                       run_data(meta)[0][:CHECK_TOKENS])
        for name, (figure, tolerance, ok) in checks.items():
            if not ok:
                what = "max |log-prob difference|" if "float32" in name else "relative perplexity difference"
                refused.append(f"{name} on {meta['spec']['arch']} {meta['spec']['hidden_sizes']}: {what} {figure:.3g} "
                               f"against the float32 .tflite, over the tolerance {tolerance:g}; not timed")
                print(f"error: {refused[-1]}", file=sys.stderr)
                del runners[name]
        rows = {}
        if sweep:
            models, rows = sweep_files(sweep, meta)
            runners.update(models)
        vocab = meta["spec"]["vocab_size"]
        tokens = np.random.default_rng(0).integers(0, vocab, size=steps)
        for r in runners.values():
            for t in tokens[:50]:
                r.step(int(t))
        calls = {name: (lambda r: lambda i: r.step(int(tokens[i])))(r) for name, r in runners.items()}
        calls.update(word_calls(runners, tokens, Words(Vocab.load(os.path.join(meta["run"], "vocab.txt")))))
        times = bench.round_robin(calls, steps)
        rows_out = {name: dict(bench.summary(t), check=dict(zip(("figure", "tolerance"), checks[name][:2]))
                               if name in checks else None) for name, t in times.items()}
        gemm = Bare(os.path.join(folder, "gemm.tflite"))
        g = bench.summary(bench.round_robin({"gemm": lambda i: gemm.step()}, 200)["gemm"])
        macs = int(np.prod(GEMM))
        floor = rows_out["floor: int8 matvec of the step's weights"]["median"]
        # the floor target: the fastest int8 or int4 file within 1% of the Keras perplexity (the converter's figure)
        near = [(rows_out[f"edgelm {n} .tflite"]["median"], n) for n in ("int8", "int4")
                if f"edgelm {n} .tflite" in rows_out and abs(manifest["variants"][n]["change_vs_keras"]) <= 0.01]
        over_floor = {n: dict(over_floor=round(rows_out[f"edgelm {n} .tflite"]["median"] / floor, 3),
                              change_vs_keras=manifest["variants"][n]["change_vs_keras"])
                      for n in ("int8", "int4") if f"edgelm {n} .tflite" in rows_out}
        results.append(dict(model=meta["run"], spec=meta["spec"], matrix_weights=meta["matrix_weights"],
                            systems=rows_out, gemm_ms=g, gemm_int8_gmacs=round(macs / (g["median"] * 1e-3) / 1e9, 1),
                            matvec_gb_per_s=round(meta["matrix_weights"] / (floor * 1e-3) / 1e9, 1),
                            int8_over_floor=round(rows_out["edgelm int8 .tflite"]["median"] / floor, 3)
                            if "edgelm int8 .tflite" in rows_out else None, over_floor=over_floor,
                            fastest_within_1pct=dict(file=min(near)[1], over_floor=round(min(near)[0] / floor, 3))
                            if near else None,
                            dynamic_over_ort_int8=round(rows_out["edgelm dynamic .tflite"]["median"]
                                                        / rows_out["ONNX Runtime dynamic int8"]["median"], 3)
                            if "edgelm dynamic .tflite" in rows_out and "ONNX Runtime dynamic int8" in rows_out
                            else None,
                            sweep=dict(path=os.path.abspath(sweep), **against_peers(rows_out, rows)) if sweep else None))
    print(f"1 thread, medians of {steps} steps each, one interleaved pass per model; {device.describe()['cpu']}")
    for r in results:
        s = r["spec"]
        print(f"\n{s['arch']} {s['hidden_sizes']} V={s['vocab_size']} ({r['matrix_weights']:,} matrix weights)")
        print("| system | median us | p90 us | checked against the float32 .tflite (tolerance) |")
        print("|---|---|---|---|")
        for name, x in r["systems"].items():
            c = x["check"]
            checked = "" if c is None else f"{c['figure']:.2g} ({c['tolerance']:g})"
            print(f"| {name} | {x['median'] * 1e3:.1f} | {x['p90'] * 1e3:.1f} | {checked} |")
        print(f"int8 GEMM {GEMM}: {r['gemm_ms']['median']:.3f} ms = {r['gemm_int8_gmacs']} G int8 MAC/s; "
              f"the matvec floor streams {r['matvec_gb_per_s']} GB/s")
        for n, x in r["over_floor"].items():
            print(f"edgelm {n} / matvec floor: {x['over_floor']} (perplexity {100 * x['change_vs_keras']:+.2f}% "
                  "against Keras)")
        best = r["fastest_within_1pct"]
        print("the fastest int8 or int4 file within 1% of the Keras perplexity: "
              + (f"{best['file']}, {best['over_floor']}x the floor (target <= 1.0)" if best else "none"))
        print(f"edgelm int8 / matvec floor: {r['int8_over_floor']} (target 1.3); "
              f"edgelm dynamic / ONNX Runtime dynamic int8: {r['dynamic_over_ort_int8']} (target <= 1)")
        o = r["sweep"]
        if o:
            def times(key):
                return "n/a (that peer was not timed)" if o.get(key) is None else f"{o[key]:.2f}x"
            print(f"fastest sweep point within 5% of the dense perplexity: {o['point']} (perplexity "
                  f"{o['perplexity']:.2f} against {o['dense_perplexity']:.2f}), against ONNX Runtime's int8 of "
                  f"the dense model: dynamic {times('over_ort_dynamic_int8')}, static "
                  f"{times('over_ort_static_int8')} faster (medians of this pass)")
            w = o.get("word")
            if w:
                print(f"a keyboard's word (the step and the 3 words shown): the fastest such point, {w['point']} "
                      f"({w['how']}), {w['point_ms'] * 1e3:.1f} us against ONNX Runtime's dynamic int8 step and "
                      f"top 3 in numpy, {w['ort_dynamic_int8_ms'] * 1e3:.1f} us: {w['over_ort_dynamic_int8']:.2f}x "
                      "faster (target >= 4x)")
    atomic_write_text(out_json, json.dumps(dict(date=time.strftime("%Y-%m-%d"), machine=platform.machine(),
                                                device=device.describe(), steps=steps, results=results,
                                                refused=refused), indent=2) + "\n")
    print(f"\nwritten to {out_json}")
    return 1 if refused else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="weights and floor files of a trained run (needs TensorFlow)")
    e.add_argument("run_dir")
    e.add_argument("--out", help="default runs/peers/<run name>")
    r = sub.add_parser("run", help="build the peers and time everything (needs the peers extra)")
    r.add_argument("folders", nargs="+", help="folders written by export")
    r.add_argument("--steps", type=int, default=3000, help="timed steps of each system (default %(default)s)")
    r.add_argument("--json", default=os.path.join("benchmarks", "results", "peers.json"))
    r.add_argument("--sweep", help="a sweep folder of the exported run: its frontier joins the same pass")
    args = p.parse_args(argv)
    if args.command == "export":
        export(args.run_dir, args.out or os.path.join("runs", "peers", os.path.basename(os.path.abspath(args.run_dir))))
        return 0
    return run(args.folders, args.steps, args.json, args.sweep)


if __name__ == "__main__":
    sys.exit(main())
