"""The knob's operating points (`python -m pruning.sweep BASE_RUN --out DIR`).

Each method at each point (a share of the dense model's MACs per token; for
magnitude, the share of nonzero weights) is a run under DIR/points/, made
from BASE_RUN by `python -m pruning.train --init-from` (one process each,
`--jobs` at a time), converted (`--quantize`) and evaluated on the test
split by the device runtime. Every point gets the same number of epochs of
weight updates after the base run, `--finetune-epochs` N (plus the recovery
epoch with `--recover rank-one`), counted per method: L0 trains its gates
jointly with the weights for one epoch and fine-tunes N - 1 (with N = 0, it
learns the gates with the weights frozen); unit pruning and low rank prune
or factor at once and fine-tune N; magnitude prunes over N epochs; `dense-100`
is the base run trained N more (with N = 0, the base run itself, copied).
Each point records its count (`weight_epochs`), so no point is better than
dense for having been trained longer. `--steps-per-epoch` caps each epoch
for a quick look. Before it starts the sweep prints its plan (points, epochs,
a time estimate from the base run's tokens/s), and an ETA after each point.
Then every file is timed in one interleaved pass, so that the points
compare, and DIR gets operating_points.json, report.md, the plots (the
`plot` extra) and bundle/, the frontier's files for the device.

A finished point (its point.json) is skipped by `--resume`; an interrupted
one goes on from its run's checkpoint. Bad input: one line, exit 2, nothing
written. A point that fails is named and the others go on; exit 1.

`--executor ray [--address ADDR]` runs each point as a Ray task declaring
`--point-cpus` CPUs, on a cluster whose every node sees --out and BASE_RUN
at the same paths and has edgelm installed; resume works as here, and the
timing pass stays on this machine.
"""
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from edge_runtime.files import make_temp_dir
from edge_runtime.keyboard import BlockError, read_block_list
from knob import operating_points as ops
from training import rundir
from training.distill import DEFAULTS as DISTILL_DEFAULTS, DistillError, absolute as absolute_teacher, \
    check as check_distill, check_vocab

METHODS = ("l0", "units-random", "units-norm", "units-activation", "magnitude", "lowrank")
DEFAULT_METHODS = ("l0", "units-random", "units-norm", "units-activation", "lowrank")
QUANTIZE = ("float32", "float16", "dynamic", "int8", "int4", "int4mixed")  # the converter's (tests/test_sweep.py checks)
SWEEP_FILE = "sweep.json"
POINT_FILE = "point.json"
DENSE = "dense-100"
# what a point's run takes from the base run's options (the rest are pruning.train's defaults)
INHERITED = ("data_dir", "batch_size", "bptt", "optimizer", "clip_norm", "dropout", "seed")


