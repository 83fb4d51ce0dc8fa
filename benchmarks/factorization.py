"""Factorization against pruning: Grachev et al.'s comparison, measured end to end.

    python benchmarks/factorization.py ptb      [--root runs/ptb] [--no-latency]
    python benchmarks/factorization.py embedded [--root runs/factorize] [--no-latency]

`ptb` starts from Zaremba et al.'s small LSTM (`runs/ptb/zaremba-small`, from
`python benchmarks/ptb.py run --only zaremba-small`); `embedded` from the
default QRNN trained dense on the embedded corpus (trained here first). From
the base, each row gets one epoch of fine-tuning (PTB: SGD at 1.0, batch 32,
35 steps, dropout 0.1, as in ptb_compression.py; embedded: the QRNN's Adam):
- the dense model given the same epoch (the fair reference);
- PTB only: magnitude pruning to 80% and 90% (the same runs as
  ptb_compression.py, reused when there);
- low-rank (truncated SVD, then the epoch) of the output matrix (tied: the
  shared embedding), of the recurrent kernels, and of all, at ranks of 1/8,
  1/4 and 1/2 of each matrix's smaller side;
- PTB only: tensor-train (TT-SVD, 3 cores) at ranks 4 and 8 of the recurrent
  kernels and of the output matrix.
Every model is converted to dynamic-range and int8 LiteRT and every file is
timed in one interleaved pass (`edge_runtime.bench.interleaved`: 1 thread,
XNNPACK, 50 steps of each file in turn until each has 5000), nothing else
running. Printed: the table, the perplexity-latency frontier (int8), the
target (a factorized model within 5% of the dense + epoch perplexity whose int8
step is 1.5x faster than the dense int8 step; the dense step is the faster of
the two dense files, whose gap shows the noise) and what limits it. Finished
runs are reused, so an interrupted benchmark resumes.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.structured import ROOT, report, run, train, write_results  # noqa: E402
from edge_runtime import bench, manifest as mf  # noqa: E402
from edge_runtime.pareto import frontier  # noqa: E402

VARIANTS = ("dynamic", "int8")
FRACTIONS = (0.125, 0.25, 0.5)
TT_RANKS = (4, 8)
SCOPES = ("output", "recurrent", "all")
PTB_FINETUNE = ["--lr", "1", "--batch-size", "32", "--bptt", "35", "--dropout", "0.1"]
TARGET_PPL, TARGET_SPEEDUP = 1.05, 1.5


def plan(corpus, root):
    """(base run, data dir or None, [(label, family, run dir, pruning.train options)])."""
    if corpus == "ptb":
        base, data_dir, work = os.path.join(root, "zaremba-small"), os.path.join(root, "data"), os.path.join(root, "compress")
        tune, data = PTB_FINETUNE, ["--data-dir", data_dir]
    else:
        base, data_dir, work = os.path.join(root, "dense"), None, root
        tune, data = [], []
    start = ["--init-from", base, *data]
    rows = [("dense + the same epoch", "dense", os.path.join(work, "dense-1-more-epoch"),
             [*start, "--schedule", "none", "--epochs", "1", *tune])]
    if corpus == "ptb":
        for s in (0.8, 0.9):
            rows.append((f"magnitude {s:.0%}", "magnitude", os.path.join(work, f"magnitude-{int(s * 100)}"),
                         [*start, "--schedule", "polynomial", "--target-sparsity", str(s), "--epochs", "1", *tune]))
    for scope in SCOPES:
        for f in FRACTIONS:
            rows.append((f"low-rank {scope}, rank {f:g} x min side", "low-rank",
                         os.path.join(work, f"lowrank-{scope}-{f:g}"),
                         [*start, "--factorize", "lowrank", "--factorize-scope", scope, "--rank-fraction", str(f),
                          "--finetune-epochs", "1", *tune]))
    if corpus == "ptb":
        for scope in ("recurrent", "output"):
            for r in TT_RANKS:
                rows.append((f"TT {scope}, rank {r}", "tt", os.path.join(work, f"tt-{scope}-{r}"),
                             [*start, "--factorize", "tt", "--factorize-scope", scope, "--tt-rank", str(r),
                              "--finetune-epochs", "1", *tune]))
    return base, data_dir, rows


def converted(path):
    """Convert `path` to the dynamic and int8 files unless that is done."""
    try:
        variants = mf.load(os.path.join(path, "tflite"))["variants"]
        if all(variants.get(v, {}).get("status") == "ok" for v in VARIANTS):
            return
    except mf.ManifestError:
        pass
    run("-m", "convert.to_tflite", path, "--quantize", ",".join(VARIANTS), "--eval-tokens", "5000", "--force")


def time_all(paths, steps=5000):
    """{(run, variant): timing} of every file, in one interleaved pass."""
    files = {}
    for path in paths:
        manifest = mf.load(os.path.join(path, "tflite"))
        for v in VARIANTS:
            files[(path, v)] = (mf.variant_path(manifest, v), manifest["states"])
    print(f"timing {len(files)} files in one interleaved pass ...", flush=True)
    return bench.interleaved(files, steps=steps, threads=1)


def row(label, family, path, timing):
    r = report(path)
    out = dict(method=label, family=family, run=os.path.relpath(path, ROOT), test_perplexity=r["test_perplexity"],
               test_r_at_3=r["test_r_at_3"], params=r["params_total"], params_nonzero=r["params_nonzero"],
               macs=r["macs_per_token"], macs_nonzero=r["macs_per_token_nonzero"],
               hidden_sizes=r["hidden_sizes"], embed=r["embed"])
    if "factorization" in r:
        f = r["factorization"]
        out.update(factors={k: {kk: v[kk] for kk in ("kind", "rank", "ranks", "rows", "cols") if kk in v}
                            for k, v in f["matrices"].items()},
                   relative_error=f.get("relative_error"), valid_perplexity_factored=f.get("valid_perplexity_factored"))
    if timing:
        manifest = mf.load(os.path.join(path, "tflite"))["variants"]
        for v in VARIANTS:
            t = timing[(path, v)]
            out[v] = dict(bytes=t["bytes"], latency_ms=t["median"], p90_ms=t["p90"], delegate=t["delegate"],
                          sha256=t["sha256"], perplexity_5000=manifest[v]["perplexity"])
    return out


def dense_ms(rows, variant="int8"):
    """The dense step: the faster of the dense files (the base and the base + epoch have the
    same shapes, so the gap between them is this machine's noise, not the model's)."""
    return min(r[variant]["latency_ms"] for r in rows if r["family"] == "dense")


def verdicts(rows):
    """Lines on the frontier and the target, from the rows alone."""
    ref = rows[1]
    base_ms = dense_ms(rows)
    dense = [r["int8"]["latency_ms"] for r in rows if r["family"] == "dense"]
    lines = [f"dense int8 files of the same shapes: {', '.join(f'{t:.4f}' for t in dense)} ms "
             f"({max(dense) / min(dense) - 1:.0%} apart: the noise of this comparison); speed-ups are "
             f"against the faster, {base_ms:.4f} ms"]
    for v in VARIANTS:
        on = frontier([dict(p=r["test_perplexity"], t=r[v]["latency_ms"]) for r in rows], "t", "p")
        lines.append(f"{v} perplexity-latency frontier: " + "; ".join(
            f"{rows[i]['method']} ({rows[i]['test_perplexity']:.2f}, {rows[i][v]['latency_ms']:.4f} ms)" for i in on))
    limit = ref["test_perplexity"] * TARGET_PPL
    ok = [r for r in rows if r["family"] in ("low-rank", "tt") and r["test_perplexity"] <= limit]
    best = min(ok, key=lambda r: r["int8"]["latency_ms"]) if ok else None
    if best:
        speedup = base_ms / best["int8"]["latency_ms"]
        verdict = "met" if speedup >= TARGET_SPEEDUP else "missed"
        lines.append(f"target ({TARGET_SPEEDUP}x the dense int8 step within {TARGET_PPL - 1:.0%} of "
                     f"{ref['test_perplexity']:.2f}): {verdict}: {best['method']}, test {best['test_perplexity']:.2f} "
                     f"({best['test_perplexity'] / ref['test_perplexity'] - 1:+.1%}), "
                     f"int8 {best['int8']['latency_ms']:.4f} ms against {base_ms:.4f} ms "
                     f"({speedup:.2f}x), MACs {best['macs'] / rows[0]['macs']:.0%} of the dense model's")
    else:
        lines.append(f"target: missed: no factorized model is within {TARGET_PPL - 1:.0%} of "
                     f"{ref['test_perplexity']:.2f}")
    fast = [r for r in rows if r["family"] in ("low-rank", "tt") and base_ms / r["int8"]["latency_ms"] >= TARGET_SPEEDUP]
    if fast:
        r = min(fast, key=lambda r: r["test_perplexity"])
        lines.append(f"the best {TARGET_SPEEDUP}x-fast factorized model: {r['method']}, test {r['test_perplexity']:.2f} "
                     f"({r['test_perplexity'] / ref['test_perplexity'] - 1:+.1%}), "
                     f"{base_ms / r['int8']['latency_ms']:.2f}x")
    for v in VARIANTS:  # what does not shrink with the matrices: the intercept of latency against MACs
        fast = [r for r in rows if r[v]["delegate"] == "xnnpack"]  # one line for one kernel set
        slow = [r["method"] for r in rows if r[v]["delegate"] != "xnnpack"]
        if slow:
            lines.append(f"{v} files that XNNPACK could not run (sparse-encoded), so ran without a delegate: "
                         + ", ".join(slow))
        macs = np.array([r["macs"] for r in fast], dtype=float) / 1e6
        ms = np.array([r[v]["latency_ms"] for r in fast])
        slope, fixed = np.polyfit(macs, ms, 1)
        lines.append(f"{v} step ~ {fixed:.4f} ms + {slope:.4f} ms per million MACs (least squares over the "
                     f"{len(fast)} files XNNPACK ran): {fixed / dense_ms(rows, v):.0%} "
                     "of the dense step does not shrink with the matrices")
    fastest = min((r for r in rows if r["family"] in ("low-rank", "tt")), key=lambda r: r["int8"]["latency_ms"])
    lines.append(f"fastest factorized: {fastest['method']}, int8 {fastest['int8']['latency_ms']:.4f} ms "
                 f"({base_ms / fastest['int8']['latency_ms']:.2f}x) at "
                 f"{fastest['macs'] / rows[0]['macs']:.0%} of the MACs, test {fastest['test_perplexity']:.2f}")
    return lines


def print_table(rows, timed):
    head = "| model | params | MACs/token | test ppl | test R@3 |"
    if timed:
        head += " dynamic bytes | dynamic ms | int8 bytes | int8 ms | int8 speed-up |"
    print(head)
    print("|---" * head.count(" |") + "|")
    for r in rows:
        line = (f"| {r['method']} | {r['params_nonzero']:,} | {r['macs']:,} ({r['macs'] / rows[0]['macs']:.0%}) | "
                f"{r['test_perplexity']:.2f} | {r['test_r_at_3']:.3f} |")
        if timed:
            line += (f" {r['dynamic']['bytes']:,} | {r['dynamic']['latency_ms']:.4f} | {r['int8']['bytes']:,} | "
                     f"{r['int8']['latency_ms']:.4f} | {dense_ms(rows) / r['int8']['latency_ms']:.2f}x |")
        print(line)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/factorization.py", description=__doc__.split("\n\n")[0])
    p.add_argument("corpus", choices=("ptb", "embedded"), help="Penn Treebank (the LSTM) or the embedded corpus (the QRNN)")
    p.add_argument("--root", help="runs folder (default runs/ptb or runs/factorize)")
    p.add_argument("--json", help="results (default benchmarks/results/factorization_CORPUS.json)")
    p.add_argument("--no-latency", action="store_true", help="train only (the timing pass needs a quiet machine)")
    a = p.parse_args(argv)
    root = os.path.abspath(a.root or os.path.join(ROOT, "runs", "ptb" if a.corpus == "ptb" else "factorize"))
    base, data_dir, plans = plan(a.corpus, root)
    if a.corpus == "ptb" and not os.path.exists(os.path.join(base, "train_report.json")):
        print(f"error: no trained {base}; run `python benchmarks/ptb.py run --only zaremba-small` first",
              file=sys.stderr)
        return 2
    if a.corpus == "embedded":
        train(base, "--schedule", "none")
    started = time.time()
    for _, _, path, options in plans:
        train(path, *options)
    print(f"trained in {time.time() - started:.0f} s", flush=True)
    runs = [("dense", "dense", base)] + [(label, family, path) for label, family, path, _ in plans]
    timing = None
    if not a.no_latency:
        for _, _, path in runs:
            converted(path)
        timing = time_all([path for _, _, path in runs])
    rows = [row(label, family, path, timing) for label, family, path in runs]
    rows[0]["method"] = "dense 2x200 LSTM (Zaremba small)" if a.corpus == "ptb" else "dense default QRNN"
    print_table(rows, timing is not None)
    if timing is None:
        return 0
    lines = verdicts(rows)
    print("\n".join(lines))
    write_results(a.json or os.path.join(ROOT, "benchmarks", "results", f"factorization_{a.corpus}.json"),
                  rows, verdicts=lines, timing="interleaved, 1 thread, XNNPACK, 5000 steps a file in blocks of 50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
