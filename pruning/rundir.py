"""The run directory (DESIGN.md): its paths, and atomic writes into it."""
import json
import os
import shutil
import tempfile

CONFIG = "config.json"
VOCAB = "vocab.txt"
MODEL = "model"
CHECKPOINTS = "checkpoints"
CHECKPOINT = os.path.join(CHECKPOINTS, "last.npz")
REPORT = "train_report.json"
LOGS = "logs"


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; one-line message."""


def atomic_write_bytes(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
