"""Streaming a text file into token ids, as the device's `eval` reads it.

PTB format (default): one sentence per line, tokens separated by spaces.
Raw text (`raw=True`): each line split into sentences and tokenized exactly
as the training corpus was (`edge_runtime.text`). Either way every sentence
is followed by `<eos>`. Lines are decoded one at a time, so a bad byte is
reported with its line number (or replaced, if asked).
"""
from edge_runtime.text import UNK, split_ptb_line, split_sentences, tokenize


class TextError(ValueError):
    """Unusable input text; one-line message."""


def iter_sentences(path, raw=False, errors="strict"):
    with open(path, "rb") as f:
        for lineno, data in enumerate(f, 1):
            try:
                line = data.decode("utf-8", errors=errors)
            except UnicodeDecodeError as e:
                raise TextError(f"{path}, line {lineno}: not UTF-8 ({e.reason} at byte {e.start}); "
                                "use --errors replace to replace bad bytes") from None
            if raw:
                for sentence in split_sentences(line):
                    tokens = tokenize(sentence)
                    if tokens:
                        yield tokens
            else:
                tokens = split_ptb_line(line)
                if tokens:
                    yield tokens


def iter_ids(path, vocab, raw=False, errors="strict", counts=None):
    """<eos>, then each sentence's ids and <eos>. `counts` (a dict) receives
    'oov' (words outside the vocabulary, mapped to <unk>) and 'sentences'."""
    counts = counts if counts is not None else {}
    counts.update(oov=0, sentences=0)
    yield vocab.eos_id
    for tokens in iter_sentences(path, raw, errors):
        counts["sentences"] += 1
        for tok in tokens:
            i = vocab.index.get(tok)
            if i is None:
                counts["oov"] += 1
                i = vocab.unk_id
            elif tok == UNK:
                counts["oov"] += 1  # already <unk> in the file (PTB marks them so)
            yield i
        yield vocab.eos_id
