"""The keyboard's counts sentence by sentence, and the paired bootstrap of two
models' difference over sentences, against fresh scores of each sentence and a
plain resampling loop."""
import numpy as np
import pytest

from edge_runtime.keyboard import Words
from edge_runtime.keyboard_metrics import COUNTS, KeyboardScore
from edge_runtime.vocab import Vocab
from knob.bootstrap import change, figure, paired, verdict


def random_text(rng, vocab, sentences):
    out = []
    for _ in range(sentences):
        out.append([int(t) for t in rng.integers(1, len(vocab), size=rng.integers(1, 6))] + [vocab.eos_id])
    return out


def test_each_sentences_counts_are_those_of_the_sentence_scored_alone():
    rng = np.random.default_rng(0)
    words = sorted({"".join(rng.choice(list("abcd"), size=rng.integers(1, 6))) for _ in range(80)})
    vocab = Vocab(["<eos>", "<unk>", "N"] + words)
    w = Words(vocab)
    text = random_text(rng, vocab, 12)
    text[-1] = text[-1][:-1] or [3]  # the text ends mid-sentence: its last sentence is still counted
    logps = [[np.log(rng.choice([0.1, 0.2, 0.3, 0.4], size=len(vocab))) for _ in s] for s in text]
    whole = KeyboardScore(w)
    for s, ls in zip(text, logps):
        for t, lp in zip(s, ls):
            whole.add(lp, t)
    per = whole.sentences()
    assert per.shape == (12, len(COUNTS))
    for i, (s, ls) in enumerate(zip(text, logps)):
        alone = KeyboardScore(w)
        for t, lp in zip(s, ls):
            alone.add(lp, t)
        r = alone.result()
        assert per[i, COUNTS.index("positions")] == len(s)
        assert per[i, COUNTS.index("key_presses")] == r["key_presses"]
        assert per[i, COUNTS.index("key_presses_without")] == r["key_presses_without"]
        assert per[i, COUNTS.index("hits_3")] == round(r["r_at_3"] * len(s))
    total = whole.result()
    sums = per.sum(0)
    for name in ("r_at_1", "r_at_3", "ksr", "completion_recall_1", "completion_recall_2"):
        assert abs(figure(name, sums) - total[name]) < 1e-4, name


def loop_bootstrap(a, b, name, replicates, rng):
    """The plain definition: draw sentence indices, sum, take the figures' difference."""
    diffs = []
    for _ in range(replicates):
        pick = rng.integers(0, len(a), size=len(a))
        diffs.append(figure(name, b[pick].sum(0)) - figure(name, a[pick].sum(0)))
    return np.percentile(diffs, [2.5, 97.5])


def counts(rng, n, p_hit):
    """n one-position sentences with a next-word hit at rate p_hit (and a KSR count alike)."""
    c = np.zeros((n, len(COUNTS)), np.int64)
    c[:, COUNTS.index("positions")] = 1
    hits = rng.random(n) < p_hit
    for k in ("hits_1", "hits_3"):
        c[:, COUNTS.index(k)] = hits
    c[:, COUNTS.index("key_presses_without")] = 5
    c[:, COUNTS.index("key_presses")] = np.where(hits, 1, 5)
    for j in (1, 2):
        c[:, COUNTS.index(f"completion_words_{j}")] = 1
        c[:, COUNTS.index(f"completion_hits_{j}")] = hits
    return c


def test_the_interval_is_the_resampling_loops_and_the_normal_one():
    rng = np.random.default_rng(1)
    n = 3000
    a = counts(rng, n, 0.30)
    b = a.copy()
    better = (rng.random(n) < 0.05) & (a[:, COUNTS.index("hits_3")] == 0)  # b also finds 5% of a's misses
    b[better, COUNTS.index("hits_3")] = 1
    d = paired(a, b, names=("r_at_3",))["r_at_3"]
    assert d["difference"] == round(better.mean(), 4)
    low, high = loop_bootstrap(a, b, "r_at_3", 2000, np.random.default_rng(2))
    assert abs(d["low"] - low) < 0.002 and abs(d["high"] - high) < 0.002
    # one position a sentence: the paired difference's standard error is sd(per-sentence difference) / sqrt(n)
    half = 1.96 * better.std() / np.sqrt(n)
    assert abs((d["high"] - d["low"]) / 2 - half) < 0.1 * half
    assert verdict(d) == "better"


def test_the_same_model_twice_is_a_tie_with_a_zero_interval_and_noise_is_a_tie():
    rng = np.random.default_rng(3)
    a = counts(rng, 500, 0.3)
    same = paired(a, a)
    assert all(v["difference"] == v["low"] == v["high"] == 0 for v in same.values())
    assert verdict(same["ksr"]) == "tie"
    b, h = a.copy(), COUNTS.index("hits_3")
    # b differs from a with no direction: 30 of a's hits are misses in b, and 30 of its misses hits
    b[rng.choice(np.flatnonzero(a[:, h] == 1), 30, replace=False), h] = 0
    b[rng.choice(np.flatnonzero(a[:, h] == 0), 30, replace=False), h] = 1
    assert paired(a, b)["r_at_3"]["low"] < 0 < paired(a, b)["r_at_3"]["high"]


def test_unpaired_counts_are_refused():
    rng = np.random.default_rng(4)
    a, b = counts(rng, 10, 0.3), counts(rng, 11, 0.3)
    with pytest.raises(ValueError, match="sentences"):
        paired(a, b)
    b = a.copy()
    b[0, COUNTS.index("positions")] += 1
    with pytest.raises(ValueError, match="same positions"):
        paired(a, b)


def test_a_leads_change_is_the_resampling_loops():
    """change(): how b's lead over a moved from (b - a) to (b2 - a2), one draw of sentences for all
    four, against the plain loop; nothing changed is a zero interval."""
    rng = np.random.default_rng(5)
    n, h = 2000, COUNTS.index("hits_3")
    a, b = counts(rng, n, 0.30), counts(rng, n, 0.32)
    a2, b2 = a.copy(), b.copy()
    a2[(rng.random(n) < 0.08) & (a[:, h] == 0), h] = 1   # a gains more from what both were given
    b2[(rng.random(n) < 0.02) & (b[:, h] == 0), h] = 1
    d = change(a, b, a2, b2, names=("r_at_3",))["r_at_3"]
    r = {k: figure("r_at_3", x.sum(0)) for k, x in dict(a=a, b=b, a2=a2, b2=b2).items()}
    assert d["before"] == round(r["b"] - r["a"], 4) and d["after"] == round(r["b2"] - r["a2"], 4)
    assert d["difference"] == round((r["b2"] - r["a2"]) - (r["b"] - r["a"]), 4) < 0
    diffs = []
    loop = np.random.default_rng(6)
    for _ in range(2000):
        pick = loop.integers(0, n, size=n)
        f = [figure("r_at_3", x[pick].sum(0)) for x in (a, b, a2, b2)]
        diffs.append((f[3] - f[2]) - (f[1] - f[0]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert abs(d["low"] - low) < 0.002 and abs(d["high"] - high) < 0.002
    assert verdict(d) == "worse"
    same = change(a, b, a, b)
    assert all(v["difference"] == v["low"] == v["high"] == 0 for v in same.values())
    with pytest.raises(ValueError, match="same positions"):
        bad = a2.copy()
        bad[0, COUNTS.index("positions")] += 1
        change(a, b, bad, b2)
