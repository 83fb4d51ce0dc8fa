"""The user's history mixed into the model's distribution (a unigram and bigram
cache, after Grave et al. 2017), so the keyboard learns its user's words.

The shown words come from

    q(w) = (1 - lambda) p_model(w) + lambda p_cache(w | previous word)

over the vocabulary and the history's words outside it (whose p_model is 0:
the model's `<unk>` mass stays on `<unk>`, which is never shown). p_cache is
`History.prob`: bigram counts interpolated with unigram counts by
Witten-Bell. A word outside the vocabulary is shown, as a next word or a
completion of its first letters, after one use. With an empty history q is
p_model. lambda and the history's half-life are tuned on validation text by
the converter (`tune`) and recorded in the manifest's `learning`.

`Cache` keeps, for one vocabulary, the history's counts as arrays (dense over
V for the vocabulary's words, one slot each for the others, and per previous
word its followers), updated in place by each commit, so a word costs a few
passes over V (an exp, two multiply-adds) and no Python loop over the history.
`History.prob` is the same number for one word, used by `tune`; a test holds
the two to each other and to a hand-worked example.
"""
import bisect
import math

import numpy as np

from edge_runtime.history import START, History
from edge_runtime.text import NUMBER, UNK

DEFAULT_LAMBDA = 0.3       # where a manifest records no tuned value (files converted before 2026-12-06)
DEFAULT_HALF_LIFE = None   # no decay: forgetting too soon costs the most
LAMBDAS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
HALF_LIVES = (1000, 5000, 20000, None)
TUNE_TOKENS = 5000


def learning_options(manifest):
    """(lambda, half-life, where they come from) for a manifest."""
    learned = manifest.get("learning")
    if learned:
        return learned["lambda"], learned["half_life"], "tuned on validation text by the converter"
    return DEFAULT_LAMBDA, DEFAULT_HALF_LIFE, "defaults: the manifest records no tuned value"


def learnable(word):
    """Is a committed word learned? Not a number (N: its spelling is lost) nor <unk>."""
    return bool(word) and word != UNK and word != NUMBER and not word[0].isdigit()


class _Followers:
    """One previous word's followers as arrays: vocabulary id, or -1 - slot for a word outside it."""

    def __init__(self):
        self.ids = np.zeros(8, np.int64)
        self.counts = np.zeros(8, np.float32)
        self.pos = {}

    def add(self, code, w):
        i = self.pos.get(code)
        if i is None:
            i = self.pos[code] = len(self.pos)
            if i == len(self.ids):
                self.ids = np.concatenate([self.ids, np.zeros_like(self.ids)])
                self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
            self.ids[i] = code
        self.counts[i] += w


