"""Filter pruning (`--schedule filter`; Tang & Lin): whole hidden units out,
ranked by `--rank-by` random, norm or activation (unit_ranking.py).

Changes the model: fixed 0/1 masks on the neurons (keras_models/neuron_gates.py,
kind "mask"). While training: from a trained run (`--init-from`) the masks
are set at once before the first step; otherwise they close gradually, every
`frequency` steps between begin and end, the removed share growing cubically
(TF-MOT's curve) to 1 - `--target-units`. `--target-macs F` sets that
fraction to the one whose smaller model comes closest to F of the dense
model's MACs per token (`units_for_macs`). Finishes: the masked units are
removed (methods.GatedUnits).
"""
import numpy as np

from methods import schedules, unit_ranking
from methods.base import GatedUnits, Training


def apply_filter(model, config, fraction, batches, log=print):
    """Set the filter masks of a gated (mask) model: keep `fraction` of each
    layer's units, ranked by config["rank_by"] among the units still alive."""
    from keras_models.language_model import named_weights
    from keras_models.neuron_gates import gate_layers, gate_values
    spec = model.spec
    alive = gate_values(model)
    how = config["rank_by"]
    if how == "norm":
        scores = unit_ranking.norm_scores(spec, named_weights(model))
    elif how == "activation":
        scores = unit_ranking.activation_scores(model, spec, batches)
    else:
        scores = unit_ranking.random_scores(spec, config["seed"])
    masks = unit_ranking.keep_masks(spec, scores, fraction, alive, warn=log)
    for g in gate_layers(model):
        g.mask.assign(masks[g.name[len("gate_"):]])


def kept_spec(spec, fraction):
    """The spec left when `fraction` of each layer's units is kept (as keep_masks
    rounds, and shrink makes each width even)."""
    from keras_models.surgery import even_width
    sizes = [even_width(max(1, int(round(fraction * h))), h) for h in spec["hidden_sizes"]]
    return dict(spec, hidden_sizes=sizes, embed=sizes[-1] if spec["tie_embeddings"] else spec["embed"])


def units_for_macs(spec, target):
    """(fraction of units kept, the MACs fraction it gives) closest to `target` of the
    dense MACs; of equally close fractions, the largest (the most units)."""
    from keras_models.cost import closest_fraction
    return closest_fraction(spec, lambda u: kept_spec(spec, u), target, np.linspace(0.001, 1, 1000))


def filter_fraction(settings, step):
    """Units kept at `step` of gradual filter pruning: the removed share grows
    from 0 to 1 - target between begin and end, cubically (TF-MOT's curve)."""
    p = min(1.0, max(0.0, (step - settings["begin_step"]) / (settings["end_step"] - settings["begin_step"])))
    return 1.0 - (1.0 - settings["target_units"]) * (1.0 - (1.0 - p) ** 3)


class FilterPruning(GatedUnits):
    NAMES = ("filter",)
    DEFAULTS = dict(target_units=0.5, rank_by="norm")

    @classmethod
    def add_options(cls, a):
        d = cls.DEFAULTS
        a("--target-units", type=float, default=d["target_units"],
          help="filter: fraction of each layer's hidden units kept, in (0, 1] (default %(default)s)")
        a("--rank-by", default=d["rank_by"], metavar="{" + ",".join(unit_ranking.RANKINGS) + "}",
          help="filter: how units are ranked (default %(default)s)")

    @classmethod
    def check(cls, c, arch, chosen):
        if not 0.0 < c["target_units"] <= 1.0:
            return f"--target-units must be in (0, 1], got {c['target_units']}"
        if c["rank_by"] not in unit_ranking.RANKINGS:
            return f"unknown --rank-by {c['rank_by']!r}; choose from {', '.join(unit_ranking.RANKINGS)}"
        return super().check(c, arch, chosen)

    def settings(self, total_steps):
        c = self.config
        s = schedules.resolve("filter", total_steps, c["target_sparsity"], c["initial_sparsity"],
                              c["begin_step"], c["end_step"], c["prune_frequency"])
        s.update(target_units=c["target_units"], rank_by=c["rank_by"], one_shot=self.init is not None)
        self.resolved = s
        return s

    def spec(self, base):
        if self.config.get("target_macs") is not None:  # settings() is config["pruning"]: recorded there
            units, macs = units_for_macs(base, self.config["target_macs"])
            self.resolved.update(target_units=units, target_macs=self.config["target_macs"], expected_macs=macs)
        return base

    def build_options(self):
        return dict(gates=dict(kind="mask"))

    def training(self, model, ctx):
        s, c = self.resolved, self.config
        probe = ctx.xs if s["one_shot"] else ctx.xs[:20]  # activation ranking's data

        def on_step(step):
            if s["one_shot"]:
                if step == 0:
                    apply_filter(model, c, s["target_units"], probe, ctx.log)
            elif s["begin_step"] <= step <= s["end_step"] and (
                    (step - s["begin_step"]) % s["frequency"] == 0 or step == s["end_step"]):
                apply_filter(model, c, filter_fraction(s, step), probe, ctx.log)
        if s["one_shot"] and c["epochs"] == 0:  # no step will call it
            on_step(0)
        from training import steps
        return Training(*steps.plain_training(model, c), on_step)
