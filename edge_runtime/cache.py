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


class _Counts:
    """Counts by id as arrays (ids, counts, a position per id), so a step reads them in one gather."""

    def __init__(self):
        self.ids = np.zeros(8, np.int64)
        self.counts = np.zeros(8, np.float32)
        self.pos = {}

    def add(self, i, w):
        j = self.pos.get(i)
        if j is None:
            j = self.pos[i] = len(self.pos)
            if j == len(self.ids):
                self.ids = np.concatenate([self.ids, np.zeros_like(self.ids)])
                self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
            self.ids[j] = i
        self.counts[j] += w

    def __len__(self):
        return len(self.pos)


class _Followers:
    """One previous word's followers: in the vocabulary (by id) and outside it (by slot)."""

    def __init__(self):
        self.vocab, self.oov = _Counts(), _Counts()

    def __len__(self):
        return len(self.vocab.pos) + len(self.oov.pos)


class Cache:
    """`history` (shared by every keyboard of the user) as seen by one vocabulary.
    `learn=False`: incognito, nothing is learned. `blocked`: words never learned
    nor shown (lower-case keys)."""

    def __init__(self, history, vocab, lam=DEFAULT_LAMBDA, blocked=(), learn=True, k=8):
        if not 0 <= lam < 1:
            raise ValueError(f"the cache's lambda must be in [0, 1), got {lam}")
        self.history, self.vocab, self.lam, self.learn_on = history, vocab, lam, learn
        self.blocked = frozenset(w.lower() for w in blocked)
        self.eos = vocab.tokens[vocab.eos_id]
        self.k = k  # the words outside the vocabulary kept ranked by count (at least the k ever shown)
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

    def _build(self):
        """The arrays from the history (at start, and after it changed other than by our commits)."""
        h = self.history
        self.uni = np.zeros(len(self.vocab), np.float32)
        # the history's words outside the vocabulary: a slot each, their counts by slot, the keys
        # sorted (a prefix is a range) and the k most counted
        self.oov_keys, self.oov_slot, self.oov_sorted = [], {}, []
        self.oov_u = np.zeros(64, np.float32)
        for key, (count, _, _) in h.words.items():
            i = self.id_of(key)
            if i is not None:
                self.uni[i] += count
            else:
                slot = self._slot(key)  # first: it may grow oov_u
                self.oov_u[slot] += count
        self.oov_sorted.sort()
        self.oov_top = sorted(self.oov_keys, key=lambda key: -h.words[key][0])[: self.k]
        self.followers = {}
        for prev, f in h.next.items():
            fol = self.followers[prev] = _Followers()
            for key, count in f.items():
                i = self.id_of(key)
                if i is not None:
                    fol.vocab.add(i, count)
                else:
                    fol.oov.add(self._slot(key), count)
        self.synced = (h.tick, h.version)

    def _slot(self, key, insort=False):
        slot = self.oov_slot.get(key)
        if slot is None:
            slot = self.oov_slot[key] = len(self.oov_keys)
            self.oov_keys.append(key)
            if insort:
                bisect.insort(self.oov_sorted, key)
            else:
                self.oov_sorted.append(key)
            if slot == len(self.oov_u):
                self.oov_u = np.concatenate([self.oov_u, np.zeros_like(self.oov_u)])
        return slot

    def _sync(self):
        if self.synced != (self.history.tick, self.history.version):
            self._build()

    def key_of(self, word):
        """A committed word's key in the history ('<eos>' for a sentence end); None for what is
        never learned (a number, <unk>, a blocked word), which no bigram reaches across."""
        if word == self.eos:
            return word
        key = word.lower()
        if not learnable(word) or key in self.blocked:
            return None
        return key

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
        i = self.id_of(key)
        if i is not None:
            self.uni[i] += w
        else:
            slot = self._slot(key, insort=True)
            self.oov_u[slot] += w
            self._rank_oov(key)
        if prev is not None:
            fol = self.followers.get(prev)
            if fol is None:
                fol = self.followers[prev] = _Followers()
            if i is not None:
                fol.vocab.add(i, w)
            else:
                fol.oov.add(slot, w)
        self.synced = (h.tick, h.version)
        return key

    def _rank_oov(self, key):
        """Keep `oov_top` the k most counted words outside the vocabulary: counts share one scale and
        only the committed word's grew, so only it can move."""
        top, words = self.oov_top, self.history.words
        if key in top:
            top.remove(key)
        elif len(top) >= self.k and words[key][0] <= words[top[-1]][0]:
            return
        count = words[key][0]
        at = next((j for j, other in enumerate(top) if words[other][0] < count), len(top))
        top.insert(at, key)
        del top[self.k:]

    def scores(self, logp, prev, words):
        """The mixed distribution after `prev` -> Scores (the model's own where nothing is learned)."""
        self._sync()
        h = self.history
        if h.total <= 0 or self.lam == 0:
            return Scores(words, logp)
        # q / (1 - lambda) = p + c1 counts + c2 follower counts: one exp and two passes over V; the
        # common factor is applied where a probability is read, never over V
        q = np.exp(logp, out=self._buf) if logp.dtype == np.float32 else np.exp(logp).astype(np.float32)
        fol = self.followers.get(prev) if prev is not None else None
        t = len(fol) if fol is not None else 0
        if t:
            s = h.scale()
            denom = s * h.next_total[prev] + t
            a, b = self.lam * t / denom / h.total, self.lam * s / denom
        else:
            a, b = self.lam / h.total, 0.0
        keep = 1 - self.lam
        q += np.multiply(self.uni, a / keep, out=self._tmp)
        if t and fol.vocab.pos:
            n = len(fol.vocab.pos)
            q[fol.vocab.ids[:n]] += fol.vocab.counts[:n] * (b / keep)
        return Scores(words, q, keep, self, a, b, fol if t else None)

    def oov_q(self, key, a, b, fol):
        """q of a history word outside the vocabulary."""
        slot = self.oov_slot.get(key)
        if slot is None or key in self.blocked:
            return 0.0
        j = fol.oov.pos.get(slot) if fol is not None else None
        return a * float(self.oov_u[slot]) + (b * float(fol.oov.counts[j]) if j is not None else 0.0)


