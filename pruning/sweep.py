"""python -m pruning.sweep BASE_RUN --out DIR: the knob's operating points.

The command only: the sweep itself, what it runs and writes, is knob/sweep.py.
"""
import argparse
import functools
import os
import sys

from knob import operating_points as ops
from knob.sweep import DEFAULT_METHODS, METHODS, SweepError, sweep
from training.distill import DEFAULTS as DISTILL


def parser():
    p = argparse.ArgumentParser(prog="python -m pruning.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("base", metavar="BASE_RUN", help="a trained run directory (the dense model)")
    p.add_argument("--out", required=True, help="the sweep directory")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"any of {', '.join(METHODS)} (default %(default)s)")
    p.add_argument("--points", default="100,80,60,40",
                   help="shares of the dense MACs per token, in (0, 100]; magnitude: of the nonzero weights "
                        "(default %(default)s)")
    p.add_argument("--quantize", default="dynamic,int8", help="the files of each point (default %(default)s)")
    p.add_argument("--finetune-epochs", type=int, default=1,
                   help="epochs of weight updates every point gets after the base run: dense trains N more, "
                        "l0 one joint epoch and N - 1 of fine-tuning, units and lowrank N of fine-tuning, "
                        "magnitude prunes over N (default %(default)s)")
    p.add_argument("--keep-best", type=int, default=0, metavar="PATIENCE",
                   help="each point that can (dense; l0 past its joint epoch, units and lowrank) stops once "
                        "PATIENCE epochs in a row have not lowered its validation perplexity and keeps its best "
                        "epoch's weights: --finetune-epochs becomes the most it trains (default 0: off)")
    p.add_argument("--int4-aware", action="store_true",
                   help="each point that can (as --keep-best) trains on the weights its int4 file will hold: "
                        "pruning.train --int4-aware; the same sweep without it is the control")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="cap each point's epochs at this many steps, for a quick look (default: whole epochs)")
    p.add_argument("--recover", default="none", help="none or rank-one, after each point (default %(default)s)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate of the points' training (default: the rate the base run ended at)")
    p.add_argument("--jobs", type=int, default=1, help="local executor: points trained at once (default %(default)s)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: processes here; ray: one Ray task per point, on a cluster every node of which "
                        "sees --out and BASE_RUN (the `cluster` extra) (default %(default)s)")
    p.add_argument("--address", default=None,
                   help="ray: the cluster's address (what `ray start --head` prints); default: a new local one")
    p.add_argument("--point-cpus", type=int, default=1,
                   help="ray: the CPUs each point's task declares (default %(default)s)")
    p.add_argument("--steps", type=int, default=1000, help="timed steps per file (default %(default)s)")
    p.add_argument("--block", metavar="FILE", help="words the keyboard never shows, one a line: left out of the "
                                                  "points' keyboard metrics and packed into the bundle")
    p.add_argument("--teacher", metavar="RUN[,RUN...]", default=None,
                   help="distil every point (dense included) from this trained run, or an ensemble of runs: "
                        "pruning.train --teacher; "
                        "the same sweep without it is the control")
    p.add_argument("--distill-alpha", type=float, default=DISTILL["distill_alpha"],
                   help="with --teacher: the KL term's weight (default %(default)s)")
    p.add_argument("--distill-temperature", type=float, default=DISTILL["distill_temperature"],
                   help="with --teacher: the temperature (default %(default)s)")
    p.add_argument("--distill-top-k", type=int, default=DISTILL["distill_top_k"],
                   help="with --teacher: the teacher's words kept per training token (default %(default)s)")
    p.add_argument("--ngram", metavar="FILE", default=None,
                   help="a results file of benchmarks/ngram.py over the same test split: its n-grams are drawn "
                        "beside the points on the R@3 and KSR plots against bytes")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out, skipping finished points")
    p.add_argument("--force", action="store_true", help="start the sweep in --out over (only a sweep directory)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return sweep(args, log=functools.partial(print, flush=True))  # a long run: its log shows as it goes
    except (SweepError, ops.PointsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: finished points are kept; continue with python -m pruning.sweep {args.base} "
              f"--out {args.out} --resume", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Python would join the pool's worker thread at exit, and a point being converted or evaluated
        # there runs on for minutes. Every file the sweep writes is written atomically, so stopping now
        # loses only that point's unfinished step (its run keeps its checkpoint for --resume).
        os._exit(130)


if __name__ == "__main__":
    sys.exit(main())
