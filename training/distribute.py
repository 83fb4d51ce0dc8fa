"""Data-parallel training with tf.distribute (`pruning.train --strategy`).

- default: one device, no strategy;
- mirrored: MirroredStrategy over the local GPUs, or, on a machine without
  one, over the logical CPU devices (`EDGELM_CPU_DEVICES=N` splits the CPU
  into N, what the tests use);
- multiworker: MultiWorkerMirroredStrategy, the cluster from TF_CONFIG.
  Its collectives must be set up before TensorFlow runs its first op, so
  `pruning.train` names the strategy in EDGELM_STRATEGY before TensorFlow is
  imported and keras_models/backend.py makes it there.

`--batch-size` is per replica: each step takes batch x replicas rows, each
replica its own contiguous block of streams, and carries its own recurrent
state; hooks that write variables (masks re-applied after a step, pruning
events) run outside the replicas, so they write every replica's copy.
Every worker reads the whole corpus and takes its replicas' rows; only the
chief writes the run directory, and every worker resumes from it.
This module's checks need no TensorFlow.
"""
import json
import os

STRATEGIES = ("default", "mirrored", "multiworker")


class DistributeError(ValueError):
    """A strategy that cannot run as asked; one-line message."""


def cluster_from_env():
    """(cluster {type: [addresses]}, task type, task index) from TF_CONFIG."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise DistributeError("--strategy multiworker needs TF_CONFIG (the cluster and this task; see README)")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
        if not isinstance(cluster, dict) or not all(isinstance(v, list) and v for v in cluster.values()):
            raise ValueError("cluster must map task types to address lists")
        if kind not in cluster or not 0 <= index < len(cluster[kind]):
            raise ValueError(f"task {kind}:{index} is not in the cluster")
    except (ValueError, KeyError, TypeError) as e:
        raise DistributeError(f"TF_CONFIG is malformed: {e}") from None
    return cluster, kind, index


def is_chief(strategy_name):
    """Does this process write the run? (MultiWorker: the chief, or worker 0 without one.)"""
    if strategy_name != "multiworker":
        return True
    cluster, kind, index = cluster_from_env()
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)


def check(config):
    """One-line message for a strategy these options cannot use, or None."""
    name = config.get("strategy", "default")
    if name not in STRATEGIES:
        return f"unknown --strategy {name!r}; choose from {', '.join(STRATEGIES)}"
    if name == "default":
        return None
    if name == "multiworker":
        try:
            cluster_from_env()
        except DistributeError as e:
            return str(e)
    return None


def make(name):
    """The tf.distribute strategy for `name` (TensorFlow loads here)."""
    from keras_models import backend
    tf = backend.tf
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        if backend.STRATEGY is None:
            raise DistributeError("MultiWorkerMirroredStrategy must be made before TensorFlow's first op: "
                                  "set EDGELM_STRATEGY=multiworker before importing it (pruning.train does)")
        return backend.STRATEGY
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())


def split(strategy, array):
    """A [global batch, ...] array as each replica's block of rows (a tuple of them: each)."""
    import numpy as np
    from keras_models.backend import tf
    if isinstance(array, tuple):  # a distilling batch's targets: labels and the teacher's
        return tuple(split(strategy, a) for a in array)
    n = strategy.num_replicas_in_sync
    if n == 1 and not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return tf.constant(array)
    per = len(array) // n

    def block(ctx):
        i = ctx.replica_id_in_sync_group
        return tf.constant(np.ascontiguousarray(array[i * per:(i + 1) * per]))
    return strategy.experimental_distribute_values_from_function(block)


def gather(strategy, value):
    """A per-replica value back as one numpy array of the global batch (a
    collective under MultiWorker: every worker calls it)."""
    from keras_models.backend import tf
    if not isinstance(value, tf.distribute.DistributedValues):
        return value.numpy() if hasattr(value, "numpy") else value
    return strategy.gather(value, axis=0).numpy()
