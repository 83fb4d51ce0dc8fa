"""benchmarks/ngram.py --learn: each model scored with the user's history mixed in, against a
brute-force re-implementation of the mix (History.prob, the scalar definition, word by word);
an n-gram driven as the device drives a file; the comparisons paired on the learned scores."""
import math

import numpy as np
import pytest

from benchmarks import ngram
from edge_runtime.cache import learnable
from edge_runtime.history import START, History
from edge_runtime.vocab import Vocab

TOKENS = ["<eos>", "<unk>", "the", "then", "there", "to", "cat", "N", "monday", "darn", "dog", "sat"]
SHOWN = [i for i, t in enumerate(TOKENS) if t not in ("<eos>", "<unk>", "N")]


class BigramModel:
    """log-probabilities that depend on the token just read, so the mix moves the ranking."""

    def __init__(self, seed=0):
        self.logp = np.log(np.random.default_rng(seed).dirichlet(np.ones(len(TOKENS)), len(TOKENS)))
        self.logp = self.logp.astype(np.float32)

    def reset(self):
        pass

    def step(self, token_id):
        return self.logp[token_id].copy()


def stream(seed=1, n=400):
    rng = np.random.default_rng(seed)
    # words the user favours, so the history has something to learn
    favoured = [TOKENS.index(w) for w in ("cat", "sat", "darn")]
    ids = [0] + [int(rng.choice(favoured)) if rng.random() < 0.5 else int(rng.integers(len(TOKENS)))
                 for _ in range(n)]
    return ids


def brute_force_hits(model, ids, lam, half_life):
    """R@1 and R@3 hits: q(w) = (1 - lam) p(w) + lam History.prob(w | prev), ranked word by word."""
    h, prev, hits = History(half_life), START, [0, 0]
    for i in range(len(ids) - 1):
        p = np.exp(model.step(ids[i]).astype(np.float64))
        q = {w: ((1 - lam) * p[w] + lam * h.prob(TOKENS[w], prev)) if h.total > 0 else p[w] for w in SHOWN}
        shown = sorted(SHOWN, key=lambda w: -q[w])[:3]
        target = ids[i + 1]
        hits[0] += shown[0] == target
        hits[1] += target in shown
        word = TOKENS[target]
        if word == "<eos>":
            h.commit(word, prev)
            prev = START
        elif learnable(word):
            prev = h.commit(word, prev)[0]
        else:
            prev = None
    return hits


@pytest.mark.parametrize("lam,half_life", [(0.3, None), (0.5, 20)])
def test_learned_scores_against_the_mix_worked_word_by_word(lam, half_life):
    vocab, model, ids = Vocab(TOKENS), BigramModel(), stream()
    score = ngram.learned_keyboard(model, vocab, ids, lam, half_life)
    hits = brute_force_hits(model, ids, lam, half_life)
    assert (score.hits[1], score.hits[3]) == tuple(hits)
    assert score.positions == len(ids) - 1
    plain = ngram.neural_keyboard(model, vocab, ids)
    assert plain.hits[3] < score.hits[3]  # the history helps here, so a mix that did nothing would fail
    # each sentence's counts sum to the totals (what the paired bootstrap resamples)
    assert score.sentences().sum(axis=0)[2] == score.hits[3]


class FakeScorer:
    """NgramScorer's protocol: a state is the context since the sentence's start."""

    def __init__(self, vocab):
        self.vocab = vocab

    def start(self):
        return ("<s>",)

    def advance(self, at, token_id):
        return self.start() if token_id == self.vocab.eos_id else at + (self.vocab.tokens[token_id],)

    def logp(self, at):
        return at  # what the context was, to read back


def test_an_ngram_steps_as_the_device_steps_a_file():
    vocab = Vocab(TOKENS)
    steps = ngram.NgramSteps(FakeScorer(vocab))
    ids = [vocab.index[w] for w in ("<eos>", "the", "cat", "<eos>", "dog")]
    seen = [steps.step(i) for i in ids]
    assert seen == [("<s>",), ("<s>", "the"), ("<s>", "the", "cat"), ("<s>",), ("<s>", "dog")]
    steps.reset()
    assert steps.step(vocab.index["sat"]) == ("<s>", "sat")


