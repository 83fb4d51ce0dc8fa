"""predict.py: next-word suggestions, perplexity and benchmarks on the device.

    python edge_runtime/predict.py suggest --model RUN/tflite --text "to be or not"
    python edge_runtime/predict.py eval FILE [--format auto|ptb|raw]
    python edge_runtime/predict.py bench [--variant all] [--threads 1] [--delegate auto]
    python edge_runtime/predict.py pick --max-latency-ms 0.5 [--max-bytes N] [--max-energy-mj E] [--points FILE]
    python edge_runtime/predict.py suggest --points bundle/operating_points.json --budget-ms 0.2
    python edge_runtime/predict.py suggest --history ~/.edgelm-history [--no-learn] --text "Dear Anne, "
    python edge_runtime/predict.py eval FILE --learn [--history FILE]
    python edge_runtime/predict.py forget --history ~/.edgelm-history

Needs only numpy and ai-edge-litert. Bad input: one line on stderr, exit 2;
a budget no variant meets: exit 1.
"""
import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge_runtime import bench as benchmark  # noqa: E402
from edge_runtime.bench_cache import bench_dir, figures, measure, point_figures  # noqa: E402
from edge_runtime import device, energy, points, quiet  # noqa: E402
from edge_runtime import history as hist  # noqa: E402
from edge_runtime.cache import Cache, learning_options  # noqa: E402
from edge_runtime import manifest as mf  # noqa: E402
from edge_runtime.keyboard import Keyboard, Words, read_block_list, type_text  # noqa: E402
from edge_runtime.keyboard_metrics import KeyboardScore, evaluate_learning  # noqa: E402
from edge_runtime.knob import Switcher, check_positive, ladder, within_budget  # noqa: E402
from edge_runtime.metrics import check_top_k  # noqa: E402
from edge_runtime.runner import APIS, StepModel, evaluate_ids  # noqa: E402
from edge_runtime.textfile import FORMATS, OOV_WARNING, TextError, detect_format, iter_ids  # noqa: E402
from edge_runtime.vocab import Vocab  # noqa: E402

DEFAULT_MODEL = os.path.join("runs", "default", "tflite")
OOV_LISTED = 5  # words outside the vocabulary named in suggest's note; the rest are counted
PREFERRED = ("dynamic", "int8", "float16", "float32")
VARIANTS = ("float32", "float16", "dynamic", "int8", "int4", "int4mixed")


class UsageError(ValueError):
    pass


def model_file_variant(path):
    """For a .tflite path: (its folder, the manifest's variant of that file); else (path, None)."""
    if not path.endswith(".tflite"):
        return path, None
    if not os.path.isfile(path):
        raise UsageError(f"{path} does not exist")
    folder = os.path.dirname(os.path.abspath(path))
    manifest = mf.load(folder)
    for name, v in manifest["variants"].items():
        if v.get("file") == os.path.basename(path):
            return folder, name
    raise UsageError(f"{path} is not one of the files its folder's {mf.FILE} lists")


def open_manifest(path):
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, mf.FILE)) \
            and os.path.exists(os.path.join(path, "tflite", mf.FILE)):
        path = os.path.join(path, "tflite")  # a run directory
    wrong = not_a_model(path)
    if wrong:
        raise UsageError(wrong)
    return mf.load(path)


def not_a_model(path):
    """What `path`, given to --model, is instead of a converted model, and what to give (None: nothing
    recognised; the manifest's own checks then speak)."""
    here = lambda *names: os.path.exists(os.path.join(path, *names))  # noqa: E731
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        if isinstance(doc, dict) and isinstance(doc.get("points"), list):
            return (f"--model {path} is a sweep's operating-points file, not a model: give it to --points "
                    "(suggest: with --budget-ms)")
        return None
    if not os.path.isdir(path) or here(mf.FILE):
        return None
    if here(points.FILE):
        return f"--model {path} is a sweep's bundle folder: give --points {os.path.join(path, points.FILE)}"
    if here("bundle", points.FILE) or here("points"):
        return (f"--model {path} is a sweep folder: give --points {os.path.join(path, 'bundle', points.FILE)}, "
                f"or --model one of its points (points/NAME)")
    if here("train_report.json") or here("config.json"):
        return (f"--model {path} is a trained run that is not converted: run python -m convert.to_tflite {path} "
                "first")
    return None


