"""python -m pruning.report RUN [RUN ...]: one table of any runs' reports.

The command only: what a row holds and how it is read is knob/report.py.
Needs no TensorFlow.
"""
import argparse
import json
import sys

from convert.variants import PRECISIONS
from knob.report import ReportError, row, table


def parser():
    p = argparse.ArgumentParser(prog="python -m pruning.report", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories written by python -m pruning.train")
    p.add_argument("--variant", default="int8", choices=PRECISIONS,
                   help="which converted file's bytes and latency to show (default %(default)s)")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        rows = [row(r, args.variant) for r in args.runs]
    except (ReportError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    unmeasured = [r["run"] for r in rows if r["bytes"] is not None and r["latency_ms"] is None]
    if unmeasured and not args.json:
        print(f"\nno latency on this device yet for {', '.join(unmeasured)}: "
              f"edge_runtime/predict.py bench --model RUN --variant {args.variant} --threads 1 --json",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
