"""`predict.py bench`: latency, throughput, load time, memory, energy of a step model.

Latency is one `step` call (token in, log-probabilities and state out) after
`warmup` steps, over `steps` steps (at least 1000 by default) fed with a
fixed pseudo-random token sequence: median, p90, p99. The delegate is
XNNPACK or none; `auto` tries XNNPACK and falls back to none when it fails to
prepare (a sparse quantized FULLY_CONNECTED does), and says so. Energy:
total and above idle per token (`energy.py`). The result names the file's
sha256, so a figure is never taken for another file's. Beside the step,
`overhead` times the bare invoke of the same graph in one interleaved pass
with the step: what edge_runtime adds to LiteRT's own work. Given the
vocabulary, the same pass times what a keyboard runs for each word
(`keyboard.Keyboard.feed`: the suggest path end to end, Python included) as
`keyboard_ms`: the figure the device's knob budgets, by its p90; and a key
press (`Keyboard.set_prefix`: completions of the letters typed, no step) as
`key_ms`, with `key_over_step` its median over the step's.
"""
import os
import time

import numpy as np

from edge_runtime import device
from edge_runtime.energy import IDLE_SECONDS, SCOPES, EnergyMeter
from edge_runtime.keyboard import Keyboard
from edge_runtime.manifest import sha256_file
from edge_runtime.runner import StepModel


def load(path, states, threads=None, delegate="auto", api="interpreter"):
    """(StepModel, delegate used, note)."""
    if delegate != "auto" or api == "compiled":  # the compiled API has the CPU accelerator only
        delegate = "xnnpack" if delegate == "auto" else delegate
        return StepModel(path, states, num_threads=threads, delegate=delegate, api=api), delegate, None
    try:  # StepModel runs one step on load: XNNPACK fails to prepare there, if it does
        return StepModel(path, states, num_threads=threads, delegate="xnnpack"), "xnnpack", None
    except Exception as e:  # XNNPACK failed to prepare
        note = f"XNNPACK failed ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}); ran without a delegate"
        return StepModel(path, states, num_threads=threads, delegate="none"), "none", note


def key_prefixes(vocab, tokens):
    """What `key_ms` times: for each timed call, the first one or two letters
    (alternately) of a word of the pseudo-random sequence."""
    words = [w for w in vocab.tokens if w.isalpha() and len(w) > 1] or ["a"]
    return [words[int(t) % len(words)][: 1 + i % 2] for i, t in enumerate(tokens)]


def overhead(model, tokens, block=50, keyboard=None):
    """The step and the bare invoke of its graph, timed in one `round_robin` pass;
    given a keyboard, its word (`feed`) and its key press (`set_prefix`: the
    completions of one or two letters, no step), and the file's `suggest`
    signature where it has one (what a next-word-only keyboard could run instead):
    {step_ms, invoke_ms, step_over_invoke[, keyboard_ms, key_ms, suggest_ms, key_over_step]}."""
    calls = {"step": lambda i: model.step(int(tokens[i])), "invoke": lambda i: model.invoke()}
    if keyboard is not None:
        prefixes = key_prefixes(keyboard.vocab, tokens)
        calls["keyboard"] = lambda i: keyboard.feed(int(tokens[i]))
        calls["key"] = lambda i: keyboard.set_prefix(prefixes[i])
        if model.top_k is not None:
            never = keyboard.vocab.never_suggested
            calls["suggest"] = lambda i: model.suggest(int(tokens[i]), never)
    times = round_robin(calls, len(tokens), block)
    step, invoke = summary(times["step"]), summary(times["invoke"])
    out = dict(step_ms=step, invoke_ms=invoke, step_over_invoke=round(step["median"] / invoke["median"], 3))
    if keyboard is not None:
        out.update(keyboard_ms=summary(times["keyboard"]), key_ms=summary(times["key"]),
                   suggest_ms=summary(times["suggest"]) if "suggest" in times else None)
        out["key_over_step"] = round(out["key_ms"]["median"] / step["median"], 3)
    return out


