"""The sweep's outputs (knob/sweep.py): each point's files evaluated by the
device runtime, timed in one pass, flagged on the Pareto frontiers, and
written as operating_points.json (format: edge_runtime/points.py),
report.md, the plots (knob/plots.py) and bundle/. Needs no TensorFlow."""
import datetime
import json
import os
import shutil

import numpy as np

from edge_runtime import bench, device, energy
from edge_runtime import manifest as mf
from edge_runtime.files import atomic_write_text, make_temp_dir, replace_dir
from edge_runtime.keyboard import Words
from edge_runtime.keyboard_metrics import KeyboardScore
from edge_runtime.pareto import frontier
from edge_runtime.points import FILE, FORMAT_VERSION, PointsError  # noqa: F401  (PointsError: the CLI's)
from edge_runtime.runner import evaluate_ids
from edge_runtime.vocab import Vocab
from training import rundir
from knob.report import method as method_of, ranks as ranks_of

TIMING = dict(threads=1, delegate="auto", api="interpreter")


def weight_epochs(config, report=None):
    """{joint, finetune, recovery, total}: the epochs a run updated weights after
    the run it started from (a run with no --init-from is a base: all 0). With
    --keep-best (the report's `kept_best`) a phase counts the epochs of the
    weights it kept, and `trained` says how many it ran."""
    if not config.get("init_from"):
        return dict(joint=0, finetune=0, recovery=0, total=0)
    gates_only = config.get("schedule") == "l0" and config.get("freeze_weights")
    finetunes = config.get("schedule") in ("l0", "filter") or config.get("factorize", "none") != "none"
    e = dict(joint=0 if gates_only else config["epochs"], finetune=config["finetune_epochs"] if finetunes else 0,
             recovery=config["recover_epochs"] if config.get("recover", "none") != "none" else 0)
    kept = (report or {}).get("kept_best")
    trained = None
    if kept:
        key = "finetune" if kept["phase"] == "finetune" else "joint"
        trained = sum(e.values()) - e[key] + kept["epochs_run"]
        e[key] = kept["epoch"]
    out = dict(e, total=sum(e.values()))
    return dict(out, trained=trained) if kept else out


KEYBOARD = ("test_r_at_1", "test_completion_recall_1", "test_completion_recall_2", "test_ksr")


def evaluate_point(run, name, method, share, blocked=()):
    """point.json of a trained, converted run: its structure and, per file, the
    test perplexity, R@1, R@3 and keyboard metrics (completion recall, KSR; the
    words in `blocked` never shown) that the device runtime measures."""
    report = rundir.read_json(os.path.join(run, rundir.REPORT))
    manifest = mf.load(os.path.join(run, "tflite"))
    vocab = Vocab.load(mf.vocab_path(manifest))
    with np.load(os.path.join(run, rundir.EVAL_DATA)) as z:
        test = z["test"]
    files = {}
    for variant, v in manifest["variants"].items():
        if v.get("status") != "ok":
            files[variant] = dict(status=v.get("status"), error=v.get("error"))
            continue
        model, used, _ = bench.load(mf.variant_path(manifest, variant), manifest["states"], 1)
        r = evaluate_ids(model, test, vocab.never_suggested, keyboard=KeyboardScore(Words(vocab, blocked)))
        files[variant] = dict(status="ok", file=os.path.join("points", name, "tflite", v["file"]),
                              sha256=v["sha256"], bytes=v["bytes"], delegate=used,
                              test_perplexity=round(r["perplexity"], 3), test_r_at_3=round(r["r_at_3"], 4),
                              test_r_at_1=round(r["r_at_1"], 4), test_completion_recall_1=r["completion_recall_1"],
                              test_completion_recall_2=r["completion_recall_2"], test_ksr=r["ksr"],
                              keyboard_words=r["keyboard_words"], words_skipped=r["words_skipped"])
    described, strength = method_of(report)
    structure = report.get("structure", {})
    l0 = {k: structure[k] for k in ("expected_macs_fraction", "closed_to_target") if k in structure}
    return dict(name=name, method=method, share=share, described=described, strength=strength,
                hidden_sizes=list(report["hidden_sizes"]), embed=report["embed"], ranks=ranks_of(report),
                params=report["params_nonzero"], macs=report["macs_per_token"],
                macs_nonzero=report["macs_per_token_nonzero"],
                weight_epochs=weight_epochs(rundir.read_json(os.path.join(run, rundir.CONFIG)), report),
                keras_test_perplexity=report.get("test_perplexity"), files=files, **l0)


