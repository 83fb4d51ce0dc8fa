"""The training loop: pruning schedules, checkpoints, resume, the run directory.

`train(config)` is what `python -m pruning.train` calls and what the tests
call. A custom loop (not `model.fit`) because the recurrent state is carried
from batch to batch as explicit tensors, and a run killed mid-epoch must
resume at the exact batch it stopped at. It shows Keras' progress bar and
drives TF-MOT as its docs prescribe for custom loops (`UpdatePruningStep`).

A run has up to three phases, each a loop over epochs with its own
checkpoint (`checkpoints/{last,finetune,recover}.npz`, replaced atomically
every `checkpoint_every` steps and at each epoch's end, holding weights with
masks and gates, optimizer slots, recurrent state and position):
1. train: dense, TF-MOT magnitude pruning, L0 gates (`l0`) or filter masks
   (`filter`); then the masks are applied (magnitude) or the gated units are
   removed physically (structured, `keras_models/surgery.py`);
2. finetune (structured, `--finetune-epochs`): the smaller dense model;
3. recover (`--recover rank-one`): only the rank-one updates are trained.
`--init-from RUN` starts phase 1 from a trained run's model and vocabulary.
"""
import io
import json
import math
import os
import time

import numpy as np

from edge_runtime.vocab import Vocab
from keras_models.backend import keras, tf, tfmot
from keras_models.cost import count_params, layer_report, macs_per_token
from keras_models import noise, rank_one
from keras_models.evaluate import evaluate, make_eval_fn, perplexity
from keras_models.language_model import (build_language_model, load_model, make_spec, named_weights,
                                         save_model, set_named_weights, zero_states)
from keras_models.neuron_gates import gate_layers, gate_values, l0_penalty
from keras_models.surgery import shrink
from pruning import data, factorize, grow_prune, rundir, schedules, unit_ranking


class Diverged(RuntimeError):
    pass


def _optimizer_variables(opt):
    v = opt.variables
    return list(v() if callable(v) else v)


def _opt_variables(opts):
    return [v for opt in opts for v in _optimizer_variables(opt)]


def _save_checkpoint(path, model, opts, states, meta):
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(_opt_variables(opts))})
    arrays.update({f"s{i}": np.asarray(s) for i, s in enumerate(states)})
    arrays["rng"] = noise.get_state()  # dropout, zoneout and gate noise go on where they were
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    rundir.atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path, model, opts):
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        n_w = sum(1 for k in z.files if k.startswith("w"))
        model.set_weights([z[f"w{i}"] for i in range(n_w)])
        for i, v in enumerate(_opt_variables(opts)):
            v.assign(z[f"o{i}"])
        states = [z[f"s{i}"] for i in range(sum(1 for k in z.files if k.startswith("s")))]
        if "rng" in z.files:  # checkpoints before 2026-12 have none
            noise.set_state(z["rng"])
    return meta, states


def checkpoint_meta(path):
    """The position saved in a checkpoint (epoch, batch, step, ...), or None."""
    if not os.path.exists(path):
        return None
    with np.load(path) as z:
        return json.loads(bytes(z["meta"]).decode())


def write_eval_data(path, streams):
    """`data.npz`: the validation and test ids and a calibration sample of the
    training ids, so conversion and evaluation need neither the corpus nor
    the training code."""
    buf = io.BytesIO()
    np.savez_compressed(buf, valid=streams["valid"], test=streams["test"],
                        calibration=data.calibration_windows(streams["train"]))
    rundir.atomic_write_bytes(path, buf.getvalue())


def pruning_wrappers(model):
    """TF-MOT's PruneLowMagnitude wrappers of a model (the class is not public API)."""
    return [l for l in model.layers if hasattr(l, "pruning_obj")]


def strip(pruned, plain):
    """Copy a pruned model's weights, masks applied, into `plain`."""
    for layer in pruning_wrappers(pruned):
        layer.pruning_obj.weight_mask_op()  # weights = weights * mask
    set_named_weights(plain, named_weights(pruned))  # grow-and-prune masks: already applied
    return plain