def choose_variant(manifest, name):
    ok = [n for n, v in manifest["variants"].items() if v.get("status") == "ok"]
    if name:
        return name
    for n in PREFERRED:
        if n in ok:
            return n
    raise UsageError("the manifest has no usable variant")


def load(args):
    folder, named = model_file_variant(args.model)
    if named and args.variant and args.variant != named:
        raise UsageError(f"--model {args.model} is the {named} file, not --variant {args.variant}")
    manifest = open_manifest(folder)
    variant = choose_variant(manifest, args.variant or named)
    path = mf.variant_path(manifest, variant)
    vocab = Vocab.load(mf.vocab_path(manifest))
    return manifest, variant, path, vocab


def knob_keyboard(args):
    """(Switcher over the bundle's points, vocab): `suggest --points --budget-ms`."""
    doc = points.load(args.points)
    measure = argparse.Namespace(**dict(vars(args), delegate="auto", steps=1000, warmup=50, active_watts=None,
                                        idle_seconds=energy.IDLE_SECONDS))  # bench's defaults, where not recorded
    vocab = Vocab.load(mf.vocab_path(doc["points"][0]["_manifest"]))
    check_top_k(args.top_k, len(vocab), vocab.never_suggested)
    words = Words(vocab, blocked_words(args) + doc["options"].get("blocked_words", []))  # the sweep's --block too
    history = open_history(args, learning_options(doc["points"][0]["_manifest"])[1])
    by_label = {points.label(p): p for p in doc["points"]}
    levels = [(label, p["test_perplexity"], point_figures(doc, p, measure)["keyboard_ms"]["p90"])
              for label, p in by_label.items()]
    opened = {}

    def open_level(label):
        p = by_label[label]
        if label not in opened:
            opened[label] = benchmark.load(mf.variant_path(p["_manifest"], p["variant"]), p["_manifest"]["states"],
                                           args.threads, "auto", args.api)[0]
        opened[label].reset()
        return Keyboard(opened[label], vocab, args.top_k, words, make_cache(args, history, vocab, p["_manifest"]))

    def said(event):
        if args.json:
            print(json.dumps(event), flush=True)
        elif event["event"] == "switch":
            print(f"switched {event['from']} -> {event['to']} after {event['after_tokens']} tokens: p90 "
                  f"{event['p90_ms']:.3f} ms, budget {event['budget_ms']} ms ({event['reason']}); the switch "
                  f"took {event['switch_ms']:.3f} ms", file=sys.stderr)
        else:
            print(f"warning: over budget at the fastest point, {event['level']}: p90 {event['p90_ms']:.3f} ms > "
                  f"{event['budget_ms']} ms after {event['after_tokens']} tokens ({event['windows_over']} windows "
                  "in a row); no point is faster", file=sys.stderr)
    for label, _ in ladder(levels):  # every level loaded ahead, so that a switch costs only the context
        open_level(label)
    knob = Switcher(levels, args.budget_ms, open_level, args.window, context=args.context, on_event=said)
    if knob.levels[knob.level][1] > args.budget_ms:
        print(f"warning: no point's p90 fits {args.budget_ms} ms; starting at the fastest, {knob.label} "
              f"({knob.levels[-1][1]:.3f} ms)", file=sys.stderr)
    return knob, vocab, history


def open_history(args, half_life):
    """The user's history from --history (None without it); an unreadable file is moved aside, with a warning."""
    if getattr(args, "no_learn", False) and not args.history:
        raise UsageError("--no-learn reads the user's history without writing it: give --history FILE too")
    if not args.history:
        return None
    return hist.load(args.history, half_life, warn=lambda line: print(line, file=sys.stderr))


def make_cache(args, history, vocab, manifest):
    """The history as the keyboard mixes it in, with the file's tuned lambda; None without a history."""
    if history is None:
        return None
    lam = learning_options(manifest)[0]
    return Cache(history, vocab, lam, blocked_words(args), learn=not getattr(args, "no_learn", False))


