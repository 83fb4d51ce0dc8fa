"""The keyboard that learns its user: the history file (private, bounded, shared
by two writers), the cache mixed into the shown words against a hand-worked
example and the scalar definition, and the commands a user meets."""
import json
import math
import os
import stat
import subprocess
import sys

import numpy as np

from edge_runtime import history as hist
from edge_runtime.cache import Cache, tune
from edge_runtime.history import START, History
from edge_runtime.keyboard import Keyboard, Words, type_text
from edge_runtime.keyboard_metrics import evaluate_learning
from edge_runtime.knob import Switcher
from edge_runtime.predict import main
from edge_runtime.vocab import Vocab
from tests.edge.test_keyboard import FixedModel as KeyboardModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENS = ["<eos>", "<unk>", "the", "then", "there", "to", "cat", "N", "monday", "darn"]
PROBS = [0.30, 0.20, 0.15, 0.05, 0.04, 0.10, 0.01, 0.05, 0.05, 0.05]


def FixedModel(probs=PROBS):
    return KeyboardModel(probs)


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def hand_history():
    h = History()
    h.commit("cat", START)
    h.commit("Zebra", "cat")   # outside the vocabulary, capitalised mid-sentence
    h.commit("cat", "zebra")
    return h


def test_hand_worked_mixing():
    # counts: cat 2, zebra 1 (P1: 2/3, 1/3); after "cat" one follower (zebra, once), so Witten-Bell gives
    # p_cache(zebra) = (1 + 1 * 1/3) / (1 + 1) = 2/3 and p_cache(cat) = (0 + 2/3) / 2 = 1/3.
    # With lambda 0.5: q = p/2 + p_cache/2: zebra 1/3, cat .005 + 1/6, the .075, to .05, then .025, there .02
    h = hand_history()
    assert math.isclose(h.prob("zebra", "cat"), 2 / 3) and math.isclose(h.prob("cat", "cat"), 1 / 3)
    vocab = Vocab(TOKENS)
    kb = Keyboard(FixedModel(), vocab, 3, cache=Cache(h, vocab, lam=0.5, learn=False))
    kb.prev_key = "cat"
    kb.scores = kb.cache.scores(kb.model.logp, "cat", kb.words)
    kb.sentence_start = False
    kb.set_prefix("")
    assert [w for w, _ in kb.shown] == ["Zebra", "cat", "the"]
    assert np.allclose([p for _, p in kb.shown], [1 / 3, 0.005 + 1 / 6, 0.075], rtol=1e-6)
    kb.set_prefix("t")
    assert [w for w, _ in kb.shown] == ["the", "to", "then"]
    kb.set_prefix("z")
    assert [w for w, _ in kb.shown] == ["Zebra"]


def test_vector_mix_is_the_scalar_definition_on_a_random_history():
    rng = np.random.default_rng(0)
    vocab = Vocab(TOKENS)
    h = History(half_life=7)
    words = ["the", "cat", "monday", "Zed", "quux", "then", "<eos>"]
    prev = START
    cache = Cache(h, vocab, lam=0.3)
    for _ in range(60):
        w = words[rng.integers(len(words))]
        key = cache.learn(w, prev)
        prev = START if w == "<eos>" else key
    logp = np.log(rng.dirichlet(np.ones(len(vocab))).astype(np.float32))
    for prev in (START, "cat", "zed", "nothing-before", None):
        s = cache.scores(logp, prev, Words(vocab))
        for i, t in enumerate(TOKENS):
            want = 0.7 * math.exp(float(logp[i])) + 0.3 * h.prob(t, prev)
            assert math.isclose(s.prob(i), want, rel_tol=1e-5), (prev, t)
        for key in ("zed", "quux"):
            assert math.isclose(s.oov_prob(key), 0.3 * h.prob(key, prev), rel_tol=1e-5)


