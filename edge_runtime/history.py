"""The user's history: the words they committed, kept on the device in a file
they name and can delete (`predict.py forget --history FILE`).

What is kept: each word's key (its lower-case form), the spelling the user
last gave it mid-sentence (so "Alice" and "iPhone" come back as typed), its
count and the tick (words committed so far) it was last used at, and which
word followed which (bigram counts; the key `<s>` stands before a sentence's
first word). Words outside the model's vocabulary are kept like any other.
Nothing is sent anywhere and nothing else is read or written.

Counts decay with a half-life in committed words (`half_life`; None: no
decay). All counts share one scale, so decay costs nothing a word: a commit
at tick t adds 2^((t - base) / half_life), and a count's value now is its
stored number times 2^(-(tick - base) / half_life); the scale is folded back
into the numbers (`base` moved to now) before it grows past float range.

Bounded: past `max_words` words (or `max_bigrams` bigrams) the weakest tenth
(lowest count, then least recent) is dropped with the bigrams that name it,
so the file stays under about 1 MB (benchmarks/learning.py measures it).

The file: JSON, written atomically (a temporary name, fsync, rename) with
mode 0600. Two processes that share it lose no committed word: `save` takes
a lock (`FILE.lock`, fcntl), re-reads the file and, if another process wrote
it since this one read it, replays this process's commits onto that version.
A file that is not a history (corrupted, or some other file) is moved aside
to `FILE.unreadable-N` (nothing is deleted) with a one-line warning, and the
session starts with an empty history.
"""
import json
import math
import os
import uuid

from edge_runtime.files import atomic_write_bytes

try:
    import fcntl
except ImportError:  # not on a Unix: no lock (one writer at a time is then the caller's business)
    fcntl = None

FORMAT = "edgelm-history"
VERSION = 1
START = "<s>"           # the key before a sentence's first word
MAX_WORDS = 10_000
MAX_BIGRAMS = 15_000
REBASE_AT = 30          # half-lives between scale fold-backs: 2^30 keeps float32 views exact enough
EVICT_SHARE = 0.1       # the share dropped once a cap is passed


class HistoryError(ValueError):
    """A history option that cannot be used; one-line message."""


