"""L0 neuron selection (`--schedule l0`; Louizos et al., Wen et al., Tang & Lin).

Changes the model: hard-concrete gates on the embedding dimensions and on
each layer's hidden units (keras_models/neuron_gates.py), log alpha from
`--l0-init`. While training: a fresh noise sample per step, lambda times the
expected L0 term (`--l0-penalty count` or `macs`) added to the loss, the
gates trained by their own Adam (`--gate-lr`), the weights with the run's
optimizer unless `--freeze-weights`. Finishes: the units whose test-time
gate is 0 are removed (methods.GatedUnits).
"""
from keras_models.neuron_gates import gate_layers, l0_penalty
from pruning import steps
from pruning.methods import GatedUnits, Training


class L0(GatedUnits):
    def settings(self, total_steps):
        c = self.config
        return dict(schedule="l0", l0_lambda=c["l0_lambda"], l0_penalty=c["l0_penalty"],
                    freeze_weights=c["freeze_weights"], beta=c["l0_beta"], gamma=c["l0_gamma"], zeta=c["l0_zeta"])

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
        for opt, variables in groups:
            opt.build(variables)
        lam, kind = float(c["l0_lambda"]), c["l0_penalty"]
        step = steps.make_train_step(model, groups, penalty=lambda: lam * l0_penalty(model, kind),
                                     before=[g.resample for g in gates])
        return Training([opt for opt, _ in groups], step)

    def finish(self, model, plain, ctx, status):
        expected = round(float(l0_penalty(model)), 2)
        smaller, report = super().finish(model, plain, ctx, status)
        report["structure"]["expected_l0"] = expected
        return smaller, report
