"""Pruning schedules chosen by `--schedule`: TF-MOT magnitude pruning, and
the structured ones (`l0`, `filter`: l0.py, filter_pruning.py; grow-prune: grow_prune.py).

- none: dense training.
- constant: `ConstantSparsity(target)` from `begin_step`, masks recomputed
  every `frequency` steps.
- polynomial: `PolynomialDecay` from `initial_sparsity` to `target_sparsity`
  between `begin_step` and `end_step` (cubic, TF-MOT's default), then the
  mask is held while training goes on.
- m-by-n: 2:4 structured sparsity (`sparsity_m_by_n=(2, 4)`): in every group
  of 4 consecutive input weights of an output unit 2 are kept (50%).
- l0: hard-concrete gates on neurons (`keras_models/neuron_gates.py`).
- filter: whole hidden units removed, ranked by random / norm / activation;
  gradually (begin/end/frequency as below) or at once from `--init-from`.
- grow-prune: masks on the H-LSTM gate matrices (`methods/grow_prune.py`).

Defaults from the run length T (steps): begin at 10% of T, end at 60% of T
(the last 40% retrains with the mask held), masks recomputed every
min(100, (end - begin) // 20) steps, and `end_step` moved up to a whole number
of periods after `begin_step` so that the last update reaches the target
exactly (TF-MOT only prunes on steps begin + k * frequency).
"""
SCHEDULES = ("none", "constant", "polynomial", "m-by-n", "l0", "filter", "grow-prune")
MAGNITUDE = ("constant", "polynomial", "m-by-n")


def resolve(schedule, total_steps, target_sparsity, initial_sparsity=0.0,
            begin_step=None, end_step=None, frequency=None):
    """Fill in the defaults; returns the schedule settings as a dict."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if schedule in ("none", "l0"):
        return dict(schedule=schedule)
    if schedule == "grow-prune":
        return dict(schedule=schedule, target_sparsity=float(target_sparsity))
    begin = int(round(0.1 * total_steps)) if begin_step is None else int(begin_step)
    end = int(round(0.6 * total_steps)) if end_step is None else int(end_step)
    end = max(end, begin + 1)
    freq = frequency or max(1, min(100, (end - begin) // 20))
    periods = -(-(end - begin) // freq)
    if end_step is None:
        end = begin + periods * freq
    if schedule == "filter":
        return dict(schedule=schedule, begin_step=begin, end_step=end, frequency=int(freq))
    target = 0.5 if schedule == "m-by-n" else float(target_sparsity)
    return dict(schedule=schedule, target_sparsity=target, initial_sparsity=float(initial_sparsity),
                begin_step=begin, end_step=end, frequency=int(freq))


def make_wrapper(settings):
    """The `wrap(layer)` the model builder applies to prunable layers, or None."""
    from keras_models.backend import tfmot  # TensorFlow only when a model is built
    k = tfmot.sparsity.keras
    schedule = settings["schedule"]
    if schedule not in MAGNITUDE:
        return None
    if schedule == "constant":
        params = dict(pruning_schedule=k.ConstantSparsity(
            settings["target_sparsity"], settings["begin_step"], frequency=settings["frequency"]))
    elif schedule == "polynomial":
        params = dict(pruning_schedule=k.PolynomialDecay(
            settings["initial_sparsity"], settings["target_sparsity"], settings["begin_step"],
            settings["end_step"], frequency=settings["frequency"]))
    else:  # m-by-n: TF-MOT sets the 2:4 masks once, at step 1
        params = dict(sparsity_m_by_n=(2, 4))

    def wrap(layer):
        if settings.get("scope") == "recurrent" and not layer.name.startswith("rnn_"):
            return layer  # the embedding / output matrix stays dense (recurrent layers are rnn_<i>)
        return k.prune_low_magnitude(layer, **params)

    return wrap
