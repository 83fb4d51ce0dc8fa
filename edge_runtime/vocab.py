"""The vocabulary: `vocab.txt`, one token per line, id = line number (0-based).

`<unk>` and `<eos>` are always present; words outside the vocabulary map to
`<unk>`. Built from the training split by frequency, ties broken
alphabetically so the same corpus always gives the same file.
"""
import collections

from edge_runtime.files import atomic_write_text
from edge_runtime.text import EOS, UNK

MIN_VOCAB_SIZE = 3  # <unk>, <eos> and at least one word


class Vocab:
    def __init__(self, tokens):
        tokens = list(tokens)
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary has duplicate tokens")
        for special in (UNK, EOS):
            if special not in tokens:
                raise ValueError(f"vocabulary lacks {special}")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.unk_id = self.index[UNK]
        self.eos_id = self.index[EOS]

    @property
    def never_suggested(self):
        """The ids a keyboard never shows (`<unk>`, `<eos>`): see edge_runtime/metrics.py."""
        return (self.unk_id, self.eos_id)

    def __len__(self):
        return len(self.tokens)

    @classmethod
    def build(cls, sentences, max_size):
        """From an iterable of token lists, the `max_size` most frequent."""
        if max_size < MIN_VOCAB_SIZE:
            raise ValueError(f"vocabulary size must be at least {MIN_VOCAB_SIZE}, got {max_size}")
        counts = collections.Counter()
        for sent in sentences:
            counts.update(sent)
        for special in (UNK, EOS):
            counts.pop(special, None)
        words = sorted(counts, key=lambda w: (-counts[w], w))[: max_size - 2]
        return cls([EOS, UNK] + words)

    def encode(self, tokens):
        """Token list -> id list; unknown words become <unk>."""
        get = self.index.get
        return [get(t, self.unk_id) for t in tokens]

    def decode(self, ids):
        return [self.tokens[i] for i in ids]

    def save(self, path):
        atomic_write_text(path, "".join(t + "\n" for t in self.tokens))

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
        if tokens and tokens[-1] == "":
            tokens.pop()
        return cls(tokens)
