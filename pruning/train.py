"""python -m pruning.train: train a (pruned) recurrent language model.

With no argument it trains a QRNN on the embedded Shakespeare corpus and
writes runs/default. Errors in the input are one line on stderr, exit 2;
a run whose loss became NaN exits 1 with status "diverged" in its report.

Structured pruning: `--schedule l0` (L0 neuron gates, jointly with the
weights or, with `--init-from RUN --freeze-weights`, on a trained model),
`--schedule filter` (whole units by random / norm / activation rank,
gradually while training or at once from `--init-from RUN`); the gated
units are then removed and the smaller model optionally fine-tuned
(`--finetune-epochs`). `--recover rank-one` adds and trains the single-rank
update after any schedule.
"""
import argparse
import copy
import os
import sys

from edge_runtime import quiet
from methods.factorize import FactorizeError  # no TensorFlow at import: the options are checked first
from pruning import registry
from training.distill import DEFAULTS as DISTILL_DEFAULTS, DistillError
from training.distribute import STRATEGIES, DistributeError

# The options every run has; each method's own are in its module (pruning/registry.py lists them).
COMMON = dict(arch="qrnn", schedule="polynomial", target_sparsity=0.5, initial_sparsity=0.0,
              begin_step=None, end_step=None, prune_frequency=None, embed=256, hidden=512,
              layers=2, window=2, zoneout=0.0, dropout=0.1, tie_embeddings=True, epochs=3,
              batch_size=32, bptt=35, lr=None, clip_norm=0.25, seed=0, data_dir=None,
              vocab_size=10000, checkpoint_every=200, init_from=None, target_macs=None, finetune_epochs=0, keep_best=0,
              recover="none", recover_epochs=1, gate_hidden=256, optimizer=None, lr_decay=1.0,
              decay_after=0, init_scale=None, recipe=None, strategy="default", steps_per_epoch=None,
              int4_aware=False, recall_loss=0.0)
DEFAULTS = dict(COMMON, **registry.defaults(), **DISTILL_DEFAULTS)
# Published recipes, as option values (options given on the command line win).
RECIPES = {
    # Zaremba, Sutskever & Vinyals 2014, small PTB model: SGD at 1.0 on the loss summed over the
    # 20 steps, clipped at norm 5. Our loss is the per-token mean (1/20 of that), so the same
    # updates are lr 20 and clip 5 / 20 = 0.25. Halved every epoch after the 4th; 13 epochs.
    "zaremba-small": dict(arch="lstm", layers=2, hidden=200, embed=200, tie_embeddings=False, dropout=0.0,
                          batch_size=20, bptt=20, optimizer="sgd", lr=20.0, clip_norm=0.25, lr_decay=0.5,
                          decay_after=4, init_scale=0.1, epochs=13, schedule="none", vocab_size=10000),
    # The medium model (published 82.7): 2x650, dropout 0.5 on the non-recurrent connections, 35 steps
    # (so lr 35 and clip 5 / 35), uniform +-0.05, lr divided by 1.2 every epoch after the 6th; 39 epochs.
    "zaremba-medium": dict(arch="lstm", layers=2, hidden=650, embed=650, tie_embeddings=False, dropout=0.5,
                           batch_size=20, bptt=35, optimizer="sgd", lr=35.0, clip_norm=5 / 35, lr_decay=1 / 1.2,
                           decay_after=6, init_scale=0.05, epochs=39, schedule="none", vocab_size=10000),
    # A teacher for distillation that this 2-core CPU trains in a few hours (the medium recipe takes
    # about 16): 2x400 with tied embeddings (Press & Wolf: tying helps most when epochs are few),
    # dropout 0.4, the medium recipe's SGD, halved every epoch after the 4th; 10 epochs (about 10 minutes
    # an epoch on one core).
    "teacher-2x400": dict(arch="lstm", layers=2, hidden=400, embed=400, tie_embeddings=True, dropout=0.4,
                          batch_size=20, bptt=35, optimizer="sgd", lr=35.0, clip_norm=5 / 35, lr_decay=0.5,
                          decay_after=4, init_scale=0.05, epochs=10, schedule="none", vocab_size=10000),
}
RECOVERY_ARCHS = ("qrnn", "lstm")  # architectures whose layers carry the rank-one update (not hlstm)


