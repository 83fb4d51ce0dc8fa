"""The n-gram model a keyboard would otherwise keep: KenLM's interpolated
modified Kneser-Ney, orders 3 and 5, at several sizes by count pruning,
measured as the knob's points are.

    python benchmarks/ngram.py build                     # KenLM's estimator from the kenlm sdist -> runs/kenlm/
    python benchmarks/ngram.py run embedded|ptb [--sweep DIR] [--model RUN/tflite ...] [--keyboard-tokens N]

`build` needs CMake, a C++ compiler and Boost (Debian: libboost-program-options-dev,
libboost-system-dev, libboost-thread-dev, libboost-test-dev; zlib); it
downloads the kenlm 0.3.0 source distribution with pip (the whole KenLM tree,
lmplz included), builds `lmplz` and `build_binary` with CMake into
runs/kenlm/bin, and the `ngram` extra installs the `kenlm` Python module
that queries the models. Nothing of it reaches the device's install.

`run` trains each model on the training split with the neural models'
vocabulary (the same rule: the most frequent 10,000 tokens, `<unk>` and
`<eos>` included; an out-of-vocabulary word becomes `<unk>`, which KenLM
sees as an ordinary word, as the neural model does), then on the test split:
- perplexity over every sentence, its end (`</s>`) predicted, each sentence
  from `<s>` (an n-gram keeps no context across sentences);
- R@1, R@3, completion recall after 1 and 2 letters and the keystroke
  savings rate, with the device runtime's own definitions and code
  (edge_runtime/keyboard_metrics.py), over the first `--keyboard-tokens`
  test tokens: each position scores every vocabulary word with KenLM
  (`BaseScore`) into a log-probability vector. With `--sweep DIR` (its
  frontier files) or `--model RUN/tflite` (every converted file), neural
  files are scored on the same tokens in the same way (the device
  runtime's step), so the two series compare like with like, and their
  test perplexity is the device runtime's over the whole test split (one
  stream, the state carried across sentences, as everywhere in edgelm);
- bytes of the binary model (KenLM's trie, 8-bit quantized probabilities
  and backoffs) and the ARPA text's;
- latency on this machine, in one interleaved pass with the sweep's frontier
  files (their step and their keyboard's word): a token's score
  (`BaseScore` from a state, what perplexity needs), and a word's top-3
  suggestions, computed by scoring every vocabulary word from Python and
  taking the best three (KenLM has no index of a context's successors; a
  keyboard's own n-gram store would, so this is an upper bound for the
  n-gram's suggestion cost).
Writes benchmarks/results/ngram_NAME.json and ngram_NAME_ksr_bytes.png (KSR
against bytes, the n-grams as series, the neural files as points), and
prints a table.
"""
import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_runtime.keyboard import Words  # noqa: E402
from edge_runtime.keyboard_metrics import KeyboardScore  # noqa: E402
from edge_runtime.metrics import is_hit  # noqa: E402
from edge_runtime.runner import evaluate_ids  # noqa: E402
from edge_runtime.text import EOS, UNK  # noqa: E402
from edge_runtime.vocab import Vocab  # noqa: E402

KENLM = os.path.join(ROOT, "runs", "kenlm")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DATA = {"embedded": None, "ptb": os.path.join(ROOT, "runs", "ptb", "data")}
VOCAB_SIZE = 10000
UNK_WORD = "UNKNOWN_WORD"  # KenLM reserves <unk>; the neural models' <unk> is a word like any other
# (name, order, --prune thresholds): counts at or below a threshold are dropped, per order
MODELS = [("kn3", 3, None), ("kn3-prune", 3, "0 1 1"), ("kn5", 5, None), ("kn5-prune1", 5, "0 0 1 1 1"),
          ("kn5-prune2", 5, "0 1 2 2 2")]
LN10 = math.log(10)


def build():
    os.makedirs(KENLM, exist_ok=True)
    src = os.path.join(KENLM, "src")
    if not glob.glob(os.path.join(KENLM, "kenlm-*.tar.gz")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "kenlm",
                        "kenlm==0.3.0", "-d", KENLM], check=True)
    if not os.path.isdir(src):
        with tarfile.open(glob.glob(os.path.join(KENLM, "kenlm-*.tar.gz"))[0]) as t:
            t.extractall(os.path.join(KENLM, "tmp"), filter="data")
        top = glob.glob(os.path.join(KENLM, "tmp", "kenlm-*"))[0]
        shutil.move(top, src)
        shutil.rmtree(os.path.join(KENLM, "tmp"))
    work = os.path.join(KENLM, "build")
    os.makedirs(work, exist_ok=True)
    subprocess.run(["cmake", src, "-DCMAKE_BUILD_TYPE=Release"], cwd=work, check=True)
    subprocess.run(["make", f"-j{os.cpu_count() or 1}", "lmplz", "build_binary"], cwd=work, check=True)
    os.makedirs(os.path.join(KENLM, "bin"), exist_ok=True)
    for tool in ("lmplz", "build_binary"):
        shutil.copy2(os.path.join(work, "bin", tool), os.path.join(KENLM, "bin", tool))
    print(f"built {KENLM}/bin/lmplz and build_binary")