class Cache:
    """`history` (shared by every keyboard of the user) as seen by one vocabulary.
    `learn=False`: incognito, nothing is learned. `blocked`: words never learned
    nor shown (lower-case keys)."""

    def __init__(self, history, vocab, lam=DEFAULT_LAMBDA, blocked=(), learn=True):
        if not 0 <= lam < 1:
            raise ValueError(f"the cache's lambda must be in [0, 1), got {lam}")
        self.history, self.vocab, self.lam, self.learn_on = history, vocab, lam, learn
        self.blocked = frozenset(w.lower() for w in blocked)
        self._buf = np.zeros(len(vocab), np.float32)
        self._tmp = np.zeros(len(vocab), np.float32)
        self._build()

    def id_of(self, key):
        """The vocabulary id of a history key, or None."""
        i = self.vocab.index.get(key)
        if i is None:
            spelling = self.history.spelling(key)
            i = self.vocab.index.get(spelling) if spelling else None
        return i

    def _code(self, key):
        i = self.id_of(key)
        if i is not None:
            return i
        slot = self.oov_slot.get(key)
        if slot is None:
            slot = self.oov_slot[key] = len(self.oov_keys)
            self.oov_keys.append(key)
            bisect.insort(self.oov_sorted, key)
            if slot == len(self.oov_counts):
                self.oov_counts = np.concatenate([self.oov_counts, np.zeros_like(self.oov_counts)])
        return -1 - slot

    def _build(self):
        """The arrays from the history (at start, and after it changed other than by our commits)."""
        h = self.history
        self.uni = np.zeros(len(self.vocab), np.float32)
        self.oov_keys, self.oov_slot, self.oov_sorted = [], {}, []
        self.oov_counts = np.zeros(64, np.float32)
        for key, (count, _, _) in h.words.items():
            code = self._code(key)
            if code >= 0:
                self.uni[code] += count
            else:
                self.oov_counts[-1 - code] += count
        self.followers = {}
        for prev, f in h.next.items():
            fol = self.followers[prev] = _Followers()
            for key, count in f.items():
                fol.add(self._code(key), count)
        self.synced = (h.tick, h.version)

    def _sync(self):
        if self.synced != (self.history.tick, self.history.version):
            self._build()

    def key_of(self, word):
        """A committed word's key in the history ('<eos>' for a sentence end); None for what is
        never learned (a number, <unk>, a blocked word), which no bigram reaches across."""
        if word == self.vocab.tokens[self.vocab.eos_id]:
            return word
        if not learnable(word) or word.lower() in self.blocked:
            return None
        return word.lower()

    def learn(self, word, prev):
        """The user committed `word` (their spelling; '<eos>' for a sentence end) after `prev`.
        -> the key the next word follows (see `key_of`). Incognito: nothing is learned."""
        key = self.key_of(word)
        if key is None or not self.learn_on:
            return key
        self._sync()
        h = self.history
        key, w = h.commit(word, prev)
        if h.version != self.synced[1]:  # the commit folded the scale back or evicted: arrays anew
            self._build()
            return key
        code = self._code(key)
        if code >= 0:
            self.uni[code] += w
        else:
            self.oov_counts[-1 - code] += w
        if prev is not None:
            fol = self.followers.get(prev)
            if fol is None:
                fol = self.followers[prev] = _Followers()
            fol.add(code, w)
        self.synced = (h.tick, h.version)
        return key

    def scores(self, logp, prev, words):
        """The mixed distribution after `prev` -> Scores (the model's own where nothing is learned)."""
        self._sync()
        h = self.history
        if h.total <= 0 or self.lam == 0:
            return Scores(words, logp)
        q = np.exp(logp, out=self._buf, dtype=np.float32) if logp.dtype == np.float32 else \
            np.exp(logp).astype(np.float32)
        q *= 1 - self.lam
        fol = self.followers.get(prev) if prev is not None else None
        t = len(fol.pos) if fol else 0
        if t:
            s = h.scale()
            denom = s * h.next_total[prev] + t
            a, b = self.lam * t / denom / h.total, self.lam * s / denom
        else:
            a, b = self.lam / h.total, 0.0
        q += np.multiply(self.uni, a, out=self._tmp)
        n = len(self.oov_keys)
        oov = self.oov_counts[:n] * a
        if t:
            ids, counts = fol.ids[:t], fol.counts[:t] * b
            inside = ids >= 0
            q[ids[inside]] += counts[inside]
            oov[-1 - ids[~inside]] += counts[~inside]
        return Scores(words, q, mixed=True, oov=(self, oov), blocked=self.blocked)


class Scores:
    """One step's scores as the keyboard ranks them. Without a cache: the model's
    log-probabilities. With one: the mixed probabilities q over V, and q of the
    history's words outside the vocabulary. A candidate is a vocabulary id (int)
    or such a word's key (str)."""

    def __init__(self, words, values, mixed=False, oov=None, blocked=frozenset()):
        self.words, self.values, self.mixed, self.blocked = words, values, mixed, blocked
        self.cache, self.oov = oov if oov is not None else (None, None)

    def prob(self, token_id):
        v = float(self.values[token_id])
        return v if self.mixed else math.exp(v)

    def logprob(self, token_id):
        v = float(self.values[token_id])
        return (math.log(v) if v > 0 else -math.inf) if self.mixed else v

    def oov_prob(self, key):
        slot = self.cache.oov_slot.get(key) if self.cache is not None else None
        return 0.0 if slot is None else float(self.oov[slot])

    def best(self, prefix, k):
        """The k candidates shown for `prefix` ("" before a letter), best first."""
        found = self.words.best(self.values, prefix, k)
        if self.cache is None or not self.cache.oov_keys:
            return found
        if prefix:
            p = prefix.lower()
            keys = self.cache.oov_sorted
            lo = bisect.bisect_left(keys, p)
            hi = bisect.bisect_left(keys, p + "\U0010ffff", lo)
            slots = [self.cache.oov_slot[key] for key in keys[lo:hi]]
        else:
            n = len(self.oov)
            slots = np.argpartition(-self.oov, k - 1)[:k] if n > k else range(n)
        extra = [(float(self.oov[s]), self.cache.oov_keys[s]) for s in slots]
        extra = [(q, key) for q, key in extra if q > 0 and key not in self.blocked]
        if not extra:
            return found
        ranked = [(-float(self.values[i]), 0, i, "") for i in found] + [(-q, 1, 0, key) for q, key in extra]
        ranked.sort()
        return [key if kind else i for _, kind, i, key in ranked[:k]]

    def show(self, candidate):
        """A candidate's probability."""
        return self.oov_prob(candidate) if isinstance(candidate, str) else self.prob(candidate)