OPTIMIZERS = ("adam", "sgd")
RECOVERIES = ("none", "rank-one")


def choices(names):
    """The metavar that lists an option's choices in --help."""
    return "{" + ",".join(names) + "}"


def parser():
    from keras_models import ARCHS
    d = DEFAULTS
    p = argparse.ArgumentParser(prog="python -m pruning.train", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--arch", default=d["arch"], metavar=choices(ARCHS), help="architecture (default %(default)s)")
    a("--gate-hidden", type=int, default=d["gate_hidden"],
      help="hlstm: hidden units of each gate's MLP (default %(default)s)")
    a("--schedule", default=d["schedule"], metavar=choices(registry.schedules()),
      help="pruning schedule (default %(default)s)")
    a("--target-sparsity", type=float, default=d["target_sparsity"],
      help="final share of zero weights, in [0, 1) (default %(default)s; m-by-n is always 0.5)")
    a("--initial-sparsity", type=float, default=d["initial_sparsity"],
      help="polynomial: sparsity at --begin-step (default %(default)s)")
    a("--begin-step", type=int, default=None, help="first pruning step (default: 10%% of the run)")
    a("--end-step", type=int, default=None, help="polynomial: step the target is reached (default: 60%% of the run)")
    a("--prune-frequency", type=int, default=None,
      help="steps between mask updates (default: min(100, pruning span / 20))")
    a("--embed", type=int, default=d["embed"], help="embedding size (default %(default)s)")
    a("--hidden", type=int, default=d["hidden"],
      help="hidden units per recurrent layer; with tied embeddings the last layer has --embed units (default %(default)s)")
    a("--layers", type=int, default=d["layers"], help="recurrent layers (default %(default)s)")
    a("--window", type=int, default=d["window"], help="QRNN: convolution width of the first layer; the others use 1 (default %(default)s)")
    a("--zoneout", type=float, default=d["zoneout"], help="QRNN: zoneout probability on the forget gate (default %(default)s)")
    a("--dropout", type=float, default=d["dropout"], help="dropout after the embedding and each layer (default %(default)s)")
    a("--no-tie", dest="tie_embeddings", action="store_false", help="separate output matrix instead of the embedding's")
    a("--tie", dest="tie_embeddings", action="store_true",
      help="the output matrix is the embedding's (the default; undoes a recipe's --no-tie)")
    a("--epochs", type=int, default=None,
      help="training epochs (default 3; from --init-from: 1, and 0 for filter and --factorize, which "
           "prune or factor at once)")
    a("--steps-per-epoch", type=int, default=None,
      help="cap every epoch at this many steps, the first of the epoch's batches (a quick look; default: all)")
    a("--batch-size", type=int, default=d["batch_size"], help="parallel text streams (default %(default)s)")
    a("--bptt", type=int, default=d["bptt"], help="steps of truncated back-propagation (default %(default)s)")
    a("--lr", type=float, default=None, help="learning rate (default: the architecture's, below)")
    a("--optimizer", default=None, metavar=choices(OPTIMIZERS),
      help="adam or sgd (default by architecture: qrnn adam at 0.004; lstm and hlstm sgd at 20 with "
           "--init-scale 0.1, as Adam leaves them stuck near the unigram model)")
    a("--lr-decay", type=float, default=d["lr_decay"],
      help="multiply the learning rate by this every epoch after --decay-after (default %(default)s: none)")
    a("--decay-after", type=int, default=d["decay_after"], help="epochs at the full learning rate (default %(default)s)")
    a("--init-scale", type=float, default=None, help="initialise every weight uniform in [-S, S]; 0: Keras' initialisers "
                                                            "(default: the architecture's, above)")
    a("--recipe", default=None, metavar=choices(RECIPES), help="a published recipe's options (options given here win)")
    a("--clip-norm", type=float, default=d["clip_norm"], help="global gradient-norm clip, 0 for none (default %(default)s)")
    a("--seed", type=int, default=d["seed"], help="random seed of initialisation, dropout and gate noise (default %(default)s)")
    a("--data-dir", default=None,
      help="folder with ptb.{train,valid,test}.txt or {train,valid,test}.txt (default: the embedded corpus)")
    a("--vocab-size", type=int, default=d["vocab_size"], help="most frequent training words kept, <unk> and <eos> included (default %(default)s)")
    a("--checkpoint-every", type=int, default=d["checkpoint_every"], help="steps between checkpoints (default %(default)s)")
    a("--init-from", default=None, metavar="RUN", help="start from this run's trained model and vocabulary")
    a("--target-macs", type=float, default=d["target_macs"],
      help="l0, filter, --factorize lowrank: end at this share of the dense model's MACs per token, in (0, 1]. "
           "l0: a MACs constraint with a rising penalty coefficient replaces --l0-lambda; filter: sets "
           "--target-units, lowrank: --rank-fraction, to the value that comes closest")
    a("--finetune-epochs", type=int, default=d["finetune_epochs"],
      help="l0/filter: epochs of training after the units are removed; --factorize from --init-from: "
           "after the matrices are factored (default %(default)s)")
    a("--keep-best", type=int, default=d["keep_best"], metavar="PATIENCE",
      help="stop the last phase that updates the weights (the fine-tuning, or with --schedule none the "
           "training) once PATIENCE epochs in a row have not lowered the validation perplexity, and keep the "
           "weights of its best epoch; --epochs / --finetune-epochs become the most it trains (default 0: off)")
    a("--recover", default=d["recover"], metavar=choices(RECOVERIES),
      help="rank-one: train a u v^T update per matrix, weights frozen (default %(default)s)")
    a("--recover-epochs", type=int, default=d["recover_epochs"], help="epochs of rank-one recovery (default %(default)s)")
    a("--strategy", default=d["strategy"], metavar=choices(STRATEGIES),
      help="tf.distribute: default (one device), mirrored (the local GPUs, or the CPU split into "
           "EDGELM_CPU_DEVICES logical devices), multiworker (the cluster in TF_CONFIG); --batch-size is per "
           "replica (default %(default)s)")
    registry.add_options(a)
    a("--int4-aware", action="store_true",
      help="train on the weights the int4 file will hold (the converter's rounding, every step) and update "
           "the float ones: the int4 file then loses less; applies to --schedule none and to --finetune-epochs")
    a("--recall-loss", type=float, default=d["recall_loss"], metavar="BETA",
      help="add BETA x a term for R@3 to the loss: the logistic loss of the true word's margin over the "
           "3rd best other word a keyboard can show (default %(default)s: off)")
    a("--teacher", default=None, metavar="RUN[,RUN...]",
      help="distil from this trained run (same vocabulary): the loss mixes the labels' cross-entropy with "
           "the KL from the teacher's top-k distribution; several runs teach as an ensemble, the mean of "
           "their distributions (default: no teacher)")
    a("--distill-alpha", type=float, default=d["distill_alpha"],
      help="with --teacher: the KL term's weight, in [0, 1]; 0 is plain training (default %(default)s)")
    a("--distill-temperature", type=float, default=d["distill_temperature"],
      help="with --teacher: the temperature T of both distributions; the KL is scaled by T^2 (default %(default)s)")
    a("--distill-top-k", type=int, default=d["distill_top_k"],
      help="with --teacher: the teacher's most probable words kept per training token, computed once and "
           "kept beside the teacher run; the rest of its mass spread evenly (default %(default)s)")
    a("--out", default=os.path.join("runs", "default"), help="run directory (default %(default)s)")
    a("--resume", action="store_true", help="continue the run in --out from its last checkpoint, with its saved options")
    a("--force", action="store_true", help="replace an existing run directory (only one that holds a run), "
                                               "once every check has passed")
    a("--verbose", action="store_true", help="show TensorFlow's start-up log lines")
    return p


def complete(config, argv):
    """`config` with the defaults that depend on other options filled in (in place; returned)."""
    if config["factorize"] != "none" and "schedule" not in given_options(parser(), argv):
        config["schedule"] = "none"  # what factorization combines with; polynomial is for pruning
    if config["epochs"] is None:  # from a trained run: prune or factor at once, or one epoch
        at_once = config["schedule"] == "filter" or config["factorize"] != "none"
        config["epochs"] = (0 if at_once else 1) if config["init_from"] else DEFAULTS["epochs"]
    return config


def validate(c):
    """One-line message for the first bad option, or None."""
    from keras_models import ARCHS
    if c["arch"] not in ARCHS:
        return f"unknown architecture {c['arch']!r}; choose from {', '.join(ARCHS)}"
    if c["schedule"] not in registry.schedules():
        return f"unknown schedule {c['schedule']!r}; choose from {', '.join(registry.schedules())}"
    for key in ("target_sparsity", "initial_sparsity"):
        if not 0.0 <= c[key] < 1.0:
            return f"--{key.replace('_', '-')} must be in [0, 1), got {c[key]}"
    if c["vocab_size"] < 3:
        return f"--vocab-size must be at least 3 (<unk>, <eos> and a word), got {c['vocab_size']}"
    for key in ("embed", "hidden", "layers", "window", "batch_size", "bptt", "checkpoint_every", "gate_hidden"):
        if c[key] < 1:
            return f"--{key.replace('_', '-')} must be at least 1, got {c[key]}"
    if not 0.0 <= c["dropout"] < 1.0 or not 0.0 <= c["zoneout"] < 1.0:
        return "--dropout and --zoneout must be in [0, 1)"
    if (c["lr"] is not None and c["lr"] <= 0) or c["clip_norm"] < 0:
        return "--lr must be positive and --clip-norm not negative"
    if c["optimizer"] not in (None,) + OPTIMIZERS:
        return f"unknown --optimizer {c['optimizer']!r}; choose from {', '.join(OPTIMIZERS)}"
    if not 0 < c["lr_decay"] <= 1 or c["decay_after"] < 0:
        return "--lr-decay must be in (0, 1] and --decay-after not negative"
    if c["init_scale"] is not None and c["init_scale"] < 0:
        return "--init-scale must not be negative"
    if not c["recall_loss"] >= 0:  # NaN too
        return f"--recall-loss must be a number at least 0, got {c['recall_loss']}"
    if c.get("steps_per_epoch") is not None and c["steps_per_epoch"] < 1:
        return f"--steps-per-epoch must be at least 1, got {c['steps_per_epoch']}"
    if c["prune_frequency"] is not None and c["prune_frequency"] < 1:
        return "--prune-frequency must be at least 1"
    from training import distill, distribute
    return validate_run(c) or distribute.check(c) or distill.check(c)


def validate_run(c):
    """The checks that involve the method: the one chosen answers for its own options."""
    from training import rundir
    arch = c["arch"]
    if c["init_from"]:
        spec_path = os.path.join(c["init_from"], rundir.MODEL, "spec.json")
        if not os.path.exists(spec_path) or not os.path.exists(os.path.join(c["init_from"], rundir.VOCAB)):
            return f"--init-from {c['init_from']}: not a trained run directory (no {rundir.MODEL}/spec.json or {rundir.VOCAB})"
        arch = rundir.read_json(spec_path)["arch"]
    if c["epochs"] < (0 if c["init_from"] else 1):
        return f"--epochs must be at least {0 if c['init_from'] else 1}, got {c['epochs']}"
    method = registry.chosen(c)
    if c["target_macs"] is not None:
        if not 0.0 < c["target_macs"] <= 1.0:
            return f"--target-macs must be in (0, 1], got {c['target_macs']}"
        if not method.takes_target_macs(c):
            return (f"--target-macs asks l0 or filter pruning, or --factorize lowrank, for a cost, not "
                    f"--schedule {c['schedule']}" + (f" with --factorize {c['factorize']}" if c["factorize"] != "none" else ""))
    if c["finetune_epochs"] < 0 or c["recover_epochs"] < 1:
        return "--finetune-epochs must not be negative and --recover-epochs must be at least 1"
    if c["finetune_epochs"] and not method.finetunes_from(c):
        return ("--finetune-epochs fine-tunes the model left after l0 or filter pruning, or factored from "
                "--init-from; use --epochs otherwise")
    if c["keep_best"] < 0:
        return f"--keep-best must not be negative, got {c['keep_best']}"
    if c["keep_best"] and not (c["finetune_epochs"] or (c["schedule"] == "none" and c["epochs"])):
        return ("--keep-best stops a phase that only updates the weights: --finetune-epochs N, or --schedule none "
                "with --epochs N (l0, filter and magnitude pruning change the model as they train)")
    if c["recover"] not in RECOVERIES:
        return f"unknown --recover {c['recover']!r}; choose from {', '.join(RECOVERIES)}"
    if c["recover"] != "none" and arch not in RECOVERY_ARCHS:
        return f"--recover rank-one supports {', '.join(RECOVERY_ARCHS)}, not {arch}"
    return registry.check(c, arch) or check_int4_aware(c, arch)


INT4_AWARE_ARCHS = ("lstm", "qrnn")  # whose matrices training/int4_aware.py rounds as the file holds them


def check_int4_aware(c, arch):
    """--int4-aware trains phases that update the weights alone, one device, matrices it knows."""
    if not c.get("int4_aware"):
        return None
    if c["schedule"] != "none" and not c["finetune_epochs"]:
        return (f"--int4-aware rounds the weights of a phase that only updates them: --schedule none, or "
                f"--finetune-epochs N after --schedule {c['schedule']}")
    if arch not in INT4_AWARE_ARCHS:
        return f"--int4-aware supports {', '.join(INT4_AWARE_ARCHS)}, not {arch}"
    if c["factorize"] == "tt":
        return "--int4-aware rounds plain and low-rank matrices, not tensor-train cores (--factorize tt)"
    if c["recover"] != "none":
        return "--int4-aware does not round the rank-one updates of --recover: leave one of them out"
    if c.get("strategy", "default") != "default":
        return "--int4-aware trains on one device: leave out --strategy"
    return None


def given_options(p, argv):
    """{dest: value} of the options written on the command line (not defaults)."""
    quiet = copy.deepcopy(p)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    return vars(quiet.parse_args(argv))


def resume_config(out, given):
    """The saved options of the run in `out`, checked against the options given
    with --resume: a different value is an error that names the option."""
    from training import rundir
    rundir.prepare(out, resume=True)
    saved = dict(DEFAULTS, **rundir.read_json(os.path.join(out, rundir.CONFIG)))
    for key, value in given.items():
        if key in ("resume", "out", "verbose"):
            continue
        if key == "force":
            raise rundir.RunDirError("--resume continues a run and --force replaces it: give one of them")
        if saved.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise rundir.RunDirError(f"{flag} {value} conflicts with the saved option {saved.get(key)} of {out}; "
                                     f"--resume continues with the run's own options (to change {flag}, "
                                     "start a new run)")
    return dict(saved, out=out, resumed=True)


def finished(out):
    """The report of a run that has ended (completed or diverged), or None."""
    from training import rundir
    path = os.path.join(out, rundir.REPORT)
    return rundir.read_json(path) if os.path.exists(path) else None


def interrupted_message(out, started):
    """One line: what an interrupted run kept, and how to go on."""
    from training import rundir
    if not started:
        return "interrupted: nothing was written"
    from training import checkpoints
    where = "no checkpoint yet (the run starts again from the beginning)"
    for phase, name in (("train", rundir.CHECKPOINT), ("finetune", "checkpoints/finetune.npz"),
                        ("recover", "checkpoints/recover.npz")):  # the latest phase's checkpoint is the one
        meta = checkpoints.meta(os.path.join(out, name))
        if meta:
            where = f"{phase} checkpoint at epoch {meta['epoch'] + (1 if meta['batch'] else 0)}, step {meta['step']}"
    return (f"interrupted: {out} keeps its {where}; continue with "
            f"python -m pruning.train --resume --out {out}")


def main(argv=None):
    p = parser()
    recipe = p.parse_known_args(argv)[0].recipe
    if recipe is not None:
        if recipe not in RECIPES:
            print(f"error: unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}", file=sys.stderr)
            return 2
        p.set_defaults(**RECIPES[recipe])
    args = p.parse_args(argv)
    quiet.configure(args.verbose)
    from training import data, rundir
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "force", "verbose")}
    started = []  # set once the run directory holds this run
    try:
        if args.resume:
            config = resume_config(args.out, given_options(parser(), argv))
            report = finished(args.out)
            if report is not None:
                done = "is complete" if report["status"] == "completed" else f"ended {report['status']}"
                print(f"{args.out} {done}: nothing to resume; the run is left as it is")
                return 0 if report["status"] == "completed" else 1
            print(f"resuming {args.out} with its saved options")
            started.append(True)
        else:
            problem = validate(complete(config, argv))
            if problem:
                raise rundir.RunDirError(problem)
        corpus = data.load_corpus(config["data_dir"])
        from training import distribute
        if not args.resume and distribute.is_chief(config["strategy"]):
            rundir.check_new(args.out, args.force)  # before the slow part; nothing is deleted yet
        os.environ["EDGELM_STRATEGY"] = config["strategy"]  # read where TensorFlow loads (backend.py)
        from pruning.trainer import train  # TensorFlow loads only now
        report = train(config, corpus, force=args.force, on_start=lambda: started.append(True))
    except (data.DataError, rundir.RunDirError, FactorizeError, DistributeError, DistillError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args.out, bool(started)), file=sys.stderr)
        return 130
    print_summary(report, args.out)
    return 0 if report["status"] == "completed" else 1