def run(path, states, steps=1000, warmup=50, threads=None, delegate="auto", active_watts=None,
        sysfs_root="/", idle_seconds=IDLE_SECONDS, api="interpreter", vocab=None, top_k=3):
    """`vocab` (and the `top_k` words shown): time the keyboard's path too (`keyboard_ms`)."""
    rss0 = device.current_rss_bytes()
    t0 = time.perf_counter()
    model, used, note = load(path, states, threads, delegate, api)
    load_s = time.perf_counter() - t0
    tokens = np.random.default_rng(0).integers(0, model.vocab_size, size=warmup + steps)
    for t in tokens[:warmup]:
        model.step(int(t))
    rss = device.current_rss_bytes()
    times = np.empty(steps)
    with EnergyMeter(active_watts, sysfs_root, idle_seconds) as meter:
        start = time.perf_counter()
        for i, t in enumerate(tokens[warmup:]):
            s = time.perf_counter()
            model.step(int(t))
            times[i] = time.perf_counter() - s
        total = time.perf_counter() - start
    runtime = overhead(model, tokens[warmup:], keyboard=None if vocab is None else Keyboard(model, vocab, top_k))
    ms = times * 1e3
    result = dict(file=os.path.basename(path), bytes=os.path.getsize(path), delegate=used, api=api,
                  delegate_note=note, threads=threads, steps=steps, warmup=warmup,
                  latency_ms=dict(median=round(float(np.median(ms)), 4),
                                  p90=round(float(np.percentile(ms, 90)), 4),
                                  p99=round(float(np.percentile(ms, 99)), 4)),
                  tokens_per_second=round(steps / total, 1), load_s=round(load_s, 4),
                  model_rss_bytes=None if rss is None or rss0 is None else rss - rss0,
                  peak_rss_bytes=device.peak_rss_bytes(), energy_source=meter.source,
                  energy_scope=SCOPES.get(meter.source),
                  energy_is_estimate=meter.estimate,
                  energy_mj_per_token=None if meter.joules is None else round(meter.joules * 1e3 / steps, 6),
                  idle_watts=None if meter.idle_watts is None else round(meter.idle_watts, 4),
                  energy_above_idle_mj_per_token=None if meter.joules_above_idle is None
                  else round(meter.joules_above_idle * 1e3 / steps, 6),
                  keyboard_ms=runtime.pop("keyboard_ms", None), key_ms=runtime.pop("key_ms", None),
                  suggest_ms=runtime.pop("suggest_ms", None), key_over_step=runtime.pop("key_over_step", None),
                  overhead=runtime, sha256=sha256_file(path))
    return result


def round_robin(calls, steps, block=50):
    """Time callables in one pass: `block` calls of each in turn (the order rotating
    every round) until each has `steps`, so a busy neighbour or a clock change
    slows them all alike and the figures compare. `calls` {label: f(i)}, i the
    call's number -> {label: seconds of each call}."""
    labels = list(calls)
    times = {label: [] for label in labels}
    for r in range(-(-steps // block)):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            f, done = calls[label], times[label]
            for _ in range(min(block, steps - len(done))):
                i = len(done)
                s = time.perf_counter()
                f(i)
                done.append(time.perf_counter() - s)
    return times


def summary(seconds):
    ms = np.asarray(seconds) * 1e3
    return dict(median=round(float(np.median(ms)), 4), p90=round(float(np.percentile(ms, 90)), 4),
                p99=round(float(np.percentile(ms, 99)), 4), steps=len(ms))


def interleaved(files, steps=1000, warmup=50, threads=1, block=50, delegate="auto", api="interpreter",
                vocab=None, top_k=3):
    """Time several step models in one pass (`round_robin`), each fed its own
    pseudo-random tokens after `warmup` steps. `files` {label: (path, states)} ->
    {label: {median, p90, p99 (ms), steps, delegate, bytes, sha256}}; given
    `vocab`, each file's keyboard path (`Keyboard.feed`) is timed in the same
    pass too, as {label: {..., keyboard: {median, p90, p99, steps}}}."""
    models = {label: load(path, states, threads, delegate, api) for label, (path, states) in files.items()}
    calls = {}
    for label, (model, _, _) in models.items():
        tokens = np.random.default_rng(0).integers(0, model.vocab_size, size=warmup + steps)
        for t in tokens[:warmup]:
            model.step(int(t))
        calls[label] = (lambda m, ts: lambda i: m.step(int(ts[i])))(model, tokens[warmup:])
        if vocab is not None:
            keyboard = Keyboard(model, vocab, top_k)
            calls[(label, "keyboard")] = (lambda k, ts: lambda i: k.feed(int(ts[i])))(keyboard, tokens[warmup:])
            prefixes = key_prefixes(vocab, tokens[warmup:])
            calls[(label, "key")] = (lambda k, ps: lambda i: k.set_prefix(ps[i]))(keyboard, prefixes)
    times = round_robin(calls, steps, block)
    out = {}
    for label, (path, _) in files.items():
        out[label] = dict(summary(times[label]), delegate=models[label][1], bytes=os.path.getsize(path),
                          sha256=sha256_file(path))
        if vocab is not None:
            out[label]["keyboard"] = summary(times[(label, "keyboard")])
            out[label]["key"] = summary(times[(label, "key")])
    return out
