"""The README's headline tables, printed from the committed results JSON.

    python benchmarks/headline.py

The perplexity-latency frontiers of the default QRNN's and the PTB LSTM's
sweeps (benchmarks/results/knob_{qrnn,ptb}.json), the peers on the PTB-shaped step (peers.json), and the PTB
reproduction (ptb.json). Nothing is measured here.
"""
import json
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def load(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def frontier(doc):
    """The latency frontier, fastest first, and the dense model's int8 file."""
    rows = sorted((r for r in doc["points"] if r["frontier"]["latency"]), key=lambda r: r["latency_ms"]["median"])
    rows += [r for r in doc["points"] if r["method"] == "dense" and r["variant"] == "int8"]
    out = ["| point | file | MACs share | bytes | test ppl | test R@3 | median ms |", "|---|---|---|---|---|---|---|"]
    out += [f"| {r['name']} | {r['variant']} | {r['macs_fraction']:.2f} | {r['bytes']:,} | {r['test_perplexity']:.2f} | "
            f"{r['test_r_at_3']:.3f} | {r['latency_ms']['median']:.4f} |" for r in rows]
    o = doc.get("against_ort")
    if o:
        out += ["", f"The fastest point within 5% of the dense perplexity, {o['point']}, is {o['speedup']:.2f}x faster "
                    "than ONNX Runtime's dynamic int8 of the dense model (ratios measured in one pass each, chained)."]
    return out


def main():
    lines = []
    for name, title in (("knob_qrnn.json", "The default QRNN, embedded corpus"), ("knob_ptb.json", "The PTB 2x200 LSTM")):
        doc = load(name)
        if doc:
            lines += [f"{title}: the perplexity-latency frontier of its sweep and the dense model "
                      f"({doc['created'][:10]}, 1 thread, one interleaved pass):", ""]
            lines += frontier(doc) + [""]
    peers = load("peers.json")
    if peers:
        lstm = next(r for r in peers["results"] if r["spec"]["arch"] == "lstm")["systems"]
        lines += [f"One step of the PTB 2x200 LSTM, us ({peers['date']}, one interleaved pass):", "",
                  "| system | us |", "|---|---|"]
        for name in ("PyTorch eager dynamic int8", "ONNX Runtime dynamic int8", "edgelm dynamic .tflite",
                     "edgelm int8 .tflite", "floor: int8 matvec"):
            key = next(k for k in lstm if k.startswith(name))
            lines.append(f"| {key} | {lstm[key]['median'] * 1e3:.1f} |")
        lines.append("")
    ptb_rows = load("ptb.json")
    if ptb_rows:
        z = next(r for r in ptb_rows["rows"] if r["method"].startswith("Zaremba small"))
        lines += [f"PTB, Zaremba et al.'s small LSTM: test perplexity {z['test_perplexity']:.2f} (published 114.5)."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
