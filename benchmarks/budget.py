"""The recovery budget: the same sweep with one epoch of weight updates a
point and with more, point by point, so each method is seen where it has
converged and not only after one epoch.

    python -m pruning.sweep runs/qrnn-base --out runs/budget-1 --methods l0,units-norm,lowrank \
        --points 100,40,20 --quantize dynamic --finetune-epochs 1
    python -m pruning.sweep ... --out runs/budget-3 ... --finetune-epochs 3
    python benchmarks/budget.py runs/budget-1 runs/budget-3 [--name qrnn]
    python -m pruning.sweep ... --out runs/budget-best ... --finetune-epochs 6 --keep-best 1
    python benchmarks/budget.py runs/budget-3 runs/budget-best --name qrnn-best

Both sweeps must share their base run, methods, points and files; they
differ only in `--finetune-epochs` and `--keep-best` (with it, each point
stops on validation and keeps its best epoch; each point's `weight_epochs` says what it
got: l0 one joint epoch and the rest fine-tuning, units and lowrank all
fine-tuning, dense that many more epochs). For each point and budget: test
perplexity, R@1, R@3 and KSR of its first file over the whole test split (the
sweep's own figures, the device runtime's), and the validation perplexity
after each epoch of its run: where the last epoch improved it by under 2%
(or made it worse), or the point stopped on validation, it is called
converged. Prints a table; writes
benchmarks/results/budget_NAME.json.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_runtime.files import atomic_write_text  # noqa: E402

FLAT = 0.02  # the last epoch improved validation perplexity by under 2%, or not at all: converged


def read_sweep(path):
    """(options, {point name: row}) of a finished sweep; SystemExit with one line if it is not one."""
    try:
        with open(os.path.join(path, "sweep.json"), encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {path} is not a finished sweep ({e})")
    rows = {}
    for name in sorted(os.listdir(os.path.join(path, "points"))):
        point = os.path.join(path, "points", name)
        try:
            with open(os.path.join(point, "point.json"), encoding="utf-8") as f:
                p = json.load(f)
            with open(os.path.join(point, "train_report.json"), encoding="utf-8") as f:
                report = json.load(f)
        except (OSError, ValueError):
            sys.exit(f"error: {point} is not finished: run the sweep with --resume first")
        variant, file = next(iter(p["files"].items()))
        valid = [round(h["valid_perplexity"], 2) for h in report.get("history", []) if "valid_perplexity" in h]
        kept = report.get("kept_best")  # --keep-best: stopped on validation, its best epoch kept
        rows[name] = dict(method=p["method"], share=p["share"], weight_epochs=p["weight_epochs"]["total"],
                          trained_epochs=p["weight_epochs"].get("trained") or p["weight_epochs"]["total"],
                          variant=variant, bytes=file["bytes"], test_perplexity=file["test_perplexity"],
                          r_at_1=file["test_r_at_1"], r_at_3=file["test_r_at_3"], ksr=file["test_ksr"],
                          valid_by_epoch=valid, kept_best=kept,
                          converged=bool(kept and kept["epochs_run"] > kept["epoch"])
                          or (len(valid) >= 2 and valid[-1] > valid[-2] * (1 - FLAT)))
    return doc, rows


def compare(a_path, b_path):
    a_doc, a = read_sweep(a_path)
    b_doc, b = read_sweep(b_path)
    for key in ("base", "methods", "points", "quantize", "steps_per_epoch", "teacher"):
        if a_doc.get(key) != b_doc.get(key):
            sys.exit(f"error: the sweeps differ in {key} ({a_doc.get(key)} against {b_doc.get(key)}); "
                     "only --finetune-epochs and --keep-best may differ")
    budgets = [label(d) for d in (a_doc, b_doc)]
    if budgets[0] == budgets[1]:
        sys.exit(f"error: both sweeps have the same budget ({budgets[0]})")
    return dict(sweeps=[a_path, b_path], finetune_epochs=[a_doc["finetune_epochs"], b_doc["finetune_epochs"]],
                keep_best=[a_doc.get("keep_best", 0), b_doc.get("keep_best", 0)], budgets=budgets,
                base=a_doc["base"], points=[dict(point=n, **{e: row for e, row in zip(budgets, (a[n], b[n]))})
                                            for n in a if n in b])


def label(doc):
    """A sweep's budget: '3', or with --keep-best 'up to 6, best kept'."""
    n = doc["finetune_epochs"]
    return f"up to {n}, best kept" if doc.get("keep_best") else str(n)


def table(doc):
    lo, hi = doc.get("budgets") or [str(e) for e in doc["finetune_epochs"]]
    lines = [f"| point | .tflite MB | weight epochs | test ppl | R@3 | KSR | validation ppl by epoch ({hi}) | converged |",
             "|---" * 8 + "|"]

    def epochs(row):  # the epochs of the weights kept, and (where more ran) how many ran
        ran = row.get("trained_epochs", row["weight_epochs"])
        return f"{row['weight_epochs']}" + (f" (of {ran})" if ran != row["weight_epochs"] else "")
    for p in doc["points"]:
        a, b = p[lo], p[hi]
        lines.append(f"| {p['point']} | {b['bytes'] / 1e6:.2f} | {epochs(a)} -> {epochs(b)} | "
                     f"{a['test_perplexity']:.2f} -> {b['test_perplexity']:.2f} | {a['r_at_3']:.4f} -> "
                     f"{b['r_at_3']:.4f} | {a['ksr']:.4f} -> {b['ksr']:.4f} | "
                     f"{', '.join(f'{v:.1f}' for v in b['valid_by_epoch'])} | {'yes' if b['converged'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("short", help="the sweep with the smaller --finetune-epochs")
    p.add_argument("long", help="the same sweep with a larger --finetune-epochs")
    p.add_argument("--name", default="qrnn", help="results file benchmarks/results/budget_NAME.json")
    a = p.parse_args(argv)
    doc = compare(a.short, a.long)
    print(table(doc))
    path = os.path.join(ROOT, "benchmarks", "results", f"budget_{a.name}.json")
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    print(f"written {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
