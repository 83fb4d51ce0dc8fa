"""Start-up chatter of the native libraries, kept off the user's terminal.

TensorFlow writes absl lines to file descriptor 2 while it loads (oneDNN,
"Could not find cuda drivers", on a CPU machine an `E0000 ... failed call to
cuInit` error line) and LiteRT writes "INFO: Created TensorFlow Lite XNNPACK
delegate" when an interpreter is made. They come from C++, so Python's
logging cannot silence them and TF_CPP_MIN_LOG_LEVEL does not reach the
lines written before absl is initialised. `filtered_stderr()` captures fd 2
around such a call and writes back every line that is not start-up chatter;
`--verbose` (EDGELM_VERBOSE=1) lets everything through.
"""
import contextlib
import os
import re
import sys
import tempfile

VERBOSE_ENV = "EDGELM_VERBOSE"
# absl's "I1201 12:00:00.000 123 file.cc:1] ..." (E0000 too: the epoch-0 prefix it
# uses before initialisation), its banner about that, LiteRT's INFO lines, and the
# CompiledModel API's "INFO: [file.cc:N]" / "WARNING: [file.cc:N]" lines (accelerator
# registry, the NPU and OpenVINO plugins a CPU machine does not have) with their
# "└" continuation lines.
CHATTER = re.compile(r"^([IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl"
                     r"|INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite)"
                     r"|(INFO|WARNING): \[\S+:\d+\]|└ )")


def configure(verbose):
    """Called by each CLI before anything native loads."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"


def verbose():
    return os.environ.get(VERBOSE_ENV) == "1"


@contextlib.contextmanager
def captured_stderr(lines):
    """Collect what native code writes to fd 2 inside the block into `lines`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


@contextlib.contextmanager
def filtered_stderr():
    """Run the block with fd 2 captured; write back all but the chatter."""
    if verbose():
        yield
        return
    lines = []
    try:
        with captured_stderr(lines):
            yield
    finally:
        kept = [line for line in lines if not CHATTER.match(line)]
        if kept:
            print("\n".join(kept), file=sys.stderr, flush=True)
