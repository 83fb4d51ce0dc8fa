"""The training loop: phases, checkpoints, resume, the run directory.

`train(config)` is what `python -m pruning.train` calls and what the tests
call. A custom loop (not `model.fit`) because the recurrent state is carried
from batch to batch as explicit tensors, and a run killed mid-epoch must
resume at the exact batch it stopped at. It shows Keras' progress bar.

Each compression method is one module with three hooks (methods/base.py):
how it changes the model, what it does while training, how it finishes. A
run is then these phases, in order, each a loop over epochs with its own
checkpoint (training/checkpoints.py, every `checkpoint_every` steps and at
each epoch's end):
1. train: the model the method builds (dense, TF-MOT wrappers, neuron gates,
   masks or factors), trained with the method's hooks; then the method
   finishes it: masks applied, gated units removed, matrices factored;
2. finetune (`--finetune-epochs`, where the method's finished model is made
   from a trained one: l0, filter, factorization from --init-from);
3. recover (`--recover rank-one`): only the rank-one updates are trained.
`--init-from RUN` starts phase 1 from a trained run's model and vocabulary.
"""
import contextlib
import io
import math
import os
import time

import numpy as np

from edge_runtime.vocab import Vocab
from keras_models import noise, rank_one
from keras_models.backend import keras, tf
from keras_models.cost import count_params, layer_report, macs_per_token
from keras_models.evaluate import evaluate, make_eval_fn, perplexity
from keras_models.language_model import (build_language_model, load_model, make_spec, named_weights,
                                         save_model, set_named_weights, zero_states)
from keras_models.neuron_gates import gate_layers
from training import checkpoints, data, distill, distribute, int4_aware, recall_loss, rundir, steps
from pruning import registry
from methods.base import Context, rounded_eval
from training.steps import make_train_step  # noqa: F401  (the step, for benchmarks and tests)


class Diverged(RuntimeError):
    pass


READ_EVERY = 20  # steps between reads of the loss on the host (a read waits for the device)


def write_eval_data(path, streams):
    """`data.npz`: the validation and test ids and a calibration sample of the
    training ids, so conversion and evaluation need neither the corpus nor
    the training code."""
    buf = io.BytesIO()
    np.savez_compressed(buf, valid=streams["valid"], test=streams["test"],
                        calibration=data.calibration_windows(streams["train"]))
    rundir.atomic_write_bytes(path, buf.getvalue())


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


def lr_factor(config, epoch):
    """Learning-rate factor of 0-based `epoch`: times `lr_decay` for every epoch
    after the first `decay_after` (Zaremba: 0.5 after 4)."""
    return config.get("lr_decay", 1.0) ** max(0, epoch + 1 - config.get("decay_after", 0))


