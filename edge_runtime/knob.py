"""The knob on the device: stay within a latency budget by moving along a
bundle's operating points (`predict.py suggest --points ... --budget-ms X`).

What is budgeted is what is timed: the p90 of `Keyboard.feed`, the words a
keyboard shows for each word typed (the suggest path end to end, Python
included), as `bench` records it in `keyboard_ms`.

The ladder (`ladder`) is the points ordered by perplexity, best first, keeping
only those faster than every better one: one step down is always faster, one
step up always better. `Switcher` starts at the best level whose p90 fits the
budget, times its own feeds, and after every `window` feeds looks at their
p90. Over the budget, it moves one level down. When the next better level,
scaled by how fast this device runs right now (observed p90 over the level's
recorded p90), would fit within `headroom` x budget, it moves up; but a move
up that then goes over budget makes the next try wait twice as many windows
(1, 2, 4, ...; back to 1 once a move up holds), so a device whose points are
not as recorded does not flap.
The new model is handed the context by feeding it the last `context` tokens.
The clock is a parameter, so the logic is tested without timing anything.
"""
import collections
import time

import numpy as np

CLOCK = time.perf_counter  # what Switcher times with unless given a clock (tests replace it)


def ladder(levels):
    """`levels` [(label, perplexity, p90 ms)] in any order -> [(label, p90 ms)],
    best perplexity first, each strictly faster than every level above it
    (a point slower than a better one is never worth switching to)."""
    out = []
    for label, _, ms in sorted(levels, key=lambda lv: (lv[1], lv[2])):
        if not out or ms < out[-1][1]:
            out.append((label, ms))
    return out


def start_level(latencies, budget_ms):
    """The first (best-perplexity) level whose latency fits, else the fastest."""
    return next((i for i, ms in enumerate(latencies) if ms <= budget_ms), len(latencies) - 1)


class Switcher:
    """`levels` [(label, perplexity, p90 ms)]; `open_level(label)` -> that level's
    keyboard (`feed(token)`, `shown`) with a fresh state."""

    def __init__(self, levels, budget_ms, open_level, window=50, headroom=0.8, context=20,
                 clock=None, on_switch=None):
        if budget_ms <= 0 or window < 1 or context < 0 or not 0 < headroom <= 1:
            raise ValueError("--budget-ms must be positive, --window at least 1, --context not negative "
                             "and the headroom in (0, 1]")
        self.levels, self.budget, self.open_level = ladder(levels), budget_ms, open_level
        self.window, self.headroom, self.on_switch = window, headroom, on_switch
        self.clock = clock if clock is not None else CLOCK
        self.level = start_level([ms for _, ms in self.levels], budget_ms)
        self.keyboard = open_level(self.label)
        self.recent = collections.deque(maxlen=context)
        self.times, self.tokens, self.events = [], 0, []
        self.wait = 1          # windows to spend at a level before trying the one above
        self.windows = 0       # windows spent at this level
        self.tried_up = False  # this level was reached by a move up, not yet proved within budget

    @property
    def label(self):
        return self.levels[self.level][0]

    @property
    def shown(self):
        return self.keyboard.shown

    @property
    def vocab(self):
        return self.keyboard.vocab

    @property
    def prefix(self):
        return self.keyboard.prefix

    def set_prefix(self, prefix):
        """A key press: no step, so nothing the knob times or budgets."""
        self.keyboard.set_prefix(prefix)

    def feed(self, token, spelling=None):
        t0 = self.clock()
        self.keyboard.feed(token, spelling)
        self.times.append((self.clock() - t0) * 1e3)
        self.recent.append((token, spelling))
        self.tokens += 1
        if len(self.times) >= self.window:
            self._decide()

    def _decide(self):
        p90 = float(np.percentile(self.times, 90))
        self.times = []
        self.windows += 1
        if p90 > self.budget:
            if self.tried_up:  # the move up did not hold: back off
                self.wait, self.tried_up = self.wait * 2, False
            if self.level + 1 < len(self.levels):
                self._switch(self.level + 1, p90, "over budget")
            return
        if self.tried_up:  # the move up held: the recorded figures can be trusted again
            self.tried_up, self.wait = False, 1
        if self.level > 0 and self.windows >= self.wait:
            expected = self.levels[self.level - 1][1] * p90 / self.levels[self.level][1]
            if expected <= self.headroom * self.budget:
                self._switch(self.level - 1, p90, "headroom")
                self.tried_up = True

    def _switch(self, new, p90, reason):
        keyboard = self.open_level(self.levels[new][0])
        for t, spelling in self.recent:  # the context, so the new model predicts from where the old one
            keyboard.feed(t, spelling, learn=False)  # was; the user's history already holds these words
        event = dict(event="switch", after_tokens=self.tokens, reason=reason, p90_ms=round(p90, 4),
                     budget_ms=self.budget, **{"from": self.label, "to": self.levels[new][0]})
        self.level, self.keyboard, self.windows = new, keyboard, 0
        self.events.append(event)
        if self.on_switch is not None:
            self.on_switch(event)


def within_budget(candidates, max_latency_ms=None, max_bytes=None, max_energy_mj=None):
    """`pick`'s filter. `candidates` [(label, manifest, variant, perplexity,
    figures())]: figures are measured only when a latency or energy budget asks.
    -> ([(perplexity, label, manifest's variant entry, figures, manifest)] within
    every budget, [one line per file that is not, saying why])."""
    inside, reasons = [], []
    for label, manifest, name, ppl, figures in candidates:
        v = manifest["variants"][name]
        if max_bytes is not None and v["bytes"] > max_bytes:
            reasons.append(f"{label}: {v['bytes']:,} bytes > {max_bytes:,}")
            continue
        measured = figures() if max_latency_ms is not None or max_energy_mj is not None else None
        if max_latency_ms is not None and measured["keyboard_ms"]["p90"] > max_latency_ms:
            reasons.append(f"{label}: keyboard p90 {measured['keyboard_ms']['p90']:.3f} ms > {max_latency_ms} ms")
            continue
        if max_energy_mj is not None:
            e = measured["energy_mj_per_token"]
            if e is None:
                reasons.append(f"{label}: no energy figure on this device (no sensor; give --active-watts)")
                continue
            if e > max_energy_mj:
                reasons.append(f"{label}: {e:.4f} mJ/token > {max_energy_mj}")
                continue
        inside.append((ppl, label, v, measured, manifest))
    return inside, reasons