def make_train_step(model, opt, variables=None, penalty=None, before=(), after=()):
    """One compiled step: (inputs, targets, states) -> (mean cross-entropy, new states).

    `opt` is an optimizer for `variables` (default: all trainable ones) or a
    list of (optimizer, variables) pairs; `penalty()` is added to the loss
    (the L0 term); the callables in `before` run first (gate noise), those in
    `after` last (re-applying grow-and-prune masks).
    """
    groups = opt if isinstance(opt, list) else [(opt, variables or model.trainable_variables)]
    all_vars = [v for _, vs in groups for v in vs]

    @tf.function
    def train_step(x, y, states):
        for fn in before:
            fn()
        with tf.GradientTape() as tape:
            outputs = model([x] + states, training=True)
            ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, outputs[0], from_logits=True))
            loss = ce + penalty() if penalty is not None else ce
        grads = tape.gradient(loss, all_vars)
        k = 0
        for o, vs in groups:
            o.apply_gradients(zip(grads[k:k + len(vs)], vs))
            k += len(vs)
        for fn in after:
            fn()
        return ce, outputs[1:]
    return train_step


# Training defaults by architecture, for the options left unset (None). Adam at
# 0.004 trains the QRNN well but leaves LSTMs near the unigram model on the
# embedded corpus (train ppl after 300 steps, 2x512/256 tied: QRNN 361, LSTM
# 835); plain SGD with Zaremba's uniform +-0.1 initialisation gets the LSTM
# to 478 (README, "LSTMs and the optimiser").
ARCH_TRAINING = {"qrnn": dict(optimizer="adam", lr=0.004, init_scale=0.0),
                 "lstm": dict(optimizer="sgd", lr=20.0, init_scale=0.1),
                 "hlstm": dict(optimizer="sgd", lr=20.0, init_scale=0.1)}


def fill_training_defaults(config, arch):
    """Set the optimizer, learning rate and initialisation left unset to `arch`'s."""
    for key, value in ARCH_TRAINING[arch].items():
        if config.get(key) is None:
            config[key] = value


def _optimizer(config, lr=None, kind=None):
    """Adam, or plain SGD (`--optimizer sgd`, Zaremba et al.), with global-norm clipping."""
    cls = keras.optimizers.SGD if (kind or config.get("optimizer", "adam")) == "sgd" else keras.optimizers.Adam
    return cls(lr or config["lr"], global_clipnorm=config["clip_norm"] or None)


def lr_factor(config, epoch):
    """Learning-rate factor of 0-based `epoch`: times `lr_decay` for every epoch
    after the first `decay_after` (Zaremba: 0.5 after 4)."""
    return config.get("lr_decay", 1.0) ** max(0, epoch + 1 - config.get("decay_after", 0))


