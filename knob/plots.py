"""The sweep's plots (matplotlib, the `plot` extra): test perplexity against
the step's latency, the keyboard's p90, bytes, and energy when it was
measured. Every file is drawn, coloured by method; the frontier (the
points' own flags, as operating_points.flag set them) is joined and
labelled; the dense model is marked. And the keystroke savings rate and
next-word R@3 (higher is better) against the step's latency and against
bytes, with their own frontier, and any reference series (the n-gram
baseline) given.

So that a reader can read them: bytes are in MB on a log scale in every
plot; labels are moved until they overlap neither each other nor a point;
and a point far worse than the rest (a failed point) is drawn at the edge
of the axis with its value written, instead of stretching the axis."""
import io
import os
import statistics

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402

from edge_runtime.files import atomic_write_bytes  # noqa: E402
from edge_runtime.pareto import frontier  # noqa: E402

AXES = (("latency", "median step latency, ms", lambda r: r["latency_ms"]["median"]),
        ("keyboard", "p90 of a word's suggestions (suggest path, end to end), ms", lambda r: r["keyboard_ms"]["p90"]),
        ("bytes", "file size, MB (log scale)", lambda r: r["bytes"] / 1e6),
        ("energy", "energy, mJ/token", lambda r: r["energy_mj_per_token"]))


def arrange(fig, ax):
    """The title, grid and legend, and the axes' final place (labels are placed after it)."""
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    # beside the axes, not on them: "best" placement still covered points drawn as error bars
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()