def corpus(name):
    from training.data import load_corpus
    splits = load_corpus(DATA[name])
    vocab = Vocab.build(splits["train"], VOCAB_SIZE)  # the rule training uses, so the same vocabulary
    return splits, vocab


def kenlm_line(sentence, vocab):
    return " ".join(UNK_WORD if (w == UNK or w not in vocab.index) else w for w in sentence)


def train(name, order, prune, splits, vocab, out):
    text = os.path.join(out, "train.txt")
    if not os.path.exists(text):
        with open(text + ".tmp", "w", encoding="utf-8") as f:
            for s in splits["train"]:
                f.write(kenlm_line(s, vocab) + "\n")
        os.replace(text + ".tmp", text)
    arpa, binary = os.path.join(out, f"{name}.arpa"), os.path.join(out, f"{name}.binary")
    if not os.path.exists(binary):
        cmd = [os.path.join(KENLM, "bin", "lmplz"), "-o", str(order), "-S", "20%", "-T", out, "--text", text,
               "--arpa", arpa + ".tmp", "--discount_fallback"]
        if prune:
            cmd += ["--prune", *prune.split()]
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        os.replace(arpa + ".tmp", arpa)
        subprocess.run([os.path.join(KENLM, "bin", "build_binary"), "-q", "8", "-b", "8", "trie", arpa,
                        binary + ".tmp"], check=True, stdout=subprocess.DEVNULL)
        os.replace(binary + ".tmp", binary)
    return arpa, binary


def perplexity(model, sentences, vocab):
    total, count = 0.0, 0
    for s in sentences:
        scores = list(model.full_scores(kenlm_line(s, vocab), bos=True, eos=True))
        total += sum(p for p, _, _ in scores)
        count += len(scores)
    return 10 ** (-total / count), count


def token_stream(sentences, vocab, limit):
    """The test split's ids as the device reads them: <eos> first (the context), <eos> after each sentence."""
    out = [vocab.eos_id]
    for s in sentences:
        for w in s + [EOS]:
            out.append(vocab.index.get(w, vocab.unk_id))
            if len(out) >= limit:
                return out
    return out


class NgramScorer:
    """Log-probabilities (natural log) of every vocabulary word after a context, by KenLM."""

    def __init__(self, model, vocab):
        import kenlm
        self.kenlm, self.model, self.vocab = kenlm, model, vocab
        self.words = [("</s>" if t == EOS else UNK_WORD if t == UNK else t) for t in vocab.tokens]

    def start(self):
        state = self.kenlm.State()
        self.model.BeginSentenceWrite(state)
        return state

    def advance(self, state, token_id):
        if token_id == self.vocab.eos_id:
            return self.start()
        out = self.kenlm.State()
        self.model.BaseScore(state, self.words[token_id], out)
        return out

    def logp(self, state):
        scratch = self.kenlm.State()
        score = self.model.BaseScore
        return np.array([score(state, w, scratch) for w in self.words], dtype=np.float64) * LN10


def keyboard_metrics(logp_of, stream, vocab):
    """R@1, R@3 and the keyboard metrics over the ids `stream`, `logp_of(i)` the vector after stream[: i + 1]."""
    score = KeyboardScore(Words(vocab))
    hits1 = hits3 = n = 0
    for i in range(len(stream) - 1):
        logp = logp_of(i)
        target = stream[i + 1]
        hits1 += is_hit(logp, target, vocab.never_suggested, 1)
        hits3 += is_hit(logp, target, vocab.never_suggested, 3)
        score.add(logp, target)
        n += 1
    r = score.result()
    return dict(r_at_1=round(hits1 / n, 4), r_at_3=round(hits3 / n, 4), positions=n, **{
        k: r[k] for k in ("completion_recall_1", "completion_recall_2", "ksr", "keyboard_words", "words_skipped")})


def ngram_keyboard(model, vocab, stream):
    scorer = NgramScorer(model, vocab)
    states = [scorer.start()]
    for token in stream[1:-1]:
        states.append(scorer.advance(states[-1], token))
    return keyboard_metrics(lambda i: scorer.logp(states[i]), stream, vocab)


