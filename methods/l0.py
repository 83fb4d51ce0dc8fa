"""L0 neuron selection (`--schedule l0`; Louizos et al., Wen et al., Tang & Lin).

Changes the model: hard-concrete gates on the embedding dimensions and on
each layer's hidden units (keras_models/neuron_gates.py), log alpha from
`--l0-init`. While training: a fresh noise sample per step, lambda times the
expected L0 term (`--l0-penalty count` or `macs`) added to the loss, the
gates trained by their own Adam (`--gate-lr`), the weights with the run's
optimizer unless `--freeze-weights`. Finishes: the units whose test-time
gate is 0 are removed, each width left even (methods.GatedUnits).

`--target-macs F` replaces lambda by a rising penalty coefficient, after
the Lagrangian of Wang, Wohlwend & Lei (2020): with s the expected MACs
fraction and t the target,
    loss + c (s - t)^2,
minimised over the weights and gates, with c raised by gradient ascent (its
own Adam at `--gate-lr`, through a reversed gradient). The gradient of c is
(s - t)^2 >= 0, so c only ever rises, faster the further s is from t: it
is a penalty coefficient that grows until the target is met, not a
Lagrange multiplier that falls again. Wang et al. add a linear term
l1 (s - t), whose sign changes at the target; with the gates' Adam steps it
kept pushing after s had crossed t, until l1 had wound down (a 1-epoch run
asked for 0.5 ended at 0.29), while the square's push turns at s = t. t falls linearly from 1 to F over the first half of the steps (a
sudden target closes gates before the weights adapt) and is held after.
The constraint holds in expectation, and gates need not have reached 0 or 1
when training ends; so the finished model closes open gates, lowest log
alpha first, while that brings its MACs closer to F (`close_to_target`, with
the widths `shrink` leaves: each even;
Wang et al.'s code likewise closes the lowest-ranked gates at the end).
"""
import numpy as np

from keras_models import L0_PENALTIES
from methods.base import GatedUnits, Training

# TensorFlow loads in the hooks, not here: the CLI checks these options first.

ANNEAL = 0.5  # share of the training steps over which the target falls to --target-macs


def ascend(x):
    """x, with its gradient negated: a minimiser of the loss maximises over x."""
    from keras_models.backend import tf

    @tf.custom_gradient
    def reversed_gradient(x):
        return tf.identity(x), lambda dy: -dy
    return reversed_gradient(x)


def constraint(model, target, anneal_steps, clock):
    """([coefficient], penalty()) of the MACs constraint; `clock` counts steps."""
    from keras_models.backend import tf
    from keras_models.neuron_gates import l0_penalty
    coefficient = tf.Variable(0.0, name="l0_penalty_coefficient")

    def penalty():
        t = 1.0 - (1.0 - target) * tf.minimum(1.0, tf.cast(clock.iterations, tf.float32) / anneal_steps)
        return ascend(coefficient) * tf.square(l0_penalty(model, "macs") - t)
    return [coefficient], penalty


CLOSED = -20.0  # a log alpha whose test-time gate is 0


def close_to_target(model, target):
    """Close open gates, lowest log alpha first (each group keeps one), while that
    brings the MACs fraction of the open units closer to `target`; -> how many."""
    from keras_models.cost import macs_from_spec
    from keras_models.neuron_gates import counted_spec, gate_layers
    from keras_models.surgery import even_width
    gates = {g.name[len("gate_"):]: g for g in gate_layers(model)}
    alpha = {k: g.log_alpha.numpy() for k, g in gates.items()}
    is_open = {k: g.test_values() > 0 for k, g in gates.items()}
    dense = macs_from_spec(model.spec)

    def share():
        return macs_from_spec(counted_spec(model.spec, {k: even_width(int(o.sum()), len(o))
                                                        for k, o in is_open.items()})) / dense
    closed, now = 0, share()
    while now > target:
        candidates = [(a[i], k, i) for k, a in alpha.items() if is_open[k].sum() > 1
                      for i in np.flatnonzero(is_open[k])]
        if not candidates:
            break
        _, k, i = min(candidates)
        is_open[k][i] = False
        after = share()
        if after < target and target - after > now - target:  # closing it would land further away
            is_open[k][i] = True
            break
        closed, now = closed + 1, after
    for k, g in gates.items():
        g.log_alpha.assign(np.where(is_open[k], alpha[k], CLOSED).astype(np.float32))
    return closed


