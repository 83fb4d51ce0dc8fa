"""The training loop: TF-MOT pruning, checkpoints, resume, the run directory.

`train(config)` is what `python -m pruning.train` calls and what the tests
call. A custom loop (not `model.fit`) because the recurrent state is carried
from batch to batch as explicit tensors, and a run killed mid-epoch must
resume at the exact batch it stopped at. It shows Keras' progress bar and
drives TF-MOT as its docs prescribe for custom loops (`UpdatePruningStep`).

Checkpoints (`checkpoints/last.npz`, replaced atomically every
`checkpoint_every` steps and at each epoch's end) hold the model with its
pruning masks and step counters, the optimizer's slots, the recurrent
state, and the position (epoch, batch): resuming continues with the same
batches and the same pruning step count as an uninterrupted run.
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
from keras_models.language_model import build_language_model, save_model, zero_states
from pruning import data, rundir, schedules
from keras_models.evaluate import evaluate, make_eval_fn, perplexity


class Diverged(RuntimeError):
    pass


def _optimizer_variables(opt):
    v = opt.variables
    return list(v() if callable(v) else v)


def _build(config, vocab_size, wrap=None):
    return build_language_model(
        config["arch"], vocab_size, config["embed"], config["hidden"], config["layers"],
        dropout=config["dropout"], tie_embeddings=config["tie_embeddings"],
        window=config["window"], zoneout=config["zoneout"], wrap=wrap)


def _save_checkpoint(path, model, opt, states, meta):
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(_optimizer_variables(opt))})
    arrays.update({f"s{i}": np.asarray(s) for i, s in enumerate(states)})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    rundir.atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path, model, opt):
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        n_w = sum(1 for k in z.files if k.startswith("w"))
        model.set_weights([z[f"w{i}"] for i in range(n_w)])
        opt_vars = _optimizer_variables(opt)
        for i, v in enumerate(opt_vars):
            v.assign(z[f"o{i}"])
        states = [z[f"s{i}"] for i in range(sum(1 for k in z.files if k.startswith("s")))]
    return meta, states


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
    """Copy a wrapped (pruned) model's weights, masks applied, into `plain`."""
    for layer in pruning_wrappers(pruned):
        layer.pruning_obj.weight_mask_op()  # weights = weights * mask
    by_name = {getattr(l, "layer", l).name: getattr(l, "layer", l) for l in pruned.layers}
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    return plain


