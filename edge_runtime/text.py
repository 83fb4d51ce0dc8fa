"""Tokenizer shared by the corpus builder, training and the device.

Two kinds of input:
- PTB format (one sentence per line, tokens separated by spaces): split on
  whitespace, nothing else (`split_ptb_line`).
- raw text typed by a user or read from a book: `tokenize` lower-cases it,
  keeps words (letters with inner apostrophes, as in "o'er" and "drown'd"),
  maps every number to "N" and drops punctuation, giving the same tokens the
  embedded corpus was built with.
"""
import re

EOS = "<eos>"
UNK = "<unk>"
NUMBER = "N"

# A word: letters, optionally joined by apostrophes; or a number (1,000 / 3.5).
_TOKEN_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+(?:[.,]\d+)*")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")


def tokenize(text):
    """Raw text -> list of tokens (lower case, numbers as N, no punctuation)."""
    tokens = []
    for match in _TOKEN_RE.finditer(text.lower()):
        tok = match.group(0)
        tokens.append(NUMBER if tok[0].isdigit() else tok)
    return tokens


def words_spelled(text):
    """Raw text -> [(token, the word as written)]: `tokenize`'s tokens beside the user's own
    spelling (capitals kept), which the keyboard learns and shows back."""
    out = []
    for match in _TOKEN_RE.finditer(text):
        word = match.group(0)
        out.append((NUMBER if word[0].isdigit() else word.lower(), word))
    return out


def split_sentences(text):
    """Split a paragraph into sentences at ., ! or ? followed by space."""
    return [s for s in _SENTENCE_END_RE.split(text.strip()) if s]


def split_ptb_line(line):
    """A line of a PTB-format file -> its tokens (whitespace-separated)."""
    return line.split()
