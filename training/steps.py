"""The compiled training step and the optimizers every method trains with."""
import contextlib

from keras_models.backend import keras, tf

_DISTILL = []  # (alpha, temperature) of the `distilling` block the steps are made in
_INT4 = []  # True inside an `int4_aware` block
_RECALL = []  # (beta, blocked mask) of the `recall_loss` block the steps are made in


@contextlib.contextmanager
def distilling(alpha, temperature):
    """Steps made inside this block train on the teacher's targets too (training/distill.py):
    each batch's targets are then (labels, teacher ids, teacher probabilities)."""
    _DISTILL.append((alpha, temperature))
    try:
        yield
    finally:
        _DISTILL.pop()


@contextlib.contextmanager
def int4_aware():
    """Steps made inside this block run on the weights the int4 file will hold and update the float
    ones (training/int4_aware.py)."""
    _INT4.append(True)
    try:
        yield
    finally:
        _INT4.pop()


@contextlib.contextmanager
def recall_loss(beta, blocked):
    """Steps made inside this block add beta times the R@3 margin term (training/recall_loss.py);
    `blocked` is its [V] mask of the words never shown."""
    _RECALL.append((beta, blocked))
    try:
        yield
    finally:
        _RECALL.pop()


def loss_terms(logits, y, distill=None, recall=None):
    """(the loss, its cross-entropy part). With `distill` (alpha, T) and y = (labels, ids, probs):
    (1 - alpha) CE + alpha T^2 KL(teacher_T || student_T), averaged over the positions. With `recall`
    (beta, blocked): beta times the mean R@3 margin term added."""
    labels = y if distill is None else y[0]
    ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    loss = ce
    if distill is not None:
        from training.distill import kl_from_top_k
        _, ids, probs = y
        alpha, t = distill
        kl = tf.reduce_mean(kl_from_top_k(logits, tf.cast(ids, tf.int32), tf.cast(probs, tf.float32), t))
        loss = (1.0 - alpha) * ce + alpha * t * t * kl
    if recall is not None:
        from training.recall_loss import margin_term
        beta, blocked = recall
        loss = loss + beta * tf.reduce_mean(margin_term(logits, labels, blocked))
    return loss, ce


def make_train_step(model, opt, variables=None, penalty=None, before=(), after=()):
    """One compiled step: (inputs, targets, states) -> (mean cross-entropy, new states).

    `opt` is an optimizer for `variables` (default: all trainable ones) or a
    list of (optimizer, variables) pairs; `penalty()` is added to the loss
    (the L0 term); the callables in `before` run first (gate noise), those in
    `after` last (re-applying grow-and-prune masks). Made inside
    `distilling(alpha, T)`, the loss is `loss_terms`' mix with the teacher's
    KL; inside `recall_loss(beta, blocked)` it adds the R@3 margin term; the step still returns the
    cross-entropy. Made inside
    `int4_aware()`, it steps on the int4 file's weights (training/int4_aware.py). Under a tf.distribute
    strategy (made in its scope) each replica runs it on its rows and states
    (training/distribute.py); the loss of each replica is divided by their
    number, so the optimizer's sum of their gradients is the global batch's
    mean, clipped after the sum.
    """
    groups = opt if isinstance(opt, list) else [(opt, variables or model.trainable_variables)]
    all_vars = [v for _, vs in groups for v in vs]
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync

    distributed = tf.distribute.has_strategy()
    distill = _DISTILL[-1] if _DISTILL else None
    recall = _RECALL[-1] if _RECALL else None
    if _INT4:  # the weights rounded first, moved back before anything else runs after the update
        from training import int4_aware
        rounding, unrounding = int4_aware.hooks(model, all_vars)
        before, after = (rounding, *before), (unrounding, *after)

    def replica_step(x, y, states):
        for fn in before:
            fn()
        with tf.GradientTape() as tape:
            outputs = model([x] + list(states), training=True)
            loss, ce = loss_terms(outputs[0], y, distill, recall)
            loss = loss + penalty() if penalty is not None else loss
            if replicas > 1:
                loss = loss / replicas
        grads = tape.gradient(loss, all_vars)
        k = 0
        for o, vs in groups:
            o.apply_gradients(zip(grads[k:k + len(vs)], vs))
            k += len(vs)
        if not distributed:
            for fn in after:
                fn()
        return ce, outputs[1:]

    if not distributed:
        return tf.function(replica_step)

    @tf.function
    def train_step(x, y, states):
        ce, new_states = strategy.run(replica_step, args=(x, y, states))
        for fn in after:  # out of the replicas: a mask re-applied writes every replica's copy
            fn()
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, ce, axis=None), new_states
    return train_step


def optimizer(config, lr=None, kind=None):
    """Adam, or plain SGD (`--optimizer sgd`, Zaremba et al.), with global-norm clipping."""
    cls = keras.optimizers.SGD if (kind or config.get("optimizer", "adam")) == "sgd" else keras.optimizers.Adam
    return cls(lr or config["lr"], global_clipnorm=config["clip_norm"] or None)


def plain_training(model, config, after=()):
    """([optimizer], step) training every weight with the run's optimizer."""
    opt = optimizer(config)
    opt.build(model.trainable_variables)
    return [opt], make_train_step(model, opt, after=after)
