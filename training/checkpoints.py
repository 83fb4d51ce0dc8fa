"""A phase's checkpoint: `checkpoints/{last,finetune,recover}.npz`, replaced
atomically, holding the weights (masks and gates included), the optimizer
slots, the recurrent state, the random stream of dropout and gate noise
(keras_models/noise.py) and the position (epoch, batch, step, history)."""
import io
import json
import os

import numpy as np

from keras_models import noise
from training import rundir


def _optimizer_variables(opts):
    out = []
    for opt in opts:
        v = opt.variables
        out += list(v() if callable(v) else v)
    return out


def save(path, model, opts, states, meta, extra=()):
    """`extra`: variables a method trains outside the model (the L0 penalty coefficient)."""
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"e{i}": v.numpy() for i, v in enumerate(extra)})
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(_optimizer_variables(opts))})
    arrays.update({f"s{i}": np.asarray(s) for i, s in enumerate(states)})
    arrays["rng"] = noise.get_state()  # dropout, zoneout and gate noise go on where they were
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    rundir.atomic_write_bytes(path, buf.getvalue())


def load(path, model, opts, extra=()):
    """Restore a checkpoint into `model`, `opts` and `extra`; -> (meta, states)."""
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        n_w = sum(1 for k in z.files if k.startswith("w"))
        model.set_weights([z[f"w{i}"] for i in range(n_w)])
        for i, v in enumerate(_optimizer_variables(opts)):
            v.assign(z[f"o{i}"])
        for i, v in enumerate(extra):
            v.assign(z[f"e{i}"])
        states = [z[f"s{i}"] for i in range(sum(1 for k in z.files if k.startswith("s")))]
        if "rng" in z.files:  # checkpoints before 2026-12 have none
            noise.set_state(z["rng"])
    return meta, states


def save_weights(path, model):
    """The model's weights alone (the best epoch's, for --keep-best), replaced atomically."""
    buf = io.BytesIO()
    np.savez(buf, *model.get_weights())
    rundir.atomic_write_bytes(path, buf.getvalue())


def load_weights(path, model):
    with np.load(path) as z:
        model.set_weights([z[f"arr_{i}"] for i in range(len(z.files))])


def meta(path):
    """The position saved in a checkpoint (epoch, batch, step, ...), or None."""
    if not os.path.exists(path):
        return None
    with np.load(path) as z:
        return json.loads(bytes(z["meta"]).decode())