def timing_pass(ngrams, neural, vocab, stream, steps=300):
    """One interleaved pass (`bench.round_robin`): per n-gram, a token's score from
    a state and a word's top-3 (every vocabulary word scored, the best three
    kept); per neural file, its step and its keyboard's word (`Keyboard.feed`).
    -> {(label, what): median ms}."""
    from edge_runtime.bench import round_robin
    from edge_runtime.keyboard import Keyboard
    tokens = stream[1:steps + 1]
    calls, words_ = {}, Words(vocab)
    for name, model in ngrams.items():
        scorer = NgramScorer(model, vocab)
        states = [scorer.start()]
        for t in tokens:
            states.append(scorer.advance(states[-1], t))
        calls[(name, "score")] = (lambda sc, st: lambda i: sc.advance(st[i], tokens[i]))(scorer, states)
        calls[(name, "top3")] = (lambda sc, st: lambda i: words_.best(sc.logp(st[i]), "", 3))(scorer, states)
    for label, model in neural.items():
        keyboard = Keyboard(model, vocab, 3)
        calls[(label, "step")] = (lambda m: lambda i: m.step(tokens[i]))(model)
        calls[(label, "keyboard")] = (lambda k: lambda i: k.feed(tokens[i]))(keyboard)
    times = round_robin(calls, len(tokens), block=25)
    return {key: round(float(np.median(v)) * 1e3, 5) for key, v in times.items()}


def neural_files(sweep, models, vocab):
    """{label: (StepModel, bytes, test perplexity)}: every frontier file of a sweep's
    bundle, and every converted file of each `models` folder (a run's tflite/)."""
    from edge_runtime import manifest as mf
    from edge_runtime import points
    from edge_runtime.runner import StepModel
    found = []
    if sweep:
        doc = points.load(os.path.join(sweep, "bundle", "operating_points.json"))
        found += [(points.label(p), p["_manifest"], p["variant"], p["test_perplexity"]) for p in doc["points"]]
    for folder in models:
        m = mf.load(folder)
        run = os.path.basename(os.path.dirname(os.path.abspath(folder.rstrip("/"))))  # RUN/tflite -> RUN
        found += [(f"{run}:{n}", m, n, v.get("perplexity")) for n, v in m["variants"].items()
                  if v.get("status") == "ok"]
    out = {}
    for label, manifest, variant, ppl in found:
        if Vocab.load(mf.vocab_path(manifest)).tokens != vocab.tokens:
            raise SystemExit(f"error: {label}'s vocabulary is not the one built from the training split")
        out[label] = (StepModel(mf.variant_path(manifest, variant), manifest["states"], num_threads=1),
                      manifest["variants"][variant]["bytes"], ppl)
    return out


def neural_keyboard(model, vocab, stream):
    """The n-grams' metrics, on the same tokens, for a neural file (the device runtime's step)."""
    model.reset()
    vectors = [np.array(model.step(token), dtype=np.float32) for token in stream[:-1]]
    return keyboard_metrics(lambda i: vectors[i], stream, vocab)