def make_train_step(model, opt):
    """One compiled step: (inputs, targets, states) -> (mean loss, new states)."""
    @tf.function
    def train_step(x, y, states):
        with tf.GradientTape() as tape:
            outputs = model([x] + states, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, outputs[0], from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, outputs[1:]
    return train_step


def train(config, corpus=None, log=print):
    """Run (or resume) training as `config` says; returns the report dict.
    `corpus` (from `data.load_corpus`) is read from config["data_dir"] if not given."""
    out = config["out"]
    corpus = corpus or data.load_corpus(config["data_dir"])
    vocab_path = os.path.join(out, rundir.VOCAB)
    if config.get("resumed") and os.path.exists(vocab_path):
        vocab = Vocab.load(vocab_path)
    else:
        vocab = Vocab.build(corpus["train"], config["vocab_size"])
        vocab.save(vocab_path)
    streams = {s: data.to_stream(corpus[s], vocab) for s in data.SPLITS}
    write_eval_data(os.path.join(out, rundir.EVAL_DATA), streams)
    xs, ys = data.batchify(streams["train"], config["batch_size"], config["bptt"])
    n_batches = len(xs)
    total_steps = n_batches * config["epochs"]
    settings = schedules.resolve(
        config["schedule"], total_steps, config["target_sparsity"], config["initial_sparsity"],
        config["begin_step"], config["end_step"], config["prune_frequency"])
    config["pruning"] = settings
    rundir.write_json(os.path.join(out, rundir.CONFIG), config)

    keras.utils.set_random_seed(config["seed"])
    model = _build(config, len(vocab), schedules.make_wrapper(settings))
    opt = keras.optimizers.Adam(config["lr"], global_clipnorm=config["clip_norm"] or None)
    opt.build(model.trainable_variables)
    pruning_cb = tfmot.sparsity.keras.UpdatePruningStep()
    pruning_cb.set_model(model)
    pruning_cb.on_train_begin()

    ckpt_path = os.path.join(out, rundir.CHECKPOINT)
    meta = dict(epoch=0, batch=0, step=0, wall=0.0, train_time=0.0, history=[])
    states = zero_states(model, config["batch_size"])
    if config.get("resumed") and os.path.exists(ckpt_path):
        meta, states = _load_checkpoint(ckpt_path, model, opt)
        log(f"resuming at epoch {meta['epoch'] + 1}, batch {meta['batch']}, step {meta['step']}")

    train_step = make_train_step(model, opt)
    writer = tf.summary.create_file_writer(os.path.join(out, rundir.LOGS))
    eval_fn = make_eval_fn(model)
    status = "completed"
    start = time.time() - meta["wall"]
    tokens_per_batch = config["batch_size"] * config["bptt"]
    try:
        for epoch in range(meta["epoch"], config["epochs"]):
            log(f"Epoch {epoch + 1}/{config['epochs']}")
            bar = keras.utils.Progbar(n_batches, stateful_metrics=["ppl"])
            first = meta["batch"] if epoch == meta["epoch"] else 0
            if first == 0:
                states = zero_states(model, config["batch_size"])
                meta["epoch_loss"], meta["epoch_batches"] = 0.0, 0
            t0 = time.time()
            for b in range(first, n_batches):
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
                    _save_checkpoint(ckpt_path, model, opt, states, meta)
            meta["train_time"] += time.time() - t0
            pruning_cb.on_epoch_end(epoch)
            valid = evaluate(model, streams["valid"], eval_fn=eval_fn)
            if not math.isfinite(valid["perplexity"]):
                raise Diverged(f"validation perplexity became {valid['perplexity']} after epoch {epoch + 1}")
            train_ppl = perplexity(meta["epoch_loss"] / max(1, meta["epoch_batches"]))
            meta["history"].append(dict(epoch=epoch + 1, train_perplexity=round(train_ppl, 3),
                                        valid_perplexity=round(valid["perplexity"], 3),
                                        valid_r_at_3=round(valid["r_at_3"], 4), step=meta["step"]))
            log(f"epoch {epoch + 1}: train ppl {train_ppl:.2f}, valid ppl {valid['perplexity']:.2f}, "
                f"valid R@3 {valid['r_at_3']:.3f}")
            with writer.as_default():
                tf.summary.scalar("valid/perplexity", valid["perplexity"], step=meta["step"])
            meta.update(epoch=epoch + 1, batch=0, wall=time.time() - start)
            _save_checkpoint(ckpt_path, model, opt, states, meta)
    except Diverged as e:
        status = "diverged"
        log(f"training diverged: {e}; the last good checkpoint is kept in {ckpt_path}")
    writer.flush()

    plain = strip(model, _build(config, len(vocab)))
    pruning_steps = [int(l.pruning_step.numpy()) for l in pruning_wrappers(model)]
    report = dict(status=status, arch=config["arch"], schedule=settings, vocab_size=len(vocab),
                  data=config["data_dir"] or f"embedded:{data.EMBEDDED_NAME}",
                  epochs_completed=meta["epoch"], steps=meta["step"], steps_per_epoch=n_batches,
                  pruning_step=max(pruning_steps) if pruning_steps else None)
    if status == "completed":
        save_model(plain, os.path.join(out, rundir.MODEL))
        for split in ("valid", "test"):
            r = evaluate(plain, streams[split])
            report[f"{split}_perplexity"] = round(r["perplexity"], 3)
            report[f"{split}_r_at_3"] = round(r["r_at_3"], 4)
            report[f"{split}_tokens"] = r["tokens"]
        report["unigram_test_perplexity"] = round(
            data.unigram_perplexity(corpus["train"], streams["test"], vocab), 3)
    total, nonzero = count_params(plain)
    macs, macs_nz = macs_per_token(plain)
    trained_tokens = meta["step"] * tokens_per_batch
    report.update(params_total=total, params_nonzero=nonzero, macs_per_token=macs,
                  macs_per_token_nonzero=macs_nz, layers=layer_report(plain),
                  train_tokens=trained_tokens,
                  tokens_per_second=round(trained_tokens / max(meta["train_time"], 1e-9), 1),
                  wall_time_s=round(time.time() - start, 1), history=meta["history"])
    rundir.write_json(os.path.join(out, rundir.REPORT), report)
    return report
