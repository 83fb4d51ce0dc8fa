"""One table of any runs' reports (`python -m pruning.report RUN [RUN ...]`).

Per run: the method and its strength, hidden sizes, factor ranks, parameters
and MACs per token (nonzero), and for one converted file (`--variant`,
default int8) its bytes, perplexity and R@3 on the test split as training
measured them, and the latency and energy `predict.py bench --threads 1
--json` recorded for that very file on this device (blank until measured).
`--json` prints the rows as JSON. Needs no TensorFlow.
"""
import json
import os

RUN_FILES = ("config.json", "train_report.json")


class ReportError(ValueError):
    """A run that cannot be reported; one-line message."""


def method(report):
    """(method, strength) of a run, from its report."""
    s = report.get("schedule") or {}
    name = s.get("schedule", "none")
    if "factorization" in report:
        f = report["factorization"]
        ranks = sorted({m.get("rank") or tuple(m.get("ranks", ())) for m in f["matrices"].values()}, key=str)
        return f"{f['kind']} {f['scope']}", "rank " + ", ".join(str(r) for r in ranks)
    if name in ("constant", "polynomial", "m-by-n", "grow-prune"):
        return ("magnitude " + name if name != "grow-prune" else name), f"sparsity {s.get('target_sparsity')}"
    if name == "filter":
        return f"filter ({s.get('rank_by')})", f"units {s.get('target_units')}"
    if name == "l0":
        if s.get("target_macs") is not None:
            return "l0 (constraint)", f"MACs {s['target_macs']}"
        return f"l0 ({s.get('l0_penalty', 'count')})", f"lambda {s.get('l0_lambda')}"
    return "dense", ""


def ranks(report):
    return {k: m.get("rank", m.get("ranks")) for k, m in report.get("factorization", {}).get("matrices", {}).items()}


def row(run_dir, variant="int8"):
    """The table's row for one run directory."""
    from edge_runtime import manifest as mf
    from edge_runtime.bench_cache import cached_bench
    missing = [f for f in RUN_FILES if not os.path.exists(os.path.join(run_dir, f))]
    if not os.path.isdir(run_dir) or missing:
        raise ReportError(f"{run_dir} is not a trained run (it lacks {', '.join(missing) or 'everything'})")
    with open(os.path.join(run_dir, "train_report.json"), encoding="utf-8") as f:
        report = json.load(f)
    name, strength = method(report)
    out = dict(run=run_dir, status=report.get("status"), method=name, strength=strength,
               hidden_sizes=report.get("hidden_sizes"), embed=report.get("embed"), ranks=ranks(report),
               params=report.get("params_nonzero"), macs=report.get("macs_per_token_nonzero"),
               test_perplexity=report.get("test_perplexity"), test_r_at_3=report.get("test_r_at_3"),
               variant=variant, bytes=None, file_perplexity=None, latency_ms=None, p90_ms=None,
               energy_mj_per_token=None, sha256=None)
    try:
        manifest = mf.load(os.path.join(run_dir, "tflite"))
    except mf.ManifestError:
        return out  # not converted
    v = manifest["variants"].get(variant, {})
    if v.get("status") == "ok":
        out.update(bytes=v["bytes"], file_perplexity=v.get("perplexity"), sha256=v["sha256"])
        bench = cached_bench(manifest, variant, 1, "auto")
        if bench:
            out.update(latency_ms=bench["latency_ms"]["median"], p90_ms=bench["latency_ms"]["p90"],
                       energy_mj_per_token=bench.get("energy_mj_per_token"))
    return out


def table(rows):
    def cell(x, fmt="{}"):
        return "" if x is None else fmt.format(x)
    lines = ["| run | method | strength | hidden | nonzero params | nonzero MACs/token | test ppl | test R@3 | file | bytes "
             "| median ms | p90 ms | mJ/token |", "|---" * 13 + "|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['method']} | {r['strength']} | {cell(r['hidden_sizes'])} | "
                     f"{cell(r['params'], '{:,}')} | {cell(r['macs'], '{:,}')} | {cell(r['test_perplexity'], '{:.2f}')} | "
                     f"{cell(r['test_r_at_3'], '{:.3f}')} | {r['variant']} | {cell(r['bytes'], '{:,}')} | "
                     f"{cell(r['latency_ms'], '{:.4f}')} | {cell(r['p90_ms'], '{:.4f}')} | "
                     f"{cell(r['energy_mj_per_token'], '{:.4f}')} |")
    return "\n".join(lines)