def _fit(phase, model, opts, train_step, xs, ys, epochs, valid, config, log, on_step=None,
         before_epoch=None, decay=False):
    """Run (or resume) `epochs` epochs of `train_step`; returns (status, meta).

    `on_step(step)` runs before each step (filter pruning events),
    `before_epoch(epoch)` after each epoch (TF-MOT's epoch hook); `decay`
    applies the learning-rate schedule (`lr_factor`) to every optimizer."""
    base_lrs = [float(o.learning_rate) for o in opts]
    out = config["out"]
    ckpt_path = os.path.join(out, rundir.CHECKPOINT if phase == "train"
                             else os.path.join(rundir.CHECKPOINTS, f"{phase}.npz"))
    meta = dict(epoch=0, batch=0, step=0, wall=0.0, train_time=0.0, history=[])
    states = zero_states(model, config["batch_size"])
    if config.get("resumed") and os.path.exists(ckpt_path):
        meta, states = _load_checkpoint(ckpt_path, model, opts)
        meta["resumed_wall"] = meta["wall"]
        if meta["epoch"] < epochs:
            log(f"{phase}: resuming at epoch {meta['epoch'] + 1}, batch {meta['batch']}, step {meta['step']}")
    writer = tf.summary.create_file_writer(os.path.join(out, rundir.LOGS, phase))
    eval_fn = make_eval_fn(model)
    n_batches = len(xs)
    start = time.time() - meta["wall"]
    try:
        for epoch in range(meta["epoch"], epochs):
            log(f"{phase}: epoch {epoch + 1}/{epochs}")
            bar = keras.utils.Progbar(n_batches, stateful_metrics=["ppl"])
            first = meta["batch"] if epoch == meta["epoch"] else 0
            if first == 0:
                states = zero_states(model, config["batch_size"])
                meta["epoch_loss"], meta["epoch_batches"] = 0.0, 0
            if decay:
                for o, lr in zip(opts, base_lrs):
                    o.learning_rate = lr * lr_factor(config, epoch)
            t0 = time.time()
            for b in range(first, n_batches):
                if on_step is not None:
                    on_step(meta["step"])
                loss, new_states = train_step(xs[b], ys[b], [tf.constant(s) for s in states])
                loss = float(loss)
                if not math.isfinite(loss):
                    raise Diverged(f"loss became {loss} at epoch {epoch + 1}, batch {b + 1}")
                states = [s.numpy() for s in new_states]
                meta["step"] += 1
                meta["epoch_loss"] += loss
                meta["epoch_batches"] += 1
                bar.update(b + 1, [("ppl", perplexity(meta["epoch_loss"] / meta["epoch_batches"]))])
                if meta["step"] % 50 == 0:
                    with writer.as_default():
                        tf.summary.scalar("train/loss", loss, step=meta["step"])
                meta["batch"] = b + 1
                if meta["step"] % config["checkpoint_every"] == 0 and b + 1 < n_batches:
                    meta["train_time"] += time.time() - t0
                    t0 = time.time()
                    meta["wall"] = time.time() - start
                    _save_checkpoint(ckpt_path, model, opts, states, meta)
            meta["train_time"] += time.time() - t0
            if before_epoch is not None:
                before_epoch(epoch)
            r = evaluate(model, *valid, eval_fn=eval_fn)
            if not math.isfinite(r["perplexity"]):
                raise Diverged(f"validation perplexity became {r['perplexity']} after epoch {epoch + 1}")
            train_ppl = perplexity(meta["epoch_loss"] / max(1, meta["epoch_batches"]))
            meta["history"].append(dict(phase=phase, epoch=epoch + 1, train_perplexity=round(train_ppl, 3),
                                        valid_perplexity=round(r["perplexity"], 3),
                                        valid_r_at_3=round(r["r_at_3"], 4), step=meta["step"]))
            log(f"{phase} epoch {epoch + 1}: train ppl {train_ppl:.2f}, valid ppl {r['perplexity']:.2f}, "
                f"valid R@3 {r['r_at_3']:.3f}")
            with writer.as_default():
                tf.summary.scalar("valid/perplexity", r["perplexity"], step=meta["step"])
            meta.update(epoch=epoch + 1, batch=0, wall=time.time() - start)
            _save_checkpoint(ckpt_path, model, opts, states, meta)
    except Diverged as e:
        log(f"training diverged: {e}; the last good checkpoint is kept in {ckpt_path}")
        return "diverged", meta
    finally:
        writer.flush()
    return "completed", meta


def load_init(run):
    """The trained model of run directory `run` (for --init-from)."""
    model = load_model(os.path.join(run, rundir.MODEL))
    if model.spec.get("rank_one"):
        raise rundir.RunDirError(f"--init-from {run}: its model has rank-one updates; start from the run before recovery")
    return model


def _gate_options(config):
    if config["schedule"] == "l0":
        return dict(kind="l0", beta=config["l0_beta"], gamma=config["l0_gamma"],
                    zeta=config["l0_zeta"], init=config["l0_init"])
    if config["schedule"] == "filter":
        return dict(kind="mask")
    return None


def apply_filter(model, config, fraction, batches, log=print):
    """Set the filter masks of a gated (mask) model: keep `fraction` of each
    layer's units, ranked by config["rank_by"] among the units still alive."""
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


def filter_fraction(settings, step):
    """Units kept at `step` of gradual filter pruning: the removed share grows
    from 0 to 1 - target between begin and end, cubically (TF-MOT's curve)."""
    p = min(1.0, max(0.0, (step - settings["begin_step"]) / (settings["end_step"] - settings["begin_step"])))
    return 1.0 - (1.0 - settings["target_units"]) * (1.0 - (1.0 - p) ** 3)


def _structure(model):
    return dict(embed=model.spec["embed"], hidden_sizes=list(model.spec["hidden_sizes"]),
                params=count_params(model)[0], macs_per_token=macs_per_token(model)[0])


def _eval(model, stream, excluded):
    r = evaluate(model, stream, excluded)
    return round(r["perplexity"], 3), round(r["r_at_3"], 4)


def _l0_training(model, config, gates):
    """Optimizers and train step for L0 gates: the gates with their own learning
    rate, the weights (unless frozen) with the usual one."""
    gate_vars = [g.log_alpha for g in gates]
    groups = [(_optimizer(config, config["gate_lr"], "adam"), gate_vars)]
    if not config["freeze_weights"]:
        groups.append((_optimizer(config), [v for v in model.trainable_variables
                                       if all(v is not g for g in gate_vars)]))
    for opt, variables in groups:
        opt.build(variables)
    lam, kind = float(config["l0_lambda"]), config["l0_penalty"]
    step = make_train_step(model, groups, penalty=lambda: lam * l0_penalty(model, kind),
                           before=[g.resample for g in gates])
    return [opt for opt, _ in groups], step


