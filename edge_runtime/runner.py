"""Run a LiteRT step model one token at a time, with LiteRT and numpy only.

The model's `step` signature takes `token` (int32 [1]) and the state
tensors, and returns `log_probs` and the new states; which output feeds
which input comes from the manifest's `states` list (or, without one, the
`S` -> `S_out` naming convention). Files converted since 2026-12-02 also
have a `suggest` signature returning the top-k `ids` and the scores they
are ranked by: their `logits` (the log-softmax skipped), or in the first
such files their `log_probs` (see convert/export.py). Quantized inputs and
outputs (the int8 variant with int8 I/O) are dequantized for the caller, who
sees float32 either way; the state is kept in the model's own dtype, and fed
back as it came out when the output's quantization is the input's, so
nothing is requantized per step.

Files converted with the state inside (convert/export.py's `StateInside`)
keep it in resource variables: `step` and `suggest` take the token alone,
`set_state` and `get_state` write and read the state. StepModel tells them
apart by their signatures and offers the same methods on both.

Two LiteRT APIs run the file: `interpreter` (the default; the fastest from
Python, see below) and `compiled` (CompiledModel with TensorBuffers, the
API LiteRT develops now). Both give the same numbers.
"""
import atexit
import gc
import math
import os
import sys

import numpy as np

from edge_runtime import quiet
from edge_runtime.manifest import ManifestError
from edge_runtime.metrics import SUGGEST_SLACK, is_hit

try:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError as e:  # pragma: no cover - only on a device without the runtime
    raise ImportError("edge_runtime needs ai-edge-litert: pip install ai-edge-litert") from e

SIGNATURE = "step"
SUGGEST = "suggest"
SET_STATE, GET_STATE = "set_state", "get_state"  # files with the state inside
SUGGEST_SCORES = ("logits", "log_probs")  # what suggest ranks by: logits now, log-probabilities before
DELEGATES = ("xnnpack", "none")
APIS = ("interpreter", "compiled")


