"""Structured pruning on the default corpus and model, measured end to end.

    python benchmarks/structured.py [--root runs/bench] [--json benchmarks/results/structured.json]

From one dense QRNN (the default model, `--schedule none`), at about 80%,
60%, 50% and 25% of its MACs per token:
- filter pruning, one shot (`--init-from`), units ranked random / norm /
  activation, `--target-units` chosen so the MACs land nearest the target;
- L0 gates learned with the weights frozen (`--freeze-weights`, Tang & Lin)
  on a quarter of the training text (gate learning rate 0.1), `--l0-lambda` searched (log scale) until
  the MACs are within 3 points of the target;
- the same with `--l0-penalty macs` (expected MACs instead of open gates);
- at 80% and 60%: each of them again with `--recover rank-one`;
- at 50% and 25%: both L0 and activation-filter fine-tuned one epoch, and
  magnitude pruning (`--schedule constant`, one epoch from the dense model)
  at the same number of nonzero parameters as the fine-tuned L0 model.
Every result is an ordinary run directory: it is converted with
`convert.to_tflite --quantize dynamic` and timed with `predict.py bench`
(1 thread, XNNPACK, median of 1000 steps; the middle of three such runs),
nothing else running.
Runs already done are reused (the script resumes where it stopped).
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_runtime import manifest as mf  # noqa: E402
from edge_runtime.bench_cache import bench_file, cached_bench  # noqa: E402
from keras_models.cost import macs_from_spec  # noqa: E402  (no TensorFlow needed)
from training import data, rundir  # noqa: E402

TARGETS = (0.8, 0.6, 0.5, 0.25)
RANKINGS = ("random", "norm", "activation")
# A gate closes (test-time z = 0) once log alpha < -2.4; from 3.0 that is 5.4 to go.
# Adam moves about one learning rate a step, so 142 steps (a quarter epoch) need 0.1.
GATE_LR = 0.1
BENCH_RUNS = 3  # `predict.py bench` runs per file; the middle one is kept
L0, L0_MACS = "L0 (frozen weights)", "L0, MACs penalty (frozen weights)"


def run(*args):
    """Run a command from the repository root; stop the benchmark if it fails."""
    cmd = [sys.executable, *args]
    print("$", " ".join(cmd[1:]), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(args)}\n{done.stderr[-3000:]}")
    return done.stdout


def report(path):
    with open(os.path.join(path, "train_report.json")) as f:
        return json.load(f)


def train(out, *args):
    if not os.path.exists(os.path.join(out, "train_report.json")):
        run("-m", "pruning.train", "--out", out, "--force", *args)
    return report(out)


def units_for(spec, target):
    """The --target-units whose one-shot filter pruning lands nearest `target` MACs."""
    dense = macs_from_spec(spec)

    def fraction(u):
        sizes = [max(1, round(u * h)) for h in spec["hidden_sizes"]]
        embed = sizes[-1] if spec["tie_embeddings"] else spec["embed"]
        return macs_from_spec(dict(spec, hidden_sizes=sizes, embed=embed)) / dense
    return min((abs(fraction(u / 200) - target), u / 200) for u in range(1, 201))[1]


def write_subset(root, data_dir=None):
    """A quarter of the training and validation text (for the lambda search); all the test text."""
    sub = os.path.join(root, "subset")
    if not os.path.exists(os.path.join(sub, "test.txt")):
        os.makedirs(sub, exist_ok=True)
        corpus = data.load_corpus(data_dir)
        for split in data.SPLITS:
            sents = corpus[split] if split == "test" else corpus[split][:len(corpus[split]) // 4]
            with open(os.path.join(sub, f"{split}.txt"), "w", encoding="utf-8") as f:
                f.writelines(" ".join(s) + "\n" for s in sents)
    return sub


def l0_search(root, dense, subset, target, tries, penalty):
    """Frozen-weight L0 runs at several lambdas until the MACs land within 0.03 of `target`."""
    def attempt(lam):
        out = os.path.join(root, f"l0{'' if penalty == 'count' else penalty}-lam{lam:.2e}")
        r = train(out, "--schedule", "l0", "--init-from", dense, "--freeze-weights", "--l0-penalty", penalty,
                  "--l0-lambda", f"{lam:.2e}", "--gate-lr", str(GATE_LR), "--data-dir", subset)
        tries[out] = (lam, r["structure"]["macs_fraction"])
        return out
    for out, (lam, frac) in tries.items():  # earlier attempts (other targets) may do
        if abs(frac - target) <= 0.03:
            return out
    for _ in range(6):
        pts = sorted(tries.values())
        lo = [p for p in pts if p[1] > target]  # lambda too small: too many units left
        hi = [p for p in pts if p[1] < target]
        if lo and hi:  # interpolate log lambda between the bracketing attempts
            (l1, f1), (l2, f2) = lo[-1], hi[0]
            w = (f1 - target) / (f1 - f2)
            lam = math.exp(math.log(l1) + w * (math.log(l2) - math.log(l1)))
        elif lo:
            lam = lo[-1][0] * 4
        elif hi:
            lam = hi[0][0] / 4
        else:  # the count penalty is about 768 gates, the MACs one a fraction
            lam = 1e-3 if penalty == "count" else 1.0
        out = attempt(lam)
        if abs(tries[out][1] - target) <= 0.03:
            return out
    return min(tries, key=lambda o: abs(tries[o][1] - target))


def measure(path, retime=False):
    """Dynamic-range LiteRT step latency (ms, median, 1 thread) and file bytes of a run."""
    m = measure_variants(path, ("dynamic",), retime)["dynamic"]
    return m["latency_ms"], m["bytes"]


def measure_variants(path, variants, retime=False):
    """{variant: latency_ms (median, 1 thread), bytes, perplexity and r_at_3 of the .tflite on
    the first 5000 validation tokens}; converts and times what has not been yet
    (`retime`: times again what has been)."""
    timed = all(bench_result(path, v) for v in variants)
    if not timed:
        run("-m", "convert.to_tflite", path, "--quantize", ",".join(variants), "--eval-tokens", "5000", "--force")
    if retime or not timed:
        for v in variants:
            bench_median_of(path, v)
    manifest = mf.load(os.path.join(path, "tflite"))["variants"]
    out = {}
    for v in variants:
        b = bench_result(path, v)
        out[v] = dict(latency_ms=b["latency_ms"]["median"], bytes=b["bytes"],
                      perplexity=manifest[v]["perplexity"], r_at_3=manifest[v]["r_at_3"])
    return out


def bench_path(path, variant):
    """Where `predict.py bench --threads 1 --json` writes this machine's result for `variant`."""
    return bench_file(mf.load(os.path.join(path, "tflite")), variant, 1, "auto")


