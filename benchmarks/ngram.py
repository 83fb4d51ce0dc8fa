"""The n-gram model a keyboard would otherwise keep: KenLM's interpolated
modified Kneser-Ney, orders 3 and 5, at several sizes by count pruning,
measured as the knob's points are.

    python benchmarks/ngram.py build                     # KenLM's estimator from the kenlm sdist -> runs/kenlm/
    python benchmarks/ngram.py run embedded|ptb [--sweep DIR] [--model RUN/tflite ...] [--versus A,B ...]
                                                [--keyboard-tokens N] [--tag T] [--learn]
    python benchmarks/ngram.py show embedded|ptb         # the tables and plots of results/ngram_NAME.json
                                 [--tag T] [--teacher RUN:VARIANT]  # and what each student won back

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
  (edge_runtime/keyboard_metrics.py), over the whole test split (or its
  first `--keyboard-tokens`, for a quick look): each position's
  log-probability vector over the vocabulary comes from the ARPA file's
  successors of the context's suffixes and one backoff weight for the rest
  (`NgramScorer`, checked against KenLM's `BaseScore` for every word). With
  `--sweep DIR` (its frontier files) or `--model RUN/tflite` (every
  converted file; named RUN:VARIANT, or SWEEP/RUN:VARIANT where two runs
  share a name), neural files are scored on the same tokens in the same
  way (the device runtime's step), so the two series compare like with
  like, and their test perplexity is the device runtime's over the whole
  test split (one stream, the state carried across sentences, as everywhere
  in edgelm);
- for each neural file, against the n-gram nearest in bytes and against the
  best n-gram by R@3: the difference in R@1, R@3, completion recall and KSR
  with a 95% interval from a paired bootstrap over test sentences
  (knob/bootstrap.py); with `--versus A,B`, neural file B against A
  in the same way (a distilled student against its control);
- with `--learn`, every model (n-gram and neural) once more with the user's
  history mixed into its distribution (edge_runtime/cache.py, as the
  keyboard does): the test split typed in order by one user, the history
  learning from empty; lambda and half-life tuned for each model by the
  converter's own `cache.tune` on the validation split. Each model's gain
  with the history, the comparisons above with the history on both sides,
  and how far the history moved each neural file's lead over the same
  n-gram (`knob.bootstrap.change`) get the same paired intervals;
- bytes as a device ships them: KenLM's binary (trie, 8-bit quantized
  probabilities and backoffs; it holds its vocabulary), the neural .tflite
  with its vocabulary file;
- latency on this machine, in one interleaved pass with the neural files
  (their step and their keyboard's word): a token's score (`BaseScore` from
  a state, what perplexity needs), and a word's top-3 suggestions from the
  successor scores.
Scores are kept per model under runs/ngram/NAME/scores/, so a run cut off,
or run again with one more neural file, scores nothing twice.
Writes benchmarks/results/ngram_NAME.json and ngram_NAME_{ksr,r_at_3}_bytes.png
(against megabytes, the n-grams as series, the neural files as points, 95%
intervals as bars; the neural files no smaller one beats joined and labelled, the
others grey), and prints the tables; `show NAME`
prints them and draws the plots again from the JSON.
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

from edge_runtime.cache import Cache, tune  # noqa: E402
from edge_runtime.history import History  # noqa: E402
from edge_runtime.keyboard import Words  # noqa: E402
from edge_runtime.keyboard_metrics import KeyboardScore, learning_scores  # noqa: E402
from edge_runtime.pareto import frontier  # noqa: E402
from edge_runtime.runner import evaluate_ids  # noqa: E402
from edge_runtime.text import EOS, UNK  # noqa: E402
from edge_runtime.vocab import Vocab  # noqa: E402
from knob.bootstrap import REPLICATES  # noqa: E402

KENLM = os.path.join(ROOT, "runs", "kenlm")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DATA = {"embedded": None, "ptb": os.path.join(ROOT, "runs", "ptb", "data")}
VOCAB_SIZE = 10000
UNK_WORD = "UNKNOWN_WORD"  # KenLM reserves <unk>; the neural models' <unk> is a word like any other
# (name, order, --prune thresholds): counts at or below a threshold are dropped, per order
MODELS = [("kn3", 3, None), ("kn3-prune", 3, "0 1 1"), ("kn5", 5, None), ("kn5-prune1", 5, "0 0 1 1 1"),
          ("kn5-prune2", 5, "0 1 2 2 2")]
LN10 = math.log(10)
LEARNED = "+learning"  # a model's key, scored with the user's history mixed in (--learn)


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


def read_successors(arpa, index):
    """{context (a tuple of words): vocabulary ids of the words that follow it in an n-gram of the ARPA file}."""
    found = {}
    with open(arpa, encoding="utf-8") as f:
        order = 0
        for line in f:
            if line.startswith("\\"):
                order = int(line[1]) if line[1].isdigit() else 0
                continue
            if order < 2 or not line.strip():
                continue
            words = line.rstrip("\n").split("\t")[1].split(" ")
            found.setdefault(tuple(words[:-1]), []).append(index[words[-1]])
    return {c: np.array(ids, np.int64) for c, ids in found.items()}


class NgramScorer:
    """Log-probabilities (natural log) of every vocabulary word after a context, by KenLM.

    A word that follows no suffix of the context in any n-gram scores the same
    as every other such word, up to its unigram: the context's backoffs plus
    its unigram log-probability. So a position asks KenLM only for the words
    that follow a suffix of the context (read from the ARPA file) and for one
    other word (the backoffs' sum); `check` compares that with asking KenLM
    for every word."""

    def __init__(self, model, vocab, arpa):
        import kenlm
        self.kenlm, self.model, self.vocab = kenlm, model, vocab
        self.words = [("</s>" if t == EOS else UNK_WORD if t == UNK else t) for t in vocab.tokens]
        index = {w: i for i, w in enumerate(self.words)}
        self.successors = read_successors(arpa, index)
        null, scratch = kenlm.State(), kenlm.State()
        model.NullContextWrite(null)
        self.unigram = np.array([model.BaseScore(null, w, scratch) for w in self.words])

    def start(self):
        state = self.kenlm.State()
        self.model.BeginSentenceWrite(state)
        return state, ("<s>",)

    def advance(self, at, token_id):
        state, context = at
        if token_id == self.vocab.eos_id:
            return self.start()
        out = self.kenlm.State()
        self.model.BaseScore(state, self.words[token_id], out)
        return out, (context + (self.words[token_id],))[1 - self.model.order:]

    def logp(self, at):
        state, context = at
        scratch, score = self.kenlm.State(), self.model.BaseScore
        found = [self.successors.get(context[-j:]) for j in range(1, len(context) + 1)]
        ids = np.unique(np.concatenate([f for f in found if f is not None] or [np.zeros(0, np.int64)]))
        taken = np.zeros(len(self.words), bool)
        taken[ids] = True
        other = int(np.argmin(taken))  # a word that follows no suffix: the backoffs' sum
        out = self.unigram + (score(state, self.words[other], scratch) - self.unigram[other])
        out[ids] = [score(state, self.words[i], scratch) for i in ids]
        return out * LN10

    def logp_every_word(self, at):
        scratch = self.kenlm.State()
        return np.array([self.model.BaseScore(at[0], w, scratch) for w in self.words]) * LN10

    def check(self, stream, positions=200):
        """The largest difference between `logp` and KenLM asked for every word, over the first positions."""
        at, worst = self.start(), 0.0
        for token in stream[1:positions + 1]:
            worst = max(worst, float(np.abs(self.logp(at) - self.logp_every_word(at)).max()))
            at = self.advance(at, token)
        return worst


def keyboard_score(logp_of, stream, vocab):
    """The KeyboardScore over the ids `stream`, `logp_of(i)` the vector after stream[: i + 1], called in order."""
    score = KeyboardScore(Words(vocab))
    for i in range(len(stream) - 1):
        score.add(logp_of(i), stream[i + 1])
    return score


class NgramSteps:
    """An n-gram as the device runtime's models are driven: `reset()`, then `step(id)` -> the
    log-probabilities of the next word (so the cache's tuning and pass take it as they take a file)."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.reset()

    def reset(self):
        self.at = self.scorer.start()

    def step(self, token_id):
        self.at = self.scorer.advance(self.at, int(token_id))
        return self.scorer.logp(self.at)


def neural_keyboard(model, vocab, stream):
    """The n-grams' metrics, on the same tokens, for a neural file (the device runtime's step, its
    state carried across sentences as on the device) or an n-gram (`NgramSteps`)."""
    model.reset()
    return keyboard_score(lambda i: np.asarray(model.step(stream[i]), np.float32), stream, vocab)


def learned_keyboard(model, vocab, stream, lam, half_life):
    """The same metrics with the user's history mixed in (`--learn`): the test split typed in order
    by one user, the history learning every word from empty, as `predict.py eval --learn` does."""
    cache = Cache(History(half_life), vocab, lam)
    scores, _, _ = learning_scores(model, stream, Words(vocab), cache, without=False)
    return scores["with"]


def tuned(model, valid, vocab):
    """The cache's lambda and half-life for `model`, by the converter's own tuning (`cache.tune`) on
    the validation split's first tokens typed in order."""
    r = tune(model, valid, vocab)
    return dict(**{"lambda": r["lambda"]}, half_life=r["half_life"], tuned_tokens=r["tokens"],
                valid_perplexity_without=r["perplexity_without"], valid_perplexity_with=r["perplexity_with"])


def scored(cache, key, make):
    """(metrics, per-sentence counts) of one model on the stream: kept in `cache` under `key`,
    so a run cut off, or run again with another neural file, scores nothing twice."""
    path = os.path.join(cache, f"{key}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return json.loads(str(z["metrics"])), z["counts"]
    score = make()
    r = score.result()
    metrics = dict(r_at_1=round(r["r_at_1"], 4), r_at_3=round(r["r_at_3"], 4), positions=score.positions,
                   **{k: r[k] for k in ("completion_recall_1", "completion_recall_2", "ksr", "keyboard_words",
                                        "words_skipped")})
    counts = score.sentences()
    os.makedirs(cache, exist_ok=True)
    np.savez(path + ".tmp.npz", metrics=json.dumps(metrics), counts=counts)
    os.replace(path + ".tmp.npz", path)
    return metrics, counts


def timing_pass(ngrams, neural, vocab, stream, steps=300):
    """One interleaved pass (`bench.round_robin`): per n-gram, a token's score from
    a state and a word's top-3 (`NgramScorer.logp`, the best three kept); per
    neural file, its step and its keyboard's word (`Keyboard.feed`).
    -> {(label, what): median ms}."""
    from edge_runtime.bench import round_robin
    from edge_runtime.keyboard import Keyboard
    tokens = stream[1:steps + 1]
    calls, words_ = {}, Words(vocab)
    for name, scorer in ngrams.items():
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


def run_names(models):
    """Each `--model` folder's name in the tables: its run's folder (RUN/tflite -> RUN), or, where two
    runs share that name (the same point of two sweeps), the sweep's folder too (SWEEP/RUN, for
    SWEEP/points/RUN/tflite)."""
    runs = [os.path.dirname(os.path.abspath(f.rstrip("/"))) for f in models]
    names = [os.path.basename(r) for r in runs]

    def sweep(run):
        above = os.path.dirname(run)
        return os.path.basename(os.path.dirname(above) if os.path.basename(above) == "points" else above)
    return [f"{sweep(r)}/{n}" if names.count(n) > 1 else n for r, n in zip(runs, names)]


def neural_files(sweep, models, vocab):
    """{label: (StepModel, bytes, test perplexity, sha256 prefix)}: every frontier file of a sweep's
    bundle, and every converted file of each `models` folder (a run's tflite/). Bytes as the device
    ships them: the file and its vocabulary."""
    from edge_runtime import manifest as mf
    from edge_runtime import points
    from edge_runtime.runner import StepModel
    found = []
    if sweep:
        doc = points.load(os.path.join(sweep, "bundle", "operating_points.json"))
        found += [(points.label(p), p["_manifest"], p["variant"], p["test_perplexity"]) for p in doc["points"]]
    for folder, run in zip(models, run_names(models)):
        m = mf.load(folder)
        found += [(f"{run}:{n}", m, n, v.get("perplexity")) for n, v in m["variants"].items()
                  if v.get("status") == "ok"]
    out = {}
    for label, manifest, variant, ppl in found:
        if label in out:
            raise SystemExit(f"error: two neural files are both labelled {label}: give each once")
        if Vocab.load(mf.vocab_path(manifest)).tokens != vocab.tokens:
            raise SystemExit(f"error: {label}'s vocabulary is not the one built from the training split")
        path = mf.variant_path(manifest, variant)  # its sha256 checked against the manifest's
        digest = manifest["variants"][variant]["sha256"][:16]
        out[label] = (StepModel(path, manifest["states"], num_threads=1),
                      os.path.getsize(path) + os.path.getsize(mf.vocab_path(manifest)), ppl, digest)
    return out


def stem(name, tag):
    """The results files' name: ngram_NAME or ngram_NAME-TAG."""
    if tag is not None and not tag.replace("-", "").replace("_", "").isalnum():
        sys.exit(f"error: --tag {tag!r}: letters, digits, - and _ only")
    return name if tag is None else f"{name}-{tag}"


def nearest(rows, size):
    """The n-gram row nearest `size` in bytes (by ratio)."""
    return min(rows, key=lambda r: abs(math.log(r["bytes"] / size)))


def compare(rows, neural, counts, replicates, learn=False):
    """Each row's 95% intervals, and each neural file against the n-gram nearest in bytes and against
    the best n-gram by R@3 (`against_nearest`, `against_best`: paired over sentences). With `learn`,
    the same in each row's `learning` from the scores with the history mixed in (`counts[KEY +
    LEARNED]`), both sides with it, the best n-gram chosen by its own R@3 with it; and each
    row's `learning.gain`, with against without."""
    from knob.bootstrap import change, interval, paired
    for r in rows + neural:
        key = r.get("model") or r["point"]
        r["interval"] = {m: interval(counts[key], m, replicates) for m in ("r_at_3", "ksr")}
        if learn:
            r["learning"]["interval"] = {m: interval(counts[key + LEARNED], m, replicates) for m in ("r_at_3", "ksr")}
            r["learning"]["gain"] = paired(counts[key], counts[key + LEARNED], replicates=replicates)
    for end in (("", LEARNED) if learn else ("",)):
        of = (lambda r: r["learning"]) if end else (lambda r: r)
        best = max(rows, key=lambda r: of(r)["r_at_3"])
        for r in neural:
            for role, ref in (("nearest", nearest(rows, r["bytes"])), ("best", best)):
                of(r)[f"against_{role}"] = dict(model=ref["model"], bytes=ref["bytes"], **paired(
                    counts[ref["model"] + end], counts[r["point"] + end], replicates=replicates))
    for r in neural if learn else ():
        # how the history moved the file's lead over the same n-gram (the pairs without it)
        for role in ("nearest", "best"):
            a, b = r[f"against_{role}"]["model"], r["point"]
            r["learning"][f"lead_{role}"] = dict(model=a, **change(
                counts[a], counts[b], counts[a + LEARNED], counts[b + LEARNED], replicates=replicates))


def run(name, sweep, models, keyboard_tokens, replicates, tag=None, versus=(), learn=False):
    import kenlm
    from knob.bootstrap import paired
    splits, vocab = corpus(name)
    out = os.path.join(ROOT, "runs", "ngram", name)
    os.makedirs(out, exist_ok=True)
    stream = token_stream(splits["test"], vocab, keyboard_tokens + 1)
    cache = os.path.join(out, "scores", f"tokens-{len(stream) - 1}")
    rows, scorers, counts = [], {}, {}
    for model_name, order, prune in MODELS:
        arpa, binary = train(model_name, order, prune, splits, vocab, out)
        scorer = scorers[model_name] = NgramScorer(kenlm.Model(binary), vocab, arpa)
        worst = scorer.check(stream)
        if worst > 1e-4:
            sys.exit(f"error: {model_name}: the successor-based scores differ from KenLM's by {worst}")
        ppl, count = perplexity(scorer.model, splits["test"], vocab)
        metrics, counts[model_name] = scored(cache, model_name,
                                              lambda: neural_keyboard(NgramSteps(scorer), vocab, stream))
        row = dict(model=model_name, order=order, prune=prune, bytes=os.path.getsize(binary),
                   arpa_bytes=os.path.getsize(arpa), test_perplexity=round(ppl, 2), test_tokens=count,
                   check_max_abs_difference=worst, **metrics)
        print(json.dumps(row), flush=True)
        rows.append(row)
    files = neural_files(sweep, models, vocab)
    unknown = [x for pair in versus for x in pair if x not in files]
    if unknown:  # before hours of scoring
        sys.exit(f"error: --versus {unknown[0]}: not a file given; the files are {', '.join(files)}")
    neural = []
    test_ids = token_stream(splits["test"], vocab, float("inf"))
    for label, (model, size, _, digest) in files.items():
        ppl = evaluate_ids(model, test_ids, vocab.never_suggested)["perplexity"]  # the device's definition
        metrics, counts[label] = scored(cache, f"neural-{digest}", lambda: neural_keyboard(model, vocab, stream))
        neural.append(dict(point=label, bytes=size, test_perplexity=round(ppl, 2), **metrics))
        print(json.dumps(neural[-1]), flush=True)
    if learn:
        valid = token_stream(splits["valid"], vocab, float("inf"))
        for r in rows + neural:
            key = r.get("model") or r["point"]
            model = NgramSteps(scorers[key]) if "model" in r else files[key][0]
            opts = tuned(model, valid, vocab)
            kept = key if "model" in r else f"neural-{files[key][3]}"
            metrics, counts[key + LEARNED] = scored(
                cache, f"{kept}-learn-{opts['lambda']}-{opts['half_life']}",
                lambda: learned_keyboard(model, vocab, stream, opts["lambda"], opts["half_life"]))
            r["learning"] = dict(opts, **metrics)
            print(json.dumps({key + LEARNED: r["learning"]}), flush=True)
    compare(rows, neural, counts, replicates, learn)
    pairs = [dict(a=a, b=b, **paired(counts[a], counts[b], replicates=replicates)) for a, b in versus]
    timed = timing_pass(scorers, {label: f[0] for label, f in files.items()}, vocab, stream)
    for r in rows:
        r.update(score_ms=timed[(r["model"], "score")], top3_ms=timed[(r["model"], "top3")])
    for r in neural:
        r.update(step_ms=timed[(r["point"], "step")], keyboard_ms=timed[(r["point"], "keyboard")])
    from edge_runtime.device import describe
    doc = dict(corpus=name, vocab_size=len(vocab), keyboard_positions=len(stream) - 1,
               whole_split=len(stream) == len(test_ids), sentences=int(len(counts[rows[0]["model"]])),
               bootstrap=dict(replicates=replicates, over="sentences", interval="95%, percentiles 2.5 and 97.5"),
               models=rows, neural=neural, versus=pairs, learning=learn, sweep=sweep, neural_models=models, device=describe(),
               bytes="neural: the .tflite and its vocabulary file; KenLM: its binary (trie, 8-bit), which holds "
                     "its vocabulary", timing="one interleaved pass, 300 calls each, 1 thread; medians")
    path = os.path.join(RESULTS, f"ngram_{stem(name, tag)}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    report(doc, stem(name, tag))
    print(f"written {os.path.relpath(path, ROOT)}")


def report(doc, name, teacher=None):
    """The plots of one results document (ngram_NAME_*_bytes.png), and its tables printed."""
    for metric in ("ksr", "r_at_3"):
        plot(doc, metric, os.path.join(RESULTS, f"ngram_{name}_{metric}_bytes.png"))
    print(table(doc))
    print(comparison(doc))
    if doc.get("learning"):
        print(learning_table(doc))
        print(comparison(doc, learning=True))
        print(lead_table(doc))
    if doc.get("versus"):
        print(versus_table(doc))
        print(recovery_table(doc, teacher))


NAMES = {"ksr": "keystroke savings rate", "r_at_3": "next-word R@3"}


def best_for_size(rows, metric):
    """The neural rows no smaller file beats: none at most its bytes has a higher `metric` (or the
    same at fewer bytes), in increasing bytes. The plots label only these; the rest are in the tables."""
    keep = frontier([dict(b=r["bytes"], m=-r[metric]) for r in rows], "b", "m")
    return [rows[i] for i in keep]


def plot(doc, metric, path):
    """`metric` against megabytes: the n-grams as series; the neural files as points, each with its
    own 95% interval, those no smaller file beats joined and labelled, the others grey (the `plot` extra)."""
    from knob.plots import label, megabytes, plt, save
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)

    def draw(rows, **style):
        ys = [r[metric] for r in rows]
        err = [[y - r["interval"][metric]["low"] for y, r in zip(ys, rows)],
               [r["interval"][metric]["high"] - y for y, r in zip(ys, rows)]]
        ax.errorbar([r["bytes"] / 1e6 for r in rows], ys, yerr=err, capsize=2, **style)
    for order, marker in ((3, "s"), (5, "D")):
        rows = sorted((r for r in doc["models"] if r["order"] == order), key=lambda r: r["bytes"])
        draw(rows, ls="--", marker=marker, color=f"C{order}", label=f"KenLM KN{order} (count-pruned to full)")
    neural = doc.get("neural", [])
    best = best_for_size(neural, metric)
    rest = sorted((r for r in neural if not any(r is b for b in best)), key=lambda r: r["bytes"])
    if rest:
        draw(rest, ls="none", marker="o", markersize=4, color="0.6", mfc="none", zorder=2,
             label="other neural files (in the tables)")
    if best:
        draw(best, ls="-", marker="o", markersize=5, color="C0", zorder=3,
             label="neural: the best at its size or smaller")
    megabytes(ax)
    ax.set(xlabel="bytes as shipped, MB (log scale)", ylabel=f"{NAMES[metric]} (3 words shown)",
           title=f"{doc['corpus']}: {NAMES[metric]} against size, {doc['keyboard_positions']:,} test positions"
                 f"{' (the whole split)' if doc['whole_split'] else ''}; bars: 95% intervals")
    label(fig, ax, [(r["point"].replace(":", " "), r["bytes"] / 1e6, r[metric]) for r in best])
    return save(fig, ax, path)


def table(doc):
    lines = ["| model | MB | test ppl | R@1 | R@3 | C1 | C2 | KSR | a token, ms | a word's top 3, ms |",
             "|---" * 10 + "|"]
    for r in doc["models"]:
        lines.append(f"| KenLM {r['model']} | {r['bytes'] / 1e6:.2f} | {r['test_perplexity']:.2f} | "
                     f"{r['r_at_1']:.3f} | {r['r_at_3']:.3f} | {r['completion_recall_1']:.3f} | "
                     f"{r['completion_recall_2']:.3f} | {r['ksr']:.3f} | {r['score_ms']:.4f} | {r['top3_ms']:.3f} |")
    for r in doc.get("neural", []):
        lines.append(f"| {r['point']} | {r['bytes'] / 1e6:.2f} | {r['test_perplexity']:.2f} | {r['r_at_1']:.3f} | "
                     f"{r['r_at_3']:.3f} | {r['completion_recall_1']:.3f} | {r['completion_recall_2']:.3f} | "
                     f"{r['ksr']:.3f} | {r['step_ms']:.4f} (step) | {r['keyboard_ms']:.3f} (keyboard) |")
    return "\n".join(lines)


def learning_table(doc):
    """`--learn`: each model without and with the user's history, the cache tuned for it, and the gain
    with its 95% interval (paired over the same sentences)."""
    from knob.bootstrap import verdict
    lines = ["| model | MB | lambda | half-life | R@3 | with history | gain [95%] | KSR | with history | gain [95%] |",
             "|---" * 10 + "|"]
    for r in doc["models"] + doc.get("neural", []):
        h, g = r["learning"], r["learning"]["gain"]
        name = f"KenLM {r['model']}" if "model" in r else r["point"]
        cells = [f"{r[m]:.4f} | {h[m]:.4f} | {g[m]['difference']:+.4f} [{g[m]['low']:+.4f}, {g[m]['high']:+.4f}] "
                 f"{verdict(g[m])}" for m in ("r_at_3", "ksr")]
        lines.append(f"| {name} | {r['bytes'] / 1e6:.2f} | {h['lambda']} | {h['half_life'] or 'none'} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def lead_table(doc):
    """`--learn`: each neural file's lead over an n-gram without the history and with it on both,
    and the change with its 95% interval."""
    from knob.bootstrap import verdict
    lines = ["| neural file | against | R@3 lead, without -> with | change [95%] | KSR lead, without -> with | "
             "change [95%] |", "|---" * 6 + "|"]
    for r in doc.get("neural", []):
        for role in ("nearest", "best"):
            c = r["learning"][f"lead_{role}"]
            cells = [f"{c[m]['before']:+.4f} -> {c[m]['after']:+.4f} | {c[m]['difference']:+.4f} "
                     f"[{c[m]['low']:+.4f}, {c[m]['high']:+.4f}] {verdict(c[m]).replace('better', 'wider')}"
                     .replace("worse", "narrower") for m in ("r_at_3", "ksr")]
            lines.append(f"| {r['point']} | KenLM {c['model']} ({role}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(doc, learning=False):
    """Each neural file against the n-gram nearest in bytes and the best n-gram: b - a with its 95%
    interval; `learning`: both with the user's history mixed in (`--learn`)."""
    from knob.bootstrap import verdict
    names = ("r_at_1", "r_at_3", "completion_recall_1", "ksr")
    with_ = ", both with the history" if learning else ""
    lines = [f"| neural file{with_} | MB | against | MB | " + " | ".join(f"{n} difference [95%]" for n in names)
             + " |", "|---" * (4 + len(names)) + "|"]
    for r in doc.get("neural", []):
        for role in ("nearest", "best"):
            c = (r["learning"] if learning else r)[f"against_{role}"]
            cells = [f"{c[n]['difference']:+.4f} [{c[n]['low']:+.4f}, {c[n]['high']:+.4f}] {verdict(c[n])}"
                     for n in names]
            lines.append(f"| {r['point']} | {r['bytes'] / 1e6:.2f} | KenLM {c['model']} ({role}) | "
                         f"{c['bytes'] / 1e6:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versus_table(doc):
    """Neural file against neural file (`--versus A,B`): b - a with its 95% interval."""
    from knob.bootstrap import verdict
    names = ("r_at_1", "r_at_3", "completion_recall_1", "ksr")
    lines = ["| a | b | " + " | ".join(f"{n} b - a [95%]" for n in names) + " |", "|---" * (2 + len(names)) + "|"]
    for c in doc["versus"]:
        cells = [f"{c[n]['difference']:+.4f} [{c[n]['low']:+.4f}, {c[n]['high']:+.4f}] {verdict(c[n])}" for n in names]
        lines.append(f"| {c['a']} | {c['b']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recovery_table(doc, teacher=None):
    """Each `--versus` pair's test perplexities; given the teacher's label, the share of the
    perplexity that a (the control) loses to the teacher which b (the student) wins back."""
    ppl = {r["point"]: r["test_perplexity"] for r in doc["neural"]}
    if teacher is not None and teacher not in ppl:
        sys.exit(f"error: --teacher {teacher}: not a file of this results JSON; the files are {', '.join(ppl)}")
    head = "| a | b | test ppl a | test ppl b |" + (f" recovered of a's loss to {teacher} ({ppl[teacher]:.2f}) |"
                                                   if teacher else "")
    lines = [head, "|---" * (5 if teacher else 4) + "|"]
    for c in doc["versus"]:
        a, b = ppl[c["a"]], ppl[c["b"]]
        share = f" {(a - b) / (a - ppl[teacher]):.0%} |" if teacher and a != ppl[teacher] else (" n/a |" if teacher else "")
        lines.append(f"| {c['a']} | {c['b']} | {a:.2f} | {b:.2f} |" + share)
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
    r.add_argument("--keyboard-tokens", type=int, default=None,
                   help="test tokens the keyboard metrics are computed on, for a quick look (default: the whole "
                        "test split)")
    r.add_argument("--versus", action="append", default=[], metavar="A,B",
                   help="two neural files' labels (RUN:VARIANT, as the tables name them): B - A with 95%% "
                        "intervals, e.g. a distilled student against its control (repeatable)")
    r.add_argument("--learn", action="store_true",
                   help="also score every model with the user's history mixed in (edge_runtime/cache.py), "
                        "the test split typed in order from an empty history; lambda and half-life tuned "
                        "for each model on the validation split")
    r.add_argument("--replicates", type=int, default=REPLICATES,
                   help="bootstrap replicates of the 95%% intervals (default %(default)s)")
    s = sub.add_parser("show", help="print the tables of a corpus's results JSON again, and redraw its plots")
    s.add_argument("name", choices=sorted(DATA))
    s.add_argument("--teacher", metavar="RUN:VARIANT", default=None,
                   help="a neural file's label: each --versus pair's share of a's perplexity gap to it that b "
                        "wins back (a the control, b the distilled student)")
    for sp in (r, s):
        sp.add_argument("--tag", default=None, help="results under ngram_NAME-TAG.json and its plots, so that "
                                                    "another set of neural files keeps the first set's results")
    a = p.parse_args(argv)
    if getattr(a, "tag", None) is not None:
        stem(a.name, a.tag)  # a bad tag is refused before hours of scoring, not after
    if a.command == "build":
        build()
    elif a.command == "show":
        path = os.path.join(RESULTS, f"ngram_{stem(a.name, a.tag)}.json")
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError:
            sys.exit(f"error: no {path}: run python benchmarks/ngram.py run {a.name}"
                     f"{'' if a.tag is None else ' --tag ' + a.tag} first")
        except ValueError as e:
            sys.exit(f"error: {path} is not a results file of this benchmark ({e})")
        report(doc, stem(a.name, a.tag), a.teacher)
    else:
        if not os.path.exists(os.path.join(KENLM, "bin", "lmplz")):
            sys.exit("error: no KenLM estimator: run python benchmarks/ngram.py build first")
        if a.name == "ptb" and not os.path.isdir(DATA["ptb"]):
            sys.exit("error: no PTB data: run make ptb first")
        if a.keyboard_tokens is not None and a.keyboard_tokens < 1 or a.replicates < 100:
            sys.exit("error: --keyboard-tokens must be positive and --replicates at least 100")
        versus = [tuple(v.split(",")) for v in a.versus]
        bad = [v for v, pair in zip(a.versus, versus) if len(pair) != 2]
        if bad:
            sys.exit(f"error: --versus {bad[0]}: give two labels, RUN:VARIANT,RUN:VARIANT")
        run(a.name, a.sweep, a.model, a.keyboard_tokens or float("inf"), a.replicates, a.tag, versus, a.learn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