def save_history(args, history):
    if history is not None and history.pending and not args.no_learn:
        hist.save(history, args.history, warn=lambda line: print(line, file=sys.stderr))


def cmd_forget(args):
    if hist.forget(args.history):
        print(f"forgot {args.history}: the history file is deleted")
    else:
        print(f"no history at {args.history}: nothing to forget")
    return 0


def cmd_suggest(args):
    if (args.points is None) != (args.budget_ms is None):
        raise UsageError("--points and --budget-ms go together: the bundle's points and the step budget")
    if args.points:
        check_positive("--budget-ms", args.budget_ms)  # here, before every point is loaded and timed
        if args.window < 1:
            raise UsageError(f"--window must be at least 1, not {args.window}")
        if args.context < 0:
            raise UsageError(f"--context must not be negative, not {args.context}")
        keyboard, vocab, history = knob_keyboard(args)
        variant = None
    else:
        manifest, variant, path, vocab = load(args)
        check_top_k(args.top_k, len(vocab), vocab.never_suggested)
        history = open_history(args, learning_options(manifest)[1])
        keyboard = Keyboard(StepModel(path, manifest["states"], num_threads=args.threads, api=args.api), vocab,
                            args.top_k, blocked_words(args), make_cache(args, history, vocab, manifest))

    def show(tokens, oov):
        result = keyboard.shown
        if args.json:
            print(json.dumps(dict(variant=variant or keyboard.label, tokens=tokens, typing=keyboard.prefix,
                                  unknown_words=oov,
                                  suggestions=[dict(word=w, probability=round(p, 6)) for w, p in result],
                                  **(dict(knob=keyboard.summary()) if args.points else {}))))
        else:
            typing = f"completing {keyboard.prefix!r}: " if keyboard.prefix else ""
            more = f" and {len(oov) - OOV_LISTED} more" if len(oov) > OOV_LISTED else ""
            print(typing + ("  ".join(f"{w} ({p:.1%})" for w, p in result) or "(no word starts so)")
                  + (f"   [not in the vocabulary{', learned' if history is not None else ', read as <unk>'}: "
                     f"{', '.join(oov[:OOV_LISTED])}{more}]" if oov else ""))

    if args.text is not None:  # "" too: nothing typed yet, the words that start a sentence
        show(*type_text(keyboard, args.text))
        save_history(args, history)
        if args.points and not args.json:
            k = keyboard.summary()
            print(f"knob: {k['words']} words, {k['over_budget']} over {k['budget_ms']} ms (p90 {k['p90_ms']:.3f} ms "
                  f"end to end), {k['switches']} switches taking {k['switch_ms']:.3f} ms; now at {k['level']}",
                  file=sys.stderr)
        return 0
    print(f"{variant or keyboard.label} model; type words, Enter for suggestions (letters after the last space "
          "are the word being typed, and are completed); the state is kept as you type. Ctrl-D to quit.",
          file=sys.stderr)
    for line in sys.stdin:  # a new line ends the word left being typed on the last one
        show(*type_text(keyboard, (" " if keyboard.prefix else "") + line.rstrip("\n")))
        save_history(args, history)  # after every line: a crash loses at most one line's words
    return 0


def blocked_words(args):
    return read_block_list(args.block) if getattr(args, "block", None) else []


