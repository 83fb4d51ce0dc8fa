"""The keyboard: completion from one step's output, what is shown, and the
keyboard metrics against a hand-worked example and brute force."""
import math

import numpy as np
import pytest

from edge_runtime import manifest as mf
from edge_runtime.keyboard import BlockError, Keyboard, Words, read_block_list, type_text
from edge_runtime.keyboard_metrics import KeyboardScore
from edge_runtime.runner import StepModel, evaluate_ids
from edge_runtime.vocab import Vocab

TOKENS = ["<eos>", "<unk>", "the", "then", "there", "to", "cat", "N"]
PROBS = [0.30, 0.20, 0.15, 0.05, 0.04, 0.10, 0.01, 0.15]


class FixedModel:
    """Every step gives the same distribution; counts its steps."""
    top_k = None

    def __init__(self, probs=PROBS):
        self.logp, self.steps = np.log(np.asarray(probs, np.float32)), 0

    def step(self, token_id):
        self.steps += 1
        return self.logp

    def reset(self):
        pass


def test_hand_worked_keystrokes_and_completion_recall():
    # k = 2; showable, best first: the .15, to .10, then .05, there .04, cat .01 (never <eos>, <unk>, N)
    vocab = Vocab(TOKENS)
    score = KeyboardScore(Words(vocab), k=2)
    logp = FixedModel().logp
    ids = {t: i for i, t in enumerate(TOKENS)}
    for word in ("the", "cat", "there", "N", "to"):
        score.add(logp, ids[word])
    score.add(logp, vocab.unk_id, "dog")  # an OOV word of raw text: typed in full, 4 presses
    score.add(logp, vocab.unk_id)         # PTB's <unk>: spelling lost, skipped
    score.add(logp, vocab.eos_id)         # not a word
    r = score.result()
    # the: shown before a letter, 1 press (of 4); cat: after "c", 2 (of 4); there: after "ther", 5 (of 6);
    # to: before a letter, 1 (of 3); dog: 4 (of 4) -> 13 of 21
    assert (r["key_presses"], r["key_presses_without"]) == (13, 21)
    assert r["ksr"] == round(1 - 13 / 21, 4)
    assert (r["keyboard_words"], r["typed_in_full"], r["words_skipped"]) == (5, 1, 2)
    # after 1 letter: the (t: the, to) yes, cat yes, there no, to yes -> 3/4; after 2 (words of 3+
    # letters): the (th: the, then) yes, cat yes, there no -> 2/3
    assert r["completion_recall_1"] == 0.75 and r["completion_recall_2"] == round(2 / 3, 4)


def test_no_word_in_the_vocabulary_gives_na_not_a_division_by_zero():
    vocab = Vocab(TOKENS)
    score = KeyboardScore(Words(vocab))
    score.add(FixedModel().logp, vocab.unk_id)
    r = score.result()
    assert r["ksr"] is None and r["completion_recall_1"] is None and r["words_skipped"] == 1


def brute_best(vocab, logp, prefix, k, hidden):
    ok = [i for i, t in enumerate(vocab.tokens) if i not in hidden and t.lower().startswith(prefix.lower())]
    return sorted(ok, key=lambda i: (-logp[i], i))[:k]


def test_prefix_index_matches_brute_force_with_ties():
    rng = np.random.default_rng(1)
    letters = list("abc")
    words = sorted({"".join(rng.choice(letters, size=rng.integers(1, 5))) for _ in range(300)})
    vocab = Vocab(["<eos>", "<unk>", "N"] + words + ["Ab", "ABC"])
    w = Words(vocab, blocked=["cab"])
    hidden = {0, 1, 2} | {vocab.index["cab"]} if "cab" in vocab.index else {0, 1, 2}
    logp = np.log(rng.choice([0.1, 0.2, 0.3], size=len(vocab)))  # many ties: the lower id first
    distinct = np.log(rng.random(len(vocab)))
    never = distinct.copy()
    never[rng.random(len(vocab)) < 0.9] = -np.inf  # a word of probability 0 is never shown
    for scores in (logp, distinct, never):
        for prefix in ["", "a", "b", "ab", "AB", "ca", "cab", "abca", "zz"]:
            for k in (1, 3, 7):
                want = [i for i in brute_best(vocab, scores, prefix, len(vocab), hidden) if np.isfinite(scores[i])]
                assert w.best(scores, prefix, k) == want[:k], (prefix, k)


