"""The knob on the device: stay within a step-latency budget by moving along
the perplexity-latency frontier of a bundle (`predict.py suggest --points
... --budget-ms X`).

`Switcher` starts at the best-perplexity point whose p90 latency fits the
budget, times its own steps, and after every `window` steps looks at their
p90: over the budget, it moves to the next faster point; when the next
better point, scaled by how fast this device runs right now (observed p90
over the point's measured p90), would fit within `headroom` x budget, it
moves back up. The new model is handed the context by feeding it the last
`context` tokens. The clock is a parameter, so the logic is tested without
timing anything.
"""
import collections
import time

import numpy as np


def start_level(latencies, budget_ms):
    """The first (best-perplexity) level whose latency fits, else the fastest."""
    return next((i for i, ms in enumerate(latencies) if ms <= budget_ms), len(latencies) - 1)


class Switcher:
    """`levels` [(label, p90 ms)] best perplexity (slowest) first; `open_level(i)`
    -> a keyboard (`feed(token)`, `shown`) with a fresh state."""

    def __init__(self, levels, budget_ms, open_level, window=50, headroom=0.8, context=20,
                 clock=time.perf_counter, on_switch=None):
        if budget_ms <= 0 or window < 1 or context < 0 or not 0 < headroom <= 1:
            raise ValueError("--budget-ms must be positive, --window at least 1, --context not negative")
        self.levels, self.budget, self.open_level = levels, budget_ms, open_level
        self.window, self.headroom, self.clock, self.on_switch = window, headroom, clock, on_switch
        self.level = start_level([ms for _, ms in levels], budget_ms)
        self.keyboard = open_level(self.level)
        self.recent = collections.deque(maxlen=context)
        self.times, self.tokens, self.events = [], 0, []

    @property
    def label(self):
        return self.levels[self.level][0]

    @property
    def shown(self):
        return self.keyboard.shown

    def feed(self, token):
        t0 = self.clock()
        self.keyboard.feed(token)
        self.times.append((self.clock() - t0) * 1e3)
        self.recent.append(token)
        self.tokens += 1
        if len(self.times) >= self.window:
            self._decide()

    def _decide(self):
        p90 = float(np.percentile(self.times, 90))
        self.times = []
        if p90 > self.budget and self.level + 1 < len(self.levels):
            self._switch(self.level + 1, p90, "over budget")
        elif self.level > 0:
            expected = self.levels[self.level - 1][1] * p90 / self.levels[self.level][1]
            if expected <= self.headroom * self.budget:
                self._switch(self.level - 1, p90, "headroom")

    def _switch(self, new, p90, reason):
        keyboard = self.open_level(new)
        for t in self.recent:  # the context, so the new model predicts from where the old one was
            keyboard.feed(t)
        event = dict(event="switch", after_tokens=self.tokens, reason=reason, p90_ms=round(p90, 4),
                     budget_ms=self.budget, **{"from": self.label, "to": self.levels[new][0]})
        self.level, self.keyboard = new, keyboard
        self.events.append(event)
        if self.on_switch is not None:
            self.on_switch(event)
