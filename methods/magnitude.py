"""Dense training and TF-MOT magnitude pruning (`--schedule none, constant,
polynomial, m-by-n`; the schedules themselves: schedules.py).

Changes the model: TF-MOT's PruneLowMagnitude wrappers around the prunable
layers (`--prune-scope`). While training: TF-MOT's `UpdatePruningStep`, driven
as its docs prescribe for custom loops (its epoch hook after each epoch).
Finishes: the masks are multiplied into the weights and the wrappers dropped.
"""
from methods import schedules
from methods.base import Method, Training

PRUNE_SCOPES = ("all", "recurrent")


def pruning_wrappers(model):
    """TF-MOT's PruneLowMagnitude wrappers of a model (the class is not public API)."""
    return [l for l in model.layers if hasattr(l, "pruning_obj")]


def strip(pruned, plain):
    """Copy a pruned model's weights, masks applied, into `plain`."""
    from keras_models.language_model import named_weights, set_named_weights
    for layer in pruning_wrappers(pruned):
        layer.pruning_obj.weight_mask_op()  # weights = weights * mask
    set_named_weights(plain, named_weights(pruned))
    return plain


class Magnitude(Method):
    NAMES = ("none",) + schedules.MAGNITUDE
    DEFAULTS = dict(prune_scope="all")

    @classmethod
    def add_options(cls, a):
        a("--prune-scope", default=cls.DEFAULTS["prune_scope"], metavar="{" + ",".join(PRUNE_SCOPES) + "}",
          help="magnitude schedules: all (recurrent matrices and the output / tied embedding matrix) or "
               "recurrent (the recurrent matrices only, what grow-prune masks) (default %(default)s)")

    @classmethod
    def check(cls, c, arch, chosen):
        if c["prune_scope"] not in PRUNE_SCOPES:
            return f"unknown --prune-scope {c['prune_scope']!r}; choose from {', '.join(PRUNE_SCOPES)}"
        return None

    def settings(self, total_steps):
        c = self.config
        s = schedules.resolve(c["schedule"], total_steps, c["target_sparsity"], c["initial_sparsity"],
                              c["begin_step"], c["end_step"], c["prune_frequency"])
        if c["schedule"] in schedules.MAGNITUDE:
            s.update(scope=c.get("prune_scope", "all"))  # runs before the option: all
        self.resolved = s
        return s

    def build_options(self):
        return dict(wrap=schedules.make_wrapper(self.resolved))

    def training(self, model, ctx):
        from keras_models.backend import tfmot
        from training import steps
        opts, step = steps.plain_training(model, self.config)
        before_epoch = None
        if pruning_wrappers(model):
            callback = tfmot.sparsity.keras.UpdatePruningStep()
            callback.set_model(model)
            callback.on_train_begin()
            before_epoch = callback.on_epoch_end
        return Training(opts, step, None, before_epoch)

    def finish(self, model, plain, ctx, status):
        wrappers = pruning_wrappers(model)
        step = max(int(l.pruning_step.numpy()) for l in wrappers) if wrappers else None
        return strip(model, plain), dict(pruning_step=step)
