"""Keyboard metrics over a text, from the same step outputs as the perplexity
(definitions, with a hand-worked example, in docs/design.md):

- completion recall after c typed letters (c = 1, 2): over the words longer
  than c letters, the share whose first c letters make the keyboard show the
  word among its k (`Words.best` with that prefix);
- the keystroke savings rate (KSR) with k suggestions: a simulated user types
  each word letter by letter and taps the word as soon as it is shown (before
  the first letter: the next-word suggestions). The tap, which also adds the
  space, is one key press; a word never shown costs its letters and a space.
  KSR = 1 - key presses used / (letters + spaces typed without suggestions).

A word outside the vocabulary is typed in full where its spelling is known
(raw text); an `<unk>` whose spelling is lost (PTB-format text, or ids alone)
and `N` (a number) are skipped and counted. `<eos>` is not a word: no key
press. A blocked word is typed in full (it is never shown).
"""
from edge_runtime.keyboard import HIDDEN
from edge_runtime.metrics import K

PREFIXES = (1, 2)


class KeyboardScore:
    def __init__(self, words, k=K):
        self.words, self.k = words, k
        self.keys = self.baseline = 0
        self.completion = {c: [0, 0] for c in PREFIXES}  # c: [hits, words longer than c]
        self.counted = self.skipped = self.typed_in_full = 0

    def add(self, logp, target, spelling=None):
        """One position: log-probabilities `logp` [V] after the context, the true
        token id `target`, and its spelling where the text had one (an OOV word)."""
        vocab = self.words.vocab
        if target == vocab.eos_id:
            return
        known = target != vocab.unk_id and vocab.tokens[target] not in HIDDEN
        if not known:
            if target == vocab.unk_id and spelling:  # raw text keeps an OOV word's letters: typed in full
                self.keys += len(spelling) + 1
                self.baseline += len(spelling) + 1
                self.typed_in_full += 1
                self.counted += 1
            else:
                self.skipped += 1
            return
        word = vocab.tokens[target]
        self.counted += 1
        self.baseline += len(word) + 1
        # the fewest letters after which the word is shown; more letters only narrow the candidates
        # around it, so it stays shown: that one count gives both the tap and the completion recalls
        shown_after = next((typed for typed in range(len(word))
                            if target in self.words.best(logp, word[:typed], self.k)), None)
        for c in PREFIXES:
            if len(word) > c:
                self.completion[c][1] += 1
                self.completion[c][0] += shown_after is not None and shown_after <= c
        if shown_after is None:
            self.keys += len(word) + 1
            self.typed_in_full += 1
        else:
            self.keys += shown_after + 1

    def result(self):
        """{ksr, completion_recall_1, completion_recall_2, keyboard_words, words_skipped, ...}; None where
        nothing was counted (a text with no word in the vocabulary)."""
        out = dict(ksr=round(1 - self.keys / self.baseline, 4) if self.baseline else None,
                   key_presses=self.keys, key_presses_without=self.baseline, keyboard_words=self.counted,
                   typed_in_full=self.typed_in_full, words_skipped=self.skipped)
        for c, (hits, n) in self.completion.items():
            out[f"completion_recall_{c}"] = round(hits / n, 4) if n else None
        return out