def _fit(phase, model, opts, train_step, xs, ys, epochs, valid, config, log, on_step=None,
         before_epoch=None, decay=False, extra=(), keep_best=None, rounded=False):
    """Run (or resume) `epochs` epochs of `train_step`; returns (status, meta).

    `on_step(step)` runs before each step (filter pruning events),
    `before_epoch(epoch)` after each epoch (TF-MOT's epoch hook); `decay`
    applies the learning-rate schedule (`lr_factor`) to every optimizer;
    `extra` are variables outside the model checkpointed with it. With
    `keep_best` (a patience, in epochs) the phase stops once that many epochs
    in a row have not lowered the validation perplexity, and the model ends
    with the weights of its best epoch (meta["best"]: that epoch and its
    figure; the weights are kept beside the checkpoint, so a resume keeps
    them too). With `rounded` (--int4-aware) validation is of the weights the
    int4 file will hold."""
    base_lrs = [float(o.learning_rate.numpy()) for o in opts]
    out = config["out"]
    strategy, chief = tf.distribute.get_strategy(), config.get("chief", True)
    ckpt_path = os.path.join(out, rundir.CHECKPOINT if phase == "train"
                             else os.path.join(rundir.CHECKPOINTS, f"{phase}.npz"))
    meta = dict(epoch=0, batch=0, step=0, wall=0.0, train_time=0.0, history=[])
    best_path = ckpt_path[: -len(".npz")] + "-best.npz"
    rows = xs[0].shape[0]  # the global batch: every replica's streams

    def placed(arrays):  # host arrays onto the replicas, each its block of streams
        return [distribute.split(strategy, a) for a in arrays]
    states = placed(zero_states(model, rows))
    if config.get("resumed") and os.path.exists(ckpt_path):
        meta, host_states = checkpoints.load(ckpt_path, model, opts, extra)
        states = placed(host_states)
        meta["resumed_wall"] = meta["wall"]
        if meta["epoch"] < epochs:
            log(f"{phase}: resuming at epoch {meta['epoch'] + 1}, batch {meta['batch']}, step {meta['step']}")
    writer = (tf.summary.create_file_writer(os.path.join(out, rundir.LOGS, phase)) if chief
              else tf.summary.create_noop_writer())
    eval_fn = make_eval_fn(model)
    n_batches = len(xs)
    start = time.time() - meta["wall"]
    pending = []  # (step, batch, loss tensor): read on the host in bunches, not every step

    def flush(epoch, bar):
        """Read the pending losses: the NaN check, the epoch's mean, the progress bar, TensorBoard."""
        for step, b, loss in pending:
            value = float(loss)
            if not math.isfinite(value):
                raise Diverged(f"loss became {value} at epoch {epoch + 1}, batch {b + 1}")
            meta["epoch_loss"] += value
            meta["epoch_batches"] += 1
            if step % 50 == 0:
                with writer.as_default():
                    tf.summary.scalar("train/loss", value, step=step)
        pending.clear()
        bar.update(meta["batch"], [("ppl", perplexity(meta["epoch_loss"] / max(1, meta["epoch_batches"])))])

    def save():
        host_states = [distribute.gather(strategy, s) for s in states]  # every worker: a collective
        if chief:
            checkpoints.save(ckpt_path, model, opts, host_states, meta, extra)
    try:
        for epoch in range(meta["epoch"], meta["epoch"] if meta.get("stopped") else epochs):
            log(f"{phase}: epoch {epoch + 1}/{epochs}")
            bar = keras.utils.Progbar(n_batches, stateful_metrics=["ppl"])
            first = meta["batch"] if epoch == meta["epoch"] else 0
            if first == 0:
                states = placed(zero_states(model, rows))
                meta["epoch_loss"], meta["epoch_batches"] = 0.0, 0
            if decay:
                for o, lr in zip(opts, base_lrs):
                    o.learning_rate = lr * lr_factor(config, epoch)
            t0 = time.time()
            for b in range(first, n_batches):
                if on_step is not None:
                    on_step(meta["step"])
                loss, states = train_step(distribute.split(strategy, xs[b]), distribute.split(strategy, ys[b]),
                                          list(states))
                meta["step"] += 1
                meta["batch"] = b + 1
                pending.append((meta["step"], b, loss))
                if meta["step"] % READ_EVERY == 0:
                    flush(epoch, bar)
                if meta["step"] % config["checkpoint_every"] == 0 and b + 1 < n_batches:
                    flush(epoch, bar)  # a checkpoint holds no step whose loss was not checked
                    meta["train_time"] += time.time() - t0
                    t0 = time.time()
                    meta["wall"] = time.time() - start
                    save()
            flush(epoch, bar)
            meta["train_time"] += time.time() - t0
            if before_epoch is not None:
                before_epoch(epoch)
            with int4_aware.weights_rounded(model) if rounded else contextlib.nullcontext():
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
            if keep_best and r["perplexity"] < meta.get("best", {}).get("valid_perplexity", math.inf):
                meta["best"] = dict(epoch=epoch + 1, valid_perplexity=round(r["perplexity"], 3))
                if chief:
                    checkpoints.save_weights(best_path, model)
            meta.update(epoch=epoch + 1, batch=0, wall=time.time() - start)
            save()
            if keep_best and epoch + 1 - meta["best"]["epoch"] >= keep_best and epoch + 1 < epochs:
                log(f"{phase}: stopped after epoch {epoch + 1}: validation perplexity has not improved for "
                    f"{keep_best} epoch(s); the best was epoch {meta['best']['epoch']}")
                meta["stopped"] = True  # a resume does not train on
                save()
                break
        # (only the chief writes the file; under multiworker the others keep their last weights, unsaved)
        if keep_best and meta.get("best") and meta["best"]["epoch"] < len(meta["history"]) and \
                os.path.exists(best_path):
            checkpoints.load_weights(best_path, model)
            log(f"{phase}: the weights of epoch {meta['best']['epoch']} kept "
                f"(validation perplexity {meta['best']['valid_perplexity']:.2f})")
    except Diverged as e:
        log(f"training diverged: {e}; the last good checkpoint is kept in {ckpt_path}")
        return "diverged", meta
    finally:
        writer.flush()
    return "completed", meta


@contextlib.contextmanager
def losses(config, vocab):
    """The block every step of the run is made in: with --teacher, steps that learn from it too; with
    --recall-loss, steps that add the R@3 margin term."""
    with contextlib.ExitStack() as stack:
        if config.get("teacher"):
            stack.enter_context(steps.distilling(config["distill_alpha"], config["distill_temperature"]))
        if config.get("recall_loss"):
            stack.enter_context(steps.recall_loss(config["recall_loss"], recall_loss.blocked_mask(vocab)))
        yield


