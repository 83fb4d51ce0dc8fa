"""Grow-and-prune training (Dai, Yin & Jha 2019) of the H-LSTM gate matrices.

Every gate matrix W has a 0/1 mask; the layer computes with W * mask.
- seed: each mask starts with a random `seed_density` share of ones;
- grow: over `grow_batches` batches the gradient of the loss with respect to
  the *effective* weights W * mask is accumulated (the masks are opened for
  the measurement, the masked weights being zero, so the effect is nil);
  of the dormant connections, the `grow_fraction` with the largest
  accumulated |gradient| are activated and start at -lr * mean gradient, a
  step down the loss;
- prune: the active connections of smallest |W| are removed until the
  matrix has `target_sparsity` zeros; training then goes on with the mask held.
The run is split into 2 * cycles + 1 equal parts: train on the seed, then per
cycle grow, train, prune, train.

TF-MOT does not fit here: its masks are recomputed from magnitudes at every
update step, which would undo growth, and they are not meant to be written.
The masks are the layer's own, and `GrowPrune` drives the phases from the
trainer's per-step hook.
"""
import os

import numpy as np

from methods.base import Method, Training
from training import distribute

# TensorFlow loads in the functions that build or train, not here: the CLI checks these options first.


def masked_layers(model):
    from keras_models.hlstm import HLSTM
    return [l for l in model.layers if isinstance(l, HLSTM) and l.masked]


def seed_mask(shape, density, rng):
    """Exactly round(density * size) ones, at random places."""
    size = int(np.prod(shape))
    mask = np.zeros(size, np.float32)
    mask[rng.choice(size, int(round(density * size)), replace=False)] = 1.0
    return mask.reshape(shape)


def grow_mask(mask, grad, fraction):
    """Activate the `fraction` of dormant entries with the largest |grad|; -> (mask, grown indices)."""
    flat_mask, flat_grad = mask.reshape(-1), np.abs(grad).reshape(-1)
    dormant = np.flatnonzero(flat_mask == 0)
    n = int(round(fraction * dormant.size))
    grown = dormant[np.argsort(-flat_grad[dormant], kind="stable")[:n]]
    new = flat_mask.copy()
    new[grown] = 1.0
    return new.reshape(mask.shape), grown


def prune_mask(weight, mask, target_sparsity):
    """Keep the round((1 - target) * size) active entries of largest |weight|."""
    flat_w, flat_mask = np.abs(weight).reshape(-1), mask.reshape(-1)
    keep_n = min(int(round((1.0 - target_sparsity) * flat_w.size)), int(flat_mask.sum()))
    active = np.flatnonzero(flat_mask > 0)
    keep = active[np.argsort(-flat_w[active], kind="stable")[:keep_n]]
    new = np.zeros_like(flat_mask)
    new[keep] = 1.0
    return new.reshape(mask.shape)


def phase_steps(total_steps, cycles):
    """[(step, "grow" | "prune")]: the run cut into 2 * cycles + 1 equal parts."""
    part = total_steps / (2 * cycles + 1)
    events = []
    for c in range(cycles):
        events += [(int(round((2 * c + 1) * part)), "grow"), (int(round((2 * c + 2) * part)), "prune")]
    return events


def make_gradient_fn(model):
    """(x, y, states) -> (grads of the loss w.r.t. each masked matrix, new states)."""
    from keras_models.backend import keras, tf
    weights = [w for l in masked_layers(model) for w, _ in l.masked_weights()]
    strategy = tf.distribute.get_strategy()

    def replica_grads(x, y, states):
        with tf.GradientTape() as tape:
            out = model([x] + list(states), training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out[0], from_logits=True))
        return tape.gradient(loss, weights), out[1:]
    if not tf.distribute.has_strategy():
        return tf.function(replica_grads)

    @tf.function
    def grads(x, y, states):  # each replica's rows; their mean is the global batch's gradient
        g, new_states = strategy.run(replica_grads, args=(x, y, states))
        return [strategy.reduce(tf.distribute.ReduceOp.MEAN, gi, axis=None) for gi in g], new_states
    return grads


