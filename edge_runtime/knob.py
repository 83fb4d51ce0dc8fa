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
up that then goes over budget makes the next try at that level wait twice as
many windows (1, 2, 4, ...; back to 1 once a move up to it holds), so a
device whose points are not as recorded does not flap. The back-off is kept
per level: one slow point does not block the way up to the others.
A switch is timed: it opens the new level's keyboard and hands it the
context by feeding it the last `context` tokens, and that time is the
switching word's too (`word_ms`, `switch_ms` in its event). At the fastest
level and still over budget there is nowhere to go: it says so in an
"over budget" event, at once and every `warn_every` windows while it lasts.
The clock is a parameter, so the logic is tested without timing anything.
"""
import collections
import math
import time

import numpy as np

CLOCK = time.perf_counter  # what Switcher times with unless given a clock (tests replace it)
RECENT_WORDS = 1000  # the words whose end-to-end times the summary's percentiles are over


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


def check_positive(option, value):
    """ValueError naming `option` unless `value` is a positive finite number (NaN is refused: every
    comparison with it is false, so it would pass any budget)."""
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{option} must be a positive number, not {value}")


class Switcher:
    """`levels` [(label, perplexity, p90 ms)]; `open_level(label)` -> that level's
    keyboard (`feed(token)`, `shown`) with a fresh state; `on_event(event)` is told
    of each switch and each over-budget warning (the dicts in `events`)."""

    def __init__(self, levels, budget_ms, open_level, window=50, headroom=0.8, context=20,
                 clock=None, on_event=None, warn_every=20):
        check_positive("--budget-ms", budget_ms)
        if window < 1:
            raise ValueError(f"--window must be at least 1, not {window}")
        if context < 0:
            raise ValueError(f"--context must not be negative, not {context}")
        if not 0 < headroom <= 1:
            raise ValueError(f"the headroom must be in (0, 1], not {headroom}")
        if warn_every < 1:
            raise ValueError(f"warn_every must be at least 1, not {warn_every}")
        self.levels, self.budget, self.open_level = ladder(levels), budget_ms, open_level
        self.window, self.headroom, self.on_event, self.warn_every = window, headroom, on_event, warn_every
        self.clock = clock if clock is not None else CLOCK
        self.level = start_level([ms for _, ms in self.levels], budget_ms)
        self.keyboard = open_level(self.label)
        self.recent = collections.deque(maxlen=context)
        self.times, self.tokens, self.events = [], 0, []
        self.word_ms = collections.deque(maxlen=RECENT_WORDS)  # words end to end, switches included
        self.words = self.over = 0  # every word, and those the user waited over the budget for
        self.wait = [1] * len(self.levels)  # per level: windows to spend below it before trying it
        self.windows = 0       # windows spent at this level
        self.tried_up = False  # this level was reached by a move up, not yet proved within budget
        self.stuck = 0         # windows in a row over budget at the fastest level

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
        ms = (self.clock() - t0) * 1e3
        self.times.append(ms)
        self.recent.append((token, spelling))
        self.tokens += 1
        switch_ms = self._decide() if len(self.times) >= self.window else 0.0
        self.word_ms.append(ms + switch_ms)
        self.words += 1
        self.over += ms + switch_ms > self.budget

    def summary(self):
        """What the user waited, switches included: every word counted, percentiles of the last
        RECENT_WORDS."""
        w = np.asarray(self.word_ms or [0.0])
        return dict(level=self.label, words=self.words, budget_ms=self.budget, over_budget=self.over,
                    p50_ms=round(float(np.percentile(w, 50)), 4), p90_ms=round(float(np.percentile(w, 90)), 4),
                    switches=sum(e["event"] == "switch" for e in self.events),
                    switch_ms=round(sum(e.get("switch_ms", 0.0) for e in self.events), 4))

    def _decide(self):
        """-> the ms a switch took (0.0 without one)."""
        p90 = float(np.percentile(self.times, 90))
        self.times = []
        self.windows += 1
        if p90 > self.budget:
            if self.tried_up:  # the move up to this level did not hold: back off from it
                self.wait[self.level], self.tried_up = self.wait[self.level] * 2, False
            if self.level + 1 < len(self.levels):
                self.stuck = 0
                return self._switch(self.level + 1, p90, "over budget")
            self.stuck += 1
            if (self.stuck - 1) % self.warn_every == 0:
                self._tell(dict(event="over budget", after_tokens=self.tokens, p90_ms=round(p90, 4),
                                budget_ms=self.budget, level=self.label, windows_over=self.stuck))
            return 0.0
        self.stuck = 0
        if self.tried_up:  # the move up held: the recorded figures can be trusted again
            self.tried_up, self.wait[self.level] = False, 1
        if self.level > 0 and self.windows >= self.wait[self.level - 1]:
            expected = self.levels[self.level - 1][1] * p90 / self.levels[self.level][1]
            if expected <= self.headroom * self.budget:
                took = self._switch(self.level - 1, p90, "headroom")
                self.tried_up = True
                return took
        return 0.0

    def _switch(self, new, p90, reason):
        t0 = self.clock()
        keyboard = self.open_level(self.levels[new][0])
        for t, spelling in self.recent:  # the context, so the new model predicts from where the old one
            keyboard.feed(t, spelling, learn=False)  # was; the user's history already holds these words
        took = (self.clock() - t0) * 1e3
        event = dict(event="switch", after_tokens=self.tokens, reason=reason, p90_ms=round(p90, 4),
                     budget_ms=self.budget, switch_ms=round(took, 4), context_tokens=len(self.recent),
                     **{"from": self.label, "to": self.levels[new][0]})
        self.level, self.keyboard, self.windows = new, keyboard, 0
        self._tell(event)
        return took

    def _tell(self, event):
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)


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
