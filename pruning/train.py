"""python -m pruning.train: train a (pruned) recurrent language model.

With no argument it trains a QRNN on the embedded Shakespeare corpus and
writes runs/default. Errors in the input are one line on stderr, exit 2;
a run whose loss became NaN exits 1 with status "diverged" in its report.
"""
import argparse
import os
import sys

DEFAULTS = dict(arch="qrnn", schedule="polynomial", target_sparsity=0.5, initial_sparsity=0.0,
                begin_step=None, end_step=None, prune_frequency=None, embed=256, hidden=512,
                layers=2, window=2, zoneout=0.0, dropout=0.1, tie_embeddings=True, epochs=3,
                batch_size=32, bptt=35, lr=0.004, clip_norm=0.25, seed=0, data_dir=None,
                vocab_size=10000, checkpoint_every=200)


def parser():
    d = DEFAULTS
    p = argparse.ArgumentParser(prog="python -m pruning.train", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--arch", default=d["arch"], help="qrnn or lstm (default %(default)s)")
    a("--schedule", default=d["schedule"],
      help="pruning schedule: none, constant, polynomial, m-by-n (default %(default)s)")
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
    a("--epochs", type=int, default=d["epochs"], help="(default %(default)s)")
    a("--batch-size", type=int, default=d["batch_size"], help="parallel text streams (default %(default)s)")
    a("--bptt", type=int, default=d["bptt"], help="steps of truncated back-propagation (default %(default)s)")
    a("--lr", type=float, default=d["lr"], help="Adam learning rate (default %(default)s)")
    a("--clip-norm", type=float, default=d["clip_norm"], help="global gradient-norm clip, 0 for none (default %(default)s)")
    a("--seed", type=int, default=d["seed"], help="(default %(default)s)")
    a("--data-dir", default=None,
      help="folder with ptb.{train,valid,test}.txt or {train,valid,test}.txt (default: the embedded corpus)")
    a("--vocab-size", type=int, default=d["vocab_size"], help="most frequent training words kept, <unk> and <eos> included (default %(default)s)")
    a("--checkpoint-every", type=int, default=d["checkpoint_every"], help="steps between checkpoints (default %(default)s)")
    a("--out", default=os.path.join("runs", "default"), help="run directory (default %(default)s)")
    a("--resume", action="store_true", help="continue the run in --out from its last checkpoint, with its saved options")
    a("--force", action="store_true", help="replace an existing run directory")
    return p


def validate(c):
    """One-line message for the first bad option, or None."""
    from pruning.schedules import SCHEDULES
    from keras_models import ARCHS
    if c["arch"] not in ARCHS:
        return f"unknown architecture {c['arch']!r}; choose from {', '.join(ARCHS)}"
    if c["schedule"] not in SCHEDULES:
        return f"unknown schedule {c['schedule']!r}; choose from {', '.join(SCHEDULES)}"
    for key in ("target_sparsity", "initial_sparsity"):
        if not 0.0 <= c[key] < 1.0:
            return f"--{key.replace('_', '-')} must be in [0, 1), got {c[key]}"
    if c["vocab_size"] < 3:
        return f"--vocab-size must be at least 3 (<unk>, <eos> and a word), got {c['vocab_size']}"
    for key in ("embed", "hidden", "layers", "window", "epochs", "batch_size", "bptt", "checkpoint_every"):
        if c[key] < 1:
            return f"--{key.replace('_', '-')} must be at least 1, got {c[key]}"
    if not 0.0 <= c["dropout"] < 1.0 or not 0.0 <= c["zoneout"] < 1.0:
        return "--dropout and --zoneout must be in [0, 1)"
    if c["lr"] <= 0 or c["clip_norm"] < 0:
        return "--lr must be positive and --clip-norm not negative"
    if c["prune_frequency"] is not None and c["prune_frequency"] < 1:
        return "--prune-frequency must be at least 1"
    return None


def main(argv=None):
    args = parser().parse_args(argv)
    from pruning import rundir
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "force")}
    if args.resume:
        try:
            rundir.prepare(args.out, resume=True)
        except rundir.RunDirError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        config = rundir.read_json(os.path.join(args.out, rundir.CONFIG))
        config.update(out=args.out, resumed=True)
        print(f"resuming {args.out} with its saved options")
    else:
        problem = validate(config)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    from pruning import data
    try:
        corpus = data.load_corpus(config["data_dir"])  # bad data fails before the run dir is touched
        if not args.resume:
            rundir.prepare(args.out, force=args.force)
        from pruning.trainer import train  # TensorFlow loads only now
        report = train(config, corpus)
    except (data.DataError, rundir.RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(report, args.out)
    return 0 if report["status"] == "completed" else 1


def print_summary(report, out):
    print(f"\nrun: {out}  status: {report['status']}")
    if report["status"] == "completed":
        print(f"test perplexity {report['test_perplexity']:.2f}  (unigram baseline "
              f"{report['unigram_test_perplexity']:.2f})  test R@3 {report['test_r_at_3']:.3f}")
        print(f"valid perplexity {report['valid_perplexity']:.2f}")
    print(f"parameters {report['params_total']:,} total, {report['params_nonzero']:,} nonzero; "
          f"MACs/token {report['macs_per_token']:,} dense, {report['macs_per_token_nonzero']:,} nonzero")
    print(f"{report['tokens_per_second']:.0f} tokens/s, wall time {report['wall_time_s']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
