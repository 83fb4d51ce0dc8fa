from edge_runtime.text import EOS, UNK, split_ptb_line, split_sentences, tokenize
from edge_runtime.vocab import Vocab

import pytest


def test_tokenize_lowercases_keeps_apostrophes_maps_numbers():
    assert tokenize("O'er the hills, 'tis 1,000 miles -- in 1599!") == \
        ["o'er", "the", "hills", "tis", "N", "miles", "in", "N"]
    assert tokenize("Drown'd? NO.") == ["drown'd", "no"]
    assert tokenize("  ...  ") == []


def test_split_sentences_and_ptb_lines():
    assert split_sentences("Who's there? Nay, answer me. Stand!") == ["Who's there?", "Nay, answer me.", "Stand!"]
    assert split_ptb_line(" the <unk> sat  N \n") == ["the", "<unk>", "sat", "N"]


def test_vocab_by_frequency_with_specials(tmp_path):
    v = Vocab.build([["b", "a", "b"], ["c", "b", "a"], ["d"]], max_size=4)
    assert v.tokens == [EOS, UNK, "b", "a"]  # b (3) before a (2); c, d cut
    assert v.encode(["a", "zzz", "b"]) == [3, v.unk_id, 2]
    assert v.decode([2, 0]) == ["b", EOS]


def test_vocab_round_trip_file(tmp_path):
    v = Vocab.build([["x", "y", "y", "z"]], max_size=10)
    path = tmp_path / "vocab.txt"
    v.save(str(path))
    lines = path.read_text().splitlines()
    assert lines == v.tokens and lines[0] == EOS
    assert Vocab.load(str(path)).tokens == v.tokens
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_vocab_ties_alphabetical_and_minimum():
    v = Vocab.build([["q", "p", "r"]], max_size=4)
    assert v.tokens[2:] == ["p", "q"]
    with pytest.raises(ValueError, match="at least 3"):
        Vocab.build([["a"]], max_size=2)