def int4_phase(config, phase):
    """True where --int4-aware applies: the phases that train the weights alone, the train phase
    of --schedule none and finetune (a mask, a gate or a pruning wrapper changes what is rounded)."""
    return bool(config.get("int4_aware")) and (phase == "finetune" or config["schedule"] == "none")


def int4_block(config, phase):
    """The block the steps of `phase` are made in: with --int4-aware, steps on the int4 weights."""
    return steps.int4_aware() if int4_phase(config, phase) else contextlib.nullcontext()


def load_init(run):
    """The trained model of run directory `run` (for --init-from)."""
    model = load_model(os.path.join(run, rundir.MODEL))
    if model.spec.get("rank_one"):
        raise rundir.RunDirError(f"--init-from {run}: its model has rank-one updates; start from the run before recovery")
    return model


def _phase(name, model, train_step, opts, epochs, ctx, done, keep_best=None):
    """Run a later phase (finetune, recover) and add it to `done` (history, steps, times)."""
    status, meta = _fit(name, model, opts, train_step, ctx.xs, ctx.targets, epochs, ctx.valid, ctx.config,
                        ctx.log, keep_best=keep_best, rounded=int4_phase(ctx.config, name))
    if meta.get("best"):
        done["kept_best"] = dict(meta["best"], phase=name, epochs_run=len(meta["history"]))
    done["history"] += meta["history"]
    done["steps"] += meta["step"]
    done["train_time"] += meta["train_time"]
    done["earlier_wall"] += meta.get("resumed_wall", 0.0)
    return status


def train(config, corpus=None, log=print, force=False, on_start=None):
    """Run (or resume) training as `config` says, under its `--strategy`; returns the report dict."""
    strategy = distribute.make(config.get("strategy", "default"))
    config["chief"] = distribute.is_chief(config.get("strategy", "default"))
    with strategy.scope():  # variables, optimizers and steps are made for the replicas
        return _train(config, strategy.num_replicas_in_sync, corpus, log, force, on_start)