class Scores:
    """One step's scores as the keyboard ranks them. Without a cache: the model's
    log-probabilities. With one: the mixed probabilities q over V, divided by
    (1 - lambda) (`keep`), and q of the history's words outside the vocabulary,
    computed for the few that can be shown. A candidate is a vocabulary id (int)
    or such a word's key (str). The mixed values live in the cache's buffer: a
    Scores holds until that cache's next step."""

    def __init__(self, words, values, keep=None, cache=None, a=0.0, b=0.0, fol=None):
        self.words, self.values, self.keep = words, values, keep
        self.cache, self.a, self.b, self.fol = cache, a, b, fol

    def prob(self, token_id):
        v = float(self.values[token_id])
        return math.exp(v) if self.keep is None else v * self.keep

    def logprob(self, token_id):
        v = self.prob(token_id) if self.keep is not None else None
        return float(self.values[token_id]) if v is None else (math.log(v) if v > 0 else -math.inf)

    def oov_prob(self, key):
        return 0.0 if self.cache is None else self.cache.oov_q(key, self.a, self.b, self.fol)

    def best(self, prefix, k):
        """The k candidates shown for `prefix` ("" before a letter), best first."""
        found = self.words.best(self.values, prefix, k)
        cache = self.cache
        if cache is None or not cache.oov_sorted:
            return found
        if not prefix and len(found) == k and self._oov_bound() <= float(self.values[found[-1]]) * self.keep:
            return found  # no word outside the vocabulary can rank above the k-th (a tie goes to the vocabulary)
        if prefix:
            p = prefix.lower()
            keys = cache.oov_sorted
            lo = bisect.bisect_left(keys, p)
            keys = keys[lo: bisect.bisect_left(keys, p + "\U0010ffff", lo)]
        elif self.fol is not None and self.fol.oov.pos:
            # the most counted, and this word's followers by q (a words-long gather): no other can
            # rank above all of them
            f = self.fol.oov
            n = len(f.pos)
            q = self.a * cache.oov_u[f.ids[:n]] + self.b * f.counts[:n]
            best = np.argpartition(-q, k - 1)[:k] if n > k else range(n)
            keys = cache.oov_top[:k] + [cache.oov_keys[f.ids[j]] for j in best]
        else:
            keys = cache.oov_top[:k]
        extra = [(self.oov_prob(key), key) for key in set(keys)]
        extra = [(q, key) for q, key in extra if q > 0]
        if not extra:
            return found
        ranked = [(-float(self.values[i]) * self.keep, 0, i, "") for i in found] + [(-q, 1, 0, key) for q, key in extra]
        ranked.sort()
        return [key if kind else i for _, kind, i, key in ranked[:k]]

    def _oov_bound(self):
        """The most any history word outside the vocabulary can score now."""
        cache = self.cache
        top = cache.history.words[cache.oov_top[0]][0] if cache.oov_top else 0.0
        f = self.fol.oov if self.fol is not None else None
        return self.a * top + (self.b * float(f.counts[:len(f.pos)].max()) if f is not None and f.pos else 0.0)

    def show(self, candidate):
        """A candidate's probability."""
        return self.oov_prob(candidate) if isinstance(candidate, str) else self.prob(candidate)


def spelled(scores, candidate, history, prefix, sentence_start):
    """How a candidate is written above the keys: the user's own spelling where the history has one
    with a capital, else the vocabulary's (capitalised at a sentence's start); the letters typed so
    far kept as typed where they hold a capital ("Mond" -> "Monday", "MON" -> "MONDAY")."""
    words = scores.words
    if isinstance(candidate, str):
        entry = history.words.get(candidate)
        word = entry[2] if entry is not None else candidate
        if sentence_start and words.lower_case:
            word = word[:1].upper() + word[1:]
    else:
        entry = history.words.get(words.vocab.tokens[candidate].lower()) if history is not None else None
        if entry is not None and entry[2] != entry[2].lower():
            word = entry[2][:1].upper() + entry[2][1:] if sentence_start and words.lower_case else entry[2]
        else:
            word = words.display(candidate, sentence_start)
    if prefix and not prefix.islower():
        if len(prefix) > 1 and prefix.isupper():
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
