"""`operating_points.json`: the knob's measured points, read on the device.

Format version 2 (written by `python -m pruning.sweep`, in the sweep folder
and in its bundle/):
    format_version, created, device (where the latencies were measured),
    timing {steps, threads, delegate, api}, options (the sweep's),
    points [{name, method, strength, variant, model (a tflite/ folder with
    its manifest, relative to this file), file, sha256, bytes, hidden_sizes,
    embed, ranks, params, macs (executed per token), macs_nonzero,
    macs_fraction, weight_epochs {joint, finetune, recovery, total; trained
    where --keep-best kept an earlier epoch than the last it ran},
    test_perplexity, test_r_at_3, latency_ms {median, p90} (one step),
    keyboard_ms {median, p90} (a word's suggestions end to end: what the
    knob budgets), energy_mj_per_token, frontier {latency, keyboard, bytes};
    L0 points: expected_macs_fraction, closed_to_target}]
Version 1 had no keyboard_ms: its figures time another thing than the knob
budgets, so it is refused (run the sweep again).
`load` checks the format and every file's sha256 before anything runs.
"""
import os

from edge_runtime import device
from edge_runtime import manifest as mf

FORMAT_VERSION = 2
FILE = "operating_points.json"


class PointsError(mf.ManifestError):
    """An operating-points file the device cannot use; one-line message."""


def load(path):
    """The document, each point with `_manifest` (its model's manifest) added."""
    doc, path = mf.read_versioned(path, FILE, "operating-points file", PointsError, FORMAT_VERSION)
    if "variants" in doc and "points" not in doc:
        raise PointsError(f"{path} is a model's manifest (a converted run's tflite/), not an operating-points "
                          f"file: --points wants a sweep's bundle/{FILE} (give the model to --model)")
    if doc["format_version"] < FORMAT_VERSION:
        raise PointsError(f"{path} has format version {doc['format_version']}, which records no keyboard "
                          f"latency; run the sweep again (--resume redoes only the timing)")
    if not isinstance(doc.get("points"), list):
        raise PointsError(f"{path} is not an operating-points file (it has no points)")
    here = os.path.dirname(os.path.abspath(path))
    for p in doc["points"]:
        p["_manifest"] = manifest = mf.load(os.path.join(here, p["model"]))
        v = manifest["variants"].get(p["variant"], {})
        if v.get("sha256") != p["sha256"]:
            raise PointsError(f"{path}: point {p['name']} {p['variant']} names sha256 {p['sha256'][:16]}..., "
                              f"its manifest {str(v.get('sha256'))[:16]}...: the files are not the ones measured")
        try:
            mf.variant_path(manifest, p["variant"])  # the file itself, against the same sha256
        except mf.ManifestError as e:
            raise PointsError(f"{path}: point {p['name']}: {e}") from None
    doc["_path"] = path
    return doc


def measured_here(doc):
    """Were the document's latencies measured on this device?"""
    return doc.get("device") == device.describe()


def label(p):
    return f"{p['name']}:{p['variant']}"