def test_the_next_words_of_a_large_vocabulary_are_the_brute_force_ones():
    # Words.best over all V ranks in a grid of columns (not a selection over V): against sorting all V,
    # with ties (the lower id first), hidden ids, a vocabulary not a multiple of the grid, and -inf
    rng = np.random.default_rng(2)
    for size in (130, 4099):
        vocab = Vocab(["<eos>", "<unk>", "N"] + [f"w{i}" for i in range(size)])
        blocked = [f"w{i}" for i in rng.choice(size, 40, replace=False)]
        w = Words(vocab, blocked=blocked)
        hidden = {0, 1, 2} | {vocab.index[b] for b in blocked}
        for trial in range(60):
            logp = np.log(rng.choice([0.1, 0.2, 0.3], size=len(vocab)) if trial % 2 else rng.random(len(vocab)))
            logp = logp.astype(np.float32)
            if trial % 5 == 0:
                logp[rng.choice(len(vocab), len(vocab) - 2, replace=False)] = -np.inf  # fewer words than k
            ranked = [i for i in brute_best(vocab, logp, "", len(vocab), hidden) if np.isfinite(logp[i])]
            for k in (1, 3, 8):  # a word of probability 0 is never shown
                assert w.best(logp, "", k) == ranked[:k], (size, trial, k)


def test_a_key_press_runs_no_step_and_ends_with_the_next_word():
    vocab = Vocab(TOKENS)
    model = FixedModel()
    kb = Keyboard(model, vocab, 2)
    assert model.steps == 1 and [w for w, _ in kb.shown] == ["The", "To"]  # a sentence's first word
    kb.type("t")
    kb.type("h")
    assert model.steps == 1 and [w for w, _ in kb.shown] == ["The", "Then"]
    kb.type("x")
    assert kb.shown == []  # no word starts so: nothing shown, no error
    fed, oov = type_text(kb, " ")  # a space ends the word: one step, and the next words again
    assert (fed, oov, model.steps, kb.prefix) == (["thx"], ["thx"], 2, "")
    assert [w for w, _ in kb.shown] == ["the", "to"]


def test_typed_text_feeds_words_and_sentence_ends_and_keeps_the_partial_word():
    vocab = Vocab(TOKENS)
    model = FixedModel()
    kb = Keyboard(model, vocab, 2)
    fed, oov = type_text(kb, "the cat. th")
    assert fed == ["the", "cat"] and oov == [] and kb.prefix == "th"
    assert model.steps == 1 + 3  # the, cat, <eos>
    assert kb.sentence_start and [w for w, _ in kb.shown] == ["The", "Then"]
    fed, _ = type_text(kb, "ere to")  # goes on with "th": "there" is fed, "to" is being typed
    assert fed == ["there"] and kb.prefix == "to"
    fed, oov = type_text(kb, " zebra ")
    assert fed == ["to", "zebra"] and oov == ["zebra"] and kb.prefix == "" and [w for w, _ in kb.shown] == ["the", "to"]


def test_never_shown_and_capitalised():
    vocab = Vocab(["<eos>", "<unk>", "N", "i", "the", "damn"])
    logp = np.log(np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1]))
    kb = Keyboard(FixedModel(np.exp(logp)), vocab, 5, blocked=["DAMN"])
    assert [w for w, _ in kb.shown] == ["I", "The"]  # after <eos>: capitalised; never <eos>, <unk>, N, blocked
    kb.feed(vocab.index["the"])
    assert [w for w, _ in kb.shown] == ["I", "the"]  # "i" always capitalised
    mixed = Vocab(["<eos>", "<unk>", "the", "The"])  # a cased vocabulary: shown as it is
    assert [w for w, _ in Keyboard(FixedModel([0.1, 0.1, 0.5, 0.3]), mixed, 2).shown] == ["the", "The"]