def run(name, sweep, models, keyboard_tokens):
    import kenlm
    splits, vocab = corpus(name)
    out = os.path.join(ROOT, "runs", "ngram", name)
    os.makedirs(out, exist_ok=True)
    stream = token_stream(splits["test"], vocab, keyboard_tokens + 1)
    rows, ngrams = [], {}
    for model_name, order, prune in MODELS:
        arpa, binary = train(model_name, order, prune, splits, vocab, out)
        model = ngrams[model_name] = kenlm.Model(binary)
        ppl, count = perplexity(model, splits["test"], vocab)
        row = dict(model=model_name, order=order, prune=prune, bytes=os.path.getsize(binary),
                   arpa_bytes=os.path.getsize(arpa), test_perplexity=round(ppl, 2), test_tokens=count)
        row.update(ngram_keyboard(model, vocab, stream))
        print(json.dumps(row), flush=True)
        rows.append(row)
    files = neural_files(sweep, models, vocab)
    neural = []
    test_ids = token_stream(splits["test"], vocab, float("inf"))
    for label, (model, size, _) in files.items():
        ppl = evaluate_ids(model, test_ids, vocab.never_suggested)["perplexity"]  # the device's definition
        neural.append(dict(point=label, bytes=size, test_perplexity=round(ppl, 2),
                           **neural_keyboard(model, vocab, stream)))
        print(json.dumps(neural[-1]), flush=True)
    timed = timing_pass(ngrams, {label: m for label, (m, _, _) in files.items()}, vocab, stream)
    for r in rows:
        r.update(score_ms=timed[(r["model"], "score")], top3_ms=timed[(r["model"], "top3")])
    for r in neural:
        r.update(step_ms=timed[(r["point"], "step")], keyboard_ms=timed[(r["point"], "keyboard")])
    from edge_runtime.device import describe
    doc = dict(corpus=name, vocab_size=len(vocab), keyboard_tokens=keyboard_tokens, models=rows, neural=neural,
               sweep=sweep, neural_models=models, device=describe(),
               timing="one interleaved pass, 300 calls each, 1 thread; medians")
    path = os.path.join(RESULTS, f"ngram_{name}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    plot(doc, os.path.join(RESULTS, f"ngram_{name}_ksr_bytes.png"))
    print(table(doc))
    print(f"written {os.path.relpath(path, ROOT)}")


def plot(doc, path):
    """KSR against bytes: the n-grams as a series, the neural files as points (the `plot` extra)."""
    from knob.plots import plt, save
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for order, marker in ((3, "s"), (5, "D")):
        rows = sorted((r for r in doc["models"] if r["order"] == order), key=lambda r: r["bytes"])
        ax.plot([r["bytes"] for r in rows], [r["ksr"] for r in rows], ls="--", marker=marker, color=f"C{order}",
                label=f"KenLM KN{order} (count-pruned to full)")
    groups = {}  # one series a sweep method (or a run), its files by size: int8 filled, dynamic hollow
    for r in doc.get("neural", []):
        name, variant = r["point"].rsplit(":", 1)
        base, _, share = name.rpartition("-")
        groups.setdefault(base if share.isdigit() else name, []).append((r, variant))
    for i, (group, files) in enumerate(sorted(groups.items())):
        color = ("C0", "C2", "C4", "C6", "C9", "C1")[i % 6]  # not the n-grams C3, C5
        for variant in ("int8", "dynamic"):
            mine = [r for r, v in files if v == variant]
            if mine:
                ax.scatter([r["bytes"] for r in mine], [r["ksr"] for r in mine], zorder=3, s=28,
                           marker="o", color=color if variant == "int8" else "none", edgecolors=color,
                           label=f"{group} {variant} (edgelm, same tokens)")
    ax.set(xscale="log", xlabel="model bytes", ylabel="keystroke savings rate (3 words shown)",
           title=f"{doc['corpus']}: KSR against bytes, first {doc['keyboard_tokens']:,} test tokens")
    save(fig, ax, path)


def table(doc):
    lines = ["| model | bytes | test ppl | R@1 | R@3 | C1 | C2 | KSR | a token, ms | a word's top 3, ms |",
             "|---" * 10 + "|"]
    for r in doc["models"]:
        lines.append(f"| {r['model']} | {r['bytes']:,} | {r['test_perplexity']:.2f} | {r['r_at_1']:.3f} | "
                     f"{r['r_at_3']:.3f} | {r['completion_recall_1']:.3f} | {r['completion_recall_2']:.3f} | "
                     f"{r['ksr']:.3f} | {r['score_ms']:.4f} | {r['top3_ms']:.3f} |")
    for r in doc.get("neural", []):
        lines.append(f"| {r['point']} | {r['bytes']:,} | {r['test_perplexity']:.2f} | {r['r_at_1']:.3f} | "
                     f"{r['r_at_3']:.3f} | {r['completion_recall_1']:.3f} | {r['completion_recall_2']:.3f} | "
                     f"{r['ksr']:.3f} | {r['step_ms']:.4f} (step) | {r['keyboard_ms']:.3f} (keyboard) |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build KenLM's lmplz and build_binary into runs/kenlm/bin")
    r = sub.add_parser("run", help="train and measure the n-grams of a corpus")
    r.add_argument("name", choices=sorted(DATA))
    r.add_argument("--sweep", help="a sweep folder whose frontier files are scored on the same tokens")
    r.add_argument("--model", action="append", default=[],
                   help="a converted model's tflite/ folder whose files are scored on the same tokens (repeatable)")
    r.add_argument("--keyboard-tokens", type=int, default=3000,
                   help="test tokens the keyboard metrics are computed on (default %(default)s)")
    a = p.parse_args(argv)
    if a.command == "build":
        build()
    else:
        if not os.path.exists(os.path.join(KENLM, "bin", "lmplz")):
            sys.exit("error: no KenLM estimator: run python benchmarks/ngram.py build first")
        if a.name == "ptb" and not os.path.isdir(DATA["ptb"]):
            sys.exit("error: no PTB data: run make ptb first")
        run(a.name, a.sweep, a.model, a.keyboard_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
