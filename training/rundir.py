"""The run directory (README.md, "The run directory"): its paths, and atomic writes into it."""
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


def check_new(out, force=False):
    """Can a new run be written to `out`? Raises RunDirError if not; touches nothing.

    `force` replaces only a folder that holds a run (its config.json): never
    `--out .` or a folder of someone's other files."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunDirError(f"{out} is a file, not a run directory")
    if os.path.isdir(out) and os.listdir(out):
        if not force:
            raise RunDirError(f"{out} already exists; use --resume to continue it or --force to replace it")
        if not os.path.exists(os.path.join(out, CONFIG)):
            raise RunDirError(f"{out} is not a run directory (it has no {CONFIG}): --force replaces only "
                              "a run; choose a new or empty --out")


def prepare(out, resume=False, force=False):
    """Make `out` ready for a new run (after every check has passed: this is
    where `--force` deletes the old run), or check it can be resumed."""
    if resume:
        if not os.path.exists(os.path.join(out, CONFIG)):
            raise RunDirError(f"cannot resume: {out} holds no {CONFIG}")
        return
    check_new(out, force)
    if os.path.isdir(out) and os.listdir(out):
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
