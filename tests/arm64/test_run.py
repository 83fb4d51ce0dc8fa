"""`make test-arm64`'s refusals: one line, exit 2, before anything is built."""
import os
import shutil
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.sh")


def run(*args, prefix=()):
    return subprocess.run([*prefix, "bash", SCRIPT, *args], capture_output=True, text=True,
                          env=dict(os.environ, ARM64_CACHE="/nonexistent/edgelm-arm64"))


def test_an_unknown_option_is_one_line():
    r = run("--bogus")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "error: make test-arm64: unknown option --bogus (--check, --numbers, or none)\n"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop it")
def test_without_root_it_says_so_and_builds_nothing():
    r = run("--check", prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1
    assert "needs root" in r.stderr
    assert not os.path.exists("/nonexistent")