def _grow_prune(model, config, settings, xs, ys, valid, log):
    """`on_step(step)` for grow-and-prune, keeping a per-event history (validation
    perplexity before the event, active connections after) in the run directory."""
    path = os.path.join(config["out"], rundir.CHECKPOINTS, "grow_prune.json")
    gp = grow_prune.GrowPrune(model, settings, list(zip(xs, ys)), config["lr"], config["seed"], log)
    gp.seed()  # a resumed run's checkpoint replaces the seed masks
    history = []
    if config.get("resumed") and os.path.exists(path):
        # events after the checkpoint happen again: keep only those it has seen
        done = (checkpoint_meta(os.path.join(config["out"], rundir.CHECKPOINT)) or {}).get("step", 0)
        history = [e for e in rundir.read_json(path) if e["step"] < done]

    def on_step(step):
        event = gp.events.get(step)
        if event:
            ppl = _eval(model, *valid)
            gp.on_train_batch_begin(step)
            history.append(dict(step=step, event=event, valid_perplexity_before=ppl[0], active=gp.active()))
            rundir.write_json(path, history)
    on_step.history = history
    return on_step


def _filter_events(model, config, settings, xs, log):
    """`on_step(step)` for filter pruning: all at once before the first step
    (from a trained run), or gradually every `frequency` steps in [begin, end]."""
    probe = xs if settings["one_shot"] else xs[:20]  # activation ranking's data

    def on_step(step):
        if settings["one_shot"]:
            if step == 0:
                apply_filter(model, config, settings["target_units"], probe, log)
        elif settings["begin_step"] <= step <= settings["end_step"] and (
                (step - settings["begin_step"]) % settings["frequency"] == 0 or step == settings["end_step"]):
            apply_filter(model, config, filter_fraction(settings, step), probe, log)
    return on_step


def _factor_plan(config, spec):
    """The factors --factorize asks for (pruning/factorize.py), or None."""
    if config.get("factorize", "none") == "none":
        return None
    shape = config.get("tt_shape")
    return factorize.plan(spec, config["factorize"], config["factorize_scope"], config.get("rank"),
                          config.get("rank_fraction"), config.get("tt_rank"), config.get("tt_cores", 3),
                          factorize.parse_tt_shape(shape) if shape else None)


