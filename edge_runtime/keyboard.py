"""What a keyboard runs: the words shown above the keys, for each word and
each key press.

`Keyboard.feed(token)` steps the model once and shows the k most probable
next words. `Keyboard.type(letters)` adds to the word being typed and shows
the k most probable vocabulary words that start with it, case-insensitively,
from the same step's output: a key press never runs the model. Completion
needs the whole distribution, so the keyboard runs the file's `step`
signature (all V log-probabilities), not `suggest` (only the top k, which
would be the wrong words once a letter is typed); `bench` times both paths.
`feed` is what the device's knob budgets (`keyboard_ms`), `type` is timed
as `key_ms`.

What is shown (`Words`): never `<unk>`, `<eos>`, `N` (PTB's number token,
whose spelling is lost) or a blocked word (`--block FILE`). With a
lower-case vocabulary (PTB's and the embedded corpus's), the first word of
a sentence and "i" are shown capitalised.
"""
import bisect
import math
import re

import numpy as np

from edge_runtime.cache import Scores, spelled
from edge_runtime.history import START
from edge_runtime.text import words_spelled

HIDDEN = ("N",)  # tokens that stand for a spelling the vocabulary does not keep
ROWS = 64  # rows of the grid Words.best ranks all V scores in


class BlockError(ValueError):
    """A block list that cannot be read; one-line message."""