class GrowPrune:
    """Seeds the masks, then grows and prunes at the steps `phase_steps` gives."""

    def __init__(self, model, settings, batches, lr, seed=0, log=print):
        self.model = model
        self.settings, self.batches, self.lr, self.log = settings, batches, lr, log
        self.rng = np.random.default_rng(seed)
        self.events = dict(phase_steps(settings["total_steps"], settings["cycles"]))
        self.layers = masked_layers(model)
        self.grads = make_gradient_fn(model)

    def seed(self):
        for layer in self.layers:
            for w, m in layer.masked_weights():
                m.assign(seed_mask(m.shape, self.settings["seed_density"], self.rng))
            layer.apply_masks()

    def on_train_batch_begin(self, step, logs=None):
        what = self.events.get(step)
        if what == "grow":
            self.grow()
        elif what == "prune":
            self.prune()

    def pairs(self):
        return [(w, m) for layer in self.layers for w, m in layer.masked_weights()]

    def grow(self):
        from keras_models.backend import tf
        from keras_models.language_model import zero_states
        pairs = self.pairs()
        saved = [m.numpy() for _, m in pairs]
        for _, m in pairs:  # open every mask: dL/dW is then dL/d(W * mask), masked W being 0
            m.assign(tf.ones_like(m))
        acc = [np.zeros(m.shape, np.float64) for _, m in pairs]
        strategy = tf.distribute.get_strategy()
        states = [distribute.split(strategy, s) for s in zero_states(self.model, self.batches[0][0].shape[0])]
        n = self.settings["grow_batches"]
        for b in range(n):
            x, y = self.batches[b % len(self.batches)]
            g, states = self.grads(distribute.split(strategy, x), distribute.split(strategy, y), list(states))
            for a, gi in zip(acc, g):
                a += gi.numpy()
        for (w, m), old, a in zip(pairs, saved, acc):
            new, grown = grow_mask(old, a, self.settings["grow_fraction"])
            flat = w.numpy().reshape(-1)
            flat[grown] = -self.lr * a.reshape(-1)[grown] / n
            w.assign(flat.reshape(w.shape) * new)
            m.assign(new)
        self.log("grow-prune: grew " + ", ".join(f"{w.name.split(':')[0]} {int(m.numpy().sum()):,}/{m.shape.num_elements():,}"
                                                  for w, m in pairs))

    def prune(self):
        for w, m in self.pairs():
            m.assign(prune_mask(w.numpy(), m.numpy(), self.settings["target_sparsity"]))
        for layer in self.layers:
            layer.apply_masks()
        self.log("grow-prune: pruned to " + ", ".join(
            f"{w.name.split(':')[0]} {int(m.numpy().sum()):,}/{m.shape.num_elements():,}" for w, m in self.pairs()))

    def active(self):
        """{matrix: active connections} now."""
        return {w.name.split(":")[0]: int(m.numpy().sum()) for w, m in self.pairs()}


class GrowPruneMethod(Method):
    """`--schedule grow-prune` for the trainer: masked H-LSTM layers; while
    training, the masks re-applied after each step and the grow / prune events
    (each logged with the validation perplexity before it and the active
    connections after it, in checkpoints/grow_prune.json, so a resume keeps
    the events its checkpoint has seen and no others); finishing, the
    weights (masks already applied) copied into the plain model."""
    NAMES = ("grow-prune",)
    DEFAULTS = dict(seed_density=0.3, grow_fraction=0.5, grow_batches=20, gp_cycles=2)

    @classmethod
    def add_options(cls, a):
        d = cls.DEFAULTS
        a("--seed-density", type=float, default=d["seed_density"],
          help="grow-prune: share of each gate matrix active at the start, in (0, 1] (default %(default)s)")
        a("--grow-fraction", type=float, default=d["grow_fraction"],
          help="grow-prune: share of the dormant connections each growth activates, in (0, 1] "
               "(default %(default)s)")
        a("--grow-batches", type=int, default=d["grow_batches"],
          help="grow-prune: batches over which growth accumulates gradients (default %(default)s)")
        a("--gp-cycles", type=int, default=d["gp_cycles"], help="grow-prune: grow/prune cycles (default %(default)s)")

    @classmethod
    def check(cls, c, arch, chosen):
        for key in ("seed_density", "grow_fraction"):
            if not 0.0 < c[key] <= 1.0:
                return f"--{key.replace('_', '-')} must be in (0, 1], got {c[key]}"
        if c["grow_batches"] < 1 or c["gp_cycles"] < 1:
            return "--grow-batches and --gp-cycles must be at least 1"
        if chosen and arch != "hlstm":
            return f"--schedule grow-prune needs the masks of --arch hlstm, not {arch}"
        return None

    def settings(self, total_steps):
        c = self.config
        self.resolved = dict(schedule="grow-prune", target_sparsity=float(c["target_sparsity"]),
                             seed_density=c["seed_density"], grow_fraction=c["grow_fraction"],
                             grow_batches=c["grow_batches"], cycles=c["gp_cycles"], total_steps=total_steps)
        return self.resolved

    def build_options(self):
        return dict(masks=True)

    def training(self, model, ctx):
        from methods.base import rounded_eval
        from training import checkpoints, rundir, steps
        c = self.config
        path = os.path.join(c["out"], rundir.CHECKPOINTS, "grow_prune.json")
        gp = GrowPrune(model, self.resolved, list(zip(ctx.xs, ctx.ys)), c["lr"], c["seed"], ctx.log)
        gp.seed()  # a resumed run's checkpoint replaces the seed masks
        self.history = []
        if c.get("resumed") and os.path.exists(path):
            # events after the checkpoint happen again: keep only those it has seen
            done = (checkpoints.meta(os.path.join(c["out"], rundir.CHECKPOINT)) or {}).get("step", 0)
            self.history = [e for e in rundir.read_json(path) if e["step"] < done]

        def on_step(step):
            event = gp.events.get(step)
            if event:
                ppl = rounded_eval(model, ctx.valid)
                gp.on_train_batch_begin(step)
                self.history.append(dict(step=step, event=event, valid_perplexity_before=ppl[0], active=gp.active()))
                rundir.write_json(path, self.history)
        opts, step = steps.plain_training(model, c, after=[l.apply_masks for l in masked_layers(model)])
        return Training(opts, step, on_step)

    def finish(self, model, plain, ctx, status):
        plain, report = super().finish(model, plain, ctx, status)
        return plain, dict(report, grow_prune=self.history)