class L0(GatedUnits):
    NAMES = ("l0",)
    DEFAULTS = dict(l0_lambda=0.002, l0_beta=2.0 / 3.0, l0_gamma=-0.1, l0_zeta=1.1, l0_init=3.0, gate_lr=0.02,
                    l0_penalty="count", freeze_weights=False)

    @classmethod
    def add_options(cls, a):
        d = cls.DEFAULTS
        a("--l0-lambda", type=float, default=d["l0_lambda"],
          help="l0: weight of the expected number of open gates in the loss (default %(default)s)")
        a("--l0-penalty", default=d["l0_penalty"], metavar="{" + ",".join(L0_PENALTIES) + "}",
          help="l0: count (expected open gates, the papers') or macs (expected MACs per token / dense) "
               "(default %(default)s)")
        a("--l0-beta", type=float, default=d["l0_beta"], help="l0: hard-concrete temperature (default 2/3)")
        a("--l0-gamma", type=float, default=d["l0_gamma"], help="l0: stretch lower end (default %(default)s)")
        a("--l0-zeta", type=float, default=d["l0_zeta"], help="l0: stretch upper end (default %(default)s)")
        a("--l0-init", type=float, default=d["l0_init"], help="l0: initial log alpha, open gates (default %(default)s)")
        a("--gate-lr", type=float, default=d["gate_lr"], help="l0: Adam learning rate of the gates (default %(default)s)")
        a("--freeze-weights", action="store_true", help="l0: train only the gates (Tang & Lin); needs --init-from")

    @classmethod
    def check(cls, c, arch, chosen):
        if c["l0_lambda"] < 0:
            return f"--l0-lambda must not be negative, got {c['l0_lambda']}"
        if not (c["l0_beta"] > 0 and c["l0_gamma"] < 0 and c["l0_zeta"] > 1):
            return "hard-concrete constants need --l0-beta > 0, --l0-gamma < 0 and --l0-zeta > 1"
        if c["l0_penalty"] not in L0_PENALTIES:
            return f"unknown --l0-penalty {c['l0_penalty']!r}; choose from {', '.join(L0_PENALTIES)}"
        if c["gate_lr"] <= 0:
            return "--gate-lr must be positive"
        if chosen and c["epochs"] < 1:
            return "--schedule l0 trains its gates: --epochs must be at least 1"
        if c["freeze_weights"] and (not chosen or not c["init_from"]):
            return "--freeze-weights learns L0 gates on a trained model: use it with --schedule l0 --init-from RUN"
        return super().check(c, arch, chosen)

    def settings(self, total_steps):
        c = self.config
        self.anneal_steps = max(1, int(ANNEAL * total_steps))
        s = dict(schedule="l0", l0_lambda=c["l0_lambda"], l0_penalty=c["l0_penalty"],
                 freeze_weights=c["freeze_weights"], beta=c["l0_beta"], gamma=c["l0_gamma"], zeta=c["l0_zeta"])
        if c.get("target_macs") is not None:
            s.update(l0_lambda=None, l0_penalty="constraint", target_macs=c["target_macs"],
                     anneal_steps=self.anneal_steps)
        return s

    def build_options(self):
        c = self.config
        return dict(gates=dict(kind="l0", beta=c["l0_beta"], gamma=c["l0_gamma"], zeta=c["l0_zeta"],
                               init=c["l0_init"]))

    def training(self, model, ctx):
        from keras_models.neuron_gates import gate_layers, l0_penalty
        from training import steps
        c = self.config
        gates = gate_layers(model)
        gate_vars = [g.log_alpha for g in gates]
        groups = [(steps.optimizer(c, c["gate_lr"], "adam"), gate_vars)]
        if not c["freeze_weights"]:
            groups.append((steps.optimizer(c), [v for v in model.trainable_variables
                                               if all(v is not g for g in gate_vars)]))
        self.coefficients = ()
        if c.get("target_macs") is not None:
            clock = groups[0][0]  # the gates' optimizer: its step count is checkpointed
            self.coefficients, penalty = constraint(model, c["target_macs"], self.anneal_steps, clock)
            groups.append((steps.optimizer(c, c["gate_lr"], "adam"), self.coefficients))  # c rises
        else:
            lam, kind = float(c["l0_lambda"]), c["l0_penalty"]
            penalty = lambda: lam * l0_penalty(model, kind)  # noqa: E731
        for opt, variables in groups:
            opt.build(variables)
        step = steps.make_train_step(model, groups, penalty=penalty, before=[g.resample for g in gates])
        return Training([opt for opt, _ in groups], step, extra=list(self.coefficients))

    def finish(self, model, plain, ctx, status):
        from keras_models.neuron_gates import l0_penalty
        expected = round(float(l0_penalty(model)), 2)
        expected_macs = round(float(l0_penalty(model, "macs")), 4)
        closed = close_to_target(model, self.config["target_macs"]) if self.coefficients else None
        smaller, report = super().finish(model, plain, ctx, status)
        report["structure"].update(expected_l0=expected, expected_macs_fraction=expected_macs)
        if self.coefficients:
            report["structure"].update(penalty_coefficient=round(float(self.coefficients[0].numpy()), 4),
                                       closed_to_target=closed)
        return smaller, report
