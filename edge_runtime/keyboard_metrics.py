"""Keyboard metrics over a text, from the same step outputs as the perplexity
(definitions, with a hand-worked example, in docs/design.md):

- next-word R@1 and R@3: over every predicted position (as the perplexity), the
  share whose true word is among the first 1 or 3 words shown before a letter
  is typed. Shown means what the keyboard shows (`Words`, or the cache's mix):
  never `<unk>`, `<eos>`, `N` or a blocked word, so a position whose true token
  is one of them is a miss, and `--block` moves R@k as it moves KSR;
- completion recall after c typed letters (c = 1, 2): over the words of the
  vocabulary longer than c letters (words outside it are left out of this one
  figure; KSR counts them), the share whose first c letters make the keyboard
  show the word among its k;
- the keystroke savings rate (KSR) with k suggestions: a simulated user types
  each word letter by letter and taps the word as soon as it is shown (before
  the first letter: the next-word suggestions). The tap, which also adds the
  space, is one key press; a word never shown costs its letters and a space.
  KSR = 1 - key presses used / (letters + spaces typed without suggestions).

A word outside the vocabulary is typed in full where its spelling is known
(raw text), unless the user's history shows it (edge_runtime/cache.py); an
`<unk>` whose spelling is lost (PTB-format text, or ids alone) and `N` (a
number) are skipped and counted. `<eos>` is not a word: no key press. A
blocked word is typed in full (it is never shown). With learning, `seen`
marks a word outside the vocabulary that was typed before: the share of those
shown before they are fully typed is `oov_repeat_shown`.

`sentences()` gives the counts behind these figures sentence by sentence (a
sentence ends at its `<eos>`), so that two models scored on the same text can
be compared with a paired bootstrap over sentences (knob/bootstrap.py).
"""
import math

import numpy as np

from edge_runtime.cache import Scores
from edge_runtime.history import START
from edge_runtime.keyboard import HIDDEN
from edge_runtime.metrics import K

PREFIXES = (1, 2)
# the counts `sentences()` keeps per sentence; each figure is a ratio of two of their sums
COUNTS = ("positions", "hits_1", "hits_3", "key_presses", "key_presses_without",
          "completion_hits_1", "completion_words_1", "completion_hits_2", "completion_words_2")
RATIOS = {"r_at_1": ("hits_1", "positions"), "r_at_3": ("hits_3", "positions"),
          "ksr": ("key_presses", "key_presses_without"),  # 1 - the ratio
          "completion_recall_1": ("completion_hits_1", "completion_words_1"),
          "completion_recall_2": ("completion_hits_2", "completion_words_2")}


