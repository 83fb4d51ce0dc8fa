"""How the trainer sees a way of making a model smaller: one class per
method, each in its own module, with the same three hooks.

- how it changes the model: `settings()` (its resolved options, recorded in
  config.json as "pruning"), `spec(base)` and `build_options()` (what
  `build_language_model` gets: TF-MOT wrappers, neuron gates, masks, factors);
- what it does while training: `training(model, ctx)` -> `Training`
  (optimizers, the compiled step, and `on_step(step)` / `before_epoch(epoch)`
  hooks: pruning events, mask updates, TF-MOT's epoch hook);
- how it finishes: `finish(model, plain, ctx, status)` -> (the plain model to
  save or fine-tune, what it adds to the report): strip the masks, remove
  the gated units, factor the trained matrices.
`finetunes` says whether the finished model is one `--finetune-epochs`
fine-tunes (a smaller or factored model made from a trained one).

And how `python -m pruning.train` offers it, with no TensorFlow loaded yet:
`NAMES` and `chosen_by(c)` (the `--schedule` values that choose it), `DEFAULTS` and
`add_options(add)` (its own options), `check(c, arch, chosen)` (a one-line
message for the first bad one, or None), `takes_target_macs(c)` and
`finetunes_from(c)`. `pruning/registry.py` lists the methods.

| --schedule / --factorize | module |
|---|---|
| none, constant, polynomial, m-by-n | magnitude.py (TF-MOT) |
| l0 | l0.py |
| filter | filter_pruning.py |
| grow-prune | grow_prune.py |
| --factorize lowrank, tt | factorize.py |
"""
import collections

# TensorFlow loads inside the hooks, so the CLI can import the methods' option
# lists and check them first.
# `extra`: variables trained outside the model (checkpointed with it).
Training = collections.namedtuple("Training", "opts step on_step before_epoch extra", defaults=(None, None, ()))


class Context:
    """What a method's hooks may read: the options, the trained model it started
    from (--init-from, or None), the batches, the validation set, the log."""

    def __init__(self, config, init, xs, ys, valid, log):
        self.config, self.init, self.xs, self.ys, self.valid, self.log = config, init, xs, ys, valid, log


class Method:
    finetunes = False
    NAMES = ()  # the --schedule values that choose this method
    DEFAULTS = {}

    @classmethod
    def chosen_by(cls, c):
        """Whether options `c` ask for this method."""
        return c.get("factorize", "none") == "none" and c["schedule"] in cls.NAMES

    @classmethod
    def add_options(cls, add):
        """Add this method's options (argparse's add_argument); none by default."""

    @classmethod
    def check(cls, c, arch, chosen):
        """A one-line message for the first bad option in `c`, or None. `chosen`:
        whether `c` asks for this method (range checks hold either way)."""
        return None

    @classmethod
    def takes_target_macs(cls, c):
        return False

    @classmethod
    def finetunes_from(cls, c):
        """Whether `--finetune-epochs` has a model to fine-tune under options `c`."""
        return cls.finetunes

    def __init__(self, config, init):
        self.config, self.init = config, init

    def settings(self, total_steps):
        return dict(schedule=self.config["schedule"])

    def spec(self, base):
        return base

    def build_options(self):
        return {}

    def training(self, model, ctx):
        from training import steps
        return Training(*steps.plain_training(model, self.config))

    def finish(self, model, plain, ctx, status):
        from keras_models.language_model import named_weights, set_named_weights
        set_named_weights(plain, named_weights(model))
        return plain, {}


def rounded_eval(model, valid):
    """(perplexity, R@3) on `valid` = (stream, ids never suggested), rounded as reported."""
    from keras_models.evaluate import evaluate
    r = evaluate(model, *valid)
    return round(r["perplexity"], 3), round(r["r_at_3"], 4)


def structure(model):
    from keras_models.cost import count_params, macs_per_token
    return dict(embed=model.spec["embed"], hidden_sizes=list(model.spec["hidden_sizes"]),
                params=count_params(model)[0], macs_per_token=macs_per_token(model)[0])


class GatedUnits(Method):
    """The structured methods (l0, filter): gates on the neurons while training;
    finishing removes the units whose gate is 0 (keras_models/surgery.py;
    each width left even), leaving a smaller dense model that
    --finetune-epochs fine-tunes."""
    finetunes = True

    @classmethod
    def check(cls, c, arch, chosen):
        if chosen and arch == "hlstm":
            return f"--schedule {c['schedule']} supports qrnn and lstm, not hlstm"
        return None

    @classmethod
    def takes_target_macs(cls, c):
        return True

    def finish(self, model, plain, ctx, status):
        from keras_models.language_model import build_language_model, named_weights, set_named_weights
        from keras_models.neuron_gates import gate_values
        from keras_models.surgery import shrink
        before = structure(plain)
        gated_valid = rounded_eval(model, ctx.valid) if status == "completed" else None
        spec, weights = shrink(plain.spec, named_weights(model), gate_values(model), warn=ctx.log)
        smaller = build_language_model(**spec)
        set_named_weights(smaller, weights)
        after = structure(smaller)
        ctx.log(f"units per layer {before['hidden_sizes']} -> {after['hidden_sizes']}, embedding "
                f"{before['embed']} -> {after['embed']}, MACs/token {before['macs_per_token']:,} -> "
                f"{after['macs_per_token']:,}")
        return smaller, dict(structure=dict(before=before, after=after,
                                            macs_fraction=round(after["macs_per_token"] / before["macs_per_token"], 4),
                                            gated_valid_perplexity=gated_valid and gated_valid[0]))
