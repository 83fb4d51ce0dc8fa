"""Corpora in the PTB format and the batches training reads from them.

A corpus is three files, one sentence per line, tokens separated by spaces:
`ptb.{train,valid,test}.txt` (PTB as preprocessed by Mikolov) or
`{train,valid,test}.txt` (WikiText's layout), from `--data-dir`; with no
directory, the embedded Shakespeare corpus shipped in `training/corpus/`.

A split becomes one stream of ids: `<eos>` first (the context for the first
word), then every sentence followed by `<eos>`. Every token after the first
is predicted, end-of-sentence tokens included, which is how perplexity is
defined throughout edgelm.
"""
import collections
import gzip
import math
import os

import numpy as np

from edge_runtime.text import split_ptb_line

SPLITS = ("train", "valid", "test")
LAYOUTS = ("ptb.{}.txt", "{}.txt")
EMBEDDED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
EMBEDDED_NAME = "shakespeare"


class DataError(ValueError):
    """Bad training data; the message is one line naming the problem."""


def split_paths(data_dir=None):
    """{split: path} of a corpus folder, or of the embedded corpus."""
    if data_dir is None:
        return {s: os.path.join(EMBEDDED_DIR, f"{EMBEDDED_NAME}.{s}.txt.gz") for s in SPLITS}
    if not os.path.isdir(data_dir):
        raise DataError(f"data directory {data_dir} does not exist")
    for layout in LAYOUTS:
        paths = {s: os.path.join(data_dir, layout.format(s)) for s in SPLITS}
        if any(os.path.exists(p) for p in paths.values()):
            missing = [os.path.basename(p) for p in paths.values() if not os.path.exists(p)]
            if missing:
                raise DataError(f"{data_dir} lacks {', '.join(missing)}")
            return paths
    raise DataError(f"{data_dir} holds neither ptb.train.txt/ptb.valid.txt/ptb.test.txt "
                    "nor train.txt/valid.txt/test.txt")


def read_sentences(path):
    """A PTB-format file (plain or .gz) -> list of token lists."""
    opener = gzip.open if path.endswith(".gz") else open
    sentences = []
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}, line {lineno}: not UTF-8 ({e.reason} at byte {e.start})") from None
            tokens = split_ptb_line(line)
            if tokens:
                sentences.append(tokens)
    if not sentences:
        raise DataError(f"{path} is empty")
    return sentences


def load_corpus(data_dir=None):
    """{split: list of token lists}."""
    return {s: read_sentences(p) for s, p in split_paths(data_dir).items()}


def to_stream(sentences, vocab):
    """Token lists -> int32 ids: <eos>, then each sentence followed by <eos>."""
    ids = [vocab.eos_id]
    for sent in sentences:
        ids.extend(vocab.encode(sent))
        ids.append(vocab.eos_id)
    return np.asarray(ids, dtype=np.int32)


def batchify(stream, batch_size, bptt):
    """Cut a stream into `batch_size` parallel rows and windows of `bptt` steps.

    Returns inputs and targets of shape (n_batches, batch_size, bptt): row b
    of batch k continues row b of batch k - 1, so the recurrent state is
    carried from one batch to the next; targets are the inputs shifted by one.
    The ragged tail (under one window per row) is dropped.
    """
    row_len = (len(stream) - 1) // batch_size
    n_batches = row_len // bptt
    if n_batches < 1:
        raise DataError(f"the training text ({len(stream)} tokens) is too short for "
                        f"batch size {batch_size} x bptt {bptt}")
    used = n_batches * bptt
    rows_x = np.stack([stream[b * row_len: b * row_len + used] for b in range(batch_size)])
    rows_y = np.stack([stream[b * row_len + 1: b * row_len + used + 1] for b in range(batch_size)])
    x = rows_x.reshape(batch_size, n_batches, bptt).transpose(1, 0, 2)
    y = rows_y.reshape(batch_size, n_batches, bptt).transpose(1, 0, 2)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def unigram_perplexity(train_sentences, eval_stream, vocab):
    """Perplexity of the add-one unigram model of the training split: the
    floor a trained model must be far below."""
    counts = collections.Counter(to_stream(train_sentences, vocab)[1:].tolist())
    total = sum(counts.values()) + len(vocab)
    logp = {i: math.log((counts.get(i, 0) + 1) / total) for i in range(len(vocab))}
    targets = eval_stream[1:]
    return math.exp(-sum(logp[int(t)] for t in targets) / len(targets))


def calibration_windows(stream, windows=16, length=64):
    """`windows` evenly spaced runs of `length` ids from a stream: the text a
    converter calibrates full-integer quantization with."""
    length = min(length, len(stream))
    starts = np.linspace(0, len(stream) - length, windows).astype(int)
    return np.stack([stream[s:s + length] for s in starts]).astype(np.int32)