def print_summary(report, out):
    print(f"\nrun: {out}  status: {report['status']}")
    if report["status"] == "completed":
        print(f"test perplexity {report['test_perplexity']:.2f}  (unigram baseline "
              f"{report['unigram_test_perplexity']:.2f})  test R@3 {report['test_r_at_3']:.3f}")
        print(f"valid perplexity {report['valid_perplexity']:.2f}")
        if report.get("int4_rounded"):  # --int4-aware
            r = report["int4_rounded"]
            print(f"with the int4 file's weights (Keras, float activations): test perplexity "
                  f"{r['test_perplexity']:.2f}, valid {r['valid_perplexity']:.2f}")
    print(f"parameters {report['params_total']:,} total, {report['params_nonzero']:,} nonzero; "
          f"MACs/token {report['macs_per_token']:,} dense, {report['macs_per_token_nonzero']:,} nonzero")
    if "structure" in report:
        b, a = report["structure"]["before"], report["structure"]["after"]
        print(f"hidden units {b['hidden_sizes']} -> {a['hidden_sizes']}, embedding {b['embed']} -> {a['embed']}; "
              f"MACs/token {report['structure']['macs_fraction']:.1%} of the dense model")
        if "closed_to_target" in report["structure"]:
            s = report["structure"]
            print(f"l0 target {report['schedule']['target_macs']:.1%} of the MACs: the gates expected "
                  f"{s['expected_macs_fraction']:.1%} before closing; {s['closed_to_target']} open gates closed "
                  "to reach it")
    if "recovery" in report and report["status"] == "completed":
        r = report["recovery"]
        print(f"rank-one recovery: valid perplexity {r['valid_perplexity_before']:.2f} -> "
              f"{report['valid_perplexity']:.2f} with {r['extra_params']:,} extra parameters")
    speed = f"{report['tokens_per_second']:.0f} tokens/s, " if report["train_tokens"] else ""
    print(f"{speed}wall time {report['wall_time_s']:.0f} s")
    if report.get("replicas", 1) > 1:
        print(f"strategy {report['strategy']}: {report['replicas']} replicas, global batch {report['global_batch']}; "
              f"weights sha256 {report['weights_sha256']}")


if __name__ == "__main__":
    sys.exit(main())