def _quantize(x, detail):
    scale, zero = detail["quantization"]
    if detail["dtype"] == np.float32 or scale == 0:
        return np.asarray(x, detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _dequantize(x, detail):
    """float32 copy of an output (never a view into the model's memory)."""
    scale, zero = detail["quantization"]
    if x.dtype == np.float32 or scale == 0:
        return np.array(x, np.float32)
    return (x.astype(np.float32) - zero) * scale


class _InterpreterEngine:
    """Interpreter, reading and writing the signature's tensors in place.

    The signature runner resizes and reallocates every input on every call,
    which cost more than the invoke itself on small models (22 us a step
    against a 9 us invoke). Tensors are allocated once here and read and
    written through numpy views, which stay valid because nothing reallocates
    them after."""

    def __init__(self, interpreter, signatures):
        self.wrapper = interpreter._interpreter  # the views and per-subgraph invoke live here
        self.subgraph, self.views = {}, {}
        for sig in signatures:
            runner = interpreter.get_signature_runner(sig)
            details = {**runner.get_input_details(), **runner.get_output_details()}
            runner(**{n: np.zeros(d["shape"], d["dtype"]) for n, d in runner.get_input_details().items()})
            index = runner._subgraph_index
            self.subgraph[sig] = index
            self.views[sig] = {n: self.wrapper.tensor(self.wrapper, d["index"], index) for n, d in details.items()}

    def state_home(self, sig, names):
        """The signature's own input tensors hold the state: nothing is copied in."""
        return {n: self.views[sig][n] for n in names}

    def set_token(self, sig, token_id):
        self.views[sig]["token"][0] = token_id

    def set_input(self, sig, name, value):
        np.copyto(self.views[sig][name], value)

    def invoke(self, sig):
        self.wrapper.Invoke(self.subgraph[sig])

    def output(self, sig, name):
        return self.views[sig][name]  # a view: read it before the next invoke


class _CompiledEngine:
    """CompiledModel, with TensorBuffers made by the model for its signatures."""

    def __init__(self, path, signatures, details, num_threads):
        """`details`: {signature: {tensor name: Interpreter-style details}}."""
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.options import CpuOptions, Options
        options = Options(cpu_options=CpuOptions(num_threads=num_threads or 0))
        self.model = CompiledModel.from_file(path, options=options)
        listed = self.model.get_signature_list()
        self.inputs = {s: {n: self.model.create_input_buffer_by_name(s, n) for n in listed[s]["inputs"]}
                       for s in signatures}
        self.outputs = {s: {n: self.model.create_output_buffer_by_name(s, n) for n in listed[s]["outputs"]}
                        for s in signatures}
        # run_by_index with the buffers listed once: run_by_name rebuilds two maps per call
        self.runs = {s: (self.model.get_signature_index(s), [self.inputs[s][n] for n in listed[s]["inputs"]],
                         [self.outputs[s][n] for n in listed[s]["outputs"]]) for s in signatures}
        self.reads = {s: {n: (int(np.prod(d["shape"])), d["dtype"], tuple(d["shape"])) for n, d in details[s].items()}
                      for s in signatures}
        if not _OPEN:
            atexit.register(_quiet_exit)
        _OPEN.append(self)

    def free(self):
        self.inputs = self.outputs = self.runs = self.model = None

    def state_home(self, sig, names):
        return None  # TensorBuffers are written from numpy every step

    def set_token(self, sig, token_id):
        self.inputs[sig]["token"].write(np.array([token_id], np.int32))

    def set_input(self, sig, name, value):
        self.inputs[sig][name].write(value)

    def invoke(self, sig):
        self.model.run_by_index(*self.runs[sig])

    def output(self, sig, name):
        count, dtype, shape = self.reads[sig][name]
        return self.outputs[sig][name].read(count, dtype).reshape(shape)


# Compiled engines, kept until exit and freed there quietly: LiteRT logs its environment's
# teardown whenever one is freed, so freeing one mid-run would print to the terminal.
_OPEN = []


def _quiet_exit():
    """Free the compiled models and their environment while fd 2 is filtered: LiteRT
    logs a line per accelerator as it destroys them. Its process-wide registry is
    destroyed after Python has finished, so at exit fd 2 is closed first."""
    with quiet.filtered_stderr():
        for engine in _OPEN:
            engine.free()
        gc.collect()
    if not quiet.verbose():
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


class StepModel:
    """One .tflite step model and its recurrent state."""

    def __init__(self, path, states=None, num_threads=None, delegate="xnnpack", api="interpreter"):
        if delegate not in DELEGATES:
            raise ValueError(f"unknown delegate {delegate!r}; choose from {', '.join(DELEGATES)}")
        if api not in APIS:
            raise ValueError(f"unknown LiteRT API {api!r}; choose from {', '.join(APIS)}")
        if api == "compiled" and delegate != "xnnpack":
            raise ValueError("the compiled API runs on LiteRT's CPU accelerator (XNNPACK): use --delegate xnnpack")
        resolver = (OpResolverType.BUILTIN if delegate == "xnnpack"
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.path, self.delegate, self.api = path, delegate, api
        interpreter = Interpreter(model_path=path, num_threads=num_threads,
                                  experimental_op_resolver_type=resolver)
        signatures = interpreter.get_signature_list()
        if SIGNATURE not in signatures:
            raise ManifestError(f"{path} has no {SIGNATURE!r} signature (it has {', '.join(signatures) or 'none'})")
        self.inside = SET_STATE in signatures  # the state inside the file, in resource variables
        self.signatures = [s for s in (SIGNATURE, SUGGEST, SET_STATE, GET_STATE) if s in signatures]
        self.details = {}
        for sig in self.signatures:
            runner = interpreter.get_signature_runner(sig)
            self.details[sig] = {**runner.get_input_details(), **runner.get_output_details()}
        self.inputs = {n: self.details[SIGNATURE][n] for n in signatures[SIGNATURE]["inputs"]}
        self.outputs = {n: self.details[SIGNATURE][n] for n in signatures[SIGNATURE]["outputs"]}
        if states is None:
            names = signatures[SET_STATE]["inputs"] if SET_STATE in signatures else self.inputs
            states = [dict(input=n, output=n + "_out") for n in sorted(names) if n != "token"]
        self.state_pairs = [(s["input"], s["output"]) for s in states]
        _check_signatures(path, signatures, self.state_pairs, self.inside)
        if self.inside:  # the state tensors are set_state's inputs; nothing is carried per step
            self.inputs.update({i: self.details[SET_STATE][i] for i, _ in self.state_pairs})
        self._carry = {} if self.inside else {
            sig: [(i, o, (d[o]["dtype"], d[o]["quantization"]) == (d[i]["dtype"], d[i]["quantization"]))
                  for i, o in self.state_pairs] for sig, d in self.details.items()}
        self.vocab_size = int(self.outputs["log_probs"]["shape"][-1])
        self.top_k = None  # the words suggest shows: its width less the ids it may drop
        if SUGGEST in self.signatures:
            self.top_k = int(self.details[SUGGEST]["ids"]["shape"][-1]) - SUGGEST_SLACK
            self._scores = next(n for n in SUGGEST_SCORES if n in self.details[SUGGEST])
        # The delegate is applied at the first invoke, which prints LiteRT's "INFO: Created
        # TensorFlow Lite XNNPACK delegate" line and fails here if XNNPACK cannot prepare.
        with quiet.filtered_stderr():
            if api == "compiled":
                self.engine = _CompiledEngine(path, self.signatures, self.details, num_threads)
                del interpreter
            else:
                self.engine = _InterpreterEngine(interpreter, self.signatures)
            names = [i for i, _ in self.state_pairs]
            self._homes = {sig: None if self.inside else self.engine.state_home(sig, names)
                           for sig in self.signatures}
            self._at = SIGNATURE
            self.reset()
            self.step(0)
        self.reset()

    @property
    def state(self):
        """The recurrent state, in the model's dtypes; with the Interpreter API and
        the state as inputs these are the step signature's input tensors themselves
        (read, don't keep); with the state inside, copies read by `get_state`."""
        if self.inside:
            self.engine.invoke(GET_STATE)
            return {i: np.array(self.engine.output(GET_STATE, i)) for i, _ in self.state_pairs}
        return self._state

    @state.setter
    def state(self, values):
        if self.inside:
            for name, value in values.items():
                self.engine.set_input(SET_STATE, name, value)
            self.engine.invoke(SET_STATE)
            return
        for name, value in values.items():
            np.copyto(self._state[name], value)

    def reset(self):
        """Zero state: the start of a text."""
        zero = {i: _quantize(np.zeros(self.inputs[i]["shape"], np.float32), self.inputs[i])
                for i, _ in self.state_pairs}
        if self.inside:
            self.state = zero
            return
        home = self._homes[self._at]
        if home is None:
            self._state = zero
        else:
            self._state = home
            self.state = zero

    def _run(self, sig, token_id):
        details, engine = self.details[sig], self.engine
        engine.set_token(sig, token_id)
        if self.inside:  # the graph reads and writes its own state
            engine.invoke(sig)
            return details
        home = self._homes[sig]
        if home is None:  # the compiled API: the state is written in every step
            for name, value in self._state.items():
                engine.set_input(sig, name, value)
        elif sig != self._at:  # the state moves into this signature's inputs, once
            for name, value in self._state.items():
                np.copyto(home[name], value)
            self._state, self._at = home, sig
        engine.invoke(sig)
        for i, o, same in self._carry[sig]:
            out = engine.output(sig, o)
            if same:
                np.copyto(self._state[i], out)
            else:  # int8 I/O whose output scale differs from the input's
                np.copyto(self._state[i], _quantize(_dequantize(out, details[o]), details[i]))
        return details

    def step(self, token_id):
        """Feed one token id; returns float32 log-probabilities [V] of the next."""
        details = self._run(SIGNATURE, token_id)
        return _dequantize(self.engine.output(SIGNATURE, "log_probs"), details["log_probs"]).reshape(-1)

    def suggest(self, token_id, excluded):
        """Feed one token id through the `suggest` signature: (ids [k], scores [k]) of
        the words a keyboard shows, best first, `excluded` (`<unk>`, `<eos>`) dropped.
        The scores are what the file ranks by: logits (unnormalised), or in older
        files log-probabilities. Files without it: use `step`."""
        if self.top_k is None:
            raise ManifestError("this model has no suggest signature (convert it again to add one)")
        details = self._run(SUGGEST, token_id)
        ids = self.engine.output(SUGGEST, "ids").reshape(-1)
        scores = _dequantize(self.engine.output(SUGGEST, self._scores), details[self._scores]).reshape(-1)
        keep = [j for j, i in enumerate(ids.tolist()) if i not in excluded][: self.top_k]
        return ids[keep].astype(np.int64), scores[keep]

    def invoke(self, sig=SIGNATURE):
        """The bare invoke of a signature on the inputs as they are: what the runtime's
        own work costs, for `bench` to set beside `step`."""
        self.engine.invoke(sig)


def _check_signatures(path, signatures, state_pairs, inside):
    """ManifestError unless the file's signatures have the manifest's tensors."""
    names = {i for i, _ in state_pairs}
    want_in = {"token"} if inside else {"token", *names}
    states_out = set() if inside else {o for _, o in state_pairs}
    checks = [(SIGNATURE, want_in, [{"log_probs"}]), (SUGGEST, want_in, [{"ids", s} for s in SUGGEST_SCORES])]
    if inside:
        checks += [(SET_STATE, names, [{"done"}]), (GET_STATE, set(), [names])]
    for sig, wanted_in, wanted in checks:
        if sig not in signatures:
            if inside and sig != SUGGEST:
                raise ManifestError(f"{path} has a {SET_STATE!r} signature but no {sig!r} signature")
            continue
        have_in, have_out = set(signatures[sig]["inputs"]), set(signatures[sig]["outputs"])
        if have_in != wanted_in or all(have_out != states_out | w for w in wanted):
            raise ManifestError(f"{path}: the {sig!r} signature has inputs {sorted(have_in)} and outputs "
                                f"{sorted(have_out)}; the manifest's states need {sorted(wanted_in)} and "
                                f"{sorted(states_out | wanted[0])}")


def evaluate_ids(model, ids, excluded, progress=None, keyboard=None):
    """Perplexity, R@1 and R@3 over an id stream, any iterable (first id = context);
    an item may be (id, spelling), the spelling of a word read as <unk>.

    Same definitions as training: exp(total NLL / predicted tokens); R@k as
    `metrics.is_hit` says, `excluded` being the ids never suggested
    (`Vocab.never_suggested`). `keyboard`, a `keyboard_metrics.KeyboardScore`,
    adds its metrics from the same step outputs.
    """
    model.reset()
    nll, hits, hits1, n = 0.0, 0, 0, 0
    it = iter(ids)
    prev = next(it, None)
    prev = prev[0] if isinstance(prev, tuple) else prev
    for item in it:
        target, spelling = item if isinstance(item, tuple) else (item, None)
        logp = model.step(int(prev))
        target = int(target)
        nll -= float(logp[target])
        hits += is_hit(logp, target, excluded)
        hits1 += is_hit(logp, target, excluded, 1)
        if keyboard is not None:
            keyboard.add(logp, target, spelling)
        n += 1
        prev = target
        if progress is not None:
            progress(n)
    if n == 0:
        raise ValueError("nothing to evaluate: the text has no tokens")
    mean = nll / n
    out = dict(perplexity=math.exp(mean) if mean < 700 else float("inf"), r_at_3=hits / n, r_at_1=hits1 / n,
               tokens=n, nll=nll)
    if keyboard is not None:
        out.update(keyboard.result())
    return out


def suggest_agreement(model, ids, excluded):
    """The share of positions of an id stream (first id = context) at which the file's
    `suggest` shows the words its `step` shows (`metrics.top_words`), in order: what a
    two-stage head (convert/two_stage.py) is checked by. Two passes, each from a reset."""
    from edge_runtime.metrics import top_words
    ids = [int(i) for i in ids]
    model.reset()
    want = [top_words(model.step(t), model.top_k, excluded) for t in ids[:-1]]
    model.reset()
    same = sum(model.suggest(t, excluded)[0].tolist() == w for t, w in zip(ids[:-1], want))
    model.reset()
    return same / max(1, len(want))
