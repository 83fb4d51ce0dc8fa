"""The README's headline tables, printed from the committed results JSON.

    python benchmarks/headline.py

The perplexity-latency frontiers of the default QRNN's and the PTB LSTM's
sweeps (benchmarks/results/knob_{qrnn,ptb}.json; a sweep of an older format,
whose dense point trained less than the others, is left out), the peers and
the fastest point within 5% of dense against ONNX Runtime, from one pass
(peers_knob_{qrnn,ptb}.json from `peers.py run --sweep`), and the
PTB reproduction (ptb.json), and the keyboard metrics of the n-grams and
the neural files beside them (ngram_{ptb,embedded}.json). Nothing is
measured here.
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
    rows += [r for r in doc["points"] if r["method"] == "dense" and r["variant"] == "int8" and r not in rows]
    out = ["| point | file | MACs share | epochs | bytes | test ppl | test R@3 | step median ms | keyboard p90 ms |",
           "|---|---|---|---|---|---|---|---|---|"]
    out += [f"| {r['name']} | {r['variant']} | {r['macs_fraction']:.2f} | {r['weight_epochs']['total']} | "
            f"{r['bytes']:,} | {r['test_perplexity']:.2f} | {r['test_r_at_3']:.3f} | {r['latency_ms']['median']:.4f} | "
            f"{r['keyboard_ms']['p90']:.4f} |" for r in rows]
    return out


def against_ort(peers):
    """The sentence on the fastest point within 5% of dense against ORT, from one pass."""
    out = []
    for r in peers["results"]:
        o = r.get("sweep")
        if o:
            out.append(f"{r['spec']['arch']} {r['spec']['hidden_sizes']}: the fastest point within 5% of the dense "
                       f"perplexity, {o['point']} ({o['perplexity']:.2f} against {o['dense_perplexity']:.2f}), is "
                       f"{o['over_ort_dynamic_int8']:.2f}x faster than ONNX Runtime's dynamic int8 of the dense model and "
                       f"{o['over_ort_static_int8']:.2f}x faster than its static int8 (medians of one interleaved pass, "
                       f"{peers['date']}).")
    return out


def ngram(doc, title):
    """The n-grams and the neural files scored on the same test tokens (benchmarks/ngram.py's table)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.ngram import table
    where = (f"the whole test split ({doc['keyboard_positions']:,} positions)" if doc.get("whole_split")
             else f"the first {doc['keyboard_tokens']:,} test tokens")
    return [f"{title}: keyboard metrics on {where}, 3 words shown; KenLM "
            "modified Kneser-Ney and the neural files on the same tokens, latencies from one pass "
            "(benchmarks/ngram.py):", "", table(doc), ""]


def main():
    lines = []
    for name, title in (("knob_qrnn.json", "The default QRNN, embedded corpus"), ("knob_ptb.json", "The PTB 2x200 LSTM")):
        doc = load(name)
        if doc and doc.get("format_version", 1) >= 2:
            lines += [f"{title}: the perplexity-latency frontier of its sweep and the dense model "
                      f"({doc['created'][:10]}, 1 thread, one interleaved pass):", ""]
            lines += frontier(doc) + [""]
    for name in ("peers_knob_qrnn.json", "peers_knob_ptb.json"):  # each model's peers and sweep, one pass each
        peers = load(name)
        if not peers:
            continue
        for r in peers["results"]:
            s = r["spec"]
            lines += [f"One step of the {s['arch']} {s['hidden_sizes']} (V={s['vocab_size']}), us ({peers['date']}, "
                      "one interleaved pass):", "", "| system | us |", "|---|---|"]
            for system in ("PyTorch eager dynamic int8", "ONNX Runtime dynamic int8", "ONNX Runtime static int8",
                           "edgelm dynamic .tflite", "edgelm int8 .tflite", "floor: int8 matvec"):
                key = next((k for k in r["systems"] if k.startswith(system)), None)
                if key:
                    lines.append(f"| {key} | {r['systems'][key]['median'] * 1e3:.1f} |")
            lines.append("")
        lines += against_ort(peers) + [""]
    for name, title in (("ngram_ptb.json", "PTB"), ("ngram_embedded.json", "The embedded corpus")):
        doc = load(name)
        if doc:
            lines += ngram(doc, title)
    ptb_rows = load("ptb.json")
    if ptb_rows:
        z = next(r for r in ptb_rows["rows"] if r["method"].startswith("Zaremba small"))
        lines += [f"PTB, Zaremba et al.'s small LSTM: test perplexity {z['test_perplexity']:.2f} (published 114.5)."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