def check_ngram(path, base):
    """SweepError unless `path` (or None) is a results file of benchmarks/ngram.py whose keyboard
    figures cover the whole test split of the base run's vocabulary, as the points' do."""
    if path is None:
        return
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        whole, size, models = doc["whole_split"], doc["vocab_size"], doc["models"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SweepError(f"--ngram {path}: not a results file of benchmarks/ngram.py ({e})") from None
    from edge_runtime.vocab import Vocab
    mine = len(Vocab.load(os.path.join(base, rundir.VOCAB)))
    if not whole or size != mine or not models:
        raise SweepError(f"--ngram {path}: its keyboard figures must cover the whole test split with the base "
                         f"run's {mine:,}-word vocabulary (they cover {doc.get('keyboard_positions')} positions "
                         f"with {size:,} words); run benchmarks/ngram.py without --keyboard-tokens")


class SweepError(ValueError):
    """Bad input to the sweep; one-line message."""


def parse_list(text, allowed, option):
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SweepError(f"unknown {option} {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def parse_points(text):
    try:
        points = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise SweepError(f"--points takes numbers such as 100,80,60,40, not {text!r}") from None
    bad = [p for p in points if not 0 < p <= 100]
    if bad or not points:
        raise SweepError(f"every point must be in (0, 100] (a share of the dense model), got {text!r}")
    return sorted(set(points), reverse=True)


def point_name(method, share):
    return DENSE if share == 100 else f"{method}-{share:g}"


def final_lr(config):
    """The learning rate the base run ended at (its schedule's last epoch)."""
    return config["lr"] * config.get("lr_decay", 1.0) ** max(0, config["epochs"] - config.get("decay_after", 0))


RECOVER_EPOCHS = 1  # pruning.train's --recover-epochs default, which the points use


def train_args(method, share, base, base_config, options):
    """pruning.train's options for one point: each gets `finetune_epochs` epochs
    of weight updates (and the recovery epoch), counted as `weight_epochs` counts."""
    f = f"{share / 100:g}"
    n = options["finetune_epochs"]
    args = ["--init-from", base, "--lr", f"{options['lr']:g}"]
    for key in INHERITED:
        if base_config.get(key) is not None:
            args += ["--" + key.replace("_", "-"), str(base_config[key])]
    if options.get("steps_per_epoch"):
        args += ["--steps-per-epoch", str(options["steps_per_epoch"])]
    recover = options["recover"] != "none"
    if method == "dense":  # as many epochs as any other point updates its weights
        args += ["--schedule", "none", "--epochs", str(n + (RECOVER_EPOCHS if recover else 0))]
    elif method == "l0":  # one joint epoch is one of the N; with N = 0 the gates learn on frozen weights
        args += ["--schedule", "l0", "--target-macs", f, "--epochs", "1"]
        args += ["--finetune-epochs", str(n - 1)] if n else ["--freeze-weights"]
    elif method.startswith("units-"):
        args += ["--schedule", "filter", "--rank-by", method[len("units-"):], "--target-macs", f,
                 "--finetune-epochs", str(n)]
    elif method == "lowrank":
        args += ["--factorize", "lowrank", "--factorize-scope", "all", "--target-macs", f,
                 "--finetune-epochs", str(n)]
    else:  # magnitude: TF-MOT's polynomial schedule over the N epochs
        args += ["--schedule", "polynomial", "--target-sparsity", f"{1 - share / 100:g}", "--epochs", str(n)]
    if recover and method != "dense":
        args += ["--recover", options["recover"], "--recover-epochs", str(RECOVER_EPOCHS)]
    if options.get("keep_best") and keeps_best(method, options):
        args += ["--keep-best", str(options["keep_best"])]
    if options.get("int4_aware") and keeps_best(method, options):  # the phases --int4-aware rounds
        args += ["--int4-aware"]
    if options.get("teacher"):  # every point learns from it, dense included (the control is a sweep without)
        args += ["--teacher", options["teacher"], "--distill-alpha", f"{options['distill_alpha']:g}",
                 "--distill-temperature", f"{options['distill_temperature']:g}",
                 "--distill-top-k", str(options["distill_top_k"])]
    return args


def keeps_best(method, options):
    """Whether --keep-best applies to a point: it has a phase that only updates the
    weights (dense; the fine-tuning after l0, units or low rank). Magnitude
    pruning and l0 with one epoch change the model while they train."""
    n = options["finetune_epochs"]
    return method == "dense" or (method == "l0" and n > 1) or (
        (method.startswith("units-") or method == "lowrank") and n > 0)


def epochs_of(method, options):
    """Epochs of training one point runs after the base run (the gates' epoch of a
    frozen-weights L0 included): what its time is estimated from."""
    n, r = options["finetune_epochs"], RECOVER_EPOCHS if options["recover"] != "none" else 0
    return (max(n, 1) if method == "l0" else n) + r


def plan_lines(points, options, base):
    """What the sweep will do and about how long its training takes, from the base
    run's measured tokens/s (smaller points train faster: an upper bound)."""
    report = rundir.read_json(os.path.join(base, rundir.REPORT))
    config = rundir.read_json(os.path.join(base, rundir.CONFIG))
    steps = report["steps_per_epoch"]
    if options.get("steps_per_epoch"):
        steps = min(steps, options["steps_per_epoch"])
    epoch_s = steps * config["batch_size"] * config["bptt"] / max(report["tokens_per_second"], 1e-9)
    epochs = sum(epochs_of(m, options) for _, m, _ in points)
    names = ", ".join(n for n, _, _ in points)
    return [f"plan: {len(points)} points ({names})",
            f"  {epochs} epochs of training in all ({options['finetune_epochs']} of weight updates each"
            f"{' + 1 of recovery' if options['recover'] != 'none' else ''}), {steps:,} steps an epoch",
            f"  about {epochs * epoch_s / 60:.0f} min of training at the base run's "
            f"{report['tokens_per_second']:,.0f} tokens/s; converting, evaluating and timing add to it"]


def check_base(base):
    report_path = os.path.join(base, rundir.REPORT)
    needed = (rundir.CONFIG, rundir.VOCAB, rundir.EVAL_DATA, os.path.join(rundir.MODEL, "spec.json"), rundir.REPORT)
    missing = [n for n in needed if not os.path.exists(os.path.join(base, n))]
    if not os.path.isdir(base):
        raise SweepError(f"base run {base} does not exist")
    if missing:
        raise SweepError(f"base run {base} is not a trained run (it lacks {', '.join(missing)})")
    if rundir.read_json(report_path).get("status") != "completed":
        raise SweepError(f"base run {base} did not complete training")
    return rundir.read_json(os.path.join(base, rundir.CONFIG))


def plan(args):
    """(options, [(name, method, share)]) after every check; raises SweepError."""
    methods = parse_list(args.methods, METHODS, "--methods")
    shares = parse_points(args.points)
    quantize = parse_list(args.quantize, QUANTIZE, "--quantize")
    for name in ("int4", "int4mixed"):
        if name in quantize and importlib.util.find_spec("ai_edge_quantizer") is None:
            raise SweepError(f"--quantize {name} needs ai-edge-quantizer: pip install -e '.[quantizer]'")
    if getattr(args, "keep_best", 0) < 0:
        raise SweepError(f"--keep-best must not be negative, got {args.keep_best}")
    if args.finetune_epochs < 0 or args.jobs < 1 or args.steps < 1 or args.point_cpus < 1:
        raise SweepError("--finetune-epochs must not be negative, --jobs, --point-cpus and --steps at least 1")
    if args.recover not in ("none", "rank-one"):
        raise SweepError(f"unknown --recover {args.recover!r}; choose from none, rank-one")
    if "lowrank" in methods and args.recover != "none":
        raise SweepError("--recover rank-one does not combine with --methods lowrank yet (a factored model "
                         "has no rank-one update)")
    if "magnitude" in methods and args.finetune_epochs < 1:
        raise SweepError("--methods magnitude prunes while it trains: it needs --finetune-epochs of at least 1")
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise SweepError("--steps-per-epoch must be at least 1")
    if getattr(args, "int4_aware", False) and args.recover != "none":
        raise SweepError("--int4-aware does not round the rank-one updates of --recover: leave one of them out")
    try:
        blocked = read_block_list(args.block) if args.block else []
    except BlockError as e:
        raise SweepError(str(e)) from None
    base_config = check_base(args.base)
    distill = dict(teacher=absolute_teacher(args.teacher) if args.teacher else None,
                   distill_alpha=args.distill_alpha, distill_temperature=args.distill_temperature,
                   distill_top_k=args.distill_top_k)
    problem = check_distill(distill)
    if problem:
        raise SweepError(problem)
    if args.teacher:
        if args.finetune_epochs < 1:
            raise SweepError("--teacher teaches while the points train: it needs --finetune-epochs of at least 1")
        from edge_runtime.vocab import Vocab
        try:
            check_vocab(args.teacher, Vocab.load(os.path.join(args.base, rundir.VOCAB)))
        except DistillError as e:
            raise SweepError(str(e)) from None
    check_ngram(getattr(args, "ngram", None), args.base)
    options = dict(base=os.path.abspath(args.base), methods=methods, points=shares, quantize=quantize,
                   finetune_epochs=args.finetune_epochs, keep_best=getattr(args, "keep_best", 0), recover=args.recover,
                   int4_aware=getattr(args, "int4_aware", False),
                   lr=args.lr if args.lr is not None else final_lr(base_config),
                   steps_per_epoch=args.steps_per_epoch, blocked_words=blocked, **distill)
    points = [(DENSE, "dense", 100.0)]
    points += [(point_name(m, s), m, s) for m in methods for s in shares if s != 100]
    return options, base_config, points


def check_out(out, resume, force, options):
    """Raises SweepError unless DIR can be written as asked; touches nothing."""
    if resume and force:
        raise SweepError("--resume continues a sweep and --force starts it over: give one of them")
    saved_path = os.path.join(out, SWEEP_FILE)
    if os.path.exists(out) and not os.path.isdir(out):
        raise SweepError(f"{out} is a file, not a sweep directory")
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(saved_path):
            raise SweepError(f"{out} exists and is not a sweep directory (no {SWEEP_FILE}); choose a new --out")
        if not (resume or force):
            raise SweepError(f"{out} already holds a sweep; use --resume to continue it or --force to start over")
        if resume:
            saved = rundir.read_json(saved_path)
            for key in ("base", "quantize", "finetune_epochs", "keep_best", "recover", "lr", "steps_per_epoch", "blocked_words",
                        "int4_aware", "teacher", "distill_alpha", "distill_temperature", "distill_top_k"):
                if key.startswith("distill_") and not (saved.get("teacher") or options["teacher"]):
                    continue  # no teacher either way: the options mean nothing (and their defaults change)
                default = DISTILL_DEFAULTS.get(key, {"blocked_words": [], "keep_best": 0,
                                                     "int4_aware": False}.get(key))  # older sweeps
                if saved.get(key, default) != options.get(key, default):
                    raise SweepError(f"--resume: {key} {options.get(key, default)} differs from the sweep's {saved.get(key)}; "
                                     "start a new sweep (or --force) to change it")
    elif resume:
        raise SweepError(f"cannot resume: {out} holds no sweep")


def complete(out, points):
    """Whether the sweep in `out` has every point and its outputs in the current format (an
    older operating_points.json is made again by --resume, which then re-times the files)."""
    from edge_runtime.points import FORMAT_VERSION
    path = os.path.join(out, ops.FILE)
    if not os.path.exists(path) or not all(os.path.exists(os.path.join(out, "points", n, POINT_FILE))
                                           for n, _, _ in points):
        return False
    return rundir.read_json(path).get("format_version") == FORMAT_VERSION


def log_path(out, name, step):
    return os.path.join(out, "logs", f"{name}.{step}.log")


def run_logged(cmd, path):
    with open(path, "w", encoding="utf-8") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode


def copy_base(base, dest):
    """The dense point: the base run's files, copied (the base run is never written)."""
    tmp = make_temp_dir(dest)
    for name in (rundir.CONFIG, rundir.VOCAB, rundir.EVAL_DATA, rundir.REPORT):
        shutil.copy2(os.path.join(base, name), os.path.join(tmp, name))
    shutil.copytree(os.path.join(base, rundir.MODEL), os.path.join(tmp, rundir.MODEL))
    os.replace(tmp, dest)


def run_point(out, name, method, share, base_config, options, log):
    """Train, convert and evaluate one point; -> its point.json dict, or raises
    RuntimeError naming the step that failed and its log."""
    from knob.operating_points import evaluate_point
    done_path = os.path.join(out, "points", name, POINT_FILE)
    if os.path.exists(done_path):
        return rundir.read_json(done_path)
    run = os.path.join(out, "points", name)
    py = [sys.executable, "-m"]
    t0 = time.time()
    if name == DENSE and not epochs_of("dense", options):
        if not os.path.exists(os.path.join(run, rundir.REPORT)):
            copy_base(options["base"], run)
    elif not os.path.exists(os.path.join(run, rundir.REPORT)):
        resume = os.path.exists(os.path.join(run, rundir.CONFIG))
        cmd = py + ["pruning.train", "--out", run] + (["--resume"] if resume else
                                                      train_args(method, share, options["base"], base_config, options) + ["--force"])
        log(f"{name}: training{' (resumed)' if resume else ''}; log in {log_path(out, name, 'train')}")
        if run_logged(cmd, log_path(out, name, "train")) != 0:
            raise RuntimeError(f"{name}: training failed; see {log_path(out, name, 'train')}")
    if rundir.read_json(os.path.join(run, rundir.REPORT)).get("status") != "completed":
        raise RuntimeError(f"{name}: training did not complete; see {log_path(out, name, 'train')}")
    log(f"{name}: converting ({','.join(options['quantize'])})")
    cmd = py + ["convert.to_tflite", run, "--quantize", ",".join(options["quantize"]), "--force"]
    if run_logged(cmd, log_path(out, name, "convert")) != 0:
        raise RuntimeError(f"{name}: conversion failed; see {log_path(out, name, 'convert')}")
    point = evaluate_point(run, name, method, share, options.get("blocked_words", ()))
    point["wall_s"] = round(time.time() - t0, 1)
    rundir.write_json(done_path, point)
    log(f"{name}: done, " + ", ".join(f"{v} test ppl {f['test_perplexity']:.2f}" for v, f in point["files"].items()
                                      if f.get("test_perplexity") is not None))
    return point


def run_points(args, points, base_config, options, log):
    """(name, point.json dict or the RuntimeError) of each point, in order:
    `--jobs` threads here, or one Ray task per point (`--executor ray`)."""
    out = os.path.abspath(args.out)  # what every node sees
    if args.executor == "local":
        pool = ThreadPoolExecutor(max_workers=args.jobs)
        try:
            futures = [(n, pool.submit(run_point, out, n, m, s, base_config, options, log)) for n, m, s in points]
            for name, future in futures:
                try:
                    yield name, future.result()
                except RuntimeError as e:
                    yield name, e
        finally:  # Ctrl-C: no queued point starts; the running ones got the signal with their process group
            pool.shutdown(wait=False, cancel_futures=True)
        return
    import ray
    task = ray.remote(num_cpus=args.point_cpus)(run_point)
    refs = [(n, task.remote(out, n, m, s, base_config, options, print)) for n, m, s in points]
    for name, ref in refs:
        try:
            yield name, ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            yield name, RuntimeError(str(e.cause) if getattr(e, "cause", None) else str(e).splitlines()[0])


def connect(executor, address):
    """Start or join the Ray cluster (`--executor ray`); raises SweepError."""
    if executor == "local":
        if address:
            raise SweepError("--address is the Ray cluster's: give it with --executor ray")
        return
    try:
        import ray
    except ImportError:
        raise SweepError("--executor ray needs Ray: pip install -e '.[cluster]'") from None
    if ray.is_initialized():
        return
    if address and address != "auto":  # a quick reachability check: ray.init waits long for a dead address
        host, _, port = address.split("://")[-1].rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError):
            raise SweepError(f"cannot reach the Ray cluster at {address} (ray start --head prints the address)") from None
    try:
        ray.init(address=address or None, logging_level="ERROR", log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise SweepError(f"cannot join the Ray cluster at {address or 'a new local one'}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None


def sweep(args, log=print):
    """What the CLI runs; returns the exit status."""
    options, base_config, points = plan(args)
    check_out(args.out, args.resume, args.force, options)
    if args.resume and complete(args.out, points):
        log(f"{args.out} is complete: nothing to resume; the sweep is left as it is (--force starts it over)")
        return 0
    connect(args.executor, args.address)
    if args.force and os.path.isdir(args.out):
        shutil.rmtree(args.out)  # every check has passed; it held a sweep (check_out)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    rundir.write_json(os.path.join(args.out, SWEEP_FILE), options)
    for line in plan_lines(points, options, args.base):
        log(line)
    done, failed = {}, []
    method = {n: m for n, m, _ in points}
    todo = {n: epochs_of(m, options) for n, m, _ in points
            if not os.path.exists(os.path.join(args.out, "points", n, POINT_FILE))}
    left, spent, t0 = sum(todo.values()), 0, time.time()
    for k, (name, result) in enumerate(run_points(args, points, base_config, options, log), 1):
        if isinstance(result, Exception):
            failed.append(str(result))
            log(f"error: {result}")
        else:
            done[name] = result
        spent += todo.get(name, 0)
        left -= todo.get(name, 0)
        elapsed = time.time() - t0
        eta = f", about {elapsed / spent * left / 60:.0f} min left" if spent and left else ""
        log(f"[{k}/{len(points)}] {name} ({method[name]}) finished; {elapsed / 60:.1f} min so far{eta}")
    rows = ops.rows([done[n] for n, _, _ in points if n in done])
    log(f"timing {len(rows)} files in one interleaved pass ({args.steps} steps each, "
        f"{ops.TIMING['threads']} thread) ...")
    ops.time_rows(rows, args.out, args.steps)
    doc = ops.document(rows, options, args.steps)
    ops.write_outputs(doc, args.out, log, ngram=getattr(args, "ngram", None))
    for e in failed:
        log(f"failed: {e}")
    return 1 if failed else 0