def _train(config, replicas, corpus=None, log=print, force=False, on_start=None):
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
    # --batch-size is per replica; each step takes every replica's streams
    xs, ys = data.batchify(streams["train"], config["batch_size"] * replicas, config["bptt"])
    if config.get("steps_per_epoch"):  # a quick look: every epoch is the first N batches
        xs, ys = xs[: config["steps_per_epoch"]], ys[: config["steps_per_epoch"]]
    valid = (streams["valid"], vocab.never_suggested)  # what evaluate() takes after the model
    epochs = config["epochs"]
    method = registry.for_config(config, init)
    config["pruning"] = settings = method.settings(len(xs) * epochs)
    if init is not None:
        base = dict(init.spec, dropout=config["dropout"])
        config.update(arch=base["arch"], embed=base["embed"], tie_embeddings=base["tie_embeddings"],
                      window=base["window"], hidden=max(base["hidden_sizes"]),
                      layers=len(base["hidden_sizes"]), vocab_size=len(vocab))
    else:
        base = make_spec(config["arch"], len(vocab), config["embed"], config["hidden"], config["layers"],
                         config["dropout"], config["tie_embeddings"], config["window"], config["zoneout"],
                         gate_hidden=config["gate_hidden"])
    base = method.spec(base)
    fill_training_defaults(config, base["arch"])

    keras.utils.set_random_seed(config["seed"])
    noise.reseed(config["seed"])
    model = build_language_model(**base, **method.build_options())
    if init is not None:
        set_named_weights(model, named_weights(init))
    elif config.get("init_scale"):  # Zaremba et al.: every weight uniform in [-s, s]
        s = config["init_scale"]
        gate_vars = {id(g.log_alpha) for g in gate_layers(model) if g.kind == "l0"}  # they start at --l0-init
        for v in model.trainable_variables:
            if id(v) not in gate_vars:
                v.assign(noise.uniform(v.shape, -s, s))
    ctx = Context(config, init, xs, ys, valid, log)
    ctx.targets = ys  # what each step learns from: the labels, and with --teacher the teacher's top k
    if config.get("teacher"):
        distill.check_vocab(config["teacher"], vocab)
        ctx.targets = distill.attach(ys, *distill.teacher_targets(config["teacher"], xs, config["distill_top_k"],
                                                                   log))
    with losses(config, vocab), int4_block(config, "train"):
        training = method.training(model, ctx)

    chief = config["chief"]  # only the chief writes the run
    if not resumed and chief:  # every check has passed: only now is an old run replaced
        rundir.prepare(out, force=force)
        vocab.save(vocab_path)
        write_eval_data(os.path.join(out, rundir.EVAL_DATA), streams)
        rundir.write_json(os.path.join(out, rundir.CONFIG), {k: v for k, v in config.items() if k != "chief"})
    if on_start is not None:
        on_start()
    started = time.time()
    # --keep-best: the last phase that updates the weights alone (pruning.train checks there is one)
    keep_finetune = config.get("keep_best") if method.finetunes and config["finetune_epochs"] else None
    keep_train = config.get("keep_best") if not keep_finetune and config["schedule"] == "none" else None
    status, meta = _fit("train", model, training.opts, training.step, xs, ctx.targets, epochs, valid, config, log,
                        training.on_step, training.before_epoch, decay=True, extra=training.extra,
                        keep_best=keep_train, rounded=int4_phase(config, "train"))
    done = dict(history=list(meta["history"]), steps=meta["step"], train_time=meta["train_time"],
                earlier_wall=meta.get("resumed_wall", 0.0))  # earlier_wall: time spent before a resume
    if meta.get("best"):
        done["kept_best"] = dict(meta["best"], phase="train", epochs_run=len(meta["history"]))
    report = dict(status=status, arch=base["arch"], schedule=settings, vocab_size=len(vocab),
                  distillation=dict(teacher=distill.absolute(config["teacher"]),
                                    alpha=config["distill_alpha"],
                                    temperature=config["distill_temperature"], top_k=config["distill_top_k"])
                  if config.get("teacher") else None,
                  data=config["data_dir"] or f"embedded:{data.EMBEDDED_NAME}",
                  init_from=config.get("init_from"), epochs_completed=meta["epoch"], steps=meta["step"],
                  steps_per_epoch=len(xs), pruning_step=None)
    plain, finished = method.finish(model, build_language_model(**base), ctx, status)
    report.update(finished)

    if status == "completed" and method.finetunes and config["finetune_epochs"]:
        with losses(config, vocab), int4_block(config, "finetune"):
            opts, step = steps.plain_training(plain, config)
        status = _phase("finetune", plain, step, opts, config["finetune_epochs"], ctx, done, keep_finetune)
    final = plain
    if status == "completed" and config["recover"] == "rank-one":
        final = build_language_model(**dict(plain.spec, rank_one=True))
        set_named_weights(final, named_weights(plain))
        updates = rank_one.update_variables(final)
        rank_one.initialise(updates, noise.normal)  # from the checkpointed stream: a resume draws the same
        opt = steps.optimizer(config)
        opt.build(updates)
        before = rounded_eval(final, valid)
        with losses(config, vocab):
            step = steps.make_train_step(final, opt, updates)
        status = _phase("recover", final, step, [opt], config["recover_epochs"], ctx, done)
        report["recovery"] = dict(method="rank-one", extra_params=int(sum(v.shape.num_elements() for v in updates)),
                                  valid_perplexity_before=before[0], valid_r_at_3_before=before[1])
    report["status"] = status
    if status == "completed":
        if chief:
            save_model(final, os.path.join(out, rundir.MODEL))
        for split in ("valid", "test"):
            r = evaluate(final, streams[split], vocab.never_suggested)
            report[f"{split}_perplexity"] = round(r["perplexity"], 3)
            report[f"{split}_r_at_3"] = round(r["r_at_3"], 4)
            report[f"{split}_tokens"] = r["tokens"]
            if config.get("int4_aware"):  # what the int4 file's weights give (activations in float)
                with int4_aware.weights_rounded(final):
                    r = evaluate(final, streams[split], vocab.never_suggested)
                report.setdefault("int4_rounded", {})[f"{split}_perplexity"] = round(r["perplexity"], 3)
        report["unigram_test_perplexity"] = round(
            data.unigram_perplexity(corpus["train"], streams["test"], vocab), 3)
    total, nonzero = count_params(final)
    macs, macs_nz = macs_per_token(final)
    trained_tokens = done["steps"] * config["batch_size"] * config["bptt"]
    report.update(params_total=total, params_nonzero=nonzero, macs_per_token=macs,
                  macs_per_token_nonzero=macs_nz, hidden_sizes=final.spec["hidden_sizes"],
                  embed=final.spec["embed"], layers=layer_report(final), train_tokens=trained_tokens,
                  tokens_per_second=round(trained_tokens / max(done["train_time"], 1e-9), 1),
                  wall_time_s=round(time.time() - started + done["earlier_wall"], 1), history=done["history"],
                  kept_best=done.get("kept_best"))
    report.update(strategy=config.get("strategy", "default"), replicas=replicas,
                  global_batch=config["batch_size"] * replicas, weights_sha256=weights_digest(final))
    if chief:
        rundir.write_json(os.path.join(out, rundir.REPORT), report)
    return report


def weights_digest(model):
    """sha256 of the model's weights, in order: equal on every worker of a run."""
    import hashlib
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()