@pytest.mark.parametrize("content,message", [(None, "no such file"), ("dir", "is a directory"),
                                             (b"\xff\xfe\x00", "not UTF-8 text"), ("a\0b", "not a text file")])
def test_bad_block_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "block.txt"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(BlockError, match=message) as e:
        read_block_list(str(path))
    assert "\n" not in str(e.value)


def test_completions_from_a_real_file_are_the_brute_force_ones(tflite_dir):
    manifest = mf.load(str(tflite_dir))
    vocab = Vocab.load(mf.vocab_path(manifest))
    model = StepModel(mf.variant_path(manifest, "float32"), manifest["states"], num_threads=1)
    kb = Keyboard(model, vocab, 3)
    hidden = set(vocab.never_suggested) | ({vocab.index["N"]} if "N" in vocab.index else set())
    for token in vocab.encode("the king said".split()):
        kb.feed(token)
        logp = kb.logp
        for prefix in ("", "t", "th", "w", "qz"):
            kb.set_prefix(prefix)
            want = brute_best(vocab, logp, prefix, 3, hidden)
            assert [w.lower() for w, _ in kb.shown] == [vocab.tokens[i] for i in want]
            assert all(math.isclose(p, math.exp(float(logp[i])), rel_tol=1e-6) for (_, p), i in zip(kb.shown, want))


def test_evaluation_adds_r_at_1_and_keyboard_metrics_from_the_same_steps():
    vocab = Vocab(TOKENS)
    ids = [0] + [TOKENS.index(t) for t in ("the", "cat", "there", "N", "to")] + [0]
    r = evaluate_ids(FixedModel(), ids, vocab.never_suggested, keyboard=KeyboardScore(Words(vocab), k=2))
    # R@k counts what the keyboard shows (N never is): R@1 shows the; R@3 the, to, then. Over the 6
    # positions (the <eos> target a miss, as N is): R@1 1/6 (the), R@3 2/6 (the, to)
    assert r["r_at_1"] == 1 / 6 and r["r_at_3"] == 2 / 6
    assert (r["key_presses"], r["key_presses_without"]) == (9, 17)


def test_keyboard_metrics_match_the_definitions_letter_by_letter():
    # the direct definitions, one Words.best per prefix, on random words and log-probabilities with ties
    rng = np.random.default_rng(3)
    words = sorted({"".join(rng.choice(list("abc"), size=rng.integers(1, 6))) for _ in range(120)})
    vocab = Vocab(["<eos>", "<unk>", "N"] + words)
    w = Words(vocab)
    score, keys, base, comp = KeyboardScore(w, k=3), 0, 0, {1: [0, 0], 2: [0, 0]}
    for _ in range(300):
        logp = np.log(rng.choice([0.1, 0.2, 0.3, 0.4], size=len(vocab)))
        target = int(rng.integers(3, len(vocab)))
        score.add(logp, target)
        word = vocab.tokens[target]
        base += len(word) + 1
        taps = [j for j in range(len(word)) if target in w.best(logp, word[:j], 3)]
        keys += taps[0] + 1 if taps else len(word) + 1
        for c in (1, 2):
            if len(word) > c:
                comp[c][1] += 1
                comp[c][0] += target in w.best(logp, word[:c], 3)
    r = score.result()
    assert (r["key_presses"], r["key_presses_without"]) == (keys, base)
    assert r["completion_recall_1"] == round(comp[1][0] / comp[1][1], 4)
    assert r["completion_recall_2"] == round(comp[2][0] / comp[2][1], 4)
