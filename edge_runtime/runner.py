"""Run a LiteRT step model one token at a time, with LiteRT and numpy only.

The model's `step` signature takes `token` (int32 [1]) and the state
tensors, and returns `log_probs` and the new states; which output feeds
which input comes from the manifest's `states` list (or, without one, the
`S` -> `S_out` naming convention). Quantized inputs and outputs (the int8
variant with int8 I/O) are quantized and dequantized here, so callers see
float32 log-probabilities and states either way.
"""
import math

import numpy as np

from edge_runtime import quiet
from edge_runtime.metrics import is_hit

try:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError as e:  # pragma: no cover - only on a device without the runtime
    raise ImportError("edge_runtime needs ai-edge-litert: pip install ai-edge-litert") from e

SIGNATURE = "step"
DELEGATES = ("xnnpack", "none")


def _quantize(x, detail):
    scale, zero = detail["quantization"]
    if detail["dtype"] == np.float32 or scale == 0:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _dequantize(x, detail):
    scale, zero = detail["quantization"]
    if x.dtype == np.float32 or scale == 0:
        return x.astype(np.float32)
    return (x.astype(np.float32) - zero) * scale


class StepModel:
    """One .tflite step model and its recurrent state."""

    def __init__(self, path, states=None, num_threads=None, delegate="xnnpack"):
        if delegate not in DELEGATES:
            raise ValueError(f"unknown delegate {delegate!r}; choose from {', '.join(DELEGATES)}")
        resolver = (OpResolverType.BUILTIN if delegate == "xnnpack"
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.delegate = delegate
        self.interpreter = Interpreter(model_path=path, num_threads=num_threads,
                                       experimental_op_resolver_type=resolver)
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        if states is None:
            states = [dict(input=n, output=n + "_out") for n in sorted(self.inputs) if n != "token"]
        self.state_pairs = [(s["input"], s["output"]) for s in states]
        self.vocab_size = int(self.outputs["log_probs"]["shape"][-1])
        self.reset()
        # The delegate is applied at the first invoke, which prints LiteRT's "INFO: Created
        # TensorFlow Lite XNNPACK delegate" line and fails here if XNNPACK cannot prepare.
        with quiet.filtered_stderr():
            self.step(0)
        self.reset()

    def reset(self):
        """Zero state: the start of a text."""
        self.state = {i: np.zeros(self.inputs[i]["shape"], np.float32) for i, _ in self.state_pairs}

    def step(self, token_id):
        """Feed one token id; returns float32 log-probabilities [V] of the next."""
        feed = {"token": np.array([token_id], dtype=np.int32)}
        for name, value in self.state.items():
            feed[name] = _quantize(value, self.inputs[name])
        out = self.runner(**feed)
        for i, o in self.state_pairs:
            self.state[i] = _dequantize(out[o], self.outputs[o])
        return _dequantize(out["log_probs"], self.outputs["log_probs"]).reshape(-1)


def evaluate_ids(model, ids, excluded, progress=None):
    """Perplexity and R@3 over an id stream, any iterable (first id = context).

    Same definitions as training: exp(total NLL / predicted tokens); R@3 as
    `metrics.is_hit` says, `excluded` being the ids never suggested
    (`Vocab.never_suggested`).
    """
    model.reset()
    nll, hits, n = 0.0, 0, 0
    it = iter(ids)
    prev = next(it, None)
    for target in it:
        logp = model.step(int(prev))
        target = int(target)
        nll -= float(logp[target])
        hits += is_hit(logp, target, excluded)
        n += 1
        prev = target
        if progress is not None:
            progress(n)
    if n == 0:
        raise ValueError("nothing to evaluate: the text has no tokens")
    mean = nll / n
    return dict(perplexity=math.exp(mean) if mean < 700 else float("inf"), r_at_3=hits / n,
                tokens=n, nll=nll)
