"""H-LSTM and grow-and-prune on the default corpus, measured end to end.

    python benchmarks/hlstm.py [--root runs/bench-hlstm] [--json benchmarks/results/hlstm.json]

1. One H-LSTM layer against two LSTM layers at about the same number of
   parameters (both tied to the 256-d embedding, 10k vocabulary, 3 epochs,
   no pruning): LSTM 512 + 256 units; H-LSTM 256 units with gate MLPs of
   `--gate-hidden` 768 (the same 2.36M recurrent weights).
2. The H-LSTM pruned to 75% sparsity of its gate matrices by grow-and-prune
   (seed density 0.3, growth 0.5 of the dormant connections, 2 cycles) and by
   TF-MOT polynomial magnitude pruning (`--prune-scope recurrent`: the same
   matrices), 3 epochs each; and magnitude pruning of every matrix, the
   tied embedding / output matrix too (the default scope).
Each run is converted (`--quantize dynamic`) and timed with `predict.py
bench` (1 thread, XNNPACK, median of 1000 steps). Finished runs are reused.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.structured import ROOT, measure, train, write_results  # noqa: E402

RUNS = [
    ("LSTM 2 layers (512, 256)", "lstm", ["--arch", "lstm", "--schedule", "none"]),
    ("H-LSTM 1 layer (256, gate MLPs 768)", "hlstm",
     ["--arch", "hlstm", "--layers", "1", "--gate-hidden", "768", "--schedule", "none"]),
    ("H-LSTM, grow-and-prune to 75% sparsity", "hlstm-gp75",
     ["--arch", "hlstm", "--layers", "1", "--gate-hidden", "768", "--schedule", "grow-prune",
      "--target-sparsity", "0.75"]),
    # Same matrices as grow-and-prune (the gate MLPs), then also the tied embedding / output matrix.
    ("H-LSTM, polynomial magnitude pruning of the gate matrices to 75%", "hlstm-poly75-gates",
     ["--arch", "hlstm", "--layers", "1", "--gate-hidden", "768", "--schedule", "polynomial",
      "--target-sparsity", "0.75", "--prune-scope", "recurrent"]),
    ("H-LSTM, polynomial magnitude pruning of every matrix to 75%", "hlstm-poly75",
     ["--arch", "hlstm", "--layers", "1", "--gate-hidden", "768", "--schedule", "polynomial",
      "--target-sparsity", "0.75"]),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=os.path.join(ROOT, "runs", "bench-hlstm"))
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "hlstm.json"))
    p.add_argument("--no-latency", action="store_true", help="train only (latency needs a quiet machine)")
    a = p.parse_args()
    rows = []
    for label, name, args in RUNS:
        out = os.path.join(os.path.abspath(a.root), name)
        r = train(out, *args)
        row = dict(run=os.path.relpath(out, ROOT), method=label, params=r["params_total"],
                   params_nonzero=r["params_nonzero"], macs=r["macs_per_token"],
                   macs_nonzero=r["macs_per_token_nonzero"], test_perplexity=r["test_perplexity"],
                   test_r_at_3=r["test_r_at_3"], wall_time_s=r["wall_time_s"])
        if "grow_prune" in r:
            row["grow_prune"] = r["grow_prune"]
        if not a.no_latency:
            row["latency_ms"], row["dynamic_bytes"] = measure(out)
        rows.append(row)
    print("| model | params (nonzero) | MACs/token (nonzero) | test ppl | test R@3 |"
          + (" dynamic bytes | dynamic ms |" if not a.no_latency else ""))
    print("|---" * (5 if a.no_latency else 7) + "|")
    for r in rows:
        line = (f"| {r['method']} | {r['params']:,} ({r['params_nonzero']:,}) | {r['macs']:,} "
                f"({r['macs_nonzero']:,}) | {r['test_perplexity']:.2f} | {r['test_r_at_3']:.3f} |")
        if not a.no_latency:
            line += f" {r['dynamic_bytes']:,} | {r['latency_ms']:.3f} |"
        print(line)
    for r in rows:
        for e in r.get("grow_prune", []):
            active = ", ".join(f"{k} {v:,}" for k, v in e["active"].items())
            print(f"{r['method']}: step {e['step']} {e['event']}: valid ppl before {e['valid_perplexity_before']:.2f}; "
                  f"active after: {active}")
    if not a.no_latency:
        write_results(a.json, rows)


if __name__ == "__main__":
    main()
