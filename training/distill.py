"""Distillation: a small model taught by a large one (Hinton et al. 2015; Kim &
Rush 2016 for language models).

The student's loss mixes cross-entropy on the labels with the KL divergence
from the teacher's distribution, both at a temperature T:

    loss = (1 - alpha) CE(labels, student) + alpha T^2 KL(teacher_T || student_T)

(the T^2 keeps the soft term's gradients at the scale of the hard one's).
Running the teacher beside every batch would double a step on this 2-core
CPU, so the teacher runs once, in inference mode (no dropout), over the
training stream laid out as the student's batches, and its k most probable
words per training token are kept (`teacher_targets`: a file beside the
teacher run, `RUN/distill/topk-...npz`, reused by every student with the same
batches). The KL is taken over those k words and one more outcome, "any other
word", which holds the rest of the teacher's mass; with k = V it is the full
KL (`kl_from_top_k` is exact then).

`--teacher A,B` teaches from an ensemble: the mean of the runs' distributions
(Hinton et al. 2015 distilled ensembles first). Two 2x400s of 88.6 and 87.4
make an 85.3 on PTB's test split, a stronger teacher than this CPU trains in
one run of a few hours. Every run shares the student's vocabulary: a mismatch
is a one-line error.
The method of the student (pruning, L0, low rank, ...) is untouched: the
trainer builds every step of the run inside `steps.distilling(...)`, and the
targets of each batch carry the teacher's ids and probabilities.
"""
import hashlib
import os

import numpy as np

from training import rundir

# T 1: tempering the lump of mass outside the top k has to guess its shape; at T 2 an even guess lifted
# it to most of the mass (docs/benchmarks.md, "Distillation on PTB").
# top 256: the lump then holds 15% of the teacher's mass on PTB (31% at 32), and the student gains 2.5
# perplexity over 32; 1024 gains 1.7 more for a file 4x the size, 3.6 GB on PTB (benchmarks.md)
DEFAULTS = dict(teacher=None, distill_alpha=0.5, distill_temperature=1.0, distill_top_k=256)


class DistillError(ValueError):
    """A teacher that cannot teach this student; one-line message."""


def check(c):
    """One-line message for the first bad distillation option, or None."""
    if c.get("teacher") is None:
        if any(c.get(k) != DEFAULTS[k] for k in ("distill_alpha", "distill_temperature", "distill_top_k")):
            return "--distill-alpha, --distill-temperature and --distill-top-k need --teacher RUN"
        return None
    if not 0.0 <= c["distill_alpha"] <= 1.0:
        return f"--distill-alpha must be in [0, 1], got {c['distill_alpha']}"
    if not c["distill_temperature"] > 0:
        return f"--distill-temperature must be positive, got {c['distill_temperature']}"
    if c["distill_top_k"] < 1:
        return f"--distill-top-k must be at least 1, got {c['distill_top_k']}"
    runs = members(c["teacher"])
    if len(set(map(os.path.realpath, runs))) < len(runs):
        return f"--teacher {c['teacher']}: a run is named twice"
    for teacher in runs:
        if not os.path.exists(os.path.join(teacher, rundir.MODEL, "spec.json")) or \
                not os.path.exists(os.path.join(teacher, rundir.VOCAB)):
            return f"--teacher {teacher}: not a trained run directory (no {rundir.MODEL}/spec.json or {rundir.VOCAB})"
    return None


def members(teacher):
    """The runs of `--teacher RUN[,RUN...]`: one run, or the ensemble's runs."""
    return [r for r in teacher.split(",") if r]


def absolute(teacher):
    """`--teacher` with every run's path made absolute (a sweep's points run elsewhere)."""
    return ",".join(os.path.abspath(r) for r in members(teacher))


def check_vocab(teacher, vocab):
    """DistillError unless every teacher run's vocabulary is the student's, token for token."""
    from edge_runtime.vocab import Vocab
    for run in members(teacher):
        theirs = Vocab.load(os.path.join(run, rundir.VOCAB))
        if theirs.tokens != vocab.tokens:
            differ = next((i for i, (a, b) in enumerate(zip(theirs.tokens, vocab.tokens)) if a != b),
                          min(len(theirs), len(vocab)))
            raise DistillError(f"--teacher {run}: its vocabulary ({len(theirs):,} tokens) is not the student's "
                               f"({len(vocab):,}; they differ from id {differ}); distillation needs the same "
                               "vocabulary: the same corpus and --vocab-size")


def _digest(xs, k, runs):
    h = hashlib.sha256(np.ascontiguousarray(np.stack(xs)).tobytes())
    h.update(str(k).encode())
    for run in runs[1:]:  # an ensemble's file differs from its first run's own (which keeps its old name)
        h.update(os.path.realpath(run).encode())
    return h.hexdigest()[:16]


