import gzip
import os

import numpy as np
import pytest

from edge_runtime.vocab import Vocab
from training import data
from tests.conftest import write_corpus


def test_batchify_targets_shift_and_rows_continue():
    stream = np.arange(100, dtype=np.int32)
    x, y = data.batchify(stream, batch_size=3, bptt=5)
    row_len = 99 // 3  # 33 -> 6 windows of 5 per row
    assert x.shape == y.shape == (6, 3, 5)
    np.testing.assert_array_equal(y, x + 1)  # targets are the inputs shifted by one
    for b in range(3):  # state continuity: row b of batch k+1 follows row b of batch k
        row = x[:, b, :].reshape(-1)
        np.testing.assert_array_equal(row, np.arange(b * row_len, b * row_len + 30))


def test_to_stream_starts_and_ends_sentences_with_eos():
    v = Vocab.build([["a", "b"]], 10)
    s = data.to_stream([["a", "b"], ["b", "zz"]], v)
    assert v.decode(s.tolist()) == ["<eos>", "a", "b", "<eos>", "b", "<unk>", "<eos>"]


@pytest.mark.parametrize("layout", ["ptb.{}.txt", "{}.txt"])
def test_reads_both_layouts(tmp_path, layout):
    d = write_corpus(tmp_path, layout=layout)
    corpus = data.load_corpus(d)
    assert set(corpus) == {"train", "valid", "test"} and len(corpus["train"]) == 400


def test_embedded_corpus_is_real_and_split_by_work():
    corpus = data.load_corpus()
    words = {s: sum(len(x) for x in corpus[s]) for s in corpus}
    assert words["train"] > 500_000 and words["valid"] > 40_000 and words["test"] > 40_000
    train_lines = {" ".join(s) for s in corpus["train"] if len(s) > 12}
    test_lines = [" ".join(s) for s in corpus["test"] if len(s) > 12]
    assert sum(line in train_lines for line in test_lines) < 0.01 * len(test_lines)
    assert "macbeth" in {w for s in corpus["test"] for w in s}


def test_unigram_perplexity_hand_worked():
    v = Vocab.build([["a", "a", "b"]], 10)  # tokens: <eos> <unk> a b
    # train stream targets: a a b <eos> -> counts a=2, b=1, eos=1; add-one over 4 types: total 8
    ppl = data.unigram_perplexity([["a", "a", "b"]], data.to_stream([["a"]], v), v)
    # eval targets: a (3/8), <eos> (2/8)
    assert ppl == pytest.approx(np.exp(-(np.log(3 / 8) + np.log(2 / 8)) / 2))


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_corpus(str(tmp_path / "nope"))
    d = write_corpus(tmp_path / "a")
    os.remove(os.path.join(d, "test.txt"))
    with pytest.raises(data.DataError, match="lacks test.txt"):
        data.load_corpus(d)
    d = write_corpus(tmp_path / "b")
    open(os.path.join(d, "valid.txt"), "w").close()
    with pytest.raises(data.DataError, match="valid.txt is empty"):
        data.load_corpus(d)
    d = write_corpus(tmp_path / "c")
    with open(os.path.join(d, "train.txt"), "ab") as f:
        f.write(b"ok line\nbad \xff byte\n")
    with pytest.raises(data.DataError, match="line 402: not UTF-8"):
        data.load_corpus(d)


def test_gzip_files_read(tmp_path):
    p = tmp_path / "x.txt.gz"
    with gzip.open(p, "wt") as f:
        f.write("a b\n\nc\n")
    assert data.read_sentences(str(p)) == [["a", "b"], ["c"]]