class History:
    def __init__(self, half_life=None, max_words=MAX_WORDS, max_bigrams=MAX_BIGRAMS):
        if half_life is not None and not half_life > 0:
            raise HistoryError(f"the history's half-life must be positive or none, got {half_life}")
        self.half_life, self.max_words, self.max_bigrams = half_life, max_words, max_bigrams
        self.tick = self.base = 0
        self.words = {}       # key -> [stored count, last tick, spelling]
        self.next = {}        # prev key -> {key: stored count}
        self.next_total = {}  # prev key -> sum of its followers' stored counts
        self.bigrams = 0
        self.total = 0.0      # sum of the words' stored counts
        self.pending = []     # (spelling, prev key) committed since the last load or save
        self.generation = None  # the file's generation this history was read from
        self.version = 0      # bumped when counts change other than by one commit (rebase, eviction, merge)

    # counting
    def weight(self):
        """What a commit adds now, in stored units."""
        return 1.0 if self.half_life is None else 2.0 ** ((self.tick - self.base) / self.half_life)

    def scale(self):
        """Stored units -> counts now."""
        return 1.0 / self.weight()

    def commit(self, spelling, prev=None, record=True):
        """The user committed `spelling` after the word `prev` (a key, START, or None: no bigram).
        -> (key, added weight). The caller decides what is never learned (blocked words, numbers)."""
        key = spelling.lower()
        if self.half_life is not None and (self.tick - self.base) / self.half_life > REBASE_AT:
            self._rebase()
        self.tick += 1  # a count is halved by every `half_life` words committed after it
        w = self.weight()
        entry = self.words.get(key)
        if entry is None:
            entry = self.words[key] = [0.0, 0, spelling if prev != START else _uncapitalised(spelling)]
        elif prev != START and (spelling != key or entry[2] == key):
            entry[2] = spelling  # a sentence's first letter, or a lazy lower case, says nothing of the case
        entry[0] += w
        entry[1] = self.tick
        self.total += w
        if prev is not None:
            followers = self.next.setdefault(prev, {})
            if key not in followers:
                self.bigrams += 1
            followers[key] = followers.get(key, 0.0) + w
            self.next_total[prev] = self.next_total.get(prev, 0.0) + w
        if record:
            self.pending.append((spelling, prev))
        if len(self.words) > self.max_words or self.bigrams > self.max_bigrams:
            self._evict()
        return key, w

    def count(self, key):
        e = self.words.get(key)
        return 0.0 if e is None else e[0] * self.scale()

    def prob(self, key, prev=None):
        """The cache's probability of `key` after `prev`: the bigram counts interpolated with the
        unigram by Witten-Bell, P = (c(prev, w) + T P1(w)) / (c(prev) + T), T the words seen after
        prev; P1(w) = c(w) / sum c. 0 for an empty history (the caller mixes nothing in then)."""
        if self.total <= 0:
            return 0.0
        entry = self.words.get(key)
        p1 = entry[0] / self.total if entry is not None else 0.0
        followers = self.next.get(prev)
        if not followers:
            return p1
        t, s = len(followers), self.scale()
        return (s * followers.get(key, 0.0) + t * p1) / (s * self.next_total[prev] + t)

    def spelling(self, key):
        e = self.words.get(key)
        return None if e is None else e[2]

    def _rebase(self):
        s = self.scale()
        for e in self.words.values():
            e[0] *= s
        for followers in self.next.values():
            for k in followers:
                followers[k] *= s
        self.next_total = {p: c * s for p, c in self.next_total.items()}
        self.total *= s
        self.base = self.tick
        self.version += 1

    def _evict(self):
        if len(self.words) > self.max_words:
            drop = sorted(self.words, key=lambda k: (self.words[k][0], self.words[k][1]))
            drop = set(drop[: len(self.words) - int(self.max_words * (1 - EVICT_SHARE))])
            for k in drop:
                self.total -= self.words.pop(k)[0]
                self.bigrams -= len(self.next.pop(k, {}))
            for followers in self.next.values():
                for k in drop & followers.keys():
                    del followers[k]
                    self.bigrams -= 1
        if self.bigrams > self.max_bigrams:
            pairs = sorted((c, p, k) for p, f in self.next.items() for k, c in f.items())
            for _, p, k in pairs[: self.bigrams - int(self.max_bigrams * (1 - EVICT_SHARE))]:
                del self.next[p][k]
                self.bigrams -= 1
        self.next = {p: f for p, f in self.next.items() if f}
        self.next_total = {p: sum(f.values()) for p, f in self.next.items()}
        self.total = sum(e[0] for e in self.words.values())
        self.version += 1

    # the file
    def to_json(self):
        s = self.scale()
        return dict(format=FORMAT, version=VERSION, generation=self.generation, tick=self.tick,
                    half_life=self.half_life,
                    words=[[k, _short(e[0] * s), e[1]] + ([e[2]] if e[2] != k else [])
                           for k, e in self.words.items()],
                    bigrams=[[p, k, _short(c * s)] for p, f in self.next.items() for k, c in f.items()])

    @classmethod
    def from_json(cls, doc, half_life=None, **caps):
        """A history from its file's JSON; ValueError (any kind) where it is not one."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not an edgelm history")
        if doc.get("version") != VERSION:
            raise ValueError(f"history version {doc.get('version')}, this runtime reads {VERSION}")
        h = cls(half_life, **caps)
        h.tick = h.base = int(doc["tick"])
        for row in doc["words"]:
            key, count, last = row[:3]
            spelling = row[3] if len(row) > 3 else key
            if not (isinstance(key, str) and isinstance(spelling, str) and spelling.lower() == key
                    and math.isfinite(count) and count >= 0):
                raise ValueError(f"bad word entry {key!r}")
            h.words[key] = [float(count), int(last), spelling]
            h.total += float(count)
        for prev, key, count in doc["bigrams"]:
            if not (isinstance(prev, str) and isinstance(key, str) and math.isfinite(count) and count >= 0):
                raise ValueError("bad bigram entry")
            h.next.setdefault(prev, {})[key] = float(count)
            h.next_total[prev] = h.next_total.get(prev, 0.0) + float(count)
            h.bigrams += 1
        h.generation = doc.get("generation")
        return h


def _short(x):
    """A count as the file keeps it: 6 significant digits."""
    return float(f"{x:.6g}")


def _uncapitalised(spelling):
    """A sentence's first word as it would be mid-sentence: "The" -> "the", but "NASA" and "iPhone" kept."""
    return spelling.lower() if spelling[1:] == spelling[1:].lower() else spelling


