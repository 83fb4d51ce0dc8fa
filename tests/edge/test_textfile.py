"""The text formats eval reads: detection, .gz, and the progress line."""
import gzip
import io

import pytest

from edge_runtime.predict import Progress
from edge_runtime.textfile import TextError, detect_format, iter_sentences

PROSE = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
         "must be in want of a wife.\nHowever little known the feelings or views of such a man may be "
         "on his first entering a neighbourhood, this truth is so well fixed.\n")
PTB = " the <unk> company said N shares were sold \n mr. <unk> is chairman of the board \n"
TOKENIZED = "o'er the hills and far away\nthe N men of harlech\nwe few we happy few\n"


@pytest.mark.parametrize("text,fmt", [(PROSE, "raw"), (PTB, "ptb"), (TOKENIZED, "ptb")])
def test_detect_format(tmp_path, text, fmt):
    f = tmp_path / "t.txt"
    f.write_text(text)
    assert detect_format(str(f)) == fmt


def test_raw_prose_is_tokenized_as_in_training_and_gz_is_read(tmp_path):
    f = tmp_path / "t.txt.gz"
    with gzip.open(f, "wt", encoding="utf-8") as g:
        g.write(PROSE)
    assert detect_format(str(f)) == "raw"
    sentences = list(iter_sentences(str(f), "raw"))
    assert sentences[0][:4] == ["it", "is", "a", "truth"] and "acknowledged," not in sentences[0]
    assert list(iter_sentences(str(f), "ptb"))[0][:4] == ["It", "is", "a", "truth"]


def test_unreadable_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(TextError, match="is a directory"):
        detect_format(str(tmp_path))
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(TextError, match="cannot be read"):
        list(iter_sentences(str(bad)))


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_shows_on_a_terminal_once_a_file_takes_seconds():
    now = [0.0]
    term = Terminal()
    p = Progress(term, after=2.0, clock=lambda: now[0])
    p(100)
    now[0] = 1.0
    p(200)
    assert term.getvalue() == ""  # a quick file says nothing
    now[0] = 2.5
    p(5000)
    p.done()
    assert term.getvalue() == "\r5,000 tokens, 2 s\n"
    quiet = io.StringIO()  # not a terminal: never
    p = Progress(quiet, after=0.0, clock=lambda: 10.0)
    p(1)
    p.done()
    assert quiet.getvalue() == ""