def save(fig, ax, path):
    arrange(fig, ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


# a value further from the median than this many robust standard deviations (1.4826 median absolute
# deviations) is drawn at the edge of the axis
OUTLIER = 10.0
# where a label may go, in points from its point: tried in order until it overlaps nothing
OFFSETS = ((4, 4), (4, -11), (-4, 4), (-4, -11), (4, 13), (4, -20), (-4, 13), (-4, -20), (4, 22), (4, -29))


def megabytes(ax):
    """A log-scale bytes axis whose ticks read as plain megabytes (0.5, 1, 2, 5), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def axis_limits(values, keep=()):
    """(low, high) for an axis that shows every value in `keep` (the dense model, the references) and
    every other value unless it lies far from the rest: one failed point cannot flatten the others
    (it may still be on the frontier: the smallest file always is)."""
    center = statistics.median(values)
    spread = 1.4826 * statistics.median(abs(v - center) for v in values) or 0.05 * max(abs(center), 1e-9)
    inside = [v for v in values if abs(v - center) <= OUTLIER * spread] + list(keep)
    lo, hi = min(inside), max(inside)
    pad = 0.06 * max(hi - lo, 1e-9)
    return lo - pad, hi + pad


def clip(ax, xs, ys, limits, **style):
    """Scatter the points inside `limits`; each one outside is drawn at the edge, as a triangle
    pointing its way, with its value written."""
    lo, hi = limits
    inside = [(x, y) for x, y in zip(xs, ys) if lo <= y <= hi]
    if inside:
        ax.scatter(*zip(*inside), **style)
    for x, y in zip(xs, ys):
        if not lo <= y <= hi:
            edge = hi if y > hi else lo
            ax.scatter([x], [edge], marker="^" if y > hi else "v", s=30, color=style.get("color"), zorder=3,
                       clip_on=False)
            ax.annotate(f"{y:.4g}", (x, edge), fontsize=6, xytext=(4, -8 if y > hi else 2),
                        textcoords="offset points")


def label(fig, ax, items):
    """Annotate each (text, x, y) at the first offset where its box stays inside the axes and overlaps
    no label placed before it and no marker; the last offset where every one fails."""
    arrange(fig, ax)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken = [ax.transData.transform((x, y)) for _, x, y in items]
    frame = ax.get_window_extent(renderer)
    boxes = []
    for text, x, y in items:
        for dx, dy in OFFSETS:
            a = ax.annotate(text, (x, y), fontsize=7, xytext=(dx, dy), textcoords="offset points",
                            ha="left" if dx > 0 else "right")
            box = a.get_window_extent(renderer).expanded(1.02, 1.1)
            hits_point = any(box.contains(px, py) for px, py in taken)
            outside = box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1
            if not hits_point and not outside and not any(box.overlaps(b) for b in boxes):
                break
            if (dx, dy) != OFFSETS[-1]:
                a.remove()
        boxes.append(box)


def plot(doc, key, xlabel, x_of, path):
    rows = doc["points"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    front = sorted((r for r in rows if r["frontier"][key]), key=x_of)
    keep = [r["test_perplexity"] for r in rows if r["method"] == "dense"]
    limits = axis_limits([r["test_perplexity"] for r in rows], keep)
    for i, m in enumerate(sorted({r["method"] for r in rows})):
        mine = [r for r in rows if r["method"] == m]
        clip(ax, [x_of(r) for r in mine], [r["test_perplexity"] for r in mine], limits, s=30, color=f"C{i}",
             marker="*" if m == "dense" else "o", label=m, zorder=3)
    ax.plot([x_of(r) for r in front], [r["test_perplexity"] for r in front], color="k", lw=1, zorder=2,
            label="frontier")
    for r in rows:
        if r["method"] == "dense":
            ax.axhline(r["test_perplexity"], color="grey", lw=0.5, ls=":", zorder=1)
    d = doc["device"]
    ax.set(xlabel=xlabel, ylabel="test perplexity", ylim=limits,
           title=f"{os.path.basename(doc['options']['base'].rstrip('/'))}: {key} ({d['cpu']}, "
                 f"{doc['timing']['threads']} thread(s))")
    if key == "bytes":
        megabytes(ax)
    label(fig, ax, [(f"{r['name']} {r['variant']}", x_of(r), r["test_perplexity"]) for r in front])
    return save(fig, ax, path)


KSR_AXES = (("latency", "median step latency, ms", lambda r: r["latency_ms"]["median"]),
            ("bytes", "file size, MB (log scale)", lambda r: r["bytes"] / 1e6))
KEYBOARD = (("ksr", "test_ksr", "keystroke savings rate"), ("r_at_3", "test_r_at_3", "next-word R@3"))


def plot_keyboard(doc, metric, key, xlabel, x_of, path, references=()):
    """A keyboard figure (KSR or R@3: higher is better) against one cost; `references`
    [(label, [(x, value)])] are drawn as series of their own (the n-gram baseline)."""
    name, field, title = next(m for m in KEYBOARD if m[0] == metric)
    rows = [r for r in doc["points"] if r.get(field) is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    on = frontier([dict(x=x_of(r), y=-r[field]) for r in rows], "x", "y")
    front = sorted((rows[i] for i in on), key=x_of)
    keep = [r[field] for r in rows if r["method"] == "dense"]
    keep += [y for _, series in references for _, y in series]
    limits = axis_limits([r[field] for r in rows], keep)
    for i, m in enumerate(sorted({r["method"] for r in rows})):
        mine = [r for r in rows if r["method"] == m]
        clip(ax, [x_of(r) for r in mine], [r[field] for r in mine], limits, s=30, color=f"C{i}",
             marker="*" if m == "dense" else "o", label=m, zorder=3)
    ax.plot([x_of(r) for r in front], [r[field] for r in front], color="k", lw=1, zorder=2, label="frontier")
    for j, (label_, series) in enumerate(references):
        if series:
            xs, ys = zip(*sorted(series))
            ax.plot(xs, ys, color=("C7", "C8")[j % 2], ls="--", marker="s", ms=4, lw=1, label=label_, zorder=2)
    d = doc["device"]
    ax.set(xlabel=xlabel, ylabel=f"{title} (3 words shown)", ylim=limits,
           title=f"{os.path.basename(doc['options']['base'].rstrip('/'))}: {title} against {key} ({d['cpu']}, "
                 f"{doc['timing']['threads']} thread(s))")
    if key == "bytes":
        megabytes(ax)
    label(fig, ax, [(f"{r['name']} {r['variant']}", x_of(r), r[field]) for r in front])
    return save(fig, ax, path)


def ngram_references(path, metric):
    """[(label, [(MB, value)])]: the n-gram series of a results file of benchmarks/ngram.py, one per order."""
    import json
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    out = []
    for order in sorted({r["order"] for r in doc["models"]}):
        rows = [r for r in doc["models"] if r["order"] == order]
        out.append((f"KenLM KN{order}, count-pruned to full", [(r["bytes"] / 1e6, r[metric]) for r in rows]))
    return out


def plot_all(doc, out, ngram=None):
    """The PNGs written into `out`. `ngram`: a results file of benchmarks/ngram.py over the
    whole test split, whose n-grams are drawn as series on the keyboard plots against bytes."""
    paths = []
    if not doc["points"]:  # every point failed
        return paths
    for key, xlabel, x_of in AXES:
        if key not in doc["points"][0]["frontier"]:
            continue  # energy: not measured on this device
        paths.append(plot(doc, key, xlabel, x_of, os.path.join(out, f"frontier_{key}.png")))
    for metric, field, _ in KEYBOARD:
        if not any(r.get(field) is not None for r in doc["points"]):  # files from before the keyboard metrics
            continue
        for key, xlabel, x_of in KSR_AXES:
            refs = ngram_references(ngram, metric) if ngram and key == "bytes" else ()
            paths.append(plot_keyboard(doc, metric, key, xlabel, x_of, os.path.join(out, f"{metric}_{key}.png"),
                                       refs))
    return paths