class KeyboardScore:
    def __init__(self, words, k=K):
        self.words, self.k = words, k
        self.keys = self.baseline = 0
        self.keys_in_vocab = self.baseline_in_vocab = 0
        self.completion = {c: [0, 0] for c in PREFIXES}  # c: [hits, words longer than c]
        self.counted = self.skipped = self.typed_in_full = 0
        self.positions, self.hits = 0, {1: 0, 3: 0}
        self.oov_repeat = [0, 0]  # [shown before fully typed, words outside the vocabulary typed again]
        self.ends = []  # the counts at each sentence's end

    def _counts(self):
        return (self.positions, self.hits[1], self.hits[3], self.keys, self.baseline, *self.completion[1],
                *self.completion[2])

    def sentences(self):
        """[sentences, len(COUNTS)] int64: the counts of each sentence (the last one unfinished
        if the text does not end with `<eos>`); their column sums are this score's totals."""
        ends = list(self.ends)
        if not ends or ends[-1] != self._counts():
            ends.append(self._counts())
        return np.diff(np.array([(0,) * len(COUNTS)] + ends, dtype=np.int64), axis=0)

    def add(self, scores, target, spelling=None, seen=False):
        """One position: the step's `scores` (a cache.Scores, or log-probabilities [V]) after the
        context, the true token id `target`, and its spelling where the text had one (an OOV word);
        `seen`: that OOV word was typed before."""
        if isinstance(scores, np.ndarray):
            scores = Scores(self.words, scores)
        vocab = self.words.vocab
        self.positions += 1
        known = target != vocab.unk_id and target != vocab.eos_id and vocab.tokens[target] not in HIDDEN
        candidate = target if known else (spelling.lower() if target == vocab.unk_id and spelling else None)
        first = scores.best("", max(self.k, 3)) if candidate is not None else []
        for r in self.hits:
            self.hits[r] += candidate in first[:r]
        if target == vocab.eos_id:
            self.ends.append(self._counts())
            return
        if candidate is None:
            self.skipped += 1
            return
        word = spelling if not known else vocab.tokens[target]
        self.counted += 1
        self.baseline += len(word) + 1
        # the fewest letters after which the word is shown; more letters only narrow the candidates
        # around it, so it stays shown: that one count gives both the tap and the completion recalls
        shown_after = 0 if candidate in first[: self.k] else next(
            (typed for typed in range(1, len(word)) if candidate in scores.best(word[:typed], self.k)), None)
        keys = len(word) + 1 if shown_after is None else shown_after + 1
        self.keys += keys
        self.typed_in_full += shown_after is None
        if known:
            self.keys_in_vocab += keys
            self.baseline_in_vocab += len(word) + 1
            for c in PREFIXES:
                if len(word) > c:
                    self.completion[c][1] += 1
                    self.completion[c][0] += shown_after is not None and shown_after <= c
        elif seen:
            self.oov_repeat[1] += 1
            self.oov_repeat[0] += shown_after is not None

    def result(self):
        """{ksr, r_at_1, r_at_3, completion_recall_1, completion_recall_2, keyboard_words, ...}; None where
        nothing was counted (a text with no word in the vocabulary)."""
        out = dict(ksr=round(1 - self.keys / self.baseline, 4) if self.baseline else None,
                   key_presses=self.keys, key_presses_without=self.baseline,
                   key_presses_in_vocabulary=self.keys_in_vocab,
                   key_presses_without_in_vocabulary=self.baseline_in_vocab, keyboard_words=self.counted,
                   typed_in_full=self.typed_in_full, words_skipped=self.skipped,
                   oov_repeated=self.oov_repeat[1],
                   oov_repeat_shown=round(self.oov_repeat[0] / self.oov_repeat[1], 4) if self.oov_repeat[1] else None)
        if self.positions:
            out.update(r_at_1=self.hits[1] / self.positions, r_at_3=self.hits[3] / self.positions)
        for c, (hits, n) in self.completion.items():
            out[f"completion_recall_{c}"] = round(hits / n, 4) if n else None
        return out


def evaluate_learning(model, items, words, cache, progress=None):
    """The text typed in order, as `eval --learn` does: each position scored by the model alone
    and by its mix with the user's history (`cache`), on the same step; then the word is learned
    (unless the cache is incognito or the word blocked). `items`: ids, or (id, spelling) pairs as
    `textfile.iter_ids` gives them, the first the context. -> {"without": {...}, "with": {...}},
    each KeyboardScore's result plus the perplexity over the in-vocabulary tokens (`<unk>` left out).
    """
    scores, nll, n = learning_scores(model, items, words, cache, progress)
    out = {}
    for name, score in scores.items():
        out[name] = dict(score.result(), tokens_in_vocabulary=n,
                         perplexity_in_vocabulary=math.exp(nll[name] / n) if n and nll[name] / n < 700 else None)
    return out


def learning_scores(model, items, words, cache, progress=None, without=True):
    """`evaluate_learning`'s pass -> ({"without": KeyboardScore, "with": ...}, {the same: the summed
    negative log-probability of the in-vocabulary tokens}, their count); `without=False` keeps only
    "with" (its model-alone twin already scored elsewhere)."""
    vocab = words.vocab
    names = ("without", "with") if without else ("with",)
    scores = {name: KeyboardScore(words) for name in names}
    nll = dict.fromkeys(names, 0.0)
    model.reset()
    it = iter(items)
    first = next(it, None)
    prev_id = first[0] if isinstance(first, tuple) else first
    prev = START if prev_id == vocab.eos_id else None
    n = positions = 0
    for item in it:
        target, spelling = item if isinstance(item, tuple) else (item, None)
        target = int(target)
        logp = model.step(int(prev_id))
        shown = {"with": cache.scores(logp, prev, words)}
        if without:
            shown["without"] = Scores(words, logp)
        seen = bool(spelling) and spelling.lower() in cache.history.words
        for name in names:
            scores[name].add(shown[name], target, spelling, seen)
        if target != vocab.unk_id:
            for name in names:
                nll[name] -= shown[name].logprob(target)
            n += 1
        key = cache.learn(spelling or vocab.tokens[target], prev)
        prev = START if target == vocab.eos_id else key
        prev_id = target
        positions += 1
        if progress is not None:
            progress(positions)
    if positions == 0:
        raise ValueError("nothing to evaluate: the text has no tokens")
    return scores, nll, n