def _read(path):
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def _aside(path):
    """Move an unreadable file out of the way (never delete it): -> its new name."""
    n = 1
    while os.path.exists(f"{path}.unreadable-{n}"):
        n += 1
    os.replace(path, f"{path}.unreadable-{n}")
    return f"{path}.unreadable-{n}"


def load(path, half_life=None, warn=None, **caps):
    """The history in `path`; an empty one if there is no file. A file that is not a
    history is moved aside, `warn` (a callable) told in one line, and an empty history returned."""
    if os.path.isdir(path):
        raise HistoryError(f"--history {path} is a directory; give a file name (it is created if missing)")
    if not os.path.exists(path):
        return History(half_life, **caps)
    try:
        return History.from_json(_read(path), half_life, **caps)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        moved = _aside(path)
        if warn is not None:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            warn(f"warning: {path} is not a readable history ({reason}); moved aside to {moved}, starting "
                 "with an empty history")
        return History(half_life, **caps)
    except OSError as e:
        raise HistoryError(f"--history {path}: cannot be read ({e.strerror})") from None


class _Lock:
    def __init__(self, path):
        self.path = path + ".lock"

    def __enter__(self):
        self.f = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
        if fcntl is not None:
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if fcntl is not None:
            fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def save(history, path, warn=None):
    """Write `history` to `path`, keeping what any other process wrote there since it
    was read (see the module's docstring): `history` then becomes, in place, the merged one."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise HistoryError(f"--history {path}: its folder {directory} does not exist")
    with _Lock(path):
        on_disk = None
        if not os.path.exists(path) and history.generation is not None:
            # read from a file that is gone: forgotten meanwhile, so only what came after is kept
            on_disk = History(history.half_life, max_words=history.max_words, max_bigrams=history.max_bigrams)
        elif os.path.exists(path):
            try:
                doc = _read(path)
                if isinstance(doc, dict) and doc.get("generation") != history.generation:
                    on_disk = History.from_json(doc, history.half_life, max_words=history.max_words,
                                                max_bigrams=history.max_bigrams)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                moved = _aside(path)
                if warn is not None:
                    warn(f"warning: {path} was overwritten by something that is not a history; moved aside "
                         f"to {moved}")
        if on_disk is not None:  # another writer since we read: our commits, replayed onto theirs
            for spelling, prev in history.pending:
                on_disk.commit(spelling, prev, record=False)
            on_disk.version = history.version + 1
            history.__dict__.update(on_disk.__dict__)  # in place: every cache holding it sees the change
        history.generation = uuid.uuid4().hex
        history.pending = []
        atomic_write_bytes(path, json.dumps(history.to_json(), separators=(",", ":")).encode("utf-8"), mode=0o600)


def forget(path):
    """Delete the history file (and its lock). -> True if there was one."""
    if os.path.isdir(path):
        raise HistoryError(f"--history {path} is a directory, not a history file")
    existed = os.path.exists(path)
    for p in (path, path + ".lock"):
        if os.path.exists(p):
            os.unlink(p)
    return existed
