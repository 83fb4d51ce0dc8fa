"""L0 neuron selection (`--schedule l0`; Louizos et al., Wen et al., Tang & Lin).

Changes the model: hard-concrete gates on the embedding dimensions and on
each layer's hidden units (keras_models/neuron_gates.py), log alpha from
`--l0-init`. While training: a fresh noise sample per step, lambda times the
expected L0 term (`--l0-penalty count` or `macs`) added to the loss, the
gates trained by their own Adam (`--gate-lr`), the weights with the run's
optimizer unless `--freeze-weights`. Finishes: the units whose test-time
gate is 0 are removed (methods.GatedUnits).

`--target-macs F` replaces lambda by the Lagrangian of Wang, Wohlwend & Lei
(2020): with s the expected MACs fraction and t the target,
    loss + l1 (s - t) + l2 (s - t)^2,
minimised over the weights and gates and maximised over l1, l2 (their own
Adam at `--gate-lr`, through a reversed gradient), so the multipliers grow
for as long as s misses t. t falls linearly from 1 to F over the first
half of the steps (a sudden target closes gates before the weights adapt)
and is held after. The constraint holds in expectation, and gates need not
have reached 0 or 1 when training ends; so, as Wang et al.'s code does, the
finished model keeps in each group the round(E[open gates]) units of
largest log alpha and closes the others (`close_beyond_expected`).
"""
import numpy as np

from keras_models.backend import tf
from keras_models.neuron_gates import gate_layers, l0_penalty
from pruning import steps
from pruning.methods import GatedUnits, Training

ANNEAL = 0.5  # share of the training steps over which the target falls to --target-macs


@tf.custom_gradient
def ascend(x):
    """x, with its gradient negated: a minimiser of the loss maximises over x."""
    return tf.identity(x), lambda dy: -dy


def lagrangian(model, target, anneal_steps, clock):
    """(multipliers [l1, l2], penalty()) of the MACs constraint; `clock` counts steps."""
    lam = [tf.Variable(0.0, name="l0_lambda_1"), tf.Variable(0.0, name="l0_lambda_2")]

    def penalty():
        t = 1.0 - (1.0 - target) * tf.minimum(1.0, tf.cast(clock.iterations, tf.float32) / anneal_steps)
        gap = l0_penalty(model, "macs") - t
        return ascend(lam[0]) * gap + ascend(lam[1]) * tf.square(gap)
    return lam, penalty


CLOSED = -20.0  # a log alpha whose test-time gate is 0


def close_beyond_expected(gates):
    """Close, in each gate group, the units beyond its expected open count
    (by log alpha); -> how many were closed that the test-time gate had open."""
    closed = 0
    for g in gates:
        a = g.log_alpha.numpy()
        keep = int(round(float(g.penalty())))
        shut = np.argsort(-a, kind="stable")[keep:]
        closed += int(np.count_nonzero(g.test_values()[shut]))
        a[shut] = CLOSED
        g.log_alpha.assign(a)
    return closed


class L0(GatedUnits):
    def settings(self, total_steps):
        c = self.config
        self.anneal_steps = max(1, int(ANNEAL * total_steps))
        s = dict(schedule="l0", l0_lambda=c["l0_lambda"], l0_penalty=c["l0_penalty"],
                 freeze_weights=c["freeze_weights"], beta=c["l0_beta"], gamma=c["l0_gamma"], zeta=c["l0_zeta"])
        if c.get("target_macs") is not None:
            s.update(l0_lambda=None, l0_penalty="lagrangian", target_macs=c["target_macs"],
                     anneal_steps=self.anneal_steps)
        return s

    def build_options(self):
        c = self.config
        return dict(gates=dict(kind="l0", beta=c["l0_beta"], gamma=c["l0_gamma"], zeta=c["l0_zeta"],
                               init=c["l0_init"]))

    def training(self, model, ctx):
        c = self.config
        gates = gate_layers(model)
        gate_vars = [g.log_alpha for g in gates]
        groups = [(steps.optimizer(c, c["gate_lr"], "adam"), gate_vars)]
        if not c["freeze_weights"]:
            groups.append((steps.optimizer(c), [v for v in model.trainable_variables
                                               if all(v is not g for g in gate_vars)]))
        self.multipliers = ()
        if c.get("target_macs") is not None:
            clock = groups[0][0]  # the gates' optimizer: its step count is checkpointed
            self.multipliers, penalty = lagrangian(model, c["target_macs"], self.anneal_steps, clock)
            groups.append((steps.optimizer(c, c["gate_lr"], "adam"), self.multipliers))
        else:
            lam, kind = float(c["l0_lambda"]), c["l0_penalty"]
            penalty = lambda: lam * l0_penalty(model, kind)  # noqa: E731
        for opt, variables in groups:
            opt.build(variables)
        step = steps.make_train_step(model, groups, penalty=penalty, before=[g.resample for g in gates])
        return Training([opt for opt, _ in groups], step, extra=list(self.multipliers))

    def finish(self, model, plain, ctx, status):
        expected = round(float(l0_penalty(model)), 2)
        expected_macs = round(float(l0_penalty(model, "macs")), 4)
        closed = close_beyond_expected(gate_layers(model)) if self.multipliers else None
        smaller, report = super().finish(model, plain, ctx, status)
        report["structure"].update(expected_l0=expected, expected_macs_fraction=expected_macs)
        if self.multipliers:
            report["structure"].update(multipliers=[round(float(v.numpy()), 4) for v in self.multipliers],
                                       closed_beyond_expected=closed)
        return smaller, report
