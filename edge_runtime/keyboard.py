"""What a keyboard runs for each word typed: the words shown above the keys.

`Keyboard.feed(token)` steps the model and sets `shown`, the k words with
their probabilities. It runs the file's `suggest` signature when it has one
with at least k words (no V floats leave the model), else `step` and
`metrics.top_words`; both show the same words. This is the path a keyboard
pays for on every word, so it is what the device's knob budgets and times
(`bench` reports it as `keyboard_ms`)."""
import math

from edge_runtime.metrics import top_words


def suggestions(logp, vocab, k):
    """Top-k real words (not <unk>, <eos>) with their probabilities."""
    return [(vocab.tokens[i], math.exp(float(logp[i]))) for i in top_words(logp, k, vocab.never_suggested)]


class Keyboard:
    def __init__(self, model, vocab, k):
        self.model, self.vocab, self.k = model, vocab, k
        self.in_graph = model.top_k is not None and model.top_k >= k
        self.feed(vocab.eos_id)

    def feed(self, token_id):
        if self.in_graph:
            ids, logp = self.model.suggest(token_id, self.vocab.never_suggested)
            self.shown = [(self.vocab.tokens[i], math.exp(float(p))) for i, p in zip(ids[: self.k], logp)]
        else:
            self.shown = suggestions(self.model.step(token_id), self.vocab, self.k)
