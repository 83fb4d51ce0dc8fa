"""Set the aarch64 outputs of `outputs.py` beside the x86_64 ones and say
where they differ more than the device runtime promises: float32 and float16
perplexity within 1e-4 relative, dynamic and int8 within 0.5%, and the three
words shown the same, in the same order, at 99% of positions or more (any
precision). The share with the same three words in any order is reported too.

    python tests/arm64/compare.py X86.json AARCH64.json [--json OUT]
"""
import argparse
import json
import os
import sys

PERPLEXITY_TOLERANCE = {"float32": 1e-4, "float16": 1e-4, "dynamic": 5e-3, "int8": 5e-3}
SAME_SHOWN = 0.99


def compare(x86, arm):
    """(rows, problems): per variant the relative perplexity difference and the
    share of positions showing the same three words; problems name each miss."""
    rows, problems = [], []
    for name, a in x86["variants"].items():
        b = arm["variants"].get(name)
        if b is None:
            problems.append(f"{name}: no aarch64 outputs")
            continue
        if len(a["shown"]) != len(b["shown"]):
            problems.append(f"{name}: {len(a['shown'])} positions on x86_64, {len(b['shown'])} on aarch64")
            continue
        rel = abs(b["perplexity"] / a["perplexity"] - 1)
        same = sum(s == t for s, t in zip(a["shown"], b["shown"])) / len(a["shown"])
        same_words = sum(set(s) == set(t) for s, t in zip(a["shown"], b["shown"])) / len(a["shown"])
        rows.append(dict(variant=name, tokens=len(a["shown"]), x86_64=a["perplexity"], aarch64=b["perplexity"],
                         relative_difference=rel, same_shown=same, same_words_any_order=same_words))
        tol = PERPLEXITY_TOLERANCE.get(name, 5e-3)
        if rel > tol:
            problems.append(f"{name}: perplexity {a['perplexity']:.5f} on x86_64, {b['perplexity']:.5f} on "
                            f"aarch64 ({rel:.2e} relative, over {tol:g})")
        if same < SAME_SHOWN:
            problems.append(f"{name}: the same three words at {same:.2%} of positions (under {SAME_SHOWN:.0%})")
    return rows, problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("x86")
    p.add_argument("aarch64")
    p.add_argument("--json", help="write the table here")
    a = p.parse_args(argv)
    docs = []
    for path in (a.x86, a.aarch64):
        with open(path, encoding="utf-8") as f:
            docs.append(json.load(f))
    rows, problems = compare(*docs)
    print(f"{docs[0]['model']}: x86_64 against {docs[1]['machine']} ({docs[1].get('cpu', 'emulated')})")
    print("| variant | tokens | x86_64 perplexity | aarch64 perplexity | relative difference | same 3 words shown "
          "| same 3 words, any order |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['tokens']:,} | {r['x86_64']:.5f} | {r['aarch64']:.5f} | "
              f"{r['relative_difference']:.2e} | {r['same_shown']:.2%} | {r['same_words_any_order']:.2%} |")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(dict(model=docs[0]["model"], aarch64_cpu=docs[1].get("cpu"), rows=rows,
                           problems=problems), f, indent=2)
            f.write("\n")
        os.replace(tmp, a.json)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