def rows(points):
    """One row per converted file of the finished points. MACs are those the runtime
    executes (every weight of a matrix, zero or not: LiteRT streams them all), as
    a share of the dense point's; the nonzero count is a column of its own."""
    dense = next((p["macs"] for p in points if p["method"] == "dense"), None)
    out_rows = []
    for p in points:
        for variant, f in p["files"].items():
            if f.get("status") != "ok":
                continue
            out_rows.append(dict(name=p["name"], method=p["method"], strength=p["strength"], share=p["share"],
                                 variant=variant, model=os.path.dirname(f["file"]), file=f["file"],
                                 sha256=f["sha256"], bytes=f["bytes"], hidden_sizes=p["hidden_sizes"],
                                 embed=p["embed"], ranks=p["ranks"], params=p["params"], macs=p["macs"],
                                 macs_nonzero=p["macs_nonzero"],
                                 macs_fraction=round(p["macs"] / dense, 4) if dense else None,
                                 weight_epochs=p["weight_epochs"],
                                 **{k: p[k] for k in ("expected_macs_fraction", "closed_to_target") if k in p},
                                 test_perplexity=f["test_perplexity"], test_r_at_3=f["test_r_at_3"],
                                 **{k: f.get(k) for k in KEYBOARD}))
    return out_rows


def time_rows(rows_, out, steps):
    """The step and the keyboard's path (`Keyboard.feed`, what the device's knob
    budgets) of every file in one interleaved pass; energy, one file at a time,
    where the device has a sensor."""
    if not rows_:  # every point failed: nothing to time
        return rows_
    files = {}
    for i, r in enumerate(rows_):
        manifest = mf.load(os.path.join(out, r["model"]))
        files[i] = (mf.variant_path(manifest, r["variant"]), manifest["states"])
    vocab = Vocab.load(mf.vocab_path(mf.load(os.path.join(out, rows_[0]["model"]))))  # one base: one vocabulary
    timed = bench.interleaved(files, steps=steps, threads=TIMING["threads"], delegate=TIMING["delegate"],
                              api=TIMING["api"], vocab=vocab)
    sensor = energy.find_sensor()
    for i, r in enumerate(rows_):
        t = timed[i]
        r["latency_ms"] = dict(median=t["median"], p90=t["p90"])
        r["keyboard_ms"] = dict(median=t["keyboard"]["median"], p90=t["keyboard"]["p90"])
        r["key_ms"] = dict(median=t["key"]["median"], p90=t["key"]["p90"])
        r["delegate"] = t["delegate"]
        r["energy_mj_per_token"] = None
        if sensor is not None:
            e = bench.run(files[i][0], files[i][1], steps, threads=TIMING["threads"])
            r["energy_mj_per_token"] = e["energy_mj_per_token"]
    flag(rows_)
    return rows_


AXES = dict(latency=lambda r: r["latency_ms"]["median"],   # the step, median: the tables and plots
            keyboard=lambda r: r["keyboard_ms"]["p90"],    # what the device budgets
            bytes=lambda r: r["bytes"])


def flag(rows_):
    """Mark each row on (or off) the perplexity frontiers against each of `AXES`,
    and against energy where every file's was measured."""
    axes = dict(AXES)
    if rows_ and all(r.get("energy_mj_per_token") is not None for r in rows_):
        axes["energy"] = lambda r: r["energy_mj_per_token"]
    on = {}
    for axis, x_of in axes.items():
        pts = [dict(x=x_of(r), ppl=r["test_perplexity"]) for r in rows_]
        on[axis] = set(frontier(pts, "x", "ppl"))
    for i, r in enumerate(rows_):
        r["frontier"] = {axis: i in on[axis] for axis in axes}


def document(rows_, options, steps):
    return dict(format_version=FORMAT_VERSION, created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                device=device.describe(), timing=dict(TIMING, steps=steps), options=options, points=rows_)


