"""The run directory (DESIGN.md): its paths, and atomic writes into it."""
import json
import os
import shutil

from edge_runtime.files import atomic_write_bytes

CONFIG = "config.json"
VOCAB = "vocab.txt"
MODEL = "model"
CHECKPOINTS = "checkpoints"
CHECKPOINT = os.path.join(CHECKPOINTS, "last.npz")
REPORT = "train_report.json"
EVAL_DATA = "data.npz"
LOGS = "logs"


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; one-line message."""


def write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def prepare(out, resume=False, force=False):
    """Make `out` ready for a new run, or check it can be resumed."""
    if resume:
        if not os.path.exists(os.path.join(out, CONFIG)):
            raise RunDirError(f"cannot resume: {out} holds no {CONFIG}")
        return
    if os.path.exists(out) and os.listdir(out):
        if not force:
            raise RunDirError(f"{out} already exists; use --resume to continue it or --force to replace it")
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
