"""The compression methods the trainer and `python -m pruning.train` know.

Adding a method is writing its module in methods/ (a `methods.base.Method`
with its options, checks and hooks) and adding its class to METHODS. The
registry lives here, above the methods, so no method imports it.
"""
from methods import factorize, filter_pruning, grow_prune, l0, magnitude

# --factorize chooses Factorize whatever the schedule; otherwise --schedule names the method
METHODS = (magnitude.Magnitude, l0.L0, filter_pruning.FilterPruning, grow_prune.GrowPruneMethod,
           factorize.Factorize)


def schedules():
    """The --schedule values, in the order of METHODS."""
    return tuple(name for cls in METHODS for name in cls.NAMES)


def chosen(config):
    """The method class the options ask for; None for an unknown schedule."""
    return next((cls for cls in METHODS if cls.chosen_by(config)), None)


def for_config(config, init):
    """The Method object the options ask for."""
    return chosen(config)(config, init)


def defaults():
    """{option: default} of every method's own options."""
    out = {}
    for cls in METHODS:
        out.update(cls.DEFAULTS)
    return out


def add_options(add):
    for cls in METHODS:
        cls.add_options(add)


def check(config, arch):
    """A one-line message for the first bad method option, or None."""
    picked = chosen(config)
    for cls in METHODS:
        problem = cls.check(config, arch, cls is picked)
        if problem:
            return problem
    return None
