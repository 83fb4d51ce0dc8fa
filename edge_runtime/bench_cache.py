"""The bench figures kept beside a converted model: `predict.py bench --json`
writes them, `pick`, the knob and `pruning.report` read them back.

A figure is named by the file's sha256 and this device, so a re-converted
file or another folder's file is measured anew, never taken for another's.
"""
import json
import os
import sys
import time

from edge_runtime import bench, device, points
from edge_runtime import manifest as mf
from edge_runtime.files import atomic_write_text
from edge_runtime.vocab import Vocab


def bench_dir(manifest):
    return os.path.join(os.path.dirname(manifest["_dir"]), "bench")


def bench_file(manifest, variant, threads, delegate, api="interpreter"):
    """Where `bench --json` keeps a variant's figures."""
    sha = manifest["variants"][variant]["sha256"]
    host = device.describe()["hostname"] or "device"
    return os.path.join(bench_dir(manifest), f"{variant}-{sha[:16]}-{host}-t{threads or 'default'}-"
                                             f"{delegate}-{api}.json")


def cached_bench(manifest, variant, threads, delegate, api="interpreter"):
    """The saved figures of this very file measured on this device, or None."""
    if manifest["variants"].get(variant, {}).get("status") != "ok":
        return None
    try:
        with open(bench_file(manifest, variant, threads, delegate, api), encoding="utf-8") as f:
            r = json.load(f)
    except (OSError, ValueError):
        return None
    same = isinstance(r, dict) and r.get("sha256") == manifest["variants"][variant]["sha256"] \
        and r.get("device") == device.describe() and "latency_ms" in r
    return r if same else None


def measure(manifest, variant, s, save=True):
    """Bench one variant now with settings `s` (steps, warmup, threads, delegate,
    active_watts, idle_seconds, api); saved to its bench_file unless `save` is False."""
    r = bench.run(mf.variant_path(manifest, variant), manifest["states"], s.steps, s.warmup, s.threads,
                  s.delegate, s.active_watts, idle_seconds=s.idle_seconds, api=s.api,
                  vocab=Vocab.load(mf.vocab_path(manifest)))
    r.update(variant=variant, device=device.describe(),
             perplexity=manifest["variants"][variant].get("perplexity"),
             measured=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if save:
        atomic_write_text(bench_file(manifest, variant, s.threads, s.delegate, s.api), json.dumps(r, indent=2) + "\n")
    return r


def figures(manifest, variant, label, s):
    """The file's bench figures on this device: the cache's, else measured now (and kept)."""
    measured = cached_bench(manifest, variant, s.threads, s.delegate, s.api)
    if measured is None or not measured.get("keyboard_ms"):  # the knob budgets the keyboard's figure
        print(f"measuring {label} on this device ...", file=sys.stderr)
        measured = measure(manifest, variant, s)
    return measured


def point_figures(doc, p, s):
    """The bench figures of an operating point: the sweep's own where they were
    measured on this device with these settings (the file's sha256 was checked
    at load), else `figures`."""
    t = doc["timing"]
    if points.measured_here(doc) and (s.threads or 1) == t["threads"] and s.api == t["api"] \
            and s.delegate == t["delegate"]:
        return dict(latency_ms=p["latency_ms"], keyboard_ms=p["keyboard_ms"],
                    energy_mj_per_token=p.get("energy_mj_per_token"))
    return figures(p["_manifest"], p["variant"], points.label(p), s)