def spelled(scores, candidate, history, prefix, sentence_start):
    """How a candidate is written above the keys: the user's own spelling where the history has one,
    else the vocabulary's (capitalised at a sentence's start); the letters typed so far kept as typed
    where they hold a capital ("Mond" -> "Monday", "MON" -> "MONDAY")."""
    words = scores.words
    if isinstance(candidate, str):
        own = history.spelling(candidate) or candidate
    else:
        own = history.spelling(words.vocab.tokens[candidate].lower()) if history is not None else None
    if own and (isinstance(candidate, str) or own != own.lower()):
        word = own[:1].upper() + own[1:] if sentence_start and words.lower_case else own
    else:
        word = words.display(candidate, sentence_start)
    if prefix and prefix != prefix.lower():
        if len(prefix) > 1 and prefix == prefix.upper():
            return word.upper()
        return prefix + word[len(prefix):]
    return word


def tune(model, items, vocab, lambdas=LAMBDAS, half_lives=HALF_LIVES, max_tokens=TUNE_TOKENS):
    """lambda and the half-life that give the lowest perplexity over the in-vocabulary tokens of
    `items` (ids, or (id, spelling) pairs as `textfile.iter_ids` gives them) typed in order, the
    history learning as it goes from empty. One pass of the model; every pair of values scored
    on the same steps. -> {lambda, half_life, tokens, perplexity_without, perplexity_with, grid}."""
    histories = {hl: History(hl) for hl in half_lives}
    nll = {(lam, hl): 0.0 for lam in lambdas for hl in half_lives}
    base, n = 0.0, 0
    model.reset()
    it = iter(items)
    first = next(it, None)
    prev_id = first[0] if isinstance(first, tuple) else first
    prev = START if prev_id == vocab.eos_id else None
    eos = vocab.tokens[vocab.eos_id]
    for item in it:
        if n >= max_tokens:
            break
        target, spelling = item if isinstance(item, tuple) else (item, None)
        logp = model.step(int(prev_id))
        word = eos if target == vocab.eos_id else (spelling or vocab.tokens[target])
        if target != vocab.unk_id:
            p = math.exp(float(logp[target]))
            base -= math.log(max(p, 1e-300))
            key = word.lower()
            for hl, h in histories.items():
                pc = h.prob(key, prev)
                for lam in lambdas:
                    nll[lam, hl] -= math.log(max((1 - lam) * p + lam * pc if h.total > 0 else p, 1e-300))
            n += 1
        key = word if word == eos else (word.lower() if learnable(word) else None)
        if key is not None:
            for h in histories.values():
                h.commit(word, prev, record=False)
        prev = START if target == vocab.eos_id else key
        prev_id = target
    if n == 0:
        raise ValueError("no in-vocabulary token to tune the cache on")
    (lam, hl), best = min(nll.items(), key=lambda kv: (kv[1], kv[0][0]))
    return dict(**{"lambda": lam}, half_life=hl, tokens=n, perplexity_without=round(math.exp(base / n), 3),
                perplexity_with=round(math.exp(best / n), 3),
                grid=[dict(**{"lambda": la}, half_life=h, perplexity=round(math.exp(v / n), 3))
                      for (la, h), v in sorted(nll.items(), key=lambda kv: (kv[0][0], kv[0][1] or 1e18))])
