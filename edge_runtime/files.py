"""Atomic file writes: a temporary name in the same folder, then a rename,
so an interrupted write never leaves a file that looks whole."""
import os
import shutil
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data, mode=None):
    """`mode`: the file's permissions (default: as the umask makes a new file; 0o600 for private data)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)  # mkstemp makes it private; a result is not
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def make_temp_dir(near):
    """A temporary folder beside `near`, readable like a normal one."""
    parent = os.path.dirname(os.path.abspath(near))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(near) + ".")
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def replace_dir(new, final):
    """Put the finished folder `new` at `final`. An old `final` is renamed aside
    first and deleted only once the new one is in place (put back if that
    fails), so at no moment is a half-deleted or half-written folder there."""
    old = None
    if os.path.exists(final):
        old = make_temp_dir(final)
        os.replace(final, old)  # onto the empty temporary folder
    try:
        os.replace(new, final)
    except BaseException:
        if old:
            os.replace(old, final)
        raise
    if old:
        shutil.rmtree(old)