def report_md(doc):
    """The table, fastest first, frontier rows marked."""
    d = doc["device"]
    lines = [f"# Operating points of {doc['options']['base']}", "",
             f"Measured {doc['created']} on {d['cpu']} ({d['machine']}), LiteRT {d['litert']}, "
             f"{doc['timing']['threads']} thread(s), {doc['timing']['steps']} steps per file in one interleaved pass. "
             "Perplexity and R@3: the test split, by the device runtime. MACs: executed per token (a sparse "
             "matrix's zeros included); nonzero beside them. Epochs: of weight updates after the base run. "
             "Step: one step, median; keyboard: a word's suggestions end to end, p90 (what the device budgets). "
             "Frontier: L = perplexity against the step, K = against the keyboard's p90, B = against bytes. "
             "Keyboard metrics (docs/design.md): R@1, completion recall after 1 and 2 letters (C1, C2) and the "
             "keystroke savings rate (KSR) with 3 words shown; key: one key press's completions, median.", "",
             "| point | file | frontier | hidden | MACs/token | nonzero | MACs share | epochs | params | bytes | "
             "test ppl | test R@3 | R@1 | C1 | C2 | KSR | step ms | keyboard p90 ms | key ms | mJ/token |",
             "|---" * 20 + "|"]
    for r in sorted(doc["points"], key=lambda r: r["latency_ms"]["median"]):
        mark = "".join(c for c, axis in (("L", "latency"), ("K", "keyboard"), ("B", "bytes")) if r["frontier"][axis])
        e = "" if r["energy_mj_per_token"] is None else f"{r['energy_mj_per_token']:.4f}"
        name = f"**{r['name']}**" if mark else r["name"]
        lines.append(f"| {name} | {r['variant']} | {mark} | {r['hidden_sizes']} | {r['macs']:,} | "
                     f"{r['macs_nonzero']:,} | {r['macs_fraction']:.3f} | {r['weight_epochs']['total']} | "
                     f"{r['params']:,} | {r['bytes']:,} | {r['test_perplexity']:.2f} | {r['test_r_at_3']:.3f} | "
                     + " | ".join(cell(r.get(k)) for k in KEYBOARD) + " | "
                     f"{r['latency_ms']['median']:.4f} | {r['keyboard_ms']['p90']:.4f} | "
                     f"{cell((r.get('key_ms') or {}).get('median'), '{:.4f}')} | {e} |")
    return "\n".join(lines) + "\n"


def cell(x, fmt="{:.3f}"):
    return "n/a" if x is None else fmt.format(x)


def write_bundle(doc, out):
    """bundle/: the frontier's files, each point's manifest and vocabulary, and
    an operating-points file with paths relative to it; built aside, swapped in."""
    final = os.path.join(out, "bundle")
    tmp = make_temp_dir(final)
    keep = [r for r in doc["points"] if any(r["frontier"].values())]
    by_model = {}
    for r in keep:
        by_model.setdefault(r["model"], set()).add(r["variant"])
    for model, variants in by_model.items():
        src = os.path.join(out, model)
        name = os.path.basename(os.path.dirname(model))  # points/NAME/tflite -> NAME
        manifest = mf.load(src)
        dest = os.path.join(tmp, name)
        os.makedirs(dest)
        for v in variants:
            shutil.copy2(mf.variant_path(manifest, v), os.path.join(dest, manifest["variants"][v]["file"]))
        shutil.copy2(mf.vocab_path(manifest), os.path.join(dest, manifest["vocab"]["file"]))
        manifest = {k: v for k, v in manifest.items() if k != "_dir"}
        manifest["variants"] = {k: v for k, v in manifest["variants"].items() if k in variants}
        atomic_write_text(os.path.join(dest, mf.FILE), json.dumps(manifest, indent=2) + "\n")
    points = []
    for r in keep:
        name = os.path.basename(os.path.dirname(r["model"]))
        points.append(dict(r, model=name, file=os.path.join(name, os.path.basename(r["file"]))))
    atomic_write_text(os.path.join(tmp, FILE), json.dumps(dict(doc, points=points), indent=2) + "\n")
    if doc["options"].get("blocked_words"):  # what the device's keyboard never shows (also in FILE)
        atomic_write_text(os.path.join(tmp, "block.txt"), "".join(w + "\n" for w in doc["options"]["blocked_words"]))
    replace_dir(tmp, final)
    return final


def write_outputs(doc, out, log=print, ngram=None):
    atomic_write_text(os.path.join(out, FILE), json.dumps(doc, indent=2) + "\n")
    atomic_write_text(os.path.join(out, "report.md"), report_md(doc))
    bundle = write_bundle(doc, out)
    log(report_md(doc))
    try:
        from knob.plots import plot_all
    except ImportError as e:  # matplotlib is the `plot` extra
        log(f"no plots: {e.name} is missing (pip install -e '.[plot]')")
        plots = []
    else:
        plots = plot_all(doc, out, ngram)
    log(f"wrote {os.path.join(out, FILE)}, {os.path.join(out, 'report.md')}, {bundle}/"
        + "".join(f", {p}" for p in plots))
