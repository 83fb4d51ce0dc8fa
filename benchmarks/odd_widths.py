"""Does XNNPACK run an int4 file whose matrices have odd widths? Each converted
run's dynamic-range and int4 files, stepped with XNNPACK and with LiteRT's own
kernels alone, all in one interleaved pass (1 thread).

    python benchmarks/odd_widths.py RUN [RUN ...] [--steps 2000] [--json benchmarks/results/odd_widths.json]

A file XNNPACK runs steps faster with it than without. An int4 file that
steps no faster with it runs its int4 matrices on LiteRT's own kernels.
Beside each run: its widths (embedding, hidden units, ranks), so that odd
ones can be seen.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_runtime import manifest as mf  # noqa: E402
from edge_runtime.bench import round_robin, summary  # noqa: E402
from edge_runtime.files import atomic_write_text  # noqa: E402
from edge_runtime.runner import StepModel  # noqa: E402

VARIANTS = ("dynamic", "int4")
DELEGATES = ("xnnpack", "none")


def widths(manifest):
    """{embed, hidden, ranks} of a converted run's architecture."""
    a = manifest["architecture"]
    ranks = sorted({f["rank"] for f in (a.get("factors") or {}).values() if f.get("kind") == "lowrank"})
    return dict(embed=a["embed"], hidden=a["hidden_sizes"], ranks=ranks)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN", help="a converted run (its tflite/ has dynamic and int4)")
    p.add_argument("--steps", type=int, default=2000, help="timed steps per file (default %(default)s)")
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "odd_widths.json"))
    a = p.parse_args(argv)
    if a.steps < 100:
        sys.exit("error: --steps must be at least 100")
    files, runs = {}, {}
    for run in a.runs:
        try:
            manifest = mf.load(os.path.join(run, "tflite"))
        except (OSError, ValueError) as e:
            sys.exit(f"error: {run}: not a converted run ({e})")
        missing = [v for v in VARIANTS if manifest["variants"].get(v, {}).get("status") != "ok"]
        if missing:
            sys.exit(f"error: {run}: no {missing[0]} file: python -m convert.to_tflite {run} --quantize dynamic,int4")
        runs[run] = widths(manifest)
        for v in VARIANTS:
            for d in DELEGATES:
                files[(run, v, d)] = StepModel(mf.variant_path(manifest, v), manifest["states"], num_threads=1,
                                               delegate=d)
    for model in files.values():  # the delegate is applied at the first invoke
        model.step(0)
    times = round_robin({k: (lambda m: lambda i: m.step(5 + i % 1000))(m) for k, m in files.items()}, a.steps)
    rows = []
    for run, w in runs.items():
        for v in VARIANTS:
            with_it, without = (summary(times[(run, v, d)])["median"] for d in DELEGATES)
            rows.append(dict(run=run, variant=v, **w, xnnpack_ms=with_it, litert_only_ms=without,
                             speedup=round(without / with_it, 2)))
    print("| run | file | embed | hidden | ranks | XNNPACK ms | LiteRT alone ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['variant']} | {r['embed']} | {r['hidden']} | {r['ranks'] or '-'} | "
              f"{r['xnnpack_ms']:.4f} | {r['litert_only_ms']:.4f} | {r['speedup']:.2f}x |")
    atomic_write_text(a.json, json.dumps(dict(steps=a.steps, threads=1, rows=rows), indent=1) + "\n")
    print(f"written {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