def train(config, corpus=None, log=print, force=False, on_start=None):
    """Run (or resume) training as `config` says; returns the report dict.
    `corpus` (from `data.load_corpus`) is read from config["data_dir"] if not given.
    Nothing is written to config["out"] until every check has passed and the
    model is built; only then does a new run replace an old one (`force`),
    and `on_start()` is called."""
    out = config["out"]
    resumed = bool(config.get("resumed"))
    corpus = corpus or data.load_corpus(config["data_dir"])
    init = load_init(config["init_from"]) if config.get("init_from") else None
    vocab_path = os.path.join(out, rundir.VOCAB)
    if resumed and os.path.exists(vocab_path):
        vocab = Vocab.load(vocab_path)
    elif init is not None:
        vocab = Vocab.load(os.path.join(config["init_from"], rundir.VOCAB))
    else:
        vocab = Vocab.build(corpus["train"], config["vocab_size"])
    streams = {s: data.to_stream(corpus[s], vocab) for s in data.SPLITS}
    xs, ys = data.batchify(streams["train"], config["batch_size"], config["bptt"])
    valid = (streams["valid"], vocab.never_suggested)  # what evaluate() takes after the model
    n_batches = len(xs)
    epochs = config["epochs"]
    settings = schedules.resolve(
        config["schedule"], n_batches * epochs, config["target_sparsity"], config["initial_sparsity"],
        config["begin_step"], config["end_step"], config["prune_frequency"])
    if config["schedule"] in schedules.MAGNITUDE:
        settings.update(scope=config.get("prune_scope", "all"))  # runs before the option: all
    if config["schedule"] == "filter":
        settings.update(target_units=config["target_units"], rank_by=config["rank_by"],
                        one_shot=init is not None)
    elif config["schedule"] == "grow-prune":
        settings.update(seed_density=config["seed_density"], grow_fraction=config["grow_fraction"],
                        grow_batches=config["grow_batches"], cycles=config["gp_cycles"],
                        total_steps=n_batches * epochs)
    elif config["schedule"] == "l0":
        settings.update(l0_lambda=config["l0_lambda"], l0_penalty=config["l0_penalty"],
                        freeze_weights=config["freeze_weights"],
                        beta=config["l0_beta"], gamma=config["l0_gamma"], zeta=config["l0_zeta"])
    config["pruning"] = settings
    if init is not None:
        base = dict(init.spec, dropout=config["dropout"])
        config.update(arch=base["arch"], embed=base["embed"], tie_embeddings=base["tie_embeddings"],
                      window=base["window"], hidden=max(base["hidden_sizes"]),
                      layers=len(base["hidden_sizes"]), vocab_size=len(vocab))
    else:
        base = make_spec(config["arch"], len(vocab), config["embed"], config["hidden"], config["layers"],
                         config["dropout"], config["tie_embeddings"], config["window"], config["zoneout"],
                         gate_hidden=config["gate_hidden"])
    factor_plan = _factor_plan(config, base)  # checked here, before anything is written
    if factor_plan and init is None:  # trained factored from the start
        base = dict(base, factors=factor_plan)
    fill_training_defaults(config, base["arch"])

    keras.utils.set_random_seed(config["seed"])
    noise.reseed(config["seed"])
    schedule = config["schedule"]
    structured = schedule in ("l0", "filter")
    model = build_language_model(**base, wrap=schedules.make_wrapper(settings), gates=_gate_options(config),
                                 masks=schedule == "grow-prune")
    if init is not None:
        set_named_weights(model, named_weights(init))
    gates = gate_layers(model)
    if init is None and config.get("init_scale"):  # Zaremba et al.: every weight uniform in [-s, s]
        s = config["init_scale"]
        gate_vars = {id(g.log_alpha) for g in gates if g.kind == "l0"}  # they start at --l0-init
        for v in model.trainable_variables:
            if id(v) not in gate_vars:
                v.assign(noise.uniform(v.shape, -s, s))
    on_step, before_epoch = None, None
    if schedule == "l0":
        opts, train_step = _l0_training(model, config, gates)
    else:
        opts = [_optimizer(config)]
        opts[0].build(model.trainable_variables)
        masked = grow_prune.masked_layers(model)
        train_step = make_train_step(model, opts[0], after=[l.apply_masks for l in masked])
    if schedule == "grow-prune":
        on_step = _grow_prune(model, config, settings, xs, ys, valid, log)
    if schedule == "filter":
        on_step = _filter_events(model, config, settings, xs, log)
        if settings["one_shot"] and epochs == 0:  # no step will call it
            on_step(0)
    wrappers = pruning_wrappers(model)
    if wrappers:
        pruning_cb = tfmot.sparsity.keras.UpdatePruningStep()
        pruning_cb.set_model(model)
        pruning_cb.on_train_begin()
        before_epoch = pruning_cb.on_epoch_end

    if not resumed:  # every check has passed: only now is an old run replaced
        rundir.prepare(out, force=force)
        vocab.save(vocab_path)
        write_eval_data(os.path.join(out, rundir.EVAL_DATA), streams)
        rundir.write_json(os.path.join(out, rundir.CONFIG), config)
    if on_start is not None:
        on_start()
    started = time.time()
    status, meta = _fit("train", model, opts, train_step, xs, ys, epochs, valid, config, log,
                        on_step, before_epoch, decay=True)
    history, steps, train_time = list(meta["history"]), meta["step"], meta["train_time"]
    earlier_wall = meta.get("resumed_wall", 0.0)  # time spent before a resume
    report = dict(status=status, arch=base["arch"], schedule=settings, vocab_size=len(vocab),
                  data=config["data_dir"] or f"embedded:{data.EMBEDDED_NAME}",
                  init_from=config.get("init_from"), epochs_completed=meta["epoch"], steps=steps,
                  steps_per_epoch=n_batches,
                  pruning_step=max(int(l.pruning_step.numpy()) for l in wrappers) if wrappers else None)

    if schedule == "grow-prune":
        report["grow_prune"] = on_step.history
    plain_base = build_language_model(**base)
    before = _structure(plain_base)
    refactored = bool(factor_plan) and init is not None  # a trained model, factored now
    if refactored and status == "completed":
        plain = strip(model, plain_base)
        ppl_dense = _eval(plain, *valid)
        spec, weights, errors = factorize.from_trained(base, named_weights(plain), factor_plan)
        plain = build_language_model(**spec)
        set_named_weights(plain, weights)
        ppl_factored = _eval(plain, *valid)
        report["factorization"] = dict(
            kind=config["factorize"], scope=config["factorize_scope"], matrices=factorize.describe(spec),
            stored_fraction=factorize.total_reduction(spec), relative_error=errors,
            valid_perplexity_dense=ppl_dense[0], valid_perplexity_factored=ppl_factored[0],
            valid_r_at_3_factored=ppl_factored[1])
        log(f"factored {len(errors)} matrices ({config['factorize']}): valid perplexity {ppl_dense[0]} -> "
            f"{ppl_factored[0]} before fine-tuning; relative errors "
            + ", ".join(f"{k} {v:.3f}" for k, v in errors.items()))
    elif structured:
        gated_valid = _eval(model, *valid) if status == "completed" else None
        spec, weights = shrink(base, named_weights(model), gate_values(model), warn=log)
        plain = build_language_model(**spec)
        set_named_weights(plain, weights)
        after = _structure(plain)
        report["structure"] = dict(before=before, after=after,
                                   macs_fraction=round(after["macs_per_token"] / before["macs_per_token"], 4),
                                   gated_valid_perplexity=gated_valid and gated_valid[0])
        if schedule == "l0":
            report["structure"]["expected_l0"] = round(float(l0_penalty(model)), 2)
        log(f"units per layer {before['hidden_sizes']} -> {after['hidden_sizes']}, embedding "
            f"{before['embed']} -> {after['embed']}, MACs/token {before['macs_per_token']:,} -> "
            f"{after['macs_per_token']:,}")
    else:
        plain = strip(model, plain_base)
        if factor_plan:
            report["factorization"] = dict(kind=config["factorize"], scope=config["factorize_scope"],
                                           matrices=factorize.describe(plain.spec),
                                           stored_fraction=factorize.total_reduction(plain.spec))

    if status == "completed" and (structured or refactored) and config["finetune_epochs"]:
        opts = [_optimizer(config)]
        opts[0].build(plain.trainable_variables)
        status, meta = _fit("finetune", plain, opts, make_train_step(plain, opts[0]), xs, ys,
                            config["finetune_epochs"], valid, config, log)
        history += meta["history"]
        steps, train_time = steps + meta["step"], train_time + meta["train_time"]
        earlier_wall += meta.get("resumed_wall", 0.0)
    final = plain
    if status == "completed" and config["recover"] == "rank-one":
        final = build_language_model(**dict(plain.spec, rank_one=True))
        set_named_weights(final, named_weights(plain))
        updates = rank_one.update_variables(final)
        rank_one.initialise(updates, noise.normal)  # from the checkpointed stream: a resume draws the same
        opts = [_optimizer(config)]
        opts[0].build(updates)
        ppl_before = _eval(final, *valid)
        status, meta = _fit("recover", final, opts, make_train_step(final, opts[0], updates), xs, ys,
                            config["recover_epochs"], valid, config, log)
        history += meta["history"]
        steps, train_time = steps + meta["step"], train_time + meta["train_time"]
        earlier_wall += meta.get("resumed_wall", 0.0)
        report["recovery"] = dict(method="rank-one", extra_params=int(sum(v.shape.num_elements() for v in updates)),
                                  valid_perplexity_before=ppl_before[0], valid_r_at_3_before=ppl_before[1])
    report["status"] = status
    if status == "completed":
        save_model(final, os.path.join(out, rundir.MODEL))
        for split in ("valid", "test"):
            r = evaluate(final, streams[split], vocab.never_suggested)
            report[f"{split}_perplexity"] = round(r["perplexity"], 3)
            report[f"{split}_r_at_3"] = round(r["r_at_3"], 4)
            report[f"{split}_tokens"] = r["tokens"]
        report["unigram_test_perplexity"] = round(
            data.unigram_perplexity(corpus["train"], streams["test"], vocab), 3)
    total, nonzero = count_params(final)
    macs, macs_nz = macs_per_token(final)
    trained_tokens = steps * config["batch_size"] * config["bptt"]
    report.update(params_total=total, params_nonzero=nonzero, macs_per_token=macs,
                  macs_per_token_nonzero=macs_nz, hidden_sizes=final.spec["hidden_sizes"],
                  embed=final.spec["embed"], layers=layer_report(final), train_tokens=trained_tokens,
                  tokens_per_second=round(trained_tokens / max(train_time, 1e-9), 1),
                  wall_time_s=round(time.time() - started + earlier_wall, 1), history=history)
    rundir.write_json(os.path.join(out, rundir.REPORT), report)
    return report
