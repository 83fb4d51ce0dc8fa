"""The sweep's plots (matplotlib, the `plot` extra): test perplexity against
the step's latency, the keyboard's p90, bytes, and energy when it was
measured. Every file is drawn, coloured by method; the frontier (the
points' own flags, as operating_points.flag set them) is joined and
labelled; the dense model is marked."""
import io
import os

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402

from edge_runtime.files import atomic_write_bytes  # noqa: E402

AXES = (("latency", "median step latency, ms", lambda r: r["latency_ms"]["median"]),
        ("keyboard", "p90 of a word's suggestions (suggest path, end to end), ms", lambda r: r["keyboard_ms"]["p90"]),
        ("bytes", "file size, bytes", lambda r: r["bytes"]),
        ("energy", "energy, mJ/token", lambda r: r["energy_mj_per_token"]))


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
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_all(doc, out):
    """The PNGs written into `out`."""
    paths = []
    if not doc["points"]:  # every point failed
        return paths
    for key, xlabel, x_of in AXES:
        if key not in doc["points"][0]["frontier"]:
            continue  # energy: not measured on this device
        paths.append(plot(doc, key, xlabel, x_of, os.path.join(out, f"frontier_{key}.png")))
    return paths