def test_a_cache_built_from_a_long_history_is_the_one_learned_word_by_word():
    vocab = Vocab(TOKENS)
    h = History(half_life=50)
    learned = Cache(h, vocab, 0.4)
    prev = START
    for i in range(300):  # more words outside the vocabulary than any array starts with
        word = ("the", "cat", f"Zq{i % 150}x")[i % 3]
        prev = learned.learn(word, prev)
    built = Cache(h, vocab, 0.4)  # what a new session (or another level of the knob) reads
    logp = FixedModel().logp
    for prev in (START, "the", "cat", "zq7x"):
        a, b = learned.scores(logp, prev, Words(vocab)), built.scores(logp, prev, Words(vocab))
        assert np.allclose(a.values, b.values, rtol=1e-5)
        assert a.best("", 3) == b.best("", 3) and a.best("zq1", 3) == b.best("zq1", 3)
        assert all(math.isclose(a.oov_prob(f"zq{i}x"), b.oov_prob(f"zq{i}x"), rel_tol=1e-5) for i in range(150))


def test_a_word_outside_the_vocabulary_is_shown_after_one_use_as_the_user_spelled_it():
    vocab = Vocab(TOKENS)
    h = History()
    kb = Keyboard(FixedModel(), vocab, 3, cache=Cache(h, vocab, lam=0.3))
    type_text(kb, "the cat saw McTavish ")
    type_text(kb, "the cat saw mct")
    assert [w for w, _ in kb.shown] == ["McTavish"]
    assert "<unk>" not in [w for w, _ in kb.shown]
    type_text(kb, "avish ")  # ends the word: learned twice, now the likeliest next word after "saw"?
    type_text(kb, "the cat saw ")
    assert kb.shown[0][0] == "McTavish"
    assert all(w not in ("<unk>", "<eos>", "N") for w, _ in kb.shown)


def test_the_shown_word_keeps_the_case_the_user_typed():
    vocab = Vocab(TOKENS)
    kb = Keyboard(FixedModel(), vocab, 3, cache=Cache(History(), vocab))
    type_text(kb, "the Mond")
    assert [w for w, _ in kb.shown] == ["Monday"]
    type_text(kb, "ay. the MON")
    assert [w for w, _ in kb.shown] == ["MONDAY"]
    plain = Keyboard(FixedModel(), vocab, 3)  # no history: the same rule
    type_text(plain, "the Mond")
    assert [w for w, _ in plain.shown] == ["Monday"]


def test_a_blocked_word_is_never_learned_or_shown(tmp_path):
    vocab = Vocab(TOKENS)
    h = History()
    h.commit("Blorp", "the")  # learned before it was blocked
    kb = Keyboard(FixedModel(), vocab, 5, blocked=["darn", "blorp"], cache=Cache(h, vocab, 0.5, ["darn", "blorp"]))
    type_text(kb, "darn darn darn the ")
    assert "darn" not in h.words and h.tick == 2
    for prefix in ("", "d", "b", "bl"):
        kb.set_prefix(prefix)
        assert all(w.lower() not in ("darn", "blorp") for w, _ in kb.shown), prefix


def test_incognito_learns_nothing():
    vocab = Vocab(TOKENS)
    h = hand_history()
    before = json.dumps(h.to_json())
    kb = Keyboard(FixedModel(), vocab, 3, cache=Cache(h, vocab, learn=False))
    type_text(kb, "my password is Hunter2 and Sesame ")
    assert json.dumps(h.to_json()) == before and h.tick == 3


def test_decay_halves_a_count_every_half_life_and_caps_hold():
    h = History(half_life=100, max_words=50, max_bigrams=80)
    h.commit("old")
    for i in range(300):
        h.commit("new", "new")
    assert math.isclose(h.count("old"), 2 ** -3, rel_tol=1e-9)
    for i in range(500):  # more words and bigrams than the caps: the weakest go
        h.commit(f"w{i}", f"w{i - 1}")
    assert len(h.words) <= 50 and h.bigrams <= 80 and "new" in h.words
    assert h.bigrams == sum(len(f) for f in h.next.values())
    assert math.isclose(h.total, sum(e[0] for e in h.words.values()))