def bench_result(path, variant):
    """This machine's bench result for the file the manifest names now, or None: a result
    from another device, or for an earlier conversion (another sha256), is not this file's."""
    try:
        manifest = mf.load(os.path.join(path, "tflite"))
    except mf.ManifestError:
        return None
    return cached_bench(manifest, variant, 1, "auto")


def bench_median_of(path, variant, runs=BENCH_RUNS):
    """Time `variant` `runs` times and keep the bench result of the middle one: a
    single 1000-step median here is now and then 25% off when a neighbour is busy."""
    results = []
    written = bench_path(path, variant)
    for _ in range(runs):
        run(os.path.join("edge_runtime", "predict.py"), "bench", "--model", path,
            "--variant", variant, "--threads", "1", "--json")
        results.append(rundir.read_json(written))
    middle = sorted(results, key=lambda b: b["latency_ms"]["median"])[runs // 2]
    rundir.write_json(written, dict(middle, bench_runs=[b["latency_ms"]["median"] for b in results]))


def row(path, method, target, base_ms=None, measure_latency=True):
    r = report(path)
    macs = r["macs_per_token"]
    out = dict(run=os.path.relpath(path, ROOT), method=method, target=target,
               hidden_sizes=r["hidden_sizes"], embed=r["embed"], macs=macs,
               params=r["params_total"], params_nonzero=r["params_nonzero"],
               test_perplexity=r["test_perplexity"], test_r_at_3=r["test_r_at_3"])
    if "recovery" in r:
        out["recovery_extra_params"] = r["recovery"]["extra_params"]
    if measure_latency:
        out["latency_ms"], out["dynamic_bytes"] = measure(path)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=os.path.join(ROOT, "runs", "bench"))
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "structured.json"))
    p.add_argument("--no-latency", action="store_true", help="train only (latency needs a quiet machine)")
    a = p.parse_args()
    root = os.path.abspath(a.root)
    dense = os.path.join(root, "dense")
    train(dense, "--schedule", "none")
    spec = json.load(open(os.path.join(dense, "model", "spec.json")))
    subset = write_subset(root)
    lat = not a.no_latency
    rows = [row(dense, "dense", 1.0, measure_latency=lat)]
    tries = {"count": {}, "macs": {}}
    for t in TARGETS:
        pruned = {}
        for how in RANKINGS:
            out = os.path.join(root, f"filter-{how}-{int(t * 100)}")
            train(out, "--schedule", "filter", "--init-from", dense, "--rank-by", how,
                  "--target-units", f"{units_for(spec, t):.3f}")
            pruned[f"filter {how}"] = out
        pruned[L0] = l0_search(root, dense, subset, t, tries["count"], "count")
        pruned[L0_MACS] = l0_search(root, dense, subset, t, tries["macs"], "macs")
        for method, out in pruned.items():
            rows.append(row(out, method, t, measure_latency=lat))
            if t in (0.8, 0.6):
                rec = out.rstrip("/") + "-rank1"
                train(rec, "--schedule", "none", "--init-from", out, "--epochs", "0", "--recover", "rank-one")
                rows.append(row(rec, method + " + rank-one", t, measure_latency=lat))
        if t in (0.5, 0.25):
            for method in (L0, L0_MACS, "filter activation"):
                ft = pruned[method].rstrip("/") + f"-ft{int(t * 100)}"
                train(ft, "--schedule", "none", "--init-from", pruned[method], "--epochs", "1")
                rows.append(row(ft, method + " + 1 epoch fine-tuning", t, measure_latency=lat))
            l0_ft = [r for r in rows if r["method"] == L0 + " + 1 epoch fine-tuning" and r["target"] == t][0]
            dense_r = report(dense)
            sparsity = round(1 - l0_ft["params_nonzero"] / dense_r["params_total"], 4)
            mag = os.path.join(root, f"magnitude-{int(t * 100)}")
            train(mag, "--schedule", "constant", "--target-sparsity", str(sparsity), "--init-from", dense,
                  "--epochs", "1")
            rows.append(row(mag, f"magnitude {sparsity:.0%} (same nonzero params as L0 + ft)", t,
                            measure_latency=lat))
    base = rows[0]
    for r in rows:
        r["macs_fraction"] = round(r["macs"] / base["macs"], 3)
        if lat:
            r["speedup"] = round(base["latency_ms"] / r["latency_ms"], 2)
    print_tables(rows, lat)
    if lat:
        write_results(a.json, rows)


def write_results(path, rows, **extra):
    """The rows (and `extra` fields) and a description of the machine, as JSON."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rundir.write_json(path, dict(date=time.strftime("%Y-%m-%d"), machine=platform.platform(),
                                 processor=platform.processor(), cpus=os.cpu_count(),
                                 python=platform.python_version(), **extra, rows=rows))
    print(f"wrote {path}")


def print_tables(rows, lat):
    head = "| method | target | MACs/token | hidden sizes | params (nonzero) | test ppl | test R@3 |"
    head += " dynamic ms | speed-up |" if lat else ""
    print(head)
    print("|---" * (9 if lat else 7) + "|")
    for r in rows:
        line = (f"| {r['method']} | {r['target']:.0%} | {r['macs']:,} ({r['macs_fraction']:.0%}) | "
                f"{r['embed']}/{r['hidden_sizes']} | {r['params_nonzero']:,} | {r['test_perplexity']:.2f} | "
                f"{r['test_r_at_3']:.3f} |")
        if lat:
            line += f" {r['latency_ms']:.3f} | {r['speedup']:.2f}x |"
        print(line)


if __name__ == "__main__":
    main()
