"""The README's headline tables, printed from the committed results JSON.

    python benchmarks/headline.py

The knob of the default QRNN (benchmarks/results/knob_qrnn.json: its
perplexity-latency frontier) and the range the PTB knob spans
(knob_ptb.json), the peers on the PTB-shaped step (peers.json), and the PTB
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
    rows = sorted((r for r in doc["points"] if r["frontier"]["latency"]), key=lambda r: r["latency_ms"]["median"])
    out = ["| point | file | MACs share | bytes | test ppl | test R@3 | median ms |", "|---|---|---|---|---|---|---|"]
    out += [f"| {r['name']} | {r['variant']} | {r['macs_fraction']:.2f} | {r['bytes']:,} | {r['test_perplexity']:.2f} | "
            f"{r['test_r_at_3']:.3f} | {r['latency_ms']['median']:.4f} |" for r in rows]
    return out


def main():
    lines = []
    qrnn = load("knob_qrnn.json")
    if qrnn:
        lines += [f"The knob of the default QRNN, embedded corpus ({qrnn['created'][:10]}; the latency frontier):", ""]
        lines += frontier(qrnn) + [""]
    ptb = load("knob_ptb.json")
    if ptb:
        k = ptb["span"]
        lines += [f"The PTB 2x200 LSTM's knob ({ptb['created'][:10]}): the fastest frontier point, {k['fastest']}, "
                  f"steps in {k['fastest_ms']:.4f} ms against the dense {k['dense']}'s {k['dense_ms']:.4f} ms "
                  f"({k['speedup']:.2f}x), at perplexity {k['fastest_perplexity']:.2f} against {k['dense_perplexity']:.2f} "
                  f"({k['perplexity_change']:+.1%}).", ""]
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