def read_block_list(path):
    """The words of a block file: one a line, blank lines and surrounding spaces ignored."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise BlockError(f"--block {path}: no such file") from None
    except IsADirectoryError:
        raise BlockError(f"--block {path}: is a directory, not a file of words") from None
    except UnicodeDecodeError:
        raise BlockError(f"--block {path}: not UTF-8 text (one word a line)") from None
    except OSError as e:
        raise BlockError(f"--block {path}: cannot be read ({e.strerror})") from None
    if "\0" in text:
        raise BlockError(f"--block {path}: not a text file (one word a line)")
    return [w.strip() for w in text.splitlines() if w.strip()]


class Words:
    """The vocabulary as a keyboard shows it: which ids may be shown, and a
    prefix index (the showable words sorted by lower-case spelling), so the
    words a prefix matches are one contiguous range found by bisection: a key
    press costs work in proportion to the words that match, not to V."""

    def __init__(self, vocab, blocked=()):
        self.vocab = vocab
        hidden = set(vocab.never_suggested) | {vocab.index[w] for w in HIDDEN if w in vocab.index}
        lowered = {w.lower() for w in blocked}
        hidden |= {i for i, t in enumerate(vocab.tokens) if t.lower() in lowered}
        self.hidden = frozenset(hidden)
        showable = [i for i in range(len(vocab)) if i not in hidden]
        self.penalty = np.zeros(len(vocab), np.float32)  # added to log-probabilities: -inf where never shown
        self.penalty[sorted(hidden)] = -np.inf
        # best()'s scratch: V scores padded with -inf to a ROWS x columns grid (see `best`)
        self.columns = -(-len(vocab) // ROWS)
        self._grid = np.full((ROWS, self.columns), -np.inf, np.float32)
        pairs = sorted((vocab.tokens[i].lower(), i) for i in showable)
        self.keys = [k for k, _ in pairs]
        self.sorted_ids = np.array([i for _, i in pairs], dtype=np.int64)
        self.lower_case = all(t == t.lower() for t in vocab.tokens if t not in HIDDEN)

    def matching(self, prefix):
        """The ids of the showable words that start with `prefix` (case-insensitive)."""
        p = prefix.lower()
        lo = bisect.bisect_left(self.keys, p)
        hi = bisect.bisect_left(self.keys, p + "\U0010ffff", lo)
        return self.sorted_ids[lo:hi]

    def best(self, logp, prefix, k):
        """The k most probable showable ids starting with `prefix` ("" for any),
        best first; equal probabilities: the lower id (the more frequent word) first.
        `logp` may be any scores that rank as the probabilities do (the cache's mix)."""
        if not prefix:
            return self._best_of_all(logp, k)
        ids = self.matching(prefix)
        scores = np.asarray(logp)[ids]
        n = len(scores)
        if n > k:
            # the k-th and (k+1)-th best put in place in one pass; only if they tie does every tie of
            # the k-th join (so the lower id wins it). Fewer numpy calls: a key press is mostly their overhead
            part = np.argpartition(scores, (n - k - 1, n - k))
            kth = scores[part[n - k]]
            top = part[n - k:] if scores[part[n - k - 1]] < kth else np.flatnonzero(scores >= kth)
        else:
            top = slice(None)
        ranked = sorted((-s, i) for s, i in zip(scores[top].tolist(), ids[top].tolist()) if s > -math.inf)
        return [i for _, i in ranked[:k]]

    def _best_of_all(self, logp, k):
        """`best` over every showable word, without a selection over all V (numpy's argpartition
        over 10,000 floats costs more than a step on this project's CPU). The scores fill a grid
        whose column j holds ids j, j + C, j + 2C, ...; the k-th best score overall is the k-th
        best among the k columns of highest maximum (any other id is at most its column's
        maximum, at most those k), so only columns whose maximum reaches it are read."""
        grid, c = self._grid, self.columns
        flat = grid.reshape(-1)
        np.add(logp, self.penalty, out=flat[: len(self.penalty)])
        top = grid.max(0)
        if c > k:
            kth = np.partition(grid[:, np.argpartition(-top, k - 1)[:k]].ravel(), -k)[-k]
        else:
            kth = np.partition(flat, -k)[-k]
        cols = np.flatnonzero(top >= kth)
        vals = grid[:, cols]
        rows, which = np.nonzero((vals >= kth) & np.isfinite(vals))
        found = rows * c + cols[which]
        order = np.lexsort((found, -vals[rows, which]))[:k]
        return [int(i) for i in found[order]]

    def display(self, token_id, sentence_start):
        word = self.vocab.tokens[token_id]
        if self.lower_case and (sentence_start or word == "i"):
            return word[:1].upper() + word[1:]
        return word


class Keyboard:
    """The keyboard's state: the context (fed to the model), the letters typed of
    the current word (`prefix`), and the k words `shown` with their probabilities.
    `cache` (edge_runtime.cache.Cache): the user's history, learned from each word
    fed and mixed into what is shown (`scores`)."""

    def __init__(self, model, vocab, k, blocked=(), cache=None):
        self.model, self.vocab, self.k, self.cache = model, vocab, k, cache
        self.words = blocked if isinstance(blocked, Words) else Words(vocab, blocked)
        self.prev_key = None
        self.feed(vocab.eos_id, learn=False)

    def feed(self, token_id, spelling=None, learn=True):
        """A whole word (or the end of a sentence), as the user spelled it where known:
        learned first (with a cache, unless `learn` is False: context handed over, not typed),
        so a new word is shown after one use; then one step; shows the next words."""
        if self.cache is not None:
            word = spelling or self.vocab.tokens[token_id]
            key = self.cache.learn(word, self.prev_key) if learn else self.cache.key_of(word)
            self.prev_key = START if token_id == self.vocab.eos_id else key
        self.logp = self.model.step(token_id)
        self.scores = Scores(self.words, self.logp) if self.cache is None else \
            self.cache.scores(self.logp, self.prev_key, self.words)
        self.sentence_start = token_id == self.vocab.eos_id
        self.prefix = ""
        self.shown = self._show()

    def type(self, letters):
        """Letters of the word being typed: shows the words that complete it (none if no word does)."""
        self.set_prefix(self.prefix + letters)

    def set_prefix(self, prefix):
        self.prefix = prefix
        self.shown = self._show()

    def _show(self):
        history = None if self.cache is None else self.cache.history
        return [(spelled(self.scores, c, history, self.prefix, self.sentence_start), self.scores.show(c))
                for c in self.scores.best(self.prefix, self.k)]


_PARTIAL = re.compile(r"[^\W\d_]+(?:'[^\W\d_]*)*$")  # letters at the very end: a word being typed
_SENTENCE_END = re.compile(r"([.!?])(?=\s|$)")


def type_text(keyboard, text):
    """Text as a user types it, onto `keyboard` (a Keyboard, or the knob's
    Switcher): whole words are fed with the user's spelling, a sentence end
    (. ! or ? before a space or the end) feeds <eos>, and the letters after the
    last space are the word being typed, shown as completions. That word
    carries over: more text continues it, and a space ends it.
    -> (words fed, those outside the vocabulary, each listed once)."""
    vocab = keyboard.vocab
    text = keyboard.prefix + text
    m = _PARTIAL.search(text)
    partial = m.group(0) if m else ""
    fed, oov = [], []
    for piece in _SENTENCE_END.split(text[: len(text) - len(partial)]):
        if piece in (".", "!", "?"):
            keyboard.feed(vocab.eos_id)
            continue
        for tok, spelling in words_spelled(piece):
            fed.append(tok)
            if tok not in vocab.index and spelling not in oov:
                oov.append(spelling)
            keyboard.feed(vocab.index.get(tok, vocab.unk_id), spelling)
    if partial or keyboard.prefix:
        keyboard.set_prefix(partial)
    return fed, oov