def teacher_targets(teacher, xs, k, log=print):
    """(ids [n_batches, B, T, k], probabilities [n_batches, B, T, k] float16): the teacher's
    k most probable next words after each training token of the batches `xs`, in inference mode,
    its state carried from batch to batch as in training. An ensemble (`A,B`) is the mean of its
    runs' probabilities. Read from the file beside the (first) teacher run if one was made for
    these very batches (their sha256), else computed and written there."""
    runs = members(teacher)
    folder = os.path.join(runs[0], "distill")
    path = os.path.join(folder, f"topk-{_digest(xs, k, runs)}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return z["ids"], z["probs"]
    from keras_models.backend import tf
    from keras_models.language_model import load_model, zero_states
    models = [load_model(os.path.join(r, rundir.MODEL)) for r in runs]
    vocab_size = models[0].spec["vocab_size"]
    k = min(k, vocab_size)

    @tf.function(reduce_retracing=True)
    def run(x, states):
        outs = [m([x] + s, training=False) for m, s in zip(models, states)]
        top = tf.math.top_k(tf.add_n([tf.nn.softmax(o[0]) for o in outs]) / len(outs), k)
        return top.indices, top.values, [o[1:] for o in outs]
    states = [[tf.constant(s) for s in zero_states(m, xs[0].shape[0])] for m in models]
    ids = np.zeros((len(xs),) + xs[0].shape + (k,), np.int16 if vocab_size < 2 ** 15 else np.int32)
    probs = np.zeros(ids.shape, np.float16)
    log(f"distillation: the teacher {teacher} on {len(xs)} batches, top {k} words a token, once ...")
    for b, x in enumerate(xs):
        i, p, states = run(tf.constant(x, tf.int32), [list(s) for s in states])
        ids[b], probs[b] = i.numpy(), p.numpy()
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, ids=ids, probs=probs)
    os.replace(tmp, path)
    log(f"distillation: kept in {path} ({os.path.getsize(path) / 2**20:.0f} MB); the teacher's mass outside "
        f"its top {k}, the lump: {lump(probs):.3f} a token on average")
    return ids, probs  # int16/int32 and float16: half the memory; the step casts them


def lump(probs):
    """The teacher's mean probability outside its kept top k (`probs` [..., k]): what the
    KL's "any other word" outcome holds, and what a larger k would spell out."""
    total = sum(float(p.astype(np.float64).sum()) for p in probs)  # batch by batch: float16 in, no copy of all
    return 1.0 - total / (probs.size // probs.shape[-1])


def kl_from_top_k(logits, ids, probs, temperature):
    """KL(teacher_T || student_T) per position over k + 1 outcomes: the teacher's top-k words
    (`probs` at `ids`, at T = 1) one by one, and all other words as one outcome. The teacher's
    mass outside its top k stays one lump, so the loss says nothing of how the student spreads its
    own over those words (an even spread there acts as label smoothing: docs/benchmarks.md,
    "Distillation on PTB"). Tempering the lump assumes it even. Exact with k = V; TensorFlow."""
    from keras_models.backend import tf
    v = tf.cast(tf.shape(logits)[-1], tf.float32)
    k = tf.cast(tf.shape(ids)[-1], tf.float32)
    inv_t = 1.0 / temperature
    log_s = tf.nn.log_softmax(logits * inv_t)
    rest = tf.nn.relu(1.0 - tf.reduce_sum(probs, -1))               # the teacher's mass outside its top k
    top = tf.pow(probs, inv_t)
    lump = tf.where(v > k, (v - k) * tf.pow(rest / tf.maximum(v - k, 1.0), inv_t), 0.0)
    z = tf.reduce_sum(top, -1) + lump
    t_top, t_rest = top / z[..., None], lump / z
    s_top = tf.gather(log_s, ids, batch_dims=len(ids.shape) - 1)
    # the student's own mass outside the teacher's top k; floored: float32 rounds 1 - sum to 0 or below
    s_rest = tf.math.log(tf.maximum(1.0 - tf.reduce_sum(tf.exp(s_top), -1), 1e-7))
    return (tf.reduce_sum(tf.math.xlogy(t_top, t_top) - t_top * s_top, -1)
            + tf.math.xlogy(t_rest, t_rest) - t_rest * s_rest)


def attach(ys, ids, probs):
    """The batches' targets with the teacher's: [(labels, ids, probs)] for the distilling step."""
    return [(y, i, p) for y, i, p in zip(ys, ids, probs)]