def test_the_file_is_private_atomic_and_under_a_megabyte_at_its_caps(tmp_path):
    path = str(tmp_path / "history.json")
    h = History()
    rng = np.random.default_rng(1)
    words = ["".join(chr(97 + c) for c in rng.integers(0, 26, 12)) for _ in range(hist.MAX_WORDS * 2)]
    prev = START
    for w in words + words[::-1]:
        h.commit(w, prev, record=False)
        prev = w.lower()
    assert len(h.words) <= hist.MAX_WORDS and h.bigrams <= hist.MAX_BIGRAMS
    hist.save(h, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.path.getsize(path) < 1_000_000
    back = hist.load(path)
    assert back.words.keys() == h.words.keys() and back.bigrams == h.bigrams
    assert math.isclose(back.prob(words[-1], prev), h.prob(words[-1], prev), rel_tol=1e-5)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []  # no temporary file left


WRITER = """
import sys
sys.path.insert(0, {root!r})
from edge_runtime import history as hist
h = hist.load({path!r})
for i in range(40):
    h.commit(f"{{sys.argv[1]}}{{i}}", None)
    hist.save(h, {path!r})
"""


def test_two_writers_lose_no_committed_word(tmp_path):
    path = str(tmp_path / "history.json")
    code = WRITER.format(root=ROOT, path=path)
    procs = [subprocess.Popen([sys.executable, "-c", code, name]) for name in ("alpha", "beta")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    h = hist.load(path)
    assert {f"{n}{i}" for n in ("alpha", "beta") for i in range(40)} <= set(h.words)
    assert h.tick == 80


def test_a_corrupted_or_foreign_history_is_moved_aside_and_the_session_goes_on(tflite_dir, tmp_path, capsys):
    path = tmp_path / "history.json"
    for content in (b"{not json", json.dumps({"format": "something-else"}).encode(), b"\x00\xff"):
        path.write_bytes(content)
        code, out, err = run(capsys, "suggest", "--model", tflite_dir, "--history", path, "--text", "the king ")
        assert code == 0 and out.strip()
        assert err.count("\n") == 1 and "moved aside" in err
        kept = sorted(p.name for p in tmp_path.iterdir() if ".unreadable-" in p.name)
        assert (tmp_path / kept[-1]).read_bytes() == content  # nothing deleted
        assert json.loads(path.read_text())["format"] == hist.FORMAT  # a fresh history, with the words typed


def test_suggest_learns_incognito_does_not_and_forget_deletes(tflite_dir, tmp_path, capsys):
    path = tmp_path / "history.json"
    code, out, _ = run(capsys, "suggest", "--model", tflite_dir, "--history", path, "--no-learn", "--text", "Qwertyx ")
    assert code == 0 and not path.exists()
    code, out, _ = run(capsys, "suggest", "--model", tflite_dir, "--history", path, "--text", "I like Qwertyx ")
    assert code == 0 and "Qwertyx" in path.read_text()
    before = path.read_bytes()
    code, out, _ = run(capsys, "suggest", "--model", tflite_dir, "--history", path, "--no-learn", "--text", "Zzyzx qw")
    assert code == 0 and "completing 'qw': Qwertyx" in out and path.read_bytes() == before
    code, out, _ = run(capsys, "forget", "--history", path)
    assert code == 0 and not path.exists() and "forgot" in out
    code, _, err = run(capsys, "suggest", "--model", tflite_dir, "--no-learn", "--text", "a ")
    assert code == 2 and "--history" in err and err.count("\n") == 1


def test_suggest_with_nothing_typed_shows_the_words_that_start_a_sentence(tflite_dir, capsys):
    code, out, _ = run(capsys, "suggest", "--model", tflite_dir, "--text", "", "--json")
    shown = json.loads(out)["suggestions"]
    assert code == 0 and len(shown) == 3 and all(s["word"][0].isupper() for s in shown)


def test_the_note_about_unknown_words_is_bounded_and_lists_each_once(tflite_dir, capsys):
    made_up = [f"zq{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(40)]
    text = " ".join(f"{w} {w}" for w in made_up) + " "
    code, out, _ = run(capsys, "suggest", "--model", tflite_dir, "--text", text)
    note = out[out.index("["):]
    assert code == 0 and note.count("zqab,") == 1 and "and 35 more" in note and len(note) < 200


def test_eval_learn_reports_both_side_by_side_and_learns_a_repeated_text(tflite_dir, tmp_path, capsys):
    text = tmp_path / "diary.txt"
    text.write_text("Dear Quilliam, the king is come to Wexholme. " * 30)
    code, out, _ = run(capsys, "eval", text, "--model", tflite_dir, "--learn", "--json")
    r = json.loads(out)
    assert code == 0 and r["with"]["ksr"] > r["without"]["ksr"] + 0.2
    assert r["with"]["oov_repeat_shown"] > 0.9 and r["without"]["oov_repeat_shown"] == 0
    assert r["with"]["perplexity_in_vocabulary"] < r["without"]["perplexity_in_vocabulary"]
    assert not any(p.name != "diary.txt" for p in tmp_path.iterdir())  # eval writes no history
    code, out, _ = run(capsys, "eval", text, "--model", tflite_dir, "--learn")
    assert code == 0 and "| keystroke savings (KSR) |" in out and "| without | with |" in out


def test_eval_block_moves_r_at_k_as_it_moves_ksr(tflite_dir, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the king is come to the king. " * 20)
    block = tmp_path / "block.txt"
    block.write_text("the\nking\n")
    _, out, _ = run(capsys, "eval", text, "--model", tflite_dir, "--json")
    plain = json.loads(out)
    _, out, _ = run(capsys, "eval", text, "--model", tflite_dir, "--json", "--block", block)
    blocked = json.loads(out)
    assert blocked["ksr"] < plain["ksr"] and blocked["r_at_3"] < plain["r_at_3"]


def test_the_history_applies_after_a_switch(tmp_path):
    vocab = Vocab(TOKENS)
    h, words = History(), Words(vocab)
    now = [0.0]
    cost = {"slow": 5.0, "fast": 0.1}

    class Timed(Keyboard):
        def feed(self, token_id, spelling=None, learn=True):
            now[0] += cost[self.label] / 1e3
            super().feed(token_id, spelling, learn)

    def open_level(label):
        kb = Timed.__new__(Timed)
        kb.label = label
        Keyboard.__init__(kb, FixedModel(), vocab, 3, words, Cache(h, vocab, 0.3))
        return kb
    knob = Switcher([("slow", 100.0, 1.0), ("fast", 120.0, 0.5)], 2.0, open_level, window=4,
                    clock=lambda: now[0])
    type_text(knob, "the cat saw Grimsby ")
    assert knob.label == "fast" and knob.events
    type_text(knob, "gri")
    assert [w for w, _ in knob.shown] == ["Grimsby"]
    assert h.words["grimsby"][0] == 1  # replaying the context to the new level learned nothing twice


def test_tune_picks_the_grid_point_of_lowest_perplexity():
    vocab = Vocab(TOKENS)
    ids = [0] + [vocab.index[t] for t in ("the cat then the cat then the cat then <eos>".split())] * 5
    r = tune(FixedModel(), ids, vocab, lambdas=(0.0, 0.2, 0.5), half_lives=(None,))
    assert r["lambda"] == 0.5 and r["perplexity_with"] < r["perplexity_without"]
    assert min(g["perplexity"] for g in r["grid"]) == r["perplexity_with"]
    zero = next(g for g in r["grid"] if g["lambda"] == 0.0)
    assert math.isclose(zero["perplexity"], r["perplexity_without"], rel_tol=1e-3)


def test_evaluate_learning_matches_the_keyboard_typing_the_same_words():
    vocab = Vocab(TOKENS)
    items = [0, vocab.index["the"], (1, "Zebra"), vocab.index["cat"], 0, vocab.index["the"], (1, "Zebra"),
             vocab.index["cat"], 0]
    r = evaluate_learning(FixedModel(), items, Words(vocab), Cache(History(), vocab, 0.3))
    # the second "Zebra" is shown before a letter: after "the" it followed once
    assert r["with"]["oov_repeated"] == 1 and r["with"]["oov_repeat_shown"] == 1.0
    assert r["without"]["oov_repeat_shown"] == 0.0
    assert r["with"]["key_presses"] < r["without"]["key_presses"]