def counts(hits3, sentences=40, positions=10):
    """Per-sentence counts (knob/bootstrap's columns) with `hits3` R@3 hits in each sentence."""
    c = np.zeros((sentences, 9), np.int64)
    c[:, 0], c[:, 2], c[:, 1] = positions, hits3, hits3 // 2
    c[:, 3], c[:, 4] = 30, 40
    c[:, 5:9] = 1, 2, 1, 2
    return c


def test_with_learning_each_file_is_set_against_the_ngrams_with_it_too():
    def learned(r_at_3):
        return dict(r_at_3=r_at_3, ksr=0.25, half_life=None, **{"lambda": 0.1})
    rows = [dict(model="kn3", bytes=1_000, r_at_3=0.3, ksr=0.25, learning=learned(0.35)),
            dict(model="kn5", bytes=9_000, r_at_3=0.4, ksr=0.25, learning=learned(0.42))]
    neural = [dict(point="lstm:int4", bytes=1_100, r_at_3=0.5, ksr=0.25, learning=learned(0.6))]
    c = {"kn3": counts(3), "kn5": counts(4), "lstm:int4": counts(5),
         "kn3+learning": counts(4), "kn5+learning": counts(6), "lstm:int4+learning": counts(7)}
    ngram.compare(rows, neural, c, replicates=200, learn=True)
    r = neural[0]
    assert r["against_nearest"]["model"] == "kn3" and r["against_best"]["model"] == "kn5"
    assert math.isclose(r["against_nearest"]["r_at_3"]["difference"], 0.2)   # 5 - 3 hits of 10
    assert math.isclose(r["against_best"]["r_at_3"]["difference"], 0.1)
    h = r["learning"]
    assert h["against_nearest"]["model"] == "kn3" and h["against_best"]["model"] == "kn5"
    assert math.isclose(h["against_nearest"]["r_at_3"]["difference"], 0.3)   # 7 - 4
    assert math.isclose(h["against_best"]["r_at_3"]["difference"], 0.1)      # 7 - 6
    assert math.isclose(h["gain"]["r_at_3"]["difference"], 0.2)              # 7 - 5
    assert math.isclose(rows[1]["learning"]["gain"]["r_at_3"]["difference"], 0.2)
    assert math.isclose(h["interval"]["r_at_3"]["low"], 0.7)
    lead = h["lead_nearest"]["r_at_3"]  # against kn3: 5 - 3 hits without, 7 - 4 with
    assert h["lead_nearest"]["model"] == "kn3" and h["lead_best"]["model"] == "kn5"
    assert math.isclose(lead["before"], 0.2) and math.isclose(lead["after"], 0.3)
    assert math.isclose(lead["difference"], 0.1) and math.isclose(lead["low"], 0.1)
    assert math.isclose(h["lead_best"]["r_at_3"]["difference"], 0.0)  # 5 - 4, then 7 - 6
    line = ngram.lead_table(dict(neural=neural)).splitlines()[2]
    assert line.startswith("| lstm:int4 | KenLM kn3 (nearest) | +0.2000 -> +0.3000 | +0.1000 [+0.1000, +0.1000] wider |")
    # the best n-gram with learning is the best by its own learned R@3
    rows[0]["learning"]["r_at_3"] = 0.5
    ngram.compare(rows, neural, c, replicates=200, learn=True)
    assert neural[0]["learning"]["against_best"]["model"] == "kn3"
    assert neural[0]["against_best"]["model"] == "kn5"
    text = ngram.learning_table(dict(models=rows, neural=neural)).splitlines()
    assert text[2].startswith("| KenLM kn3 | 0.00 |")
    assert "| 0.5000 | 0.6000 | +0.2000 [+0.2000, +0.2000] better |" in text[4]
