"""The sweep's plots (matplotlib, the `plot` extra): test perplexity against
the step's latency, the keyboard's p90, bytes, and energy when it was
measured. Every file is drawn, coloured by method; the frontier (the
points' own flags, as operating_points.flag set them) is joined and
labelled; the dense model is marked. And the keystroke savings rate
(KSR, higher is better) against the step's latency and against bytes, with
its own frontier, and any reference series (the n-gram baseline) given."""
import io
import os

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402

from edge_runtime.files import atomic_write_bytes  # noqa: E402
from edge_runtime.pareto import frontier  # noqa: E402

AXES = (("latency", "median step latency, ms", lambda r: r["latency_ms"]["median"]),
        ("keyboard", "p90 of a word's suggestions (suggest path, end to end), ms", lambda r: r["keyboard_ms"]["p90"]),
        ("bytes", "file size, bytes", lambda r: r["bytes"]),
        ("energy", "energy, mJ/token", lambda r: r["energy_mj_per_token"]))


def save(fig, ax, path):
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot(doc, key, xlabel, x_of, path):
    rows = doc["points"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for i, m in enumerate(sorted({r["method"] for r in rows})):
        mine = [r for r in rows if r["method"] == m]
        ax.scatter([x_of(r) for r in mine], [r["test_perplexity"] for r in mine], s=30, color=f"C{i}",
                   marker="*" if m == "dense" else "o", label=m, zorder=3)
    front = sorted((r for r in rows if r["frontier"][key]), key=x_of)
    ax.plot([x_of(r) for r in front], [r["test_perplexity"] for r in front], color="k", lw=1, zorder=2,
            label="frontier")
    for r in front:
        ax.annotate(f"{r['name']} {r['variant']}", (x_of(r), r["test_perplexity"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    for r in rows:
        if r["method"] == "dense":
            ax.axhline(r["test_perplexity"], color="grey", lw=0.5, ls=":", zorder=1)
    d = doc["device"]
    ax.set(xlabel=xlabel, ylabel="test perplexity",
           title=f"{os.path.basename(doc['options']['base'].rstrip('/'))}: {key} ({d['cpu']}, "
                 f"{doc['timing']['threads']} thread(s))")
    return save(fig, ax, path)


KSR_AXES = (("latency", "median step latency, ms", lambda r: r["latency_ms"]["median"]),
            ("bytes", "file size, bytes", lambda r: r["bytes"]))


def plot_ksr(doc, key, xlabel, x_of, path, references=()):
    """KSR against one cost; `references` [(label, [(x, ksr)])] are drawn as series of their own."""
    rows = [r for r in doc["points"] if r.get("test_ksr") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for i, m in enumerate(sorted({r["method"] for r in rows})):
        mine = [r for r in rows if r["method"] == m]
        ax.scatter([x_of(r) for r in mine], [r["test_ksr"] for r in mine], s=30, color=f"C{i}",
                   marker="*" if m == "dense" else "o", label=m, zorder=3)
    on = frontier([dict(x=x_of(r), y=-r["test_ksr"]) for r in rows], "x", "y")
    front = [rows[i] for i in on]
    ax.plot([x_of(r) for r in front], [r["test_ksr"] for r in front], color="k", lw=1, zorder=2, label="frontier")
    for r in front:
        ax.annotate(f"{r['name']} {r['variant']}", (x_of(r), r["test_ksr"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    for label, series in references:
        if series:
            xs, ys = zip(*sorted(series))
            ax.plot(xs, ys, color="C7", ls="--", marker="s", ms=4, lw=1, label=label, zorder=2)
    d = doc["device"]
    ax.set(xlabel=xlabel, ylabel="keystroke savings rate (3 words shown)",
           title=f"{os.path.basename(doc['options']['base'].rstrip('/'))}: KSR against {key} ({d['cpu']}, "
                 f"{doc['timing']['threads']} thread(s))")
    if key == "bytes":
        ax.set_xscale("log")
    return save(fig, ax, path)


def plot_all(doc, out, references=None):
    """The PNGs written into `out`. `references` {axis: [(label, [(x, ksr)])]}: extra
    series on the KSR plots (the n-gram baseline)."""
    paths = []
    if not doc["points"]:  # every point failed
        return paths
    for key, xlabel, x_of in AXES:
        if key not in doc["points"][0]["frontier"]:
            continue  # energy: not measured on this device
        paths.append(plot(doc, key, xlabel, x_of, os.path.join(out, f"frontier_{key}.png")))
    if any(r.get("test_ksr") is not None for r in doc["points"]):  # files from before the keyboard metrics lack it
        for key, xlabel, x_of in KSR_AXES:
            paths.append(plot_ksr(doc, key, xlabel, x_of, os.path.join(out, f"ksr_{key}.png"),
                                  (references or {}).get(key, ())))
    return paths
