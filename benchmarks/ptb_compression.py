"""The compression table on Penn Treebank, from Zaremba et al.'s small LSTM.

    python benchmarks/ptb_compression.py [--root runs/ptb] [--json benchmarks/results/ptb_compression.json]
                                         [--no-latency | --retime]

Needs the trained `runs/ptb/zaremba-small` (`python benchmarks/ptb.py run`).
From it:
- magnitude pruning (TF-MOT polynomial) to 50, 80 and 90% of the prunable
  matrices over one epoch of fine-tuning (SGD at 1.0 on our mean-over-tokens
  loss, about the recipe's rate in its 8th epoch; clip 0.25; batch 32, 35
  steps, dropout 0.1), and the dense model given the same epoch, since the
  epoch alone changes the perplexity;
- at about 80% and 60% of the dense MACs per token: whole-unit pruning, one
  shot, ranked random / norm / activation (`--target-units` chosen so the MACs
  land nearest the target), and L0 gates learned on the frozen weights with
  the papers' count penalty and with ours (expected MACs), lambda searched on
  a quarter of the training text;
- each unit-pruned model again with `--recover rank-one` (u v^T per matrix,
  one epoch of Adam 0.004 over a quarter of the training text, weights frozen).
The H-LSTM that `ptb.py run --only hlstm-gp` grew and pruned to the LSTM's
nonzero count joins the table when it is there.
Every model is converted to dynamic-range and int8 LiteRT and timed with
`predict.py bench` (1 thread, XNNPACK, median of 1000 steps; the middle of
three such runs); the .tflite
perplexity is over the first 5000 validation tokens. Finished runs are reused;
`--retime` times every file again in one pass, nothing else running.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import structured  # noqa: E402
from benchmarks.structured import (ROOT, RANKINGS, l0_search, measure_variants, report,  # noqa: E402
                                   train, units_for, write_results, write_subset)

SPARSITIES = (0.5, 0.8, 0.9)
TARGETS = (0.8, 0.6)
VARIANTS = ("dynamic", "int8")
# SGD, the dense model's optimiser; batch, steps and dropout are the trainer's defaults, spelled out
FINETUNE = ["--epochs", "1", "--lr", "1", "--batch-size", "32", "--bptt", "35", "--dropout", "0.1"]
RECOVER = ["--schedule", "none", "--epochs", "0", "--recover", "rank-one", "--optimizer", "adam", "--lr", "0.004"]


def row(path, method, target, a):
    """A table row; with the dynamic and int8 files measured unless `a.no_latency`."""
    out = structured.row(path, method, target, measure_latency=False)
    out["macs_nonzero"] = report(path)["macs_per_token_nonzero"]
    if not a.no_latency:
        out.update(measure_variants(path, VARIANTS, a.retime))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/ptb_compression.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=os.path.join(ROOT, "runs", "ptb"))
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "ptb_compression.json"))
    when = p.add_mutually_exclusive_group()
    when.add_argument("--no-latency", action="store_true", help="train only (latency needs a quiet machine)")
    when.add_argument("--retime", action="store_true",
                      help="time every model again, back to back (each was first timed between trainings)")
    a = p.parse_args(argv)
    root = os.path.abspath(a.root)
    dense, data_dir = os.path.join(root, "zaremba-small"), os.path.join(root, "data")
    if not os.path.exists(os.path.join(dense, "train_report.json")):
        print(f"error: no trained {dense}; run `python benchmarks/ptb.py run --only zaremba-small` first",
              file=sys.stderr)
        return 2
    with open(os.path.join(dense, "model", "spec.json")) as f:
        spec = json.load(f)
    work = os.path.join(root, "compress")
    subset = write_subset(work, data_dir)
    lat = not a.no_latency
    rows = [row(dense, "dense 2x200 LSTM", 1.0, a)]
    hlstm = os.path.join(root, "hlstm-gp")  # trained by ptb.py (same recipe); its files are made here
    if os.path.exists(os.path.join(hlstm, "train_report.json")):
        rows.append(row(hlstm, "H-LSTM 1x200, grow-and-prune (ptb.py)", None, a))
    more = os.path.join(work, "dense-1-more-epoch")  # what the magnitude rows' extra epoch alone gives
    train(more, "--init-from", dense, "--data-dir", data_dir, "--schedule", "none", *FINETUNE)
    rows.append(row(more, "dense + the same extra epoch", 1.0, a))
    for s in SPARSITIES:
        out = os.path.join(work, f"magnitude-{int(s * 100)}")
        train(out, "--init-from", dense, "--data-dir", data_dir, "--schedule", "polynomial",
              "--target-sparsity", str(s), *FINETUNE)
        rows.append(row(out, f"magnitude {s:.0%}", None, a))
    tries = {"count": {}, "macs": {}}
    for t in TARGETS:
        pruned = {}
        for how in RANKINGS:
            out = os.path.join(work, f"filter-{how}-{int(t * 100)}")
            train(out, "--schedule", "filter", "--init-from", dense, "--data-dir", data_dir, "--rank-by", how,
                  "--target-units", f"{units_for(spec, t):.3f}")
            pruned[f"units, {how}"] = out
        pruned["L0, count penalty"] = l0_search(work, dense, subset, t, tries["count"], "count")
        pruned["L0, MACs penalty"] = l0_search(work, dense, subset, t, tries["macs"], "macs")
        for method, out in pruned.items():
            rows.append(row(out, method, t, a))
            rec = out.rstrip("/") + "-rank1"
            train(rec, "--init-from", out, "--data-dir", subset, *RECOVER)
            rows.append(row(rec, method + " + rank-one", t, a))
    for r in rows:
        r["macs_fraction"] = round(r["macs"] / rows[0]["macs"], 3)
    print_table(rows, lat)
    if lat:
        write_results(a.json, rows)
    return 0


def print_table(rows, lat):
    head = "| model | MACs/token | hidden | params (nonzero) | test ppl | test R@3 |"
    if lat:
        head += " dynamic bytes | dynamic ms | dynamic ppl* | int8 bytes | int8 ms | int8 ppl* |"
    print(head)
    print("|---" * head.count(" |") + "|")
    for r in rows:
        line = (f"| {r['method']} | {r['macs']:,} ({r['macs_fraction']:.0%}) | {r['embed']}/{r['hidden_sizes']} | "
                f"{r['params_nonzero']:,} | {r['test_perplexity']:.2f} | {r['test_r_at_3']:.3f} |")
        if lat:
            for v in VARIANTS:
                line += f" {r[v]['bytes']:,} | {r[v]['latency_ms']:.3f} | {r[v]['perplexity']:.2f} |"
        print(line)
    if lat:
        print("* .tflite perplexity over the first 5000 validation tokens")


if __name__ == "__main__":
    sys.exit(main())
