"""Streaming a text file into token ids, as the device's `eval` reads it.

Two formats (`FORMATS`):
- ptb: one sentence per line, tokens separated by spaces (PTB, the embedded corpus);
- raw: prose; each line split into sentences and tokenized exactly as the
  training corpus was (`edge_runtime.text`).
`auto` (the default) looks at the first lines: text that has `<unk>` is
PTB format; otherwise it is raw when more than `RAW_SHARE` of its
whitespace-separated tokens are not already tokens (capitals, punctuation),
since reading raw prose as PTB would make every "Word," a `<unk>` and the
perplexity look better than it is. Either way every sentence is followed by
`<eos>`. A `.gz` file is read directly. Lines are decoded one at a time, so a
bad byte is reported with its line number (or replaced, if asked).
"""
import gzip
import itertools

from edge_runtime.text import EOS, NUMBER, UNK, split_ptb_line, split_sentences, tokenize

FORMATS = ("auto", "ptb", "raw")
SAMPLE_LINES = 200
RAW_SHARE = 0.05
OOV_WARNING = 0.10  # warn when more of the words than this are outside the vocabulary


class TextError(ValueError):
    """Unusable input text; one-line message."""


def _open(path):
    try:
        return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    except IsADirectoryError:
        raise TextError(f"{path} is a directory; give a text file") from None
    except FileNotFoundError:
        raise TextError(f"{path} does not exist") from None


def _lines(path, errors):
    with _open(path) as f:
        try:
            for lineno, data in enumerate(f, 1):
                try:
                    yield data.decode("utf-8", errors=errors)
                except UnicodeDecodeError as e:
                    raise TextError(f"{path}, line {lineno}: not UTF-8 ({e.reason} at byte {e.start}); "
                                    "use --errors replace to replace bad bytes") from None
        except (OSError, EOFError) as e:  # a truncated or bad .gz
            raise TextError(f"{path}: cannot be read ({e})") from None


def detect_format(path, errors="strict"):
    """'ptb' or 'raw' for a file, from its first SAMPLE_LINES lines (see above)."""
    tokens = [t for line in itertools.islice(_lines(path, errors), SAMPLE_LINES) for t in split_ptb_line(line)]
    if UNK in tokens:
        return "ptb"
    changed = sum(1 for t in tokens if t not in (NUMBER, EOS) and tokenize(t) != [t])
    return "raw" if tokens and changed > RAW_SHARE * len(tokens) else "ptb"


def iter_sentences(path, fmt="ptb", errors="strict"):
    for line in _lines(path, errors):
        if fmt == "raw":
            for sentence in split_sentences(line):
                tokens = tokenize(sentence)
                if tokens:
                    yield tokens
        else:
            tokens = split_ptb_line(line)
            if tokens:
                yield tokens


def iter_ids(path, vocab, fmt="ptb", errors="strict", counts=None, spellings=False):
    """<eos>, then each sentence's ids and <eos>. `counts` (a dict) receives
    'oov' (words outside the vocabulary, mapped to <unk>), 'words' and 'sentences'.
    `spellings`: a word outside the vocabulary comes as (<unk>'s id, the word),
    so the keyboard metrics can count its letters."""
    if fmt not in ("ptb", "raw"):
        raise TextError(f"unknown text format {fmt!r}; choose from ptb, raw (or auto, resolved first)")
    counts = counts if counts is not None else {}
    counts.update(oov=0, words=0, sentences=0)
    yield vocab.eos_id
    for tokens in iter_sentences(path, fmt, errors):
        counts["sentences"] += 1
        counts["words"] += len(tokens)
        for tok in tokens:
            i = vocab.index.get(tok)
            if i is None:
                counts["oov"] += 1
                yield (vocab.unk_id, tok) if spellings else vocab.unk_id
                continue
            if tok == UNK:
                counts["oov"] += 1  # already <unk> in the file (PTB marks them so): its spelling is lost
            yield i
        yield vocab.eos_id