class Progress:
    """A one-line token count on stderr, shown on a terminal once a file has
    taken more than `after` seconds (short files print nothing)."""

    def __init__(self, stream=None, after=2.0, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.on = self.stream.isatty()
        self.after, self.clock = after, clock
        self.start = self.last = clock()
        self.shown = False

    def __call__(self, tokens):
        if not self.on:
            return
        now = self.clock()
        if now - self.start >= self.after and now - self.last >= 0.5:
            self.last, self.shown = now, True
            print(f"\r{tokens:,} tokens, {now - self.start:.0f} s", end="", file=self.stream, flush=True)

    def done(self):
        if self.shown:
            print(file=self.stream)


def cmd_eval(args):
    if os.path.isdir(args.file):
        raise UsageError(f"{args.file} is a directory; give a text file to evaluate (the model goes in --model)")
    if not os.path.isfile(args.file):
        raise UsageError(f"{args.file} does not exist")
    manifest, variant, path, vocab = load(args)
    score = KeyboardScore(Words(vocab, blocked_words(args)))
    fmt = detect_format(args.file, args.errors) if args.format == "auto" else args.format
    delegate = "none" if args.delegate == "none" else "auto"
    model, used, note = benchmark.load(path, manifest["states"], args.threads, delegate, args.api)
    counts = {}
    progress = Progress()
    t0 = time.perf_counter()
    ids = iter_ids(args.file, vocab, fmt, args.errors, counts, spellings=True)
    learning = args.learn or args.history
    try:
        if learning:
            lam, half_life, source = learning_options(manifest)
            history = open_history(args, half_life) or hist.History(half_life)
            cache = Cache(history, vocab, lam, blocked_words(args), learn=args.learn)
            r = evaluate_learning(model, ids, score.words, cache, progress)
        else:
            r = evaluate_ids(model, ids, vocab.never_suggested, progress, score)
    except ValueError as e:
        if isinstance(e, (TextError, hist.HistoryError)):
            raise
        raise UsageError(f"{args.file} holds no words") from None
    finally:
        progress.done()
    if learning:
        r.update(variant=variant, file=args.file, format=fmt, oov=counts["oov"], words=counts["words"],
                 sentences=counts["sentences"], delegate=used, seconds=round(time.perf_counter() - t0, 2),
                 learning={"lambda": lam, "half_life": half_life, "source": source, "learn": args.learn,
                           "history": args.history}, device=device.describe())
        print_learning(r, args, score.k)
        if note:  # no <unk> warning: this perplexity leaves <unk> out
            print(note, file=sys.stderr)
        return 0
    r.update(variant=variant, file=args.file, format=fmt, format_detected=args.format == "auto",
             oov=counts["oov"], words=counts["words"], sentences=counts["sentences"], delegate=used,
             seconds=round(time.perf_counter() - t0, 2), device=device.describe())
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        how = f"{fmt} format{' (detected)' if args.format == 'auto' else ''}"
        print(f"{variant}: perplexity {r['perplexity']:.3f}  R@3 {r['r_at_3']:.3f}  over {r['tokens']:,} "
              f"predicted tokens ({how}; {r['sentences']:,} sentences, {r['oov']:,} words outside the "
              f"vocabulary read as <unk>), {r['seconds']} s")
        print(f"keyboard ({score.k} words shown): next word R@1 {r['r_at_1']:.3f}  completion "
              f"recall after 1 letter {na(r['completion_recall_1'])}, after 2 {na(r['completion_recall_2'])}  "
              f"keystroke savings {na(r['ksr'])} over {r['keyboard_words']:,} words ({r['words_skipped']:,} "
              "skipped: <unk> without its spelling, or N)")
    return warn_oov(args, fmt, counts, vocab, note)


def warn_oov(args, fmt, counts, vocab, note):
    share = counts["oov"] / max(1, counts["words"])
    if share > OOV_WARNING:
        other = "raw" if fmt == "ptb" else "ptb"
        hint = f"; if the file is {other} text, give --format {other}" if args.format == "auto" else ""
        print(f"warning: {share:.0%} of the words are outside the {len(vocab):,}-word vocabulary and read as "
              f"<unk>, which makes the perplexity look better than the model is{hint}", file=sys.stderr)
    if note:
        print(note, file=sys.stderr)
    return 0


def print_learning(r, args, k):
    """eval --learn / --history: the keyboard with and without the user's history, side by side."""
    if args.json:
        print(json.dumps(r, indent=2))
        return
    a, b = r["without"], r["with"]
    how = "learning as it goes" if args.learn else "the history applied, nothing learned"
    start = f"from {args.history}" if args.history else "from an empty history"
    learning = r["learning"]
    lam, half_life, source = learning["lambda"], learning["half_life"] or "none", learning["source"]
    print(f"{r['variant']}: {r['file']} typed in order, {how}, {start} (lambda {lam}, half-life {half_life}: "
          f"{source}); {a['tokens_in_vocabulary']:,} in-vocabulary tokens, {r['oov']:,} words outside the "
          f"vocabulary, {r['seconds']} s")
    print(f"| {k} words shown | without | with |")
    print("|---|---|---|")
    rows = [("perplexity, in-vocabulary tokens", "perplexity_in_vocabulary", "{:.2f}"),
            ("next word R@1", "r_at_1", "{:.3f}"), ("next word R@3", "r_at_3", "{:.3f}"),
            ("completion recall, 1 letter", "completion_recall_1", "{:.3f}"),
            ("completion recall, 2 letters", "completion_recall_2", "{:.3f}"),
            ("keystroke savings (KSR)", "ksr", "{:.3f}"),
            ("repeated OOV words shown before typed in full", "oov_repeat_shown", "{:.3f}")]
    for label, key, fmt in rows:
        cells = ["n/a" if x[key] is None else fmt.format(x[key]) for x in (a, b)]
        print(f"| {label} | {cells[0]} | {cells[1]} |")


def na(x):
    return "n/a" if x is None else f"{x:.3f}"


def check_bench_options(args):
    if args.steps < 1 or args.warmup < 0:
        raise UsageError("--steps must be at least 1 and --warmup not negative")
    if args.idle_seconds < 0:
        raise UsageError("--idle-seconds must not be negative")


def cmd_bench(args):
    check_bench_options(args)
    folder, named = model_file_variant(args.model)
    manifest = open_manifest(folder)
    names = ([n for n, v in manifest["variants"].items() if v.get("status") == "ok"]
             if args.variant == "all" and not named else [choose_variant(manifest, named or args.variant)])
    rows = [measure(manifest, n, args, save=args.json) for n in names]
    print(f"threads {args.threads or 'default'}, {args.steps} steps after {args.warmup} warm-up; "
          f"{device.describe()['cpu']}")
    print("| variant | bytes | delegate | median ms | p90 ms | p99 ms | bare invoke ms | step/invoke | keyboard p90 ms "
          "| key p50 ms | key p90 ms | key/step | tokens/s | load s | model RSS MB | peak RSS MB | mJ/token |")
    print("|---" * 17 + "|")
    for r in rows:
        mj = "n/a" if r["energy_mj_per_token"] is None else \
            f"{r['energy_mj_per_token']:.4f}{' (estimate)' if r['energy_is_estimate'] else ''}"
        if r["energy_above_idle_mj_per_token"] is not None:
            mj += f" ({r['energy_above_idle_mj_per_token']:.4f} above idle {r['idle_watts']:.2f} W)"
        lat = r["latency_ms"]
        ovh = r["overhead"]
        print(f"| {r['variant']} | {r['bytes']:,} | {r['delegate']} | {lat['median']:.4f} | {lat['p90']:.4f} | "
              f"{lat['p99']:.4f} | {ovh['invoke_ms']['median']:.4f} | {ovh['step_over_invoke']:.2f} | "
              f"{r['keyboard_ms']['p90']:.4f} | {r['key_ms']['median']:.4f} | {r['key_ms']['p90']:.4f} | "
              f"{r['key_over_step']:.2f} | {r['tokens_per_second']:.0f} | {r['load_s']:.3f} | "
              f"{(r['model_rss_bytes'] or 0) / 2**20:.1f} | {r['peak_rss_bytes'] / 2**20:.0f} | {mj} |")
        if r["delegate_note"]:
            print(f"  {r['variant']}: {r['delegate_note']}")
    for source in sorted({r["energy_source"] for r in rows if r["energy_source"]}):
        print(f"energy ({source}): {energy.SCOPES[source]}")
    if args.json:
        print(f"results written to {bench_dir(manifest)}/")
    return 0


def pick_candidates(args):
    """[(label, manifest, variant, perplexity, figures())]: the files of --points
    (test perplexity) or of each --model (validation perplexity)."""
    if args.points:
        doc = points.load(args.points)
        return [(points.label(p), p["_manifest"], p["variant"], p["test_perplexity"],
                 (lambda p=p: point_figures(doc, p, args))) for p in doc["points"]]
    out = []
    for model_path in args.model_list or [DEFAULT_MODEL]:
        manifest = open_manifest(model_path)
        for name, v in manifest["variants"].items():
            if v.get("status") == "ok":
                label = f"{model_path}:{name}"
                out.append((label, manifest, name, v["perplexity"],
                            (lambda m=manifest, n=name, label=label: figures(m, n, label, args))))
    return out


def cmd_pick(args):
    if args.max_latency_ms is None and args.max_bytes is None and args.max_energy_mj is None:
        raise UsageError("give at least one of --max-latency-ms, --max-bytes, --max-energy-mj")
    for option, value in (("--max-latency-ms", args.max_latency_ms), ("--max-bytes", args.max_bytes),
                          ("--max-energy-mj", args.max_energy_mj)):
        if value is not None:
            check_positive(option, value)
    if args.points and args.model_list:
        raise UsageError("give --points or --model, not both")
    check_bench_options(args)
    candidates, reasons = within_budget(pick_candidates(args), args.max_latency_ms, args.max_bytes,
                                        args.max_energy_mj)
    if not candidates:
        if args.json:
            print(json.dumps(dict(picked=None, rejected=reasons), indent=2))
        print("no variant meets the budget:", file=sys.stderr)
        for r in reasons:
            print(f"  {r}", file=sys.stderr)
        return 1
    ppl, label, v, measured, manifest = min(candidates, key=lambda c: c[0])
    if args.json:
        print(json.dumps(dict(picked=label, model=manifest["_dir"], file=v["file"], sha256=v["sha256"],
                              perplexity=ppl, bytes=v["bytes"], latency_ms=measured and measured["latency_ms"],
                              keyboard_ms=measured and measured["keyboard_ms"],
                              energy_mj_per_token=measured and measured.get("energy_mj_per_token"),
                              within_budget=len(candidates), rejected=reasons), indent=2))
        return 0
    why = [f"perplexity {ppl:.3f} (best of {len(candidates)} within budget)", f"{v['bytes']:,} bytes"]
    if measured:
        why.append(f"keyboard p90 {measured['keyboard_ms']['p90']:.3f} ms")
        if measured.get("energy_mj_per_token") is not None:
            why.append(f"{measured['energy_mj_per_token']:.4f} mJ/token")
    print(f"{label}: " + ", ".join(why))
    return 0


def parser():
    p = argparse.ArgumentParser(prog="predict.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, multi=False):
        if multi:
            sp.add_argument("--model", dest="model_list", action="append",
                            help=f"a tflite/ folder, manifest or run directory; repeatable (default {DEFAULT_MODEL})")
        else:
            sp.add_argument("--model", default=DEFAULT_MODEL,
                            help="a tflite/ folder, its manifest.json, one of its .tflite files (that variant), "
                                 "or a run directory (default %(default)s)")
            sp.add_argument("--variant", default=None, metavar="{" + ",".join(VARIANTS) + "}",
                            help="which file (bench: or all; default: the first of dynamic, int8, float16, float32 that converted)")
        sp.add_argument("--threads", type=int, default=None, help="interpreter threads (default: LiteRT's)")
        sp.add_argument("--api", choices=APIS, default="interpreter",
                        help="LiteRT's Interpreter or its CompiledModel API (default %(default)s)")
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("--verbose", action="store_true", help="show LiteRT's INFO lines")

    def block(sp):
        sp.add_argument("--block", metavar="FILE", help="words never to show, one a line")

    def history(sp, learns):
        sp.add_argument("--history", metavar="FILE",
                        help="the user's history, on this device only: " + (
                            "its words are mixed into the suggestions and each word typed is learned "
                            "(the file is made if missing, mode 0600)" if learns else
                            "the history to start from (read only: eval never writes it)"))

    s = sub.add_parser("suggest", help="next-word suggestions, and completions of a word being typed")
    block(s)
    common(s)
    history(s, True)
    s.add_argument("--no-learn", action="store_true",
                   help="incognito: use --history but learn nothing and write nothing (password fields)")
    s.add_argument("--text", help="the text typed so far; letters after the last space are the word being typed, "
                                  "and are completed; \"\" for nothing typed yet (omit for an interactive prompt)")
    s.add_argument("--top-k", type=int, default=3, help="how many suggestions (default %(default)s)")
    s.add_argument("--points", help="a bundle's operating_points.json: switch between its frontier points")
    s.add_argument("--budget-ms", type=float,
                   help="with --points: the latency to stay within, ms: the p90 of a word's suggestions "
                        "(the suggest path end to end, as bench's keyboard p90)")
    s.add_argument("--window", type=int, default=50, help="with --points: steps between decisions (default %(default)s)")
    s.add_argument("--context", type=int, default=20,
                   help="with --points: last tokens fed to the model switched to (default %(default)s)")
    s.set_defaults(func=cmd_suggest)

    e = sub.add_parser("eval", help="perplexity, R@1/R@3 and keyboard metrics of a text file")
    common(e)
    block(e)
    e.add_argument("file", help="the text: PTB format (one sentence a line) or raw prose; .gz is read directly")
    history(e, False)
    e.add_argument("--learn", action="store_true",
                   help="type the text in order, learning each word as a keyboard would; report the keyboard "
                        "with and without the history, side by side")
    e.add_argument("--format", choices=FORMATS, default="auto",
                   help="ptb, raw (tokenized as in training), or auto: raw when the text has capitals and "
                        "punctuation and no <unk> (default %(default)s)")
    e.add_argument("--errors", choices=("strict", "replace"), default="strict",
                   help="bytes that are not UTF-8: stop with an error naming the line, or replace them "
                        "(default %(default)s)")
    e.add_argument("--delegate", choices=("auto", "none"), default="auto",
                   help="auto: XNNPACK, or none where it fails; none: no delegate (default %(default)s)")
    e.set_defaults(func=cmd_eval)

    f = sub.add_parser("forget", help="delete the user's history file")
    f.add_argument("--history", metavar="FILE", required=True, help="the history file to delete")
    f.set_defaults(func=cmd_forget)

    b = sub.add_parser("bench", help="latency, memory and energy per step")
    common(b)
    p_pick = sub.add_parser("pick", help="the best variant within a budget")
    common(p_pick, multi=True)
    p_pick.add_argument("--points", help="an operating_points.json (a sweep's or its bundle's) instead of --model")
    p_pick.add_argument("--max-latency-ms", type=float,
                        help="budget, ms: the p90 of a word's suggestions on this device (the suggest path end "
                             "to end, as bench's keyboard p90; the same figure suggest --budget-ms uses)")
    p_pick.add_argument("--max-bytes", type=int, help="budget: .tflite file size, bytes")
    p_pick.add_argument("--max-energy-mj", type=float, help="budget: energy per token, mJ (a sensor, or --active-watts)")
    for sp in (b, p_pick):
        sp.add_argument("--steps", type=int, default=1000, help="timed steps (default %(default)s)")
        sp.add_argument("--warmup", type=int, default=50, help="untimed steps first (default %(default)s)")
        sp.add_argument("--delegate", choices=("auto", "xnnpack", "none"), default="auto",
                        help="auto: XNNPACK, or none where XNNPACK fails (default %(default)s)")
        sp.add_argument("--active-watts", type=float, default=None,
                        help="with no energy sensor: estimate energy as this power x CPU time")
        sp.add_argument("--idle-seconds", type=float, default=energy.IDLE_SECONDS,
                        help="with a sensor: seconds of idle power measured first, to report energy above "
                             "idle too (default %(default)s)")
    b.set_defaults(func=cmd_bench)
    p_pick.set_defaults(func=cmd_pick)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    quiet.configure(getattr(args, "verbose", False))
    try:
        if getattr(args, "threads", None) is not None and args.threads < 1:
            raise UsageError(f"--threads must be at least 1, not {args.threads}")
        return args.func(args)
    except (UsageError, TextError, mf.ManifestError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
